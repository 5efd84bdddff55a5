"""Generate config/tasks/gpu_insertion/scene.xml (scratch generator)."""
import math

T = 0.000785            # PCB half thickness (1.57 mm)
SLOT_W2 = 0.00095       # slot half width (1.9 mm)
SLOT_L2 = 0.0128        # slot half length (25.6 mm)
CH = 0.0010             # slot chamfer (45 deg)
RISER_TOP = 0.040
FLOOR = 0.045
TOP = 0.051
HOUS_W2, HOUS_L2 = 0.0035, 0.0155
HOLD_X = -0.09
HOLD_YS = (0.43, 0.47, 0.51, 0.55)
# the holders (a reset fixture) lead a card in with 3 mm 45-degree chamfers, 5 mm of straight
# slot below them, 2 x 29 mm for the card's 1.6 x 25 mm (its edge connector, and the PCB's -x
# strip above the latch notch): a card lowered up to 3 mm off across or 5 mm along slides
# in (the light grip of a stood-up card lets it turn into the slot)
HOLD_W2, HOLD_L2, HOLD_CH, HOLD_TOP = 0.0010, 0.0145, 0.0030, 0.053
# The latch (connector frame, m). The hinge (axis y) at LATCH_X, LATCH_Z: 3 mm on the card's
# side of the hook's tip and 7.8 mm below it, so a card pulled up against the hook's flat
# underside turns it towards its closed stop (it holds), and the hook opening swings its
# tip out (-x) and a little down. The hook: a flat underside at HOOK_UNDER_Z from its root
# (-15 mm) to its tip (-11 mm: 1.5 mm over the slot's -x end), a 0.5 mm tip face, then a
# lead-in ramp HOOK_RAMP above the horizontal back to the root. A shallow ramp: a card
# pushed down on it feels mostly an upward push at its -x corner, and the ramp's push
# along the card (+x), which alone would tilt a card held above, turns it the other way
# about a grasp at the cooler: at about 25 degrees the two cancel. The hook's underside
# 3.5 mm and its ramp at the card's edge 4.7 mm above the slot's floor: a card meets the
# ramp 1.3 mm deep in the slot (held in x by the slot's ends against the ramp's push).
LATCH_X, LATCH_Z = -0.008, 0.0407
HOOK_ROOT_X, HOOK_TIP_X, HOOK_UNDER_Z, HOOK_TIP_FACE = -0.015, -0.011, 0.0485, 0.0005
HOOK_RAMP = math.radians(25.0)
_ramp_top = HOOK_UNDER_Z + HOOK_TIP_FACE + (HOOK_TIP_X - HOOK_ROOT_X - 0.0005) * math.tan(HOOK_RAMP)
_hook_xz = [(HOOK_ROOT_X, HOOK_UNDER_Z), (HOOK_TIP_X, HOOK_UNDER_Z),
            (HOOK_TIP_X, HOOK_UNDER_Z + HOOK_TIP_FACE), (HOOK_ROOT_X + 0.0005, _ramp_top),
            (HOOK_ROOT_X, _ramp_top)]
HOOK_VERTS = '  '.join(f'{x - LATCH_X:.5f} {y:.4f} {z - LATCH_Z:.5f}'
                       for y in (-0.0015, 0.0056) for x, z in _hook_xz)
# the card's retention notch in its -x edge (2 mm deep), z above the bottom edge (m): the
# hook's tip (z 3.5-4.0 mm above the floor when closed, swinging 0.6 mm down as it clears
# the card's edge) fits between its ledge (2.6 mm) and its top (6.0 mm)
NOTCH = (0.0026, 0.0060)
# contact of the parts (card, connector, latch, caddy): see the <default class="part">
PART_SOLREF = '0.004 1'
PART_SOLIMP = '0.99 0.999 0.0005'
PART_FRICTION = '0.2 0.005 0.0001'
# the latch's hinge: a preloaded spring (springref beyond the closed stop at 0)
LATCH_STIFFNESS, LATCH_SPRINGREF = 0.01, 0.5
LATCH_DAMPING, LATCH_ARMATURE = 0.0008, 2e-6

