"""``check_task``: the contract every task plugin passes (like Gymnasium's ``check_env``).

It checks the plugin against its task contract (``config/tasks/<task>/``) with the plugin's
own, simulator-free parts: validation scenes build observations of the spec's names, shapes
and dtypes; the hold action fits the action spec; the goal itself scores as a success;
reset strategies, verifier backends and camera models are named consistently; the example
policies directory exists and holds policies of this task. The contract checkers of the
parts that live in higher layers (``check_verifier`` for each backend, ``check_cell`` for the
simulated cell, ``check_policy`` for the examples) run in the task's tests.
"""

from __future__ import annotations

import math
import re

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec
from enpire_tasks.observation import check_observation
from enpire_tasks.plugin import TaskPlugin

_VERSIONED = re.compile(r'^.+-v\d+$')


class TaskContractError(ConfigError):
    """A task plugin broke the plugin contract; the message names the rule and the values."""


def _fail(plugin: TaskPlugin, rule: str, detail: str) -> None:
    raise TaskContractError(f"check_task '{plugin.name}': {rule}: {detail}")


def _check_hold(plugin: TaskPlugin, task: TaskSpec, state: dict[str, float]) -> None:
    action = np.asarray(plugin.hold_action(task, state))
    if action.shape != tuple(task.action.shape):
        _fail(plugin, 'hold action shape', f'{action.shape} != {tuple(task.action.shape)}')
    if not np.all(np.isfinite(action)):
        _fail(plugin, 'hold action', f'{action.tolist()} is not finite')
    lo, hi = np.asarray(task.action.low), np.asarray(task.action.high)
    if np.any(action.reshape(-1) < lo) or np.any(action.reshape(-1) > hi):
        _fail(plugin, 'hold action bounds', f'{action.tolist()} outside {lo.tolist()}..'
                                            f'{hi.tolist()}')


def check_task(plugin: TaskPlugin, task: TaskSpec, *, n: int = 3, seed: int = 0) -> None:
    """Check that ``plugin`` honours the plugin contract for its contract ``task``.

    Raises:
        TaskContractError: the first rule the plugin breaks.
    """
    from enpire_tasks.registry import example_policies_dir

    if plugin.name != task.name:
        _fail(plugin, 'name', f"the contract is task '{task.name}'")
    readings = plugin.sample_readings(task, n, seed)
    if len(readings) != n:
        _fail(plugin, 'sample_readings', f'asked for {n}, got {len(readings)}')
    again = plugin.sample_readings(task, n, seed)
    for i, (reading, same) in enumerate(zip(readings, again, strict=True)):
        obs = plugin.build_observation(task, reading)
        try:
            check_observation(task, obs, f'observation of reading #{i}')
        except ConfigError as exc:
            _fail(plugin, 'build_observation', str(exc))
        if any(not np.array_equal(reading.images[k], same.images[k]) for k in reading.images) \
                or dict(reading.state) != dict(same.state):
            _fail(plugin, 'sample_readings', f'seed {seed} gave a different reading #{i}')
        _check_hold(plugin, task, dict(reading.state))
    goal = task.goal_pose
    score = float(plugin.score(goal, goal))
    if not (math.isfinite(score) and task.success_threshold < score <= 1.0):
        _fail(plugin, 'score', f'the goal pose scores {score}, not a success above '
                               f'{task.success_threshold}')
    if not plugin.outline(goal):
        _fail(plugin, 'outline', 'the goal pose has no outline polygons')
    for sid in plugin.reset_strategies:
        if not _VERSIONED.match(sid):
            _fail(plugin, 'reset strategy id', f"'{sid}' must be versioned, e.g. 'name-v1'")
    strategy = (task.section('reset').get('strategy') or '')
    if strategy and not any(sid == strategy or sid.rsplit('-v', 1)[0] == strategy
                            for sid in plugin.reset_strategies):
        _fail(plugin, 'reset strategy', f"the contract names '{strategy}', the plugin has "
                                        f'{sorted(plugin.reset_strategies)}')
    if not any(b.factory is not None for b in plugin.verifier_backends):
        _fail(plugin, 'verifier backends', 'none is implemented')
    if bool(task.stages) != (plugin.stage_rule is not None):
        has = 'a' if plugin.stage_rule else 'no'
        _fail(plugin, 'stages', f'the contract lists {list(task.stages)} but the plugin has '
                                f'{has} stage_rule: both or neither')
    for model, renderer in plugin.camera_model_renderers.items():
        if model not in plugin.camera_models:
            _fail(plugin, 'camera models', f"'{model}' maps to a renderer but is no model")
        if renderer not in plugin.sim_renderers:
            _fail(plugin, 'camera models', f"'{model}' describes renderer '{renderer}', "
                                           f'not one of {plugin.sim_renderers}')
    if plugin.crosscheck is not None and not (plugin.sim_renderers or plugin.sim_launch):
        _fail(plugin, 'crosscheck', 'a crosscheck sampler needs a simulated cell (the '
                                    'plugin names no sim renderers and no sim launch)')
    if plugin.example_policies:
        d = example_policies_dir(plugin)
        if d is None:
            _fail(plugin, 'example policies', f'{plugin.example_policies} is not a directory')
        elif not any((p / 'policy.py').is_file() for p in d.iterdir()):
            _fail(plugin, 'example policies', f'{d} holds no policy directory')


__all__ = ['TaskContractError', 'check_task']
