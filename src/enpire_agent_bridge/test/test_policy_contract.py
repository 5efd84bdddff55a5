"""The policy contract: spec from the task contract, manifest validation, checker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from enpire_agent_bridge.core.checker import check_policy
from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.contract import (
    ContractError,
    PolicySpec,
    SizeLimits,
    check_policy_dir,
    load_policy_manifest,
)
from enpire_common.errors import ConfigError, PolicyRejectedError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / 'examples' / 'policies' / 'push_t'
BAD = ROOT / 'tests' / 'data' / 'bad_policies'
MANIFEST = ('name: mine\ntask: push_t\nversion: 2\nregime: heuristic\n'
            'hypothesis: push harder\nparent: ""\n')


@pytest.fixture(scope='module')
def spec() -> PolicySpec:
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    # A lenient deadline: the checker's latency check is exercised by the hang cases.
    return PolicySpec.from_task_contract(task).with_deadline(0.5)


def recorded(spec: PolicySpec, n: int = 3) -> list[dict]:
    return [spec.example_observation(agent_pos=np.array([50.0 + i, 60.0]), step=i)
            for i in range(n)]


def test_spec_from_the_push_t_contract_has_its_shapes_bounds_and_deadline():
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    spec = PolicySpec.from_task_contract(task, deadline_margin_s=0.03)
    assert spec.task == 'push_t'
    assert spec.action_shape == (2,)
    np.testing.assert_array_equal(spec.high, [512.0, 512.0])
    assert spec.rate_hz == 10.0 and spec.deadline_s == pytest.approx(0.07)
    assert spec.observation['image_top'].shape == (480, 480, 3)
    assert spec.observation['image_top'].dtype == 'uint8'
    assert spec.task_info['goal_pose'][2] == pytest.approx(np.pi / 4)
    assert PolicySpec.from_dict(spec.to_dict()) == spec


def test_spec_from_a_contract_without_an_action_block_names_what_is_missing():
    with pytest.raises(ContractError, match="lacks or mangles.*'action'"):
        PolicySpec.from_task_contract({'name': 'x', 'observation': {}})


def test_spec_rejects_bounds_that_do_not_match_the_action_shape():
    with pytest.raises(ContractError, match='need 2 values'):
        PolicySpec('t', {}, (2,), (0.0,), (1.0,), 10.0, 0.1)


def test_manifest_of_every_example_policy_is_valid():
    for name in ('hold', 'random', 'scripted'):
        manifest = load_policy_manifest(EXAMPLES / name)
        assert manifest.name == name and manifest.task == 'push_t'


@pytest.mark.parametrize(('text', 'message'), [
    (MANIFEST.replace('version: 2', 'version: two'), r"field 'version'='two' must be an integer"),
    (MANIFEST.replace('regime: heuristic', 'regime: magic'),
     r"field 'regime'='magic' must be one of heuristic, tool_calling"),
    (MANIFEST.replace('hypothesis: push harder\n', ''), r"field 'hypothesis' is missing"),
    (MANIFEST + 'params: [1, 2]\n', r"field 'params' must be a mapping"),
    (MANIFEST + 'weights: x.pt\n', r"unknown field\(s\) 'weights'"),
    ('name: [\n', r'policy\.yaml:\d+: invalid YAML'),
], ids=['version', 'regime', 'hypothesis', 'params', 'unknown', 'yaml'])
def test_manifest_errors_name_the_file_and_the_field(tmp_path, text, message):
    (tmp_path / 'policy.yaml').write_text(text)
    with pytest.raises(ContractError, match=message) as info:
        load_policy_manifest(tmp_path)
    assert str(tmp_path / 'policy.yaml') in str(info.value)


def test_policy_directory_over_the_size_limit_is_refused(tmp_path):
    (tmp_path / 'policy.py').write_text('')
    (tmp_path / 'weights.bin').write_bytes(b'\0' * 2_000_000)
    with pytest.raises(ContractError, match=r'2\.0 MB exceeds the 1 MB limit'):
        check_policy_dir(tmp_path, SizeLimits(max_total_mb=1.0))
    for i in range(5):
        (tmp_path / f'f{i}.txt').write_text('x')
    with pytest.raises(ContractError, match='more than 3 files'):
        check_policy_dir(tmp_path, SizeLimits(max_files=3))


def test_sandbox_config_names_the_invalid_field():
    with pytest.raises(ConfigError, match='sandbox.memory_limit_mb=10 is invalid'):
        SandboxConfig(memory_limit_mb=10)


@pytest.mark.parametrize('name', ['hold', 'random', 'scripted'])
def test_every_example_policy_passes_the_checker(spec, name):
    report = check_policy(EXAMPLES / name, spec, recorded(spec))
    assert report.n_acts == 3 and report.manifest.name == name
    assert report.act_latency_max_s < spec.deadline_s


# policy, pinned message of the rejection
REJECTIONS = [
    ('raise_on_import', r'rejected at start: .*RuntimeError in importing policy\.py'),
    ('raise_in_act', r'rejected at warm-up act on observation #0: .*ValueError in act'),
    ('infinite_loop',
     r'rejected at warm-up act on observation #0: act did not return within 1000 ms'),
    ('sleep_past_deadline',
     r'rejected at warm-up act on observation #0: act did not return within 1000 ms'),
    ('returns_nan', r'non-finite action \[nan, 1\.0\]; guard against NaN'),
    ('wrong_shape', r'shape \[3\], expected \[2\]; return np\.array of that shape'),
    ('out_of_bounds', r'outside the action bounds .*; clip it'),
    ('allocate_8gb', r'exceeded the sandbox memory limit of 2048 MiB: allocate less'),
    ('fork', r'policies may not start processes or threads'),
]


@pytest.mark.parametrize(('name', 'message'), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_checker_rejects_each_bad_policy_saying_what_to_fix(spec, name, message):
    # The hang cases already hang in the warm-up act; keep that deadline short.
    with pytest.raises(PolicyRejectedError, match=message):
        check_policy(BAD / name, spec, recorded(spec), warmup_timeout_s=1.0)


def test_checker_refuses_a_policy_for_another_task(spec, tmp_path):
    (tmp_path / 'policy.py').write_text((EXAMPLES / 'hold' / 'policy.py').read_text())
    (tmp_path / 'policy.yaml').write_text(MANIFEST.replace('task: push_t', 'task: zip_tie'))
    with pytest.raises(PolicyRejectedError, match="'task'='zip_tie' but this cell runs task"):
        check_policy(tmp_path, spec, recorded(spec))
