"""The soak benchmark's CI run: ``benchmarks/soak.py --hours 0.1`` on one sim cell with a
fault about every 1.5 minutes. It must end with 0 interventions, no lost or unreadable trial
or video, and its per-hour report (trials, MRU, memory, fds, /dev/shm, disk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.faults]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_a_six_minute_soak_with_faults_needs_no_intervention(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'soak.py'), '--hours', '0.1', '--cells', '1',
         '--fault-every-min', '1.5', '--sample-s', '10', '--max-steps', '120',
         '--keep-per-revision', '2', '--home', str(tmp_path / 'home'), '--json'],
        env={**os.environ}, capture_output=True, text=True, timeout=840, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    summary = {k: out[k] for k in ('trials', 'interventions', 'faults', 'run_errors',
                                   'lost_trials', 'unreadable_trials', 'unreadable_videos')}
    assert proc.returncode == 0, (summary, proc.stderr[-4000:])
    assert out['interventions'] == 0 and not out['lost_trials'], summary
    assert not out['unreadable_trials'] and not out['unreadable_videos'], summary
    assert out['trials'] >= 5, summary
    (hour,) = out['per_hour']
    assert hour['trials'] == out['trials'] and 0.0 < hour['mru_mean'] <= 1.0, hour
    for key in ('rss_total_mb', 'max_fds', 'shm_files', 'disk_mb', 'growth'):
        assert key in hour, hour
    # Growth is of a process's own pages; RSS and its shared-memory pages are beside it.
    row = next(iter(hour['growth'].values()))
    assert {'own_mb', 'rss_mb', 'shmem_mb', 'growth_pct_per_hour'} <= set(row), row
    assert row['own_mb'][0] <= row['rss_mb'][0], row
    assert out['mb_per_trial'] > 0 and out['retention'], out['retention']
