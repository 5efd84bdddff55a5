"""Hot swap on a running real-time cell, several processes (the benchmark, scaled down).

Runs ``benchmarks/hot_swap.py`` (cell + safety supervisor + agent bridge as real processes,
real DDS) with a few swaps at the contract's 10 Hz and checks the outcome, not the timing:
every swap succeeded, every tick got exactly one command on ``policy/command`` and on
``command``, no command of the old revision passed after a switch tick, and each switch took
effect within two ticks of its request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.system


def test_ten_swaps_on_a_running_cell_lose_no_tick_and_pass_no_stale_command():
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'hot_swap.py'), '--swaps', '10',
         '--rate-hz', '10', '--gap-ticks', '2', '--json'],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result['swaps'], result['failed']) == (10, 0), result['failures']
    for topic in ('policy/command', 'command'):
        t = result['topics'][topic]
        assert t['ticks'] > 20, t
        assert (t['missed'], t['duplicated'], t['stale_after_switch']) == (0, 0, 0), (topic, t)
    assert set(result['ticks_after_request']) <= {'1', '2'}, result['ticks_after_request']
    assert result['bridge_skipped_ticks'] == 0
