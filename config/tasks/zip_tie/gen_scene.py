"""Generate config/tasks/zip_tie/scene.xml: run ``python config/tasks/zip_tie/gen_scene.py``.

The zip tie: a 200 x 4.8 x 1.2 mm nylon strap fixed to a head with a one-way passage.

MuJoCo 4.0 removed the ``cable`` composite (and the elasticity plugin it used); the strap is
what that composite generated: a chain of rigid box segments joined by ball joints whose
stiffness is the strap's bending stiffness (E I / segment length; nylon E ~ 2.5 GPa). Its
segments are ordinary geoms, so contacts, the safety envelope and segmentation treat them
like any other part. Each joint's armature keeps the stiff, light chain stable at the
cell's 2 ms step. 20 segments of 10 mm: each segment lying on the table is 4 contacts, and
the step's cost grows with them (40 x 5 mm: 2.5 ms a step, 20 x 10 mm: 0.7 ms); for the same
reason the scene runs no noslip iterations (the other arm scenes' 3 cost 7x here).

The head (8.2 x 9 x 6 mm) has a passage along its z axis, 3 x 6 mm, that the tail enters
from below (z-) and leaves at the top (z+). The pawl: a flap hinged on the passage's +x wall
1 mm above the entry, its tip resting (a preloaded spring, on its stop) 0.3 mm into the
tail's way. A tail pushed up lifts it (about 1.4 N); pulled back, friction drags the tip
down onto its stop and squeezes the tail against the -x wall: the tail slides back only
against about 10 N, seven times the push (with the scene's hard friction cones, OPTION; a
real tie's ratchet teeth hold tens of newtons: a gripper pinching the strap can pull this
one out; test_zip_tie.py measures both).
The strap leaves the head's +x face flat (its width along y), 0.6 mm above the head's bottom,
so a tie lies flat on the table.
"""
from __future__ import annotations

import math
import pathlib

SEG_N = 20                  # strap segments
SEG_L = 0.010               # m, each (200 mm strap)
STRAP_W2, STRAP_T2 = 0.0024, 0.0006     # half width, half thickness
STRAP_SEG_MASS = 0.0002     # kg (4 g: 3x a real tie's, for contact stiffness in simulation)
BEND_K = 0.14               # N m / rad per joint: E I / SEG_L
BEND_DAMPING = 0.004
ARMATURE = 1e-5
HEAD_X2, HEAD_Y2, HEAD_Z2 = 0.0041, 0.0045, 0.003
PASS_X2, PASS_Y2 = 0.0015, 0.003        # passage half sizes (x: across the strap's thickness)
HEAD_MASS = 0.001
PAWL_HINGE = (0.0015, -0.0020)          # (x, z) in the head frame, axis y
PAWL_TIP = (-0.0006, -0.0015)
PAWL_T2 = 0.0003
PAWL_STIFFNESS, PAWL_SPRINGREF = 0.001, -0.1
HEAD_RGBA = "0.12 0.22 0.62 1"
#: A yellow strap (coloured nylon): natural nylon's off-white is the robot's colour in the
#: images (both clip to white under the lights), so a colour mask could not tell them apart.
STRAP_RGBA = '0.93 0.78 0.16 1'
PAWL_RGBA = "0.12 0.22 0.62 1"
#: The physics options of the scene and of the pawl's test model. impratio 10 makes the
#: elliptic friction cones hard: at 1 (the default) a held head crept down the fingers by
#: ~1 mm per second under the strap's weight and fell out within 15 s, which noslip
#: iterations would also stop at 7x the step cost.
OPTION = ('timestep="0.002" integrator="implicitfast" cone="elliptic" noslip_iterations="0" '
          'impratio="10"')
#: The head's start poses (on its rail): the strap runs +x from the head over the tail rest.
START_XY = [(-0.115, 0.44), (-0.115, 0.47), (-0.115, 0.50), (-0.115, 0.53), (-0.115, 0.56),
            (-0.115, 0.485)]
