"""The GPU insertion task plugin: everything that names GPU insertion, in one directory.

- :mod:`.geometry`: the score (insertion depth fraction of the card's edge connector with a
  lateral gate), the cooler's outline, the seeded start (a caddy slot), all from the
  contract's ``parts``;
- :mod:`.classic`: the ``gpu-classic-v1`` verifier backend (colour + calibrated geometry,
  one rule per view, fused AND; cameras only);
- observations, hold action, validation readings: the arm tasks' shared
  :mod:`enpire_tasks.arm`;
- reset: ``robot`` (:mod:`.reset_skill`: press the latch, unplug, stand the card in its
  seed's caddy slot, home; or hold it over the slot for the ``pre_insertion`` stage), with
  ``sim_place`` (the simulator sets the scene) as the explicit, recorded fallback;
- example policies: ``examples/policies/gpu_insertion/`` of the workspace.

The contract is ``config/tasks/gpu_insertion/`` (task.yaml, safety.yaml and the MuJoCo scene);
the simulated cell is enpire_sim's generic arm cell (``arm_cell``), driven by the contract's
``sim`` section.
"""

from __future__ import annotations

from enpire_tasks import arm
from enpire_tasks.gpu_insertion import classic, crosscheck, geometry, reset_skill
from enpire_tasks.plugin import CrossCheck, TaskPlugin, VerifierBackend
from enpire_tasks.reset import RobotPlaceStrategy, SimPlaceStrategy


def sample_readings(task, n: int = 4, seed: int = 0):  # noqa: ANN001, ANN201 - plugin hook
    return arm.sample_readings(task, n, seed, part_rgb=geometry.parts().colour_rgb)


PLUGIN = TaskPlugin(
    name='gpu_insertion',
    description='pick a low-profile card from a caddy and seat its edge connector in a '
                'latched 1.9 mm slot (bimanual vx300s, MuJoCo)',
    score=geometry.score,
    outline=geometry.outline,
    build_observation=arm.build_observation,
    hold_action=arm.hold_action,
    sample_readings=sample_readings,
    reset_strategies={RobotPlaceStrategy.id: RobotPlaceStrategy,
                      SimPlaceStrategy.id: SimPlaceStrategy},
    verifier_backends=(VerifierBackend(
        classic.BACKEND_ID, 'card cooler colour blob + calibrated geometry per view (top: '
        'x, y; side: x, depth), CPU', classic.make_estimator),),
    crosscheck=CrossCheck(sample_states=crosscheck.sample_states,
                          noise_levels=tuple(crosscheck.NEAR_GOAL_NOISE)),
    labels=arm.part_labels({'cooler': 'card_cooler', 'card': 'card', 'connector': 'connector',
                            'latch': 'latch', 'caddy': 'caddy'}),
    mask_rule=classic.mask_rule,
    example_policies='examples/policies/gpu_insertion',
    sim_launch='arm_sim.launch.yaml',
    fleet_launch='arm_fleet_sim.launch.yaml',
    sim_launch_args={'task': 'gpu_insertion'},
    reset_skill=reset_skill.make_reset_skill,
    reset_stages=reset_skill.STAGES,
    start_pose=geometry.start_pose,
    pose_names=('edge_x_m', 'edge_y_m', 'edge_z_m'),
    pose_error=arm.finite_pose_error,
    position_unit='m',
)

__all__ = ['PLUGIN']
