"""Faults outside the cell's nodes, on a live sim cell whose ENPIRE_HOME is a small tmpfs:

- the experiment store (SQLite) held by another writer for 30 s mid-run: no trial lost, none
  stored twice;
- the record disk filling up mid-recording: the disk guard stops the episode early (its trial
  ``aborted``, its bag readable), starts no further trial, ends the run ``disk_low``, and the
  cell runs again once there is room.

Mounting the tmpfs needs root (CI runs as root); elsewhere the module is skipped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from enpire_bringup.faults import check_experiment

pytestmark = [pytest.mark.faults, pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
MB = 1 << 20
#: The tmpfs home and the disk guard's floor (ENPIRE_MIN_FREE_MB; its abort floor is capped
#: by it): a trial starts with > MIN_FREE_MB free and a recording stops below it.
SIZE_MB, MIN_FREE_MB = 128, 48
NORMAL = ('success', 'failure')
STORE_OUTAGE_S = 30.0


@pytest.fixture(scope='module')
def small_disk_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if os.geteuid() != 0:
        pytest.skip('mounting a small tmpfs for ENPIRE_HOME needs root')
    from enpire_bringup.testing import trials_session

    home = tmp_path_factory.mktemp('small_disk')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={SIZE_MB}m', 'tmpfs', str(home)],
                   check=True)
    try:
        with trials_session(home, launch_args={'on_cell_exit': 'respawn'},
                            env={'ENPIRE_MIN_FREE_MB': str(MIN_FREE_MB)}) as session:
            yield session
    finally:
        subprocess.run(['umount', '-l', str(home)], check=False)


def test_a_store_held_by_another_writer_for_30_s_loses_no_trial(small_disk_cell: Any,
                                                               fault_runner: Any) -> None:
    cell = small_disk_cell
    db = Path(cell.home) / 'enpire.db'
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, timeout=60.0, isolation_level=None)
        try:
            conn.execute('BEGIN EXCLUSIVE')
            held.set()
            time.sleep(STORE_OUTAGE_S)
            conn.execute('ROLLBACK')
        finally:
            conn.close()

    def lock() -> int:
        threading.Thread(target=hold, daemon=True).start()
        return 0

    t0 = time.monotonic()
    result, _pid, error = fault_runner(cell, 'store-outage', lock, timeout_s=300.0)
    assert held.is_set(), 'the store was never locked'
    assert error is None, f'the run failed: {error!r}'
    outcomes = [t.outcome for t in result.trials]
    assert outcomes and all(o in NORMAL for o in outcomes), outcomes
    from enpire_evolution.core.store import ExperimentStore

    with ExperimentStore.open(cell.home) as store:
        stored = [t.trial_id for t in store.trials_for('store-outage')]
    assert sorted(stored) == sorted(t.trial_id for t in result.trials), stored
    assert check_experiment(Path(cell.home) / 'store-outage')['problems'] == {}
    assert time.monotonic() - t0 < STORE_OUTAGE_S + 120.0


def test_a_disk_filling_mid_recording_stops_the_run_before_a_record_breaks(
        small_disk_cell: Any, fault_runner: Any) -> None:
    cell = small_disk_cell
    home = Path(cell.home)
    filler = home / 'filler.bin'

    def fill() -> int:
        free_mb = shutil.disk_usage(home).free // MB
        with filler.open('wb') as f:          # leave 8 MB under the guard's floor
            for _ in range(max(0, int(free_mb - MIN_FREE_MB + 8))):
                f.write(b'\0' * MB)
        return 0

    try:
        result, _pid, error = fault_runner(cell, 'disk-full', fill, timeout_s=240.0)
        assert error is None, f'the run failed: {error!r}'
        outcomes = [t.outcome for t in result.trials]
        assert result.stop_reason == 'disk_low', (result.stop_reason, outcomes)
        assert 'MB' in result.error_msg, result.error_msg
        # the first trial as usual; the second stopped early by the guard; no third started
        assert len(outcomes) == 2 and outcomes[0] in NORMAL, outcomes
        assert outcomes[1] == 'aborted' and 'disk' in result.trials[1].reason, \
            result.trials[1].reason
        checked = check_experiment(home / 'disk-full')
        assert checked['problems'] == {} and len(checked['records']) == 2, checked['problems']
    finally:
        filler.unlink(missing_ok=True)
    # Room again: the cell runs again, nobody resumed anything.
    after = cell.client.run_trials(count=1, policy_dir=str(SCRIPTED), seeds=[9],
                                   experiment_id='disk-full', max_episode_steps=60,
                                   timeout_s=240.0)
    assert after.stop_reason == 'completed' and after.trials[0].outcome in NORMAL