#: The tie's start: laid across two rails along y, so that a gripper can pinch it from
#: above (its pads reach 11 mm below the fingertip centre: a tie flat on the table cannot be
#: pinched without the fingers touching the table). The head rail, 5 mm wide, is narrower
#: than the head (8.2 mm along x): fingers closing along x pass either side of it. The tail
#: rest holds the strap's last 50 mm; its tip overhangs 30 mm beyond it.
RAIL_H = 0.020
HEAD_RAIL_W = 0.005
REST_X = (0.035, 0.060)
PART = ('solref="0.004 1" solimp="0.95 0.99 0.0002"')
#: The tie's contact class (both the scene and the pawl test model use it): stiff contacts,
#: and friction 1 (the pawl's self-locking needs it at the flap's tip and the -x wall).
ZIP_CLASS = f'<default class="zip"><geom {PART} friction="1.0 0.005 0.0001" condim="3"/></default>'


def _inertial(mass: float, half: tuple[float, float, float], pos: str = '0 0 0') -> str:
    """An explicit <inertial> (gym-aloha's compiler does not infer inertia from geoms)."""
    x, y, z = (2 * h for h in half)
    ixx, iyy, izz = (mass * (b * b + c * c) / 12 for b, c in ((y, z), (x, z), (x, y)))
    return (f'<inertial pos="{pos}" mass="{mass:.6g}" diaginertia="{ixx:.4g} {iyy:.4g} '
            f'{izz:.4g}"/>')


def _head() -> str:
    wall_x = (HEAD_X2 - PASS_X2) / 2
    wall_y = (HEAD_Y2 - PASS_Y2) / 2
    hx, hz = PAWL_HINGE
    tx, tz = PAWL_TIP
    length = math.hypot(tx - hx, tz - hz)
    ang = math.atan2(tz - hz, tx - hx)
    c, s = math.cos(ang) * length / 2, math.sin(ang) * length / 2
    geoms = [
        ('zip_head_wall_xn', (-(PASS_X2 + wall_x), 0, 0), (wall_x, HEAD_Y2, HEAD_Z2)),
        ('zip_head_wall_xp', (PASS_X2 + wall_x, 0, 0), (wall_x, HEAD_Y2, HEAD_Z2)),
        ('zip_head_wall_yn', (0, -(PASS_Y2 + wall_y), 0), (PASS_X2, wall_y, HEAD_Z2)),
        ('zip_head_wall_yp', (0, PASS_Y2 + wall_y, 0), (PASS_X2, wall_y, HEAD_Z2)),
    ]
    out = [f'      {_inertial(HEAD_MASS, (HEAD_X2, HEAD_Y2, HEAD_Z2))}']
    out += [f'      <geom name="{n}" class="zip" type="box" size="{h[0]:.5f} {h[1]:.5f} '
            f'{h[2]:.5f}" pos="{p[0]:.5f} {p[1]:.5f} {p[2]:.5f}" rgba="{HEAD_RGBA}"/>'
            for n, p, h in geoms]
    out.append(f'      <site name="zip_head_center" pos="0 0 0" size="0.001" rgba="0 0 0 0"/>')
    out.append(f'      <site name="zip_pass_exit" pos="0 0 {HEAD_Z2:.4f}" size="0.001" '
               f'rgba="0 0 0 0"/>')
    out.append(
        f'      <body name="zip_pawl" pos="{hx:.5f} 0 {hz:.5f}">\n'
        f'        <joint name="zip_pawl" type="hinge" axis="0 1 0" range="0 0.7" '
        f'stiffness="{PAWL_STIFFNESS}" springref="{PAWL_SPRINGREF}" damping="0.0002" '
        f'armature="2e-6" solreflimit="0.004 1"/>\n'
        f'        {_inertial(1e-5, (length / 2, PASS_Y2, PAWL_T2), f"{c:.5f} 0 {s:.5f}")}\n'
        f'        <geom name="zip_pawl" class="zip" type="box" size="{length / 2:.5f} '
        f'{PASS_Y2 - 0.0002:.5f} {PAWL_T2}" pos="{c:.5f} 0 {s:.5f}" euler="0 {-ang:.5f} 0" '
        f'rgba="{PAWL_RGBA}" friction="0.8 0.005 0.0001"/>\n'
        f'      </body>')
    return '\n'.join(out)


