"""The tool-calling regime: a sandboxed policy calls the task's tools during act; they run in
the host with the task's verifier, inside the act deadline, accounted per call; misuse ends in
a ToolError with the reason (or a fault, when the policy lets it escape)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from enpire_agent_bridge.core.contract import PolicySpec, load_policy_manifest
from enpire_agent_bridge.core.host import PolicyHost
from enpire_agent_bridge.core.policy_tools import TaskTools, ToolError, ToolStats, run_tool
from enpire_common.errors import ConfigError, PolicyDeadlineError, PolicyFaultError
from enpire_common.tasks import load_task

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / 'tests' / 'data' / 'policies' / 'push_t_tools'
TOOLS = ['estimate_pose', 'verifier_score']


@pytest.fixture(scope='module')
def task():
    """Push-T's contract, offering the two tools (whatever task.yaml says today)."""
    spec = load_task('push_t')
    return dataclasses.replace(spec, raw={**spec.raw, 'tools': TOOLS})


@pytest.fixture(scope='module')
def tools(task) -> TaskTools:
    return TaskTools(task)


@pytest.fixture(scope='module')
def scene(task):
    from enpire_tasks import registry

    reading = registry.get(task).sample_readings(task, 1, 3)[0]
    return reading.images['camera/top/image_raw']


def spec_for(task, mode: str) -> PolicySpec:
    spec = PolicySpec.from_task_contract(task.raw).with_deadline(2.0)
    return spec.with_params({'mode': mode})


def test_the_task_tools_answer_as_the_verifier_judges(tools, task, scene):
    meta, arrays = tools('estimate_pose', {'view': 'top'}, {'image': scene})
    direct = tools.verifier.estimator.estimate(scene, task.views['top'])
    assert meta['found'] and meta['pose_names'] == ['x_px', 'y_px', 'theta_rad']
    np.testing.assert_allclose(arrays['pose'], direct.pose)
    meta, arrays = tools('verifier_score', {'view': 'top'}, {'image': scene})
    judged = tools.verifier.verify({'top': scene}, views=['top']).verdicts[0]
    assert meta['score'] == pytest.approx(judged.score) and meta['success'] == judged.success
    for args, arrays, reason in (({'view': 'side'}, {'image': scene}, "view 'side' unknown"),
                                 ({'view': 'top'}, {}, 'needs image='),
                                 ({'view': 'top'}, {'image': scene[:, :, :2]}, 'estimate_pose')):
        with pytest.raises(ToolError, match=reason):
            tools('estimate_pose', args, arrays)
    with pytest.raises(ConfigError, match='unknown'):
        TaskTools(dataclasses.replace(task, raw={**task.raw, 'tools': ['teleport_block']}))


def test_a_sandboxed_policy_calls_a_tool_during_act_and_each_call_is_counted(task, tools,
                                                                            scene):
    spec = spec_for(task, 'twice')
    obs = spec.example_observation(image_top=scene)
    with PolicyHost(POLICY, spec, tools=tools) as host:
        host.reset(0)
        actions = [host.act(obs) for _ in range(3)]
        counters = host.tool_stats.take()
    pose = tools('estimate_pose', {'view': 'top'}, {'image': scene})[1]['pose']
    for a in actions:
        np.testing.assert_allclose(a, np.clip(pose[:2], 0, 512))
    assert counters['tool_calls'] == 6
    assert counters['tool_calls.estimate_pose'] == 3
    assert counters['tool_calls.verifier_score'] == 3
    # Rounded per tool, so the total may differ from the sum by a millisecond.
    assert abs(counters['tool_ms'] - counters['tool_ms.estimate_pose']
               - counters['tool_ms.verifier_score']) <= 1
    assert host.tool_stats.take() == {}


def test_an_unoffered_tool_is_a_tool_error_the_policy_may_catch_or_a_fault(task, tools, scene):
    obs = spec_for(task, 'catch').example_observation(image_top=scene)
    with PolicyHost(POLICY, spec_for(task, 'catch'), tools=tools) as host:
        host.reset(0)
        np.testing.assert_allclose(host.act(obs), [256.0, 256.0])
        assert host.tool_stats.take() == {}           # refused in the sandbox: never sent
    with PolicyHost(POLICY, spec_for(task, 'unknown'), tools=tools) as host:
        host.reset(0)
        with pytest.raises(PolicyFaultError, match="ToolError.*'teleport_block' is not "
                                                   'offered'):
            host.act(obs)


def test_tools_answer_only_inside_act_and_only_where_the_host_has_them(task, tools, scene):
    with pytest.raises(PolicyFaultError, match='only during act'), \
            PolicyHost(POLICY, spec_for(task, 'in_make'), tools=tools):
        pass
    spec = spec_for(task, 'raw')
    with PolicyHost(POLICY, spec, tools=None) as host:
        host.reset(0)
        with pytest.raises(PolicyFaultError, match='offers no tools'):
            host.act(spec.example_observation(image_top=scene))


def test_a_slow_tool_counts_against_the_act_deadline(task, scene):
    def slow(name, args, arrays):
        time.sleep(0.5)
        return {'found': False}, {}
    spec = spec_for(task, 'raw').with_deadline(0.2)
    with PolicyHost(POLICY, spec, tools=slow) as host:
        host.reset(0)
        with pytest.raises(PolicyDeadlineError, match='did not return within 200 ms'):
            host.act(spec.example_observation(image_top=scene))
        assert not host.alive


def test_a_late_tool_is_late_even_when_the_worker_answers_before_the_host_looks(
        task, scene, monkeypatch):
    # What a loaded machine did in CI: the host thread was preempted after it sent the
    # tool's answer, the worker replied meanwhile, and the reader (which checks the clock
    # only when it must wait) took the late action. The pause after the write makes it so.
    from enpire_agent_bridge.core import host as host_module

    write = host_module.ipc.write_deadline

    def write_then_pause(fd, bufs, end_s):
        write(fd, bufs, end_s)
        time.sleep(0.3)

    def slow(name, args, arrays):
        time.sleep(0.3)
        return {'found': False}, {}
    spec = spec_for(task, 'raw').with_deadline(0.2)
    with PolicyHost(POLICY, spec, tools=slow) as host:
        host.reset(0)
        monkeypatch.setattr(host_module.ipc, 'write_deadline', write_then_pause)
        with pytest.raises(PolicyDeadlineError, match='did not return within 200 ms'):
            host.act(spec.example_observation(image_top=scene))
        assert not host.alive


def test_run_tool_turns_bad_answers_into_tool_errors():
    stats = ToolStats()
    kind, meta, _ = run_tool(lambda n, a, r: ({'x': object()}, {}), stats, 'bad', {}, {})
    assert kind == 'tool_error' and 'not JSON' in meta['message']
    kind, meta, _ = run_tool(lambda n, a, r: ({}, {}), stats, 'x', ['not', 'a', 'dict'], {})
    assert kind == 'tool_error' and 'mapping' in meta['message']
    for i in range(40):                              # made-up names cannot grow the counters
        run_tool(None, stats, f'name{i}', {}, {})
    assert len([k for k in stats.take() if k.startswith('tool_calls.')]) <= ToolStats.MAX_NAMES + 1


def test_the_test_policy_is_a_valid_tool_calling_revision():
    manifest = load_policy_manifest(POLICY)
    assert manifest.regime == 'tool_calling' and manifest.task == 'push_t'
    assert yaml.safe_load((POLICY / 'policy.yaml').read_text())['params']['mode'] == 'pose'
