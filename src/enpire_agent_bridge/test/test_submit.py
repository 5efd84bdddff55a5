"""`enpire policy submit|list|show|activate`: sandbox validation before storage, exit codes,
content-addressed ids, and the frozen-contract pre-check of verbs that run or activate."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from enpire_agent_bridge.core import submit as submit_mod
from enpire_agent_bridge.core.contract import PolicySpec
from enpire_bringup.cli import main
from enpire_common.errors import ContractMismatchError
from enpire_common.tasks import load_task

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / 'examples' / 'policies' / 'push_t'
BAD = ROOT / 'tests' / 'data' / 'bad_policies'

# bad policy -> fragment of the message that says what to fix
REJECTIONS = [
    ('raise_on_import', r'rejected at start: .*RuntimeError in importing policy\.py'),
    ('raise_in_act', r'rejected at warm-up act on observation #0: .*ValueError in act'),
    ('infinite_loop', r'act did not return within 1000 ms'),
    ('sleep_past_deadline', r'act did not return within 1000 ms'),
    ('returns_nan', r'non-finite action \[nan, 1\.0\]; guard against NaN'),
    ('wrong_shape', r'shape \[3\], expected \[2\]; return np\.array of that shape'),
    ('out_of_bounds', r'outside the action bounds .*; clip it'),
    ('allocate_8gb', r'exceeded the sandbox memory limit of 2048 MiB: allocate less'),
    ('fork', r'policies may not start processes or threads'),
]


@pytest.fixture
def quick(monkeypatch):
    """Short warm-up deadline (the hang cases hang there) and a lenient act deadline on a
    loaded 2-core machine; everything else as in production."""
    monkeypatch.setattr(submit_mod, 'SubmitConfig',
                        functools.partial(submit_mod.SubmitConfig, warmup_timeout_s=1.0,
                                          deadline_s=0.5))


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv, '--json'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


def stored(home: Path) -> list[str]:
    root = home / 'revisions'
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_submitting_the_same_directory_twice_gives_the_same_revision_id(tmp_path, capsys,
                                                                          quick):
    code, first = run_json(capsys, 'policy', 'submit', str(EXAMPLES / 'hold'), '--home',
                           str(tmp_path))
    assert code == 0 and first['ok'] and first['created']
    assert first['check']['n_acts'] == 4
    code, second = run_json(capsys, 'policy', 'submit', str(EXAMPLES / 'hold'), '--home',
                            str(tmp_path))
    assert code == 0 and not second['created']
    assert second['revision_id'] == first['revision_id']
    assert stored(tmp_path) == [first['revision_id']]


def test_a_copy_under_another_name_is_the_same_revision_and_records_parent_and_manifest(
        tmp_path, capsys, quick):
    home = tmp_path / 'home'
    _, base = run_json(capsys, 'policy', 'submit', str(EXAMPLES / 'scripted'), '--home',
                       str(home))
    work = tmp_path / 'elsewhere'
    shutil.copytree(EXAMPLES / 'scripted', work)
    _, again = run_json(capsys, 'policy', 'submit', str(work), '--home', str(home))
    assert again['revision_id'] == base['revision_id']
    (work / 'policy.yaml').write_text((work / 'policy.yaml').read_text().replace(
        'version: 1', 'version: 2'))
    code, child = run_json(capsys, 'policy', 'submit', str(work), '--parent',
                           base['revision_id'], '--home', str(home))
    assert code == 0 and child['created'] and child['revision_id'] != base['revision_id']
    assert child['parent'] == base['revision_id'] and child['version'] == 2
    assert child['regime'] == 'heuristic' and child['hypothesis']
    code, listing = run_json(capsys, 'policy', 'list', '--home', str(home))
    assert [r['revision_id'] for r in listing['revisions']] == [base['revision_id'],
                                                                child['revision_id']]
    code, shown = run_json(capsys, 'policy', 'show', child['short'], '--home', str(home))
    assert shown['intact'] and shown['parent'] == base['revision_id']
    assert set(shown['files']) == {'policy.py', 'policy.yaml'} and shown['trials'] == []


@pytest.mark.parametrize(('name', 'message'), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_each_bad_policy_exits_4_saying_what_to_fix_and_stores_nothing(tmp_path, capsys, quick,
                                                                      name, message):
    code, out = run_json(capsys, 'policy', 'submit', str(BAD / name), '--home', str(tmp_path))
    assert code == 4
    assert out['ok'] is False and out['error'] == 'POLICY_REJECTED'
    assert out['error_code'] == 401
    assert re.search(message, out['message']), out['message']
    # The message names the agent's directory, never the store's staging copy.
    assert str(BAD / name) in out['message'] and '.staging' not in out['message']
    assert stored(tmp_path) == []


def test_a_manifest_error_is_a_rejection_naming_the_field(tmp_path, capsys):
    pol = tmp_path / 'pol'
    shutil.copytree(EXAMPLES / 'hold', pol)
    (pol / 'policy.yaml').write_text('name: hold\ntask: push_t\nregime: heuristic\n'
                                     'hypothesis: x\n')
    code, out = run_json(capsys, 'policy', 'submit', str(pol), '--home', str(tmp_path / 'h'))
    assert code == 4 and "field 'version' is missing" in out['message']
    assert stored(tmp_path / 'h') == []


def test_validation_observations_are_rendered_frames_that_conform_to_the_spec():
    task = load_task('push_t')
    spec = PolicySpec.from_task_contract(task.raw)
    obs = submit_mod.validation_observations(task, spec, n=3)
    assert len(obs) == 3
    for o in obs:
        assert set(o) == set(spec.observation)
        assert o['image_top'].shape == (480, 480, 3) and o['image_top'].dtype == np.uint8
        assert o['image_top'].std() > 0  # a real scene, not a blank frame
    assert len({tuple(o['agent_pos']) for o in obs}) == 3
    synth = submit_mod.synthetic_observations(spec, n=3)
    assert all(s['image_top'].shape == (480, 480, 3) for s in synth)
    assert len({tuple(s['agent_pos']) for s in synth}) == 3


@pytest.fixture
def edited_contract(tmp_path, monkeypatch):
    """push_t copied to a private tasks dir, locked, then its safety.yaml edited."""
    tasks = tmp_path / 'tasks'
    shutil.copytree(ROOT / 'config' / 'tasks' / 'push_t', tasks / 'push_t')
    monkeypatch.setenv('ENPIRE_TASKS_DIR', str(tasks))
    home = tmp_path / 'home'
    assert main(['task', 'lock', 'push_t', '--home', str(home)]) == 0
    safety = tasks / 'push_t' / 'safety.yaml'
    safety.write_text(safety.read_text() + '\n# loosened by an agent\n')
    return home


def test_activate_refuses_with_exit_2_when_the_contract_was_edited(edited_contract, capsys):
    capsys.readouterr()
    code, out = run_json(capsys, 'policy', 'activate', 'hold', '--home', str(edited_contract))
    assert code == 2 and out['error'] == 'CONTRACT_MISMATCH'
    assert "task 'push_t' contract changed since it was locked" in out['message']
    assert 'enpire task lock push_t' in out['message']


def test_trial_run_refuses_before_starting_any_cell_when_the_contract_was_edited(
        edited_contract, monkeypatch):
    from enpire_bringup.agent_tools import build_tools
    from enpire_evolution.ros import trials_port

    def boom(**kwargs):  # no cell session may be started
        raise AssertionError(f'started a cell session ({kwargs})')

    monkeypatch.setattr(trials_port, 'TrialsSession', boom)
    trial_run = {fn.__name__: fn for fn in build_tools(edited_contract)}['trial_run']
    with pytest.raises(ContractMismatchError, match='contract changed since it was locked'):
        trial_run(count=1, revision='abcdef')


def test_activate_without_a_bridge_node_exits_1_naming_the_missing_service(tmp_path, capsys,
                                                                          monkeypatch):
    from enpire_agent_bridge.ros import agent_client
    from enpire_common.errors import CellUnavailableError

    def absent(cell, *a, **k):
        raise CellUnavailableError(
            f'no switch_policy service on /{cell} (is the agent bridge running?)')

    monkeypatch.setattr(agent_client, 'switch_policy', absent)
    code, out = run_json(capsys, 'policy', 'activate', 'hold', '--home', str(tmp_path))
    assert code == 1
    assert out['message'] == 'no switch_policy service on /cell_0 (is the agent bridge running?)'


@pytest.mark.ros
def test_activate_and_pause_wait_a_bounded_time_for_the_bridge_then_exit_1(tmp_path, capsys):
    code, out = run_json(capsys, 'policy', 'activate', 'hold', '--cell', 'cell_nobody',
                         '--wait-s', '0.5', '--home', str(tmp_path))
    assert code == 1 and 'no switch_policy service on /cell_nobody' in out['message']
    code, out = run_json(capsys, 'cell', 'pause', '--cell', 'cell_nobody', '--wait-s', '0.5')
    assert code == 1 and out['message'] == ('no pause_cell service on /cell_nobody '
                                            '(is the agent bridge running?)')
    code, out = run_json(capsys, 'cell', 'status', '--cell', 'cell_nobody', '--wait-s', '0.5')
    assert code == 1 and out['reachable'] is False
    assert out['servers'] == {'run_trials': False, 'reset_cell': False,
                              'verify_success': False, 'switch_policy': False}