def box(name, c, h, rgba, quat=None, extra=''):
    q = f' quat="{quat[0]:.5f} {quat[1]:.5f} {quat[2]:.5f} {quat[3]:.5f}"' if quat else ''
    return (f'      <geom name="{name}" type="box" size="{h[0]:.5f} {h[1]:.5f} {h[2]:.5f}" '
            f'pos="{c[0]:.5f} {c[1]:.5f} {c[2]:.5f}"{q} rgba="{rgba}"{extra}/>')

def rng(lo, hi):
    return (lo + hi) / 2, (hi - lo) / 2

#: Convex prisms (name -> vertex string) the slots are built of, for the <asset> section.
MESHES = {}


def prism(name, profile, axis, half):
    """A convex prism: ``profile`` [(u, z)] (u: y for axis x, x for axis y) extruded
    over [-half, half] along ``axis``; registered in MESHES."""
    v = []
    for a in (-half, half):
        for u, z in profile:
            v.append((a, u, z) if axis == 'x' else (u, a, z))
    MESHES[name] = '  '.join(f'{x:.5f} {y:.5f} {z:.5f}' for x, y, z in v)


def slot_geoms(prefix, cx, cy, w2, l2, ch, floor, top, outer_w2, outer_l2, rgba, z0):
    """A slot (opening along x) with 45-degree chamfers at its top inner edges: a floor
    block, and each wall and end one convex prism (its inner face, chamfer and top) from
    the base up. One convex piece per wall: a box wall with a rotated box chamfer on its top
    edge leaves an internal edge at the knee where a card's edge finds the wall's top face
    and stops on it (a contact normal straight up, a mm above the slot's floor)."""
    g = []
    zc, zh = rng(z0, floor)
    g.append(box(f'{prefix}_floor', (cx, cy, zc), (outer_l2, outer_w2, zh), rgba))
    knee = top - ch
    for sgn, tag in ((1, 'yp'), (-1, 'yn')):
        prism(f'{prefix}_wall_{tag}', [(sgn * u, z) for u, z in (
            (w2, z0), (w2, knee), (w2 + ch, top), (outer_w2, top), (outer_w2, z0))],
            'x', outer_l2)
    for sgn, tag in ((1, 'xp'), (-1, 'xn')):
        prism(f'{prefix}_end_{tag}', [(sgn * u, z) for u, z in (
            (l2, z0), (l2, knee), (l2 + ch, top), (outer_l2, top), (outer_l2, z0))],
            'y', w2 + ch)
    for tag in ('wall_yp', 'wall_yn', 'end_xp', 'end_xn'):
        g.append(f'      <geom name="{prefix}_{tag}" type="mesh" mesh="{prefix}_{tag}" '
                 f'pos="{cx:.5f} {cy:.5f} 0" rgba="{rgba}"/>')
    return g

HOUSING = '0.08 0.08 0.08 1'
RISER = '0.15 0.3 0.45 1'
LATCH = '0.85 0.85 0.8 1'
RACK = '0.55 0.55 0.5 1'
PCB = '0.05 0.35 0.12 1'
COOLER = '0.87 0.16 0.16 1'
GOLD = '0.83 0.69 0.22 1'

