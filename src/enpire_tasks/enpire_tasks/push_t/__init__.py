"""The Push-T task plugin: everything that names Push-T, in one directory.

- :mod:`.scene`: gym-pusht's T block, pusher, walls and colours (plain data);
- :mod:`.geometry`: T polygons, pose transforms, analytic goal coverage (the task score);
- :mod:`.render`: the sim cell's area-sampled top camera, a pure function of the scene
  (the sim cell draws with it; the verifier's ``pusht-area-v1`` camera model is the same code);
- :mod:`.camera_model`: the verifier's forward camera models (``pusht-area-v1``,
  ``gym-pusht-pygame``);
- :mod:`.opencv_backend` (+ :mod:`.synthesis`, :mod:`.phase_correction`): the ``opencv-v1``
  verifier backend;
- :mod:`.observation`: the observation builder, the hold action, validation scenes;
- :mod:`.crosscheck`: the crosscheck state sampler (sim side);
- :mod:`.labels`: the block's mask in a render, from the scene geometry (training data);
- :mod:`.mask_fit`: the rule over a learned segmenter's masks (the ``yolo`` backend's);
- reset: the shared ``sim_place`` strategy (:class:`enpire_tasks.reset.SimPlaceStrategy`);
- example policies: ``examples/policies/push_t/`` of the workspace.

The contract is ``config/tasks/push_t/``; the simulated cell (``PushTSim``) is enpire_sim's,
registered for this task under the ``enpire.sim_cells`` entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enpire_tasks.plugin import CrossCheck, TaskPlugin, VerifierBackend
from enpire_tasks.push_t import camera_model, crosscheck, geometry, labels, observation, render
from enpire_tasks.reset import SimPlaceStrategy

if TYPE_CHECKING:
    from enpire_common.tasks import TaskSpec
    from enpire_tasks.estimation import InstanceSegmenter
    from enpire_tasks.push_t.mask_fit import MaskFitEstimator
    from enpire_tasks.push_t.opencv_backend import OpenCvTEstimator


def make_opencv_estimator(task: TaskSpec) -> OpenCvTEstimator:
    """``opencv-v1`` for ``task``: each view with the forward camera model it declares."""
    from enpire_tasks.camera_models import make_camera_model, view_camera_model_name
    from enpire_tasks.push_t.opencv_backend import OpenCvTEstimator

    models = {name: make_camera_model(view_camera_model_name(task, name), task, view)
              for name, view in task.views.items()}
    return OpenCvTEstimator(goal_pose=task.goal_pose, threshold=task.success_threshold,
                            camera_models=models)


def make_unmix_estimator(task: TaskSpec) -> MaskFitEstimator:
    """``opencv-unmix-v1`` (:mod:`.mask_fit`)."""
    from enpire_tasks.push_t.mask_fit import make_unmix_estimator as make

    return make(task)


def mask_rule(task: TaskSpec, segmenter: InstanceSegmenter) -> MaskFitEstimator:
    """The block's pose from a learned segmenter's mask and the image
    (:mod:`.mask_fit`)."""
    from enpire_tasks.push_t.mask_fit import MaskFitEstimator

    return MaskFitEstimator(task, segmenter)


PLUGIN = TaskPlugin(
    name='push_t',
    description='push a T-shaped block onto a goal pose with a circular pusher (gym-pusht)',
    score=geometry.coverage,
    outline=geometry.t_polygons,
    build_observation=observation.build_observation,
    hold_action=observation.hold_action,
    sample_readings=observation.sample_readings,
    reset_strategies={SimPlaceStrategy.id: SimPlaceStrategy},
    # The first is the default: opencv-unmix-v1 holds on the sim cell's default camera (its
    # sensor model) and needs no forward model; opencv-v1 is exact on exact renders.
    verifier_backends=(VerifierBackend(
        'opencv-unmix-v1', 'colour mask, edges unmixed locally, exact pixel-coverage fit (no '
        'forward camera model: real cameras and the sim camera\'s default sensor)',
        make_unmix_estimator), VerifierBackend(
        'opencv-v1', 'colour segmentation + moments + SDF template refinement (CPU, ~5 ms; '
        'exact with a forward camera model on exact renders)', make_opencv_estimator)),
    camera_models=camera_model.CAMERA_MODELS,
    camera_model_renderers=camera_model.CAMERA_MODEL_RENDERERS,
    sim_renderers=render.RENDERERS,
    crosscheck=CrossCheck(
        sample_states=crosscheck.sample_states,
        noise_levels=tuple(crosscheck.NEAR_GOAL_NOISE),
        ideal_verdict=crosscheck.ideal_verdict,
        ideal_renderers=(render.RENDERER_GYM_PUSHT,)),
    labels=labels.LABELS,
    mask_rule=mask_rule,
    example_policies='examples/policies/push_t',
    sim_launch='push_t_sim.launch.yaml',
    fleet_launch='fleet_sim.launch.yaml',
)

__all__ = ['PLUGIN', 'make_opencv_estimator']
