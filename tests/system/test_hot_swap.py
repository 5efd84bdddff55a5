"""Hot swap on a running real-time cell, several processes (the benchmark, scaled down).

Runs ``benchmarks/hot_swap.py`` (cell + safety supervisor + agent bridge as real processes,
real DDS) with a few swaps at the contract's 10 Hz and checks the outcome, not the timing:
every swap succeeded, every tick got one command on ``policy/command`` and on ``command``
(two at each switch tick: the old revision's, then the new one's replacing it before the
real-time cell steps), no command of the old revision passed after a switch, and each switch
took effect at the tick of its request or the next one.
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
        assert t['replaced'] == 11, t      # the cold switch and the ten measured ones
    assert set(result['ticks_after_request']) <= {'0', '1'}, result['ticks_after_request']
    assert result['bridge_skipped_ticks'] == 0
    assert result['fallbacks_to_hold'] == [], 'the active revision faulted during the swaps'