out = []
out.append(f'''<!-- GPU insertion cell: gym-aloha's bimanual ViperX vx300s on its table, a PCIe-style x1
     connector (a 1.9 mm slot, 25.6 mm long, 6 mm deep, 1 mm 45-degree lead-in chamfers) on a
     40 mm motherboard riser, with a sprung retention latch at its -x end, and a low-profile card
     (PCB 1.57 mm, a 25 mm edge connector along its bottom edge, a red cooler block on top as the
     grasp feature) that stands in one of 4 holder slots of a caddy at the start. {{ALOHA}} is
     replaced by gym-aloha's asset directory. Part of the task contract (hashed with task.yaml).
     Generated numbers: see the parts section of task.yaml.

     The latch: a hinge (axis y) inside the housing, 3 mm from the hook's tip towards the
     card and 7.8 mm below it; its hook reaches 1.5 mm over the slot's -x end, 3.5 mm above
     the slot's floor, and catches a notch in the card's -x edge (2.6-6.0 mm above its bottom
     edge) when the card is seated. A card pushed down meets the hook's shallow (25-degree)
     ramp 1.3 mm deep in the slot, where the slot's ends hold it in x, and cams it open with
     about 1 N (its preloaded spring holds up a card's own weight, 0.7 N); pulling a latched
     card up pushes the hook's underside towards its stop (the hinge is on the card side of
     the hook), so it holds; pressing the latch's pad (it reaches 30 mm out towards -x) down
     swings the hook clear. The slot's walls and ends are convex prisms (inner face, 45-degree
     chamfer, top in one piece), the parts' contacts stiff (solref 4 ms, solimp 0.99-0.999
     over 0.5 mm: a few N press them 10 um into each other, not 1-2 mm of a 0.165 mm
     clearance), their friction 0.2 (the hook's 0.1).
     Cameras: task_top (straight down over caddy and connector), side
     (level, looking +y at the card's face over the connector), right_wrist (gym-aloha's). -->
<mujoco model="enpire_gpu_insertion">
  <compiler meshdir="{{ALOHA}}" angle="radian"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" noslip_iterations="3">
    <flag multiccd="enable"/>
  </option>
  <include file="{{ALOHA}}/scene.xml"/>
  <include file="{{ALOHA}}/vx300s_dependencies.xml"/>
  <visual><global offwidth="1280" offheight="960"/><map znear="0.01"/></visual>
  <default>
    <default class="part">
      <geom solref="{PART_SOLREF}" solimp="{PART_SOLIMP}" friction="{PART_FRICTION}"/>
    </default>
  </default>
  <asset>
    <!-- the latch's hook: a wedge (flat underside, a shallow lead-in ramp on top), in the latch
         body's frame (the hinge); y spans the card's edge and the lever beside the housing -->
    <mesh name="latch_hook" vertex="{HOOK_VERTS}"/>
@MESHES@
  </asset>
  <worldbody>
    <include file="{{ALOHA}}/vx300s_left.xml"/>
    <include file="{{ALOHA}}/vx300s_right.xml"/>
    <camera name="task_top" pos="0.0 0.56 0.45" xyaxes="1 0 0 0 1 0" fovy="46"/>
    <camera name="side" pos="0.016 0.42 0.09" xyaxes="1 0 0 0 0 1" fovy="30"/>
    <!-- fill light for the side view: the scene lights come from above -->
    <light name="side_fill" pos="0.0 0.3 0.25" dir="0 1 -0.35" directional="true" diffuse="0.35 0.35 0.35" castshadow="false"/>
''')
out.append('    <!-- the connector on its riser (fixed); the latch is its child (hinge) -->')
out.append('    <body name="connector" pos="0 0.65 0" childclass="part">')
zc, zh = rng(0.0, RISER_TOP)
out.append(box('riser', (0.0025, 0, zc), (0.0225, 0.015, zh), RISER))
out += slot_geoms('slot', 0.0, 0.0, SLOT_W2, SLOT_L2, CH, FLOOR, TOP, HOUS_W2, HOUS_L2,
                  HOUSING, 0.0)
