"""``enpire improve --cells N``: the fleet from the CLI (fake cells), JSON and text output."""

from __future__ import annotations

import json

import pytest

from enpire_bringup.cli import build_parser, main
from enpire_common.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    monkeypatch.delenv('ENPIRE_STORE_URL', raising=False)


def test_improve_with_two_fake_cells_runs_two_agents_and_reports_mru_per_cell(tmp_path,
                                                                              capsys):
    # 2 simulated minutes per agent: 24 trials of 5 s on each cell (real check_policy).
    code = main(['improve', '--fake', '--cells', '2', '--home', str(tmp_path),
                 '--budget-min', '2', '--experiment', 'fleet', '--json', '--no-report'])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 1 and not result['goal_met']
    assert [(a['branch'], a['cell'], a['stop_reason']) for a in result['agents']] == [
        ('agent-0', 'cell_0', 'budget'), ('agent-1', 'cell_1', 'budget')]
    assert set(result['mru']['per_cell']) == {'cell_0', 'cell_1'}
    assert 0.9 < result['mru']['mean'] <= 1.0
    assert result['gpu']['available'] in (True, False)
    assert '[agent-0@cell_0]' in err and '[agent-1@cell_1]' in err
    assert (tmp_path / 'remote.git' / 'HEAD').is_file()


def test_improve_drives_up_to_eight_cells_and_refuses_more_as_a_usage_error(tmp_path, capsys):
    args = build_parser().parse_args(['improve', '--fake', '--cells', '9', '--home',
                                      str(tmp_path)])
    with pytest.raises(ConfigError, match=r'--cells 9: .*1 to 8 cells'):
        args.func(args)
    assert main(['improve', '--fake', '--cells', '9', '--home', str(tmp_path), '--json']) == 2
    out = json.loads(capsys.readouterr().out)
    assert out['ok'] is False and out['error'] == 'CONFIG_INVALID'
    assert not (tmp_path / 'enpire.db').exists()  # refused before anything was opened


def test_hosts_number_their_agents_from_their_first_cell_on_one_store(tmp_path, capsys):
    """A fleet spread over hosts: each host's `enpire improve --first-cell K` drives
    cell_K.. with agents builtin-K.. on branches agent-K.., one experiment in one store."""
    from enpire_evolution.core.store import ExperimentStore

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    runs = {'a': ['--cells', '1'], 'b': ['--cells', '1', '--first-cell', '1'],
            'c': ['--cells', '2', '--first-cell', '2']}
    for host, cells in runs.items():
        code = main(['improve', '--fake', *cells, '--home', str(tmp_path / host), '--url', url,
                     '--budget-min', '1', '--experiment', 'hosts', '--json', '--no-report'])
        out = json.loads(capsys.readouterr().out)
        assert code in (0, 1), out
        if host == 'c':
            assert [(a['branch'], a['cell']) for a in out['agents']] == [
                ('agent-2', 'cell_2'), ('agent-3', 'cell_3')]
    with ExperimentStore(url) as store:
        assert {br.name: br.agent for br in store.branches('hosts')} == {
            'agent-0': 'builtin', 'agent-1': 'builtin-1', 'agent-2': 'builtin-2',
            'agent-3': 'builtin-3'}
        assert {a.id: a.cell for a in store.agents('hosts')} == {
            'builtin': 'cell_0', 'builtin-1': 'cell_1', 'builtin-2': 'cell_2',
            'builtin-3': 'cell_3'}
        assert {t.cell for t in store.trials_for('hosts')} == {
            'cell_0', 'cell_1', 'cell_2', 'cell_3'}
    assert main(['improve', '--fake', '--first-cell', '-1', '--home', str(tmp_path / 'd'),
                 '--json']) == 2
