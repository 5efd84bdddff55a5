"""The task plugin interface: what one task directory gives the generic packages.

A task is its contract (``config/tasks/<task>/``: spec, seeds, safety envelope) plus one
directory of code, ``enpire_tasks/<task>/``, whose ``PLUGIN`` is a :class:`TaskPlugin`. The
generic packages (reset, reward, rollout, agent_bridge, evolution) never name a task: they
ask :mod:`enpire_tasks.registry` for the plugin of the contract's task name and call what it
provides. Everything here is plain data and callables: no ROS, no simulator.

Pose, score and state conventions are the task's own (Push-T: ``(x_px, y_px, theta_rad)`` of
the block, goal coverage in [0, 1], state names ``x, y, vx, vy``); generic code passes them
through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from enpire_tasks.reset import pose_error as planar_pose_error

if TYPE_CHECKING:
    from enpire_common.tasks import TaskSpec, ViewSpec
    from enpire_tasks.estimation import PoseEstimator

Pose = Sequence[float]


@dataclass(frozen=True)
class CellReading:
    """What a cell showed at one control tick, keyed the way the contract names sources.

    Attributes:
        images: camera frames by their source topic (``camera/<view>/image_raw``), each
            (H, W, 3) uint8 RGB.
        state: the cell's state vector by name (Push-T: ``x``, ``y``, ``vx``, ``vy``).
        tick: control steps since the last reset.
        rollout: values the rollout supplies (``retry_index``: the pass@k attempt).
    """

    images: Mapping[str, np.ndarray] = field(default_factory=dict)
    state: Mapping[str, float] = field(default_factory=dict)
    tick: int = 0
    rollout: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ResetStrategy(Protocol):
    """Puts a cell into the start state of a seed (enpire_reset runs it, then verifies).

    ``place`` returns what the cell placed (an ``enpire_reset`` Placement) and raises an
    EnpireError when it cannot.
    """

    id: str

    def place(self, seed: int, timeout_s: float) -> Any: ...


#: ``factory(cell)`` -> a ResetStrategy over the reset server's cell port.
StrategyFactory = Callable[[Any], ResetStrategy]
#: ``factory(task)`` -> a PoseEstimator for that task contract.
EstimatorFactory = Callable[['TaskSpec'], 'PoseEstimator']
#: ``factory(task, view)`` -> a forward camera model of that view.
CameraModelFactory = Callable[['TaskSpec', 'ViewSpec'], Any]


@dataclass(frozen=True)
class VerifierBackend:
    """A verifier backend id the task registers (``factory`` None: planned, not built yet)."""

    id: str
    description: str
    factory: EstimatorFactory | None = None


@dataclass(frozen=True)
class CrossCheck:
    """How to compare a verifier with simulator ground truth on this task (sim only).

    Attributes:
        sample_states: ``sample_states(task, cell, n, seed, *, near_goal_frac, progress,
            near_goal_noise)`` yields ``(image, ground_truth)`` of ``n`` states drawn in the
            simulated ``cell`` (made by :func:`enpire_tasks.registry.make_sim_cell`);
            ``ground_truth`` has ``object_pose``, ``coverage`` (the task score) and ``success``.
        noise_levels: the ``near_goal_noise`` names ``sample_states`` accepts.
        ideal_verdict: ``ideal_verdict(task, ground_truth)`` -> the best call any image-only
            verifier can make on that state's image, for the renderers in
            ``ideal_renderers`` (whose images cannot tell some poses apart).
        ideal_renderers: sim renderers ``ideal_verdict`` applies to.
    """

    sample_states: Callable[..., Iterator[tuple[np.ndarray, Any]]]
    noise_levels: tuple[str, ...] = ()
    ideal_verdict: Callable[[TaskSpec, Any], bool] | None = None
    ideal_renderers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSpec:
    """How a task's simulated cell labels its own renders (training data for the learned
    verifier backends, sim only).

    Attributes:
        classes: the instance classes, in class-id order (``('tblock',)``; the arm tasks'
            parts).
        instance_masks: ``instance_masks(task, cell, view, ground_truth)`` -> ``{class:
            HxW bool}``, the pixels of ``view`` that show each class in the cell's current
            state, as the cell's camera renders them (occlusion included); a class out of
            view has an empty mask.
    """

    classes: tuple[str, ...]
    instance_masks: Callable[[TaskSpec, Any, str, Any], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class TaskPlugin:
    """Everything task-specific that the generic packages need, for one task.

    Attributes:
        name: the task name (``config/tasks/<name>/``, the contract's ``name``).
        description: one line.
        score: ``score(object_pose, goal_pose)`` -> the task score in [0, 1] that the success
            threshold applies to (Push-T: goal coverage).
        outline: ``outline(object_pose)`` -> the object's outline polygons in workspace units,
            each (k, 2) float (evidence images).
        build_observation: ``build_observation(task, reading)`` -> the policy's observation
            dict, built from the contract's observation ``source`` fields.
        hold_action: ``hold_action(task, state)`` -> the action that holds the cell where it
            is (``state``: the state vector by name), within the action bounds.
        sample_readings: ``sample_readings(task, n, seed)`` -> ``n`` seeded, simulator-free
            :class:`CellReading` s of plausible scenes (policy validation, checks).
        reset_strategies: versioned strategy id (``sim_place-v1``) -> factory over the reset
            server's cell port.
        verifier_backends: the verifier backends that judge this task.
        camera_models: forward camera model name -> factory (a view's ``camera_model``).
        camera_model_renderers: camera model -> the sim cell ``camera.renderer`` it describes.
        sim_renderers: the sim cell's camera renderers, the default first.
        crosscheck: the crosscheck sampler (None: no simulated cell).
        labels: how the simulated cell labels its renders (None: it cannot).
        mask_rule: ``mask_rule(task, segmenter)`` -> a PoseEstimator: the task's per-view
            geometric rule applied to the masks of a learned
            :class:`~enpire_tasks.estimation.InstanceSegmenter` (YOLO, SAM2) whose classes
            are ``labels.classes`` (None: the task has no rule over masks).
        example_policies: workspace-relative directory of the example policies.
        sim_launch: the launch file (under ``launch/``) of one simulated cell, with a
            ``cell`` argument ('' without a simulated cell).
        fleet_launch: the launch file of N simulated cells (``cells:=N``) on one host.
        sim_launch_args: arguments both launches get (a launch shared by several tasks, such
            as the arm cell's, takes ``task``).
        reset_skill: ``reset_skill(task, seed, stage)`` -> a skill with ``act(obs) -> action``
            and ``done`` / ``failed``: the robot-executed reset a cell runs for PlaceStart
            method ``robot`` (None: the task has none).
        reset_stages: the stages a reset can start a trial at (``start`` first).
        start_pose: ``start_pose(seed, stage)`` -> the object pose a reset of that seed and
            stage is told to reach (what the reset verifier checks it against).
        pose_names: what each number of an object pose is (the verifier's and reset's
            ``object_pose`` / ``expected_pose`` have this many).
        pose_error: ``pose_error(expected, observed)`` -> (position error in
            ``position_unit``, angle error rad): what the reset tolerances
            (``pose_tolerance`` / ``pose_tolerance_rad``) bound. An observed component a view
            cannot measure may be NaN; the task's function decides what that means.
        position_unit: the unit of positions in poses (``px``, ``m``).
        sim_object_pose: ``sim_object_pose(model, data)`` -> the simulated cell's
            ground-truth object pose, for a pose that is more than one site's position (a
            zip tie's: whether its strap is through its head). None: the contract's
            ``sim.object_pose_site``.
        sim_truth: ``sim_truth(model, data)`` -> more simulator truth for the cell's
            ground truth's ``extra`` (never for policies or trial records).
        stage_rule: ``stage_rule(task, estimates)`` -> ``{stage: reached}`` for the
            contract's ``stages`` that the views can judge now, from each view's
            :class:`~enpire_tasks.estimation.Estimate` (its ``features``; views that found
            nothing included). None: the task reports no stages.
    """

    name: str
    description: str
    score: Callable[[Pose, Pose], float]
    outline: Callable[[Pose], Sequence[np.ndarray]]
    build_observation: Callable[[TaskSpec, CellReading], dict[str, Any]]
    hold_action: Callable[[TaskSpec, Mapping[str, float]], np.ndarray]
    sample_readings: Callable[[TaskSpec, int, int], list[CellReading]]
    reset_strategies: Mapping[str, StrategyFactory] = field(default_factory=dict)
    verifier_backends: tuple[VerifierBackend, ...] = ()
    camera_models: Mapping[str, CameraModelFactory] = field(default_factory=dict)
    camera_model_renderers: Mapping[str, str] = field(default_factory=dict)
    sim_renderers: tuple[str, ...] = ()
    crosscheck: CrossCheck | None = None
    labels: LabelSpec | None = None
    mask_rule: Callable[[TaskSpec, Any], Any] | None = None
    example_policies: str = ''
    sim_launch: str = ''
    fleet_launch: str = ''
    sim_launch_args: Mapping[str, str] = field(default_factory=dict)
    reset_skill: Callable[..., Any] | None = None
    start_pose: Callable[[int, str], Pose] | None = None
    reset_stages: tuple[str, ...] = ('start',)
    pose_names: tuple[str, ...] = ('x_px', 'y_px', 'theta_rad')
    pose_error: Callable[[Pose, Pose], tuple[float, float]] = planar_pose_error
    position_unit: str = 'px'
    sim_object_pose: Callable[[Any, Any], Pose] | None = None
    sim_truth: Callable[[Any, Any], Mapping[str, Any]] | None = None
    stage_rule: Callable[[TaskSpec, Mapping[str, Any]], Mapping[str, bool]] | None = None

    @property
    def default_renderer(self) -> str:
        """The sim cell's default camera renderer ('' without a simulated cell)."""
        return self.sim_renderers[0] if self.sim_renderers else ''


__all__ = ['CameraModelFactory', 'CellReading', 'CrossCheck', 'EstimatorFactory', 'LabelSpec',
           'Pose',
           'ResetStrategy', 'StrategyFactory', 'TaskPlugin', 'VerifierBackend']
