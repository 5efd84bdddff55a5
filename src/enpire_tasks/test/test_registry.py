"""The task registry lists every task, and each task passes its contract checkers.

For every registered plugin: ``check_task`` (the plugin against its contract), then the
checkers of the parts that live in higher layers: ``check_verifier`` for each implemented
verifier backend (on the plugin's validation scenes), ``check_cell`` for its simulated cell,
``check_policy`` for each example policy. (Tests may cross layers; the packages may not.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.tasks import available_tasks, load_task
from enpire_tasks import registry
from enpire_tasks.check_task import TaskContractError, check_task
from enpire_tasks.plugin import TaskPlugin

TASKS = sorted(registry.available())


def test_the_registry_lists_every_task_directory_as_a_plugin():
    plugins = registry.available()
    assert 'push_t' in plugins
    for name, plugin in plugins.items():
        assert isinstance(plugin, TaskPlugin) and plugin.name == name
        assert name in available_tasks(), f'plugin {name} has no config/tasks/{name}/'
    assert registry.get('push_t') is plugins['push_t']
    assert registry.get(load_task('push_t')) is plugins['push_t']


def test_an_unknown_task_is_explained_with_a_suggestion():
    with pytest.raises(UnknownNameError, match="unknown task plugin 'push_tt'; did you mean "
                                               "'push_t'"):
        registry.get('push_tt')
    assert registry.find('no_such_task') is None


@pytest.mark.parametrize('name', TASKS)
def test_each_task_passes_check_task(name):
    check_task(registry.get(name), load_task(name))


def test_check_task_names_the_broken_rule():
    task = load_task('push_t')
    plugin = registry.get('push_t')
    bad = dataclasses.replace(plugin, hold_action=lambda t, s: [1e9, 0.0])
    with pytest.raises(TaskContractError, match="check_task 'push_t': hold action bounds"):
        check_task(bad, task)
    bad = dataclasses.replace(plugin, reset_strategies={'sim_place': object})
    with pytest.raises(TaskContractError, match="'sim_place' must be versioned"):
        check_task(bad, task)


@pytest.mark.parametrize('name', TASKS)
def test_each_verifier_backend_passes_check_verifier(name):
    from enpire_reward.core import make_verifier
    from enpire_reward.core.check_verifier import check_verifier

    task = load_task(name)
    plugin = registry.get(name)
    samples = [{source.split('/')[1]: img for source, img in r.images.items()}
               for r in plugin.sample_readings(task, 2, 0)]
    for backend in plugin.verifier_backends:
        if backend.factory is not None:
            check_verifier(make_verifier(backend.id, task), samples)


@pytest.mark.parametrize('name', TASKS)
def test_each_simulated_cell_passes_check_cell(name):
    from enpire_sim.core.check_cell import check_cell

    task = load_task(name)
    plugin = registry.get(name)
    if not (plugin.sim_renderers or plugin.sim_launch):
        pytest.skip(f'{name} has no simulated cell')
    cell = registry.make_sim_cell(task)
    actions = None
    if 'home' in task.raw:      # an arm task: small moves about home, within the arms' reach
        rng = np.random.default_rng(3)
        home = np.asarray(task.raw['home'], dtype=np.float64)
        span = np.asarray(task.action.high) - np.asarray(task.action.low)
        actions = [np.clip(home + rng.uniform(-0.02, 0.02, home.shape) * span,
                           task.action.low, task.action.high) for _ in range(3)]
    try:
        view = next(iter(task.views.values()))
        check_cell(cell, n_steps=3, image_shape=(view.height_px, view.width_px, 3),
                   actions=actions)
    finally:
        cell.close()


@pytest.mark.parametrize('name', TASKS)
def test_each_example_policy_passes_check_policy(name, tmp_path):
    from enpire_agent_bridge.core.checker import check_policy
    from enpire_agent_bridge.core.contract import PolicySpec
    from enpire_agent_bridge.core.submit import validation_observations

    task = load_task(name)
    examples = registry.example_policies_dir(registry.get(name))
    if examples is None:
        pytest.skip(f'{name} names no example policies')
    spec = PolicySpec.from_task_contract(task.raw)
    obs = validation_observations(task, spec, 2, 0)
    for policy_dir in sorted(p for p in examples.iterdir() if (p / 'policy.py').is_file()):
        check_policy(policy_dir, spec, obs, log_dir=tmp_path)


def test_a_sim_cell_for_a_task_without_one_is_refused_with_the_fix():
    task = dataclasses.replace(load_task('push_t'), name='no_cell_task')
    with pytest.raises(ConfigError, match="no simulated cell is registered for task "
                                          "'no_cell_task'.*scripts/setup.sh"):
        registry.make_sim_cell(task)
