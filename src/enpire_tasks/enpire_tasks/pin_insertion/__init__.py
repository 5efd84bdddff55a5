"""The pin insertion task plugin: everything that names pin insertion, in one directory.

- :mod:`.geometry`: the score (insertion depth fraction with a lateral gate), the pin's
  outline, the seeded start (a rack slot), all from the contract's ``parts``;
- :mod:`.classic`: the ``pin-classic-v1`` verifier backend (colour + calibrated geometry,
  one rule per view, fused AND);
- observations, hold action, validation readings: the arm tasks' shared
  :mod:`enpire_tasks.arm`;
- reset: ``robot`` (:mod:`.reset_skill`: the right arm stands the pin in its seed's slot,
  or holds it over the hole for the ``pre_insertion`` stage), with ``sim_place`` (the
  simulator sets the scene) as the explicit, recorded fallback;
- example policies: ``examples/policies/pin_insertion/`` of the workspace.

The contract is ``config/tasks/pin_insertion/`` (task.yaml, safety.yaml and the MuJoCo scene);
the simulated cell is enpire_sim's generic arm cell (``arm_cell``), driven by the contract's
``sim`` section.
"""

from __future__ import annotations

from enpire_tasks import arm
from enpire_tasks.pin_insertion import classic, crosscheck, geometry, reset_skill
from enpire_tasks.plugin import CrossCheck, TaskPlugin, VerifierBackend
from enpire_tasks.reset import RobotPlaceStrategy, SimPlaceStrategy


def sample_readings(task, n: int = 4, seed: int = 0):  # noqa: ANN001, ANN201 - plugin hook
    return arm.sample_readings(task, n, seed, part_rgb=geometry.parts().colour_rgb)


PLUGIN = TaskPlugin(
    name='pin_insertion',
    description='pick a 4 mm pin from a rack and insert it into a 4.5 mm hole, 20 mm deep '
                '(bimanual vx300s, MuJoCo)',
    score=geometry.score,
    outline=geometry.outline,
    build_observation=arm.build_observation,
    hold_action=arm.hold_action,
    sample_readings=sample_readings,
    reset_strategies={RobotPlaceStrategy.id: RobotPlaceStrategy,
                      SimPlaceStrategy.id: SimPlaceStrategy},
    verifier_backends=(VerifierBackend(
        classic.BACKEND_ID, 'pin colour blob + calibrated geometry per view (top: x, y; '
        'side: depth), CPU', classic.make_estimator),),
    crosscheck=CrossCheck(sample_states=crosscheck.sample_states,
                          noise_levels=tuple(crosscheck.NEAR_GOAL_NOISE)),
    labels=arm.part_labels({'pin': 'pin', 'fixture': 'fixture', 'rack': 'rack'}),
    mask_rule=classic.mask_rule,
    example_policies='examples/policies/pin_insertion',
    sim_launch='arm_sim.launch.yaml',
    fleet_launch='arm_fleet_sim.launch.yaml',
    sim_launch_args={'task': 'pin_insertion'},
    reset_skill=reset_skill.make_reset_skill,
    reset_stages=reset_skill.STAGES,
    start_pose=geometry.start_pose,
    pose_names=('tip_x_m', 'tip_y_m', 'tip_z_m'),
    pose_error=arm.finite_pose_error,
    position_unit='m',
)

__all__ = ['PLUGIN']
