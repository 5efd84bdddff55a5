from __future__ import annotations

from types import SimpleNamespace

import pytest

from enpire_common.alerts import SEVERITY_ERROR, SEVERITY_INFO
from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError
from enpire_rollout.core.config import DiskSpaceConfig
from enpire_rollout.core.disk import MB, DiskGuard, config_from_env
from enpire_rollout.core.fakes import FakeCell, FakeController, FakeVerifier, ListRecorder
from enpire_rollout.core.trial import BudgetConfig, TrialRunner


class FakeDisk:
    """``shutil.disk_usage`` with a settable free space (MB); counts its calls."""

    def __init__(self, free_mb: float) -> None:
        self.free_mb = free_mb
        self.calls: list[str] = []

    def __call__(self, path: str) -> SimpleNamespace:
        self.calls.append(path)
        return SimpleNamespace(total=100_000 * MB, used=0, free=int(self.free_mb * MB))


def make_guard(tmp_path, free_mb, clock=None, **config):
    disk, alerts = FakeDisk(free_mb), []
    guard = DiskGuard(tmp_path, DiskSpaceConfig(**config), clock=clock or FakeClock(),
                      disk_usage=disk, on_alert=alerts.append)
    return guard, disk, alerts


def make_runner(guard, clock, **controller_kw):
    controller = FakeController(clock, **controller_kw)
    cell, recorder = FakeCell(), ListRecorder()
    runner = TrialRunner(cell=cell, controller=controller, verifier=FakeVerifier(controller),
                         recorder=recorder, clock=clock, control_rate_hz=10.0, space=guard,
                         trial_id_factory=lambda c, s: f'{c}-{s}')
    return runner, cell, recorder


def run(runner, seeds):
    return runner.run(experiment_id='e', revision_id='r', cell_id='cell_0', task='push_t',
                      seeds=seeds, budget=BudgetConfig())


def test_a_disk_below_the_threshold_starts_no_trial_and_raises_an_error_alert(tmp_path):
    clock = FakeClock()
    guard, _disk, alerts = make_guard(tmp_path, free_mb=500, clock=clock)
    runner, cell, recorder = make_runner(guard, clock)
    summary = run(runner, [1, 2, 3])
    assert summary.trials == [] and cell.resets == [] and recorder.started == []
    assert summary.stop_reason == 'disk_low'
    assert 'only 500 MB free' in summary.stop_detail and str(tmp_path) in summary.stop_detail
    assert 'needs 1024 MB' in summary.stop_detail
    assert summary.to_dict()['stop_detail'] == summary.stop_detail
    (alert,) = alerts
    assert alert.kind == 'disk_low' and alert.severity == SEVERITY_ERROR
    assert 'enpire gc --apply' in alert.detail and 'only 500 MB free' in alert.detail


def test_a_disk_that_runs_low_mid_recording_truncates_the_trial_and_ends_the_run(tmp_path):
    clock = FakeClock()
    guard, disk, alerts = make_guard(tmp_path, free_mb=2000, clock=clock)
    runner, cell, recorder = make_runner(guard, clock, solve_steps=lambda s: None)

    def poll(timeout_s, _poll=runner.controller.poll):
        progress = _poll(timeout_s)
        if runner.controller.seed == 2 and progress.steps == 12:
            disk.free_mb = 100   # something else filled the disk
        return progress

    runner.controller.poll = poll
    summary = run(runner, [1, 2, 3])
    assert [t.outcome for t in summary.trials] == ['failure', 'aborted']
    truncated = summary.trials[1]
    assert truncated.reason.startswith('truncated by disk: the recording stopped early')
    assert 'only 100 MB free' in truncated.reason and 'needs 256 MB' in truncated.reason
    # The recording still closed as for any other end (bag and videos finished cleanly).
    assert [r.trial_id for r in recorder.finished] == ['cell_0-1', 'cell_0-2']
    assert truncated.steps < 300 and cell.resets == [1, 2]
    assert summary.stop_reason == 'disk_low' and summary.stop_detail == truncated.reason
    assert [a.kind for a in alerts] == ['disk_low']


def test_the_first_trial_that_may_start_again_raises_a_disk_ok_alert(tmp_path):
    guard, disk, alerts = make_guard(tmp_path, free_mb=10)
    assert guard.before_trial() and guard.before_trial()
    disk.free_mb = 5000
    assert guard.before_trial() == '' and guard.before_trial() == ''
    assert [(a.kind, a.severity) for a in alerts] == [
        ('disk_low', SEVERITY_ERROR), ('disk_low', SEVERITY_ERROR), ('disk_ok', SEVERITY_INFO)]
    assert '5000 MB free' in alerts[-1].detail


def test_the_check_while_recording_looks_at_most_once_per_period(tmp_path):
    clock = FakeClock()
    guard, disk, _alerts = make_guard(tmp_path, free_mb=5000, clock=clock)
    assert guard.before_trial() == ''
    disk.calls.clear()
    for _ in range(50):   # 5 s of 10 Hz polls
        assert guard.during_trial() == ''
        clock.advance(0.1)
    assert 4 <= len(disk.calls) <= 5


def test_min_free_mb_0_disables_the_guard(tmp_path):
    guard, disk, alerts = make_guard(tmp_path, free_mb=0, min_free_mb=0, abort_free_mb=0)
    assert guard.before_trial() == '' and guard.during_trial() == ''
    assert disk.calls == [] and alerts == []


def test_a_record_dir_that_does_not_exist_yet_is_measured_on_its_nearest_parent(tmp_path):
    guard, disk, _ = make_guard(tmp_path / 'not' / 'yet', free_mb=5000)
    assert guard.before_trial() == ''
    assert disk.calls == [str(tmp_path)]


def test_a_disk_that_cannot_be_measured_never_stops_a_cell(tmp_path):
    def broken(_path):
        raise OSError('stale NFS handle')

    guard = DiskGuard(tmp_path, disk_usage=broken, clock=FakeClock())
    assert guard.before_trial() == ''


def test_the_env_override_sets_min_free_mb_and_caps_abort_free_mb():
    cfg = DiskSpaceConfig()
    assert config_from_env(cfg, {}) == cfg
    assert config_from_env(cfg, {'ENPIRE_MIN_FREE_MB': '5000'}).min_free_mb == 5000
    low = config_from_env(cfg, {'ENPIRE_MIN_FREE_MB': '100'})
    assert (low.min_free_mb, low.abort_free_mb) == (100, 100)
    with pytest.raises(ConfigError, match="ENPIRE_MIN_FREE_MB='lots' is invalid"):
        config_from_env(cfg, {'ENPIRE_MIN_FREE_MB': 'lots'})


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'min_free_mb': -1}, r'record\.min_free_mb=-1 is invalid'),
    ({'min_free_mb': 100, 'abort_free_mb': 200}, r'must be <= record\.min_free_mb'),
    ({'check_period_s': 0}, r'record\.check_period_s=0 is invalid'),
])
def test_invalid_disk_space_config_names_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DiskSpaceConfig(**kwargs)