out.append('      <site name="slot_bottom" pos="0 0 0.045" size="0.001" rgba="0 0 0 0"/>')
out.append('      <site name="slot_top" pos="0 0 0.051" size="0.001" rgba="0 0 0 0"/>')
PAD_Z = 0.044                 # the pad's underside (its top: the contract's press point)
out.append(f'''      <body name="latch" pos="{LATCH_X:.4f} 0 {LATCH_Z:.4f}">
        <joint name="latch_hinge" type="hinge" axis="0 1 0" range="-0.45 0" limited="true" solreflimit="0.004 1" solimplimit="0.99 0.999 0.001"
               stiffness="{LATCH_STIFFNESS}" springref="{LATCH_SPRINGREF}" damping="{LATCH_DAMPING}" armature="{LATCH_ARMATURE}"/>
        <inertial pos="{-0.018 - LATCH_X:.4f} 0.002 {0.048 - LATCH_Z:.4f}" mass="0.004" diaginertia="4e-7 6e-7 4e-7"/>
        <geom name="latch_hook" type="mesh" mesh="latch_hook" rgba="{LATCH}" friction="0.1 0.005 0.0001" priority="1"/>
        <geom name="latch_lever" type="box" size="0.0020 0.0010 {(_ramp_top - PAD_Z) / 2:.4f}" pos="{-0.013 - LATCH_X:.4f} 0.0046 {(_ramp_top + PAD_Z) / 2 - LATCH_Z:.4f}" rgba="{LATCH}"/>
        <geom name="latch_arm" type="box" size="0.0035 0.0010 0.0015" pos="{-0.0135 - LATCH_X:.4f} 0.0046 {PAD_Z + 0.0015 - LATCH_Z:.4f}" rgba="{LATCH}"/>
        <geom name="latch_pad" type="box" size="0.0143 0.0053 0.0015" pos="{-0.0298 - LATCH_X:.4f} 0.0003 {PAD_Z + 0.0015 - LATCH_Z:.4f}" rgba="{LATCH}"/>
        <site name="latch_press" pos="{-0.030 - LATCH_X:.4f} 0 {PAD_Z + 0.003 - LATCH_Z:.4f}" size="0.001" rgba="0 0 0 0"/>
      </body>''')
out.append('    </body>')
out.append('')
out.append('    <!-- the card caddy: 4 holder slots along y at x = -0.09 (2 x 29 mm, 8 mm deep, 3 mm'
           ' chamfers),\n         floors at the connector\'s floor height (fixed) -->')
out.append('    <body name="caddy" pos="0 0 0" childclass="part">')
for i, y in enumerate(HOLD_YS):
    out += slot_geoms(f'caddy{i}', HOLD_X, y, HOLD_W2, HOLD_L2, HOLD_CH, FLOOR, HOLD_TOP,
                      0.018, HOLD_L2 + HOLD_CH + 0.002, RACK, 0.0)
for i, y in enumerate(HOLD_YS):
    out.append(f'      <site name="holder_{i}" pos="{HOLD_X:.3f} {y:.3f} {FLOOR:.3f}" size="0.001" rgba="0 0 0 0"/>')
out.append('    </body>')
out.append('')
out.append(f'''    <!-- the card: body origin = the edge connector's bottom-edge centre; x along the card
         (the edge connector x in [-12.5, 12.5] mm, the PCB to +40 mm), the PCB 1.57 mm thick
         along y; a retention notch (2 x 5 mm) in its -x edge 6.5 mm above the bottom edge;
         the red cooler block (36 x 14 x 14 mm, x in [-12, 24] mm) across its top: the grasp feature. It starts
         standing in caddy slot 0 (the reset moves it to its seed's slot). -->
    <body name="card" pos="{HOLD_X:.3f} {HOLD_YS[0]:.3f} {FLOOR + 0.0005:.4f}" childclass="part">
      <freejoint name="card_joint"/>
      <inertial pos="0.005 0 0.036" mass="0.07" diaginertia="1.5e-5 2.2e-5 1.0e-5"/>''')
out.append(box('card_tab', (0.001, 0, 0.0045), (0.0115, T, 0.0045), PCB))
zc, zh = rng(0.0, NOTCH[0])
out.append(box('card_ledge', (-0.0115, 0, zc), (0.001, T, zh), PCB))
zc, zh = rng(NOTCH[1], 0.050)
out.append(box('card_edge_upper', (-0.0115, 0, zc), (0.001, T, zh), PCB))
out.append(box('card_pcb', (0.01475, 0, 0.0295), (0.02525, T, 0.0205), PCB))
out.append(box('card_cooler', (0.006, 0, 0.045), (0.018, 0.007, 0.007), COOLER,
               extra=' friction="1.5 0.02 0.001" condim="4" solref="0.004 1"'))
