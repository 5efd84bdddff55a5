"""A hostile policy corpus against a live sim cell: the sandbox holds, and the record shows it.

One lockstep Push-T cell serves the module. Each case submits the probe policy
(tests/data/hostile_policies/probe) with the operations of one attack in its params; the
probe runs them inside ``act()`` during a real trial and raises if any of them is not refused
(the trial would then be a ``policy_fault`` naming the escape). For every case: the files it
aimed at hash the same afterwards, nothing it tried to read reached a log, its denials are
in trial.json, and the cell lives on; after the corpus a good policy still succeeds.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / 'tests' / 'data' / 'hostile_policies' / 'probe'
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
SECRET = f'enpire-secret-{os.getpid()}'


@pytest.fixture(scope='module')
def cell(request: pytest.FixtureRequest) -> Any:
    from enpire_agent_bridge.core.confinement import detect

    if not detect().confined:
        pytest.skip('no confinement on this machine (trials would refuse to run)')
    return request.getfixturevalue('sim_cell')


@pytest.fixture(scope='module')
def targets(cell) -> dict[str, Path]:
    """The places a policy must not touch, with a secret planted where a test may write."""
    from enpire_agent_bridge.core.revisions import RevisionStore

    home = Path(cell.home)
    rev, _ = RevisionStore(home / 'revisions').submit(str(SCRIPTED), now_s=0.0)
    planted = {'home': Path.home() / f'.enpire-canary-{os.getpid()}',
               'tmp': Path('/tmp') / f'enpire-canary-{os.getpid()}',
               'store': home / 'enpire-canary.db'}
    for path in planted.values():
        path.write_text(SECRET)
    import enpire_common

    yield {'contract_task': ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml',
           'contract_safety': ROOT / 'config' / 'tasks' / 'push_t' / 'safety.yaml',
           'revision': Path(rev.path) / 'policy.py',
           'source': ROOT / 'src' / 'enpire_common' / 'enpire_common' / 'errors.py',
           'installed': Path(enpire_common.__file__),
           'hostname': Path('/etc/hostname'), **planted}
    for path in planted.values():
        path.unlink(missing_ok=True)


def _digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


def _probe(tmp: Path, ops: list[list[str]], port: int = 9) -> Path:
    from enpire_agent_bridge.testing import policy_with_params

    return policy_with_params(PROBE, tmp / 'probe', {'ops': ops, 'port': port})


def _run_probe(cell, tmp: Path, case: str, ops: list[list[str]], port: int = 9
               ) -> dict[str, Any]:
    from enpire_rollout.core.records import read_trial

    result = cell.client.run_trials(count=1, policy_dir=str(_probe(tmp, ops, port)), seeds=[1],
                                    experiment_id=f'hostile-{case}', max_episode_steps=5,
                                    max_consecutive_faults=1, timeout_s=180.0)
    (trial,) = result.trials
    assert trial.outcome in ('failure', 'success'), (trial.outcome, trial.reason)
    return read_trial(Path(trial.record_dir))


# case -> (target names, operations): 'read' and 'write' of each target, as the issue lists.
FILE_CASES = {
    'contract': ['contract_task', 'contract_safety'],
    'store': ['store'],
    'revision_store': ['revision'],
    'workspace_source': ['source', 'installed'],
    'home': ['home'],
    'tmp': ['tmp'],
    'etc_hostname': ['hostname'],
}


@pytest.mark.parametrize('case', sorted(FILE_CASES))
def test_reads_and_writes_outside_the_sandbox_are_refused(cell, targets, tmp_path, case):
    paths = [targets[name] for name in FILE_CASES[case]]
    ops = [[op, str(p), 'denied'] for p in paths for op in ('read', 'write')]
    ops += [['create', str(p.parent / f'planted-{os.getpid()}'), 'denied'] for p in paths[:1]]
    before = _digest(paths)
    record = _run_probe(cell, tmp_path, case, ops)
    assert _digest(paths) == before, f'{case}: a target changed on disk'
    assert not (paths[0].parent / f'planted-{os.getpid()}').exists()
    assert record['sandbox']['confinement'] in ('landlock', 'bwrap'), record['sandbox']
    denials = record['sandbox_denials']
    assert denials['count'] >= len(ops), denials
    for p in paths:
        real = os.path.realpath(p)
        assert f'read {real}' in denials['first'] and f'write {real}' in denials['first'], \
            denials
    logs = ''.join(f.read_text(errors='replace')
                   for f in (Path(cell.home) / 'logs').rglob('*.log'))
    assert SECRET not in logs and 'LEAK' not in logs, 'a refused read reached a log'


def test_sockets_are_refused_and_nothing_connects(cell, tmp_path):
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    server.settimeout(0.2)
    try:
        ops = [['socket', 'AF_INET', 'denied'], ['socket', 'AF_INET6', 'denied']]
        record = _run_probe(cell, tmp_path, 'sockets', ops, port=server.getsockname()[1])
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert record['sandbox_denials']['count'] == 2
    assert record['sandbox_denials']['first'] == ['socket AF_INET', 'socket AF_INET6']


def test_rewriting_sys_path_to_import_the_workspace_fails(cell, targets, tmp_path):
    import enpire_common

    installed = Path(enpire_common.__file__)
    before = _digest([installed, targets['source']])
    # The source tree and where the workspace build installed the package (the same place
    # under a symlink install).
    dirs = sorted({os.path.realpath(ROOT / 'src' / 'enpire_common'),
                   os.path.realpath(installed.parents[1])})
    ops = [['import', d, 'denied'] for d in dirs]
    ops += [['list', str(ROOT), 'denied'], ['scratch', '', 'allowed']]
    record = _run_probe(cell, tmp_path, 'sys_path', ops)
    assert _digest([installed, targets['source']]) == before
    denied = record['sandbox_denials']
    assert denied['count'] >= len(dirs) + 1, denied
    assert {f'list {d}' for d in dirs} | {f'list {ROOT}'} <= set(denied['first']), denied


def test_the_cell_lives_on_and_a_good_policy_still_succeeds(cell):
    assert cell.stack is None or cell.stack.alive()
    result = cell.client.run_trials(count=1, policy_dir=str(SCRIPTED), seeds=[11],
                                    experiment_id='after-hostile', timeout_s=180.0)
    (trial,) = result.trials
    assert trial.outcome == 'success', (trial.outcome, trial.reason)