def _strap() -> str:
    """The chain, nested: segment 0 hangs off the head's +x face."""
    z0 = -HEAD_Z2 + STRAP_T2
    lines = []
    for i in range(SEG_N):
        pos = f'{HEAD_X2:.5f} 0 {z0:.5f}' if i == 0 else f'{SEG_L} 0 0'
        ind = '      ' + '  ' * i
        lines.append(f'{ind}<body name="strap_{i}" pos="{pos}">')
        lines.append(f'{ind}  <joint name="strap_{i}" type="ball" stiffness="{BEND_K}" '
                     f'damping="{BEND_DAMPING}" armature="{ARMATURE}"/>')
        lines.append(f'{ind}  ' + _inertial(STRAP_SEG_MASS, (SEG_L / 2, STRAP_W2, STRAP_T2),
                                            f'{SEG_L / 2:.5f} 0 0'))
        lines.append(f'{ind}  <geom name="strap_seg{i}" class="zip" type="box" size="'
                     f'{SEG_L / 2:.5f} {STRAP_W2} {STRAP_T2}" pos="{SEG_L / 2:.5f} 0 0" '
                     f'rgba="{STRAP_RGBA}"/>')
        if i == SEG_N - 1:
            lines.append(f'{ind}  <site name="zip_tail_tip" pos="{SEG_L:.5f} 0 0" '
                         f'size="0.001" rgba="0 0 0 0"/>')
    for i in reversed(range(SEG_N)):
        lines.append('      ' + '  ' * i + '</body>')
    return '\n'.join(lines)


def scene() -> str:
    sites = '\n'.join(f'    <site name="start_{i}" pos="{x:.4f} {y:.3f} '
                      f'{RAIL_H + HEAD_Z2:.4f}" size="0.001" rgba="0 0 0 0"/>'
                      for i, (x, y) in enumerate(START_XY))
    ys = [y for _, y in START_XY]
    rail_y, rail_half = (min(ys) + max(ys)) / 2, (max(ys) - min(ys)) / 2 + 0.03
    x0, y0 = START_XY[0]
    return f'''<!-- GENERATED by gen_scene.py (edit that, not this). Zip tie cell: gym-aloha's
     bimanual ViperX vx300s on its table and a 200 mm zip tie lying flat: a head with a
     one-way passage and pawl, and a strap of {SEG_N} stiff-jointed segments. {{ALOHA}} is
     replaced by gym-aloha's asset directory. Part of the task contract (hashed with
     task.yaml). Cameras: task_top (straight down), side (level at 12 cm, looking +y at where a tie
     is shown), right_wrist (gym-aloha's). -->
<mujoco model="enpire_zip_tie">
  <compiler meshdir="{{ALOHA}}" angle="radian" autolimits="true"/>
  <option {OPTION}>
    <flag multiccd="enable"/>
  </option>
  <include file="{{ALOHA}}/scene.xml"/>
  <include file="{{ALOHA}}/vx300s_dependencies.xml"/>
  <visual><global offwidth="1280" offheight="960"/><map znear="0.01"/></visual>
  <default>
    {ZIP_CLASS}
  </default>
  <worldbody>
    <include file="{{ALOHA}}/vx300s_left.xml"/>
    <include file="{{ALOHA}}/vx300s_right.xml"/>
    <camera name="task_top" pos="0.0 0.50 0.30" xyaxes="1 0 0 0 1 0" fovy="42"/>
    <camera name="side" pos="0.0 0.28 0.12" xyaxes="1 0 0 0 0 1" fovy="45"/>
    <light name="side_fill" pos="0 0.1 0.3" dir="0 1 -0.5" directional="true" diffuse="0.35 0.35 0.35" castshadow="false"/>
{sites}
    <geom name="head_rail" type="box" size="{HEAD_RAIL_W / 2:.4f} {rail_half:.4f} {RAIL_H / 2:.4f}" pos="{START_XY[0][0]:.4f} {rail_y:.4f} {RAIL_H / 2:.4f}" rgba="0.16 0.16 0.17 1"/>
    <geom name="tail_rest" type="box" size="{(REST_X[1] - REST_X[0]) / 2:.4f} {rail_half:.4f} {RAIL_H / 2:.4f}" pos="{sum(REST_X) / 2:.4f} {rail_y:.4f} {RAIL_H / 2:.4f}" rgba="0.16 0.16 0.17 1"/>
    <body name="zip_head" pos="{x0:.3f} {y0:.3f} {RAIL_H + HEAD_Z2:.4f}">
      <freejoint name="zip_head_joint"/>
{_head()}
{_strap()}
    </body>
  </worldbody>

  <contact>
    <exclude body1="zip_head" body2="zip_pawl"/>
  </contact>

  <!-- each gripper's fingers move together (one motor and a linkage on the real arm) -->
  <equality>
    <joint joint1="vx300s_left/left_finger" joint2="vx300s_left/right_finger" polycoef="0 -1 0 0 0"/>
    <joint joint1="vx300s_right/left_finger" joint2="vx300s_right/right_finger" polycoef="0 -1 0 0 0"/>
  </equality>

  <actuator>
{ACTUATORS}
  </actuator>

  <!-- qpos: the arms (16), the head's free joint (on its rail); the pawl and the strap's
       joints rest at 0 (closed, straight) -->
  <keyframe>
    <key name="home" qpos="0 -0.96 1.16 0 -0.3 0 0.024 -0.024  0 -0.96 1.16 0 -0.3 0 0.024 -0.024  {x0:.3f} {y0:.3f} {RAIL_H + HEAD_Z2:.4f} 1 0 0 0"
         ctrl="0 -0.96 1.16 0 -0.3 0 0.024 -0.024  0 -0.96 1.16 0 -0.3 0 0.024 -0.024"/>
  </keyframe>
</mujoco>
'''