out.append(box('card_fingers', (0.001, 0, 0.00325), (0.011, T + 0.00003, 0.00275), GOLD,
               extra=' contype="0" conaffinity="0" mass="0"'))
out.append('      <site name="card_edge" pos="0 0 0" size="0.001" rgba="0 0 0 0"/>')
out.append('      <site name="cooler_top" pos="0.006 0 0.052" size="0.001" rgba="0 0 0 0"/>')
out.append('    </body>')
out.append('  </worldbody>')
out.append('''
  <!-- the latch turns in the connector (its hinge is in the housing): no contact between them -->
  <contact>
    <exclude body1="connector" body2="latch"/>
  </contact>

  <!-- each gripper's fingers move together (one motor and a linkage on the real arm) -->
  <equality>
    <joint joint1="vx300s_left/left_finger" joint2="vx300s_left/right_finger" polycoef="0 -1 0 0 0"/>
    <joint joint1="vx300s_right/left_finger" joint2="vx300s_right/right_finger" polycoef="0 -1 0 0 0"/>
  </equality>

  <actuator>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_left/waist" kp="800" forcelimited="true" forcerange="-150 150"/>
    <position ctrllimited="true" ctrlrange="-1.85005 1.25664" joint="vx300s_left/shoulder" kp="1600" forcelimited="true" forcerange="-300 300"/>
    <position ctrllimited="true" ctrlrange="-1.76278 1.6057" joint="vx300s_left/elbow" kp="800" forcelimited="true" forcerange="-100 100"/>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_left/forearm_roll" kp="150" forcelimited="true" forcerange="-100 100"/>
    <position ctrllimited="true" ctrlrange="-1.8675 2.23402" joint="vx300s_left/wrist_angle" kp="200"/>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_left/wrist_rotate" kp="100"/>
    <position ctrllimited="true" ctrlrange="0.021 0.057" joint="vx300s_left/left_finger" kp="1500"/>
    <position ctrllimited="true" ctrlrange="-0.057 -0.021" joint="vx300s_left/right_finger" kp="1500"/>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_right/waist" kp="800" forcelimited="true" forcerange="-150 150"/>
    <position ctrllimited="true" ctrlrange="-1.85005 1.25664" joint="vx300s_right/shoulder" kp="1600" forcelimited="true" forcerange="-300 300"/>
    <position ctrllimited="true" ctrlrange="-1.76278 1.6057" joint="vx300s_right/elbow" kp="800" forcelimited="true" forcerange="-100 100"/>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_right/forearm_roll" kp="150" forcelimited="true" forcerange="-100 100"/>
    <position ctrllimited="true" ctrlrange="-1.8675 2.23402" joint="vx300s_right/wrist_angle" kp="200"/>
    <position ctrllimited="true" ctrlrange="-3.14158 3.14158" joint="vx300s_right/wrist_rotate" kp="100"/>
    <position ctrllimited="true" ctrlrange="0.021 0.057" joint="vx300s_right/left_finger" kp="1500"/>
    <position ctrllimited="true" ctrlrange="-0.057 -0.021" joint="vx300s_right/right_finger" kp="1500"/>
  </actuator>

  <!-- qpos: the arms (16), the latch hinge, the card's free joint (standing in caddy slot 0) -->
  <keyframe>
    <key name="home" qpos="0 -0.96 1.16 0 -0.3 0 0.024 -0.024  0 -0.96 1.16 0 -0.3 0 0.024 -0.024  0  -0.09 0.43 0.0455 1 0 0 0"
         ctrl="0 -0.96 1.16 0 -0.3 0 0.024 -0.024  0 -0.96 1.16 0 -0.3 0 0.024 -0.024"/>
  </keyframe>
</mujoco>
''')
if __name__ == '__main__':
    import pathlib

    text = '\n'.join(out).replace('@MESHES@', '\n'.join(
        f'    <mesh name="{n}" vertex="{v}"/>' for n, v in MESHES.items()))
    (pathlib.Path(__file__).resolve().parent / 'scene.xml').write_text(text)