def _actuators() -> str:
    """The arms' position servos, as in the other arm scenes."""
    rows = []
    for arm in ('left', 'right'):
        for joint, rng, kp, force in (
                ('waist', '-3.14158 3.14158', 800, 150), ('shoulder', '-1.85005 1.25664', 1600, 300),
                ('elbow', '-1.76278 1.6057', 800, 100), ('forearm_roll', '-3.14158 3.14158', 150, 100),
                ('wrist_angle', '-1.8675 2.23402', 200, 0), ('wrist_rotate', '-3.14158 3.14158', 100, 0),
                ('left_finger', '0.021 0.057', 1500, 0), ('right_finger', '-0.057 -0.021', 1500, 0)):
            limit = f' forcelimited="true" forcerange="-{force} {force}"' if force else ''
            rows.append(f'    <position ctrllimited="true" ctrlrange="{rng}" '
                        f'joint="vx300s_{arm}/{joint}" kp="{kp}"{limit}/>')
    return '\n'.join(rows)


ACTUATORS = _actuators()


def pawl_test_model(segments: int = 8) -> str:
    """The head fixed in space (passage along world z, at z 0.1) and a free strap piece
    standing below it, welded to a mocap body ``hand``: what test_zip_tie.py pushes up
    through the passage and pulls back."""
    chain = []
    for i in range(segments):
        joint = '' if i == 0 else (f'<joint type="ball" stiffness="{BEND_K}" '
                                   f'damping="{BEND_DAMPING}" armature="{ARMATURE}"/>')
        chain.append(f'<body name="seg{i}" pos="0 0 {0 if i == 0 else SEG_L}">{joint}'
                     + _inertial(STRAP_SEG_MASS, (STRAP_T2, STRAP_W2, SEG_L / 2),
                                 f'0 0 {SEG_L / 2}')
                     + f'<geom class="zip" type="box" size="{STRAP_T2} {STRAP_W2} '
                       f'{SEG_L / 2}" pos="0 0 {SEG_L / 2}"/>')
    x = -(PASS_X2 - STRAP_T2 - 0.0003)              # beside the -x wall, under the pawl
    return f'''<mujoco>
  <compiler angle="radian" autolimits="true"/>
  <option {OPTION}/>
  <default>{ZIP_CLASS}</default>
  <worldbody>
    <body name="zip_head" pos="0 0 0.1">
{_head()}
    </body>
    <body name="strap" pos="{x} 0 {0.1 - HEAD_Z2 - segments * SEG_L - 0.002}">
      <freejoint/>
      {''.join(chain)}{'</body>' * segments}
    </body>
    <body name="hand" mocap="true" pos="{x} 0 {0.1 - HEAD_Z2 - segments * SEG_L - 0.002}"/>
  </worldbody>
  <contact><exclude body1="zip_head" body2="zip_pawl"/></contact>
  <equality><weld body1="hand" body2="seg0" solref="0.004 1"/></equality>
</mujoco>'''

if __name__ == '__main__':
    (pathlib.Path(__file__).resolve().parent / 'scene.xml').write_text(
        scene())
