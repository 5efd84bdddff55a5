"""Where is a running node, and where did its memory go? Signal-driven reports, no restart.

Every node that :func:`enpire_common.ros.run_node` starts installs these (a cell runs for
days; an operator asks a live process, not a fresh one):

- ``kill -USR1 <pid>``: every thread's Python stack (:mod:`faulthandler`);
- ``kill -USR2 <pid>``: a memory report: resident memory split into the process's own pages
  and the shared-memory pages it maps (Fast DDS's transport segments, bounded by their size:
  config/dds/), the live Python objects by type, and, when :mod:`tracemalloc` traces
  (``PYTHONTRACEMALLOC=<frames>`` in the node's environment), the allocation sites that grew
  most since the last report (all sites by size at the first).

Both write to stderr, which the launch keeps in the node's log. A report on a busy node
takes about 0.1 s of its main thread (the object walk).
"""

from __future__ import annotations

import collections
import faulthandler
import gc
import os
import signal
import sys
import time
from typing import Any, TextIO

#: Rows of each table in a memory report.
TOP = 25

_last_snapshot: Any = None


def memory_status(pid: int | str = 'self') -> dict[str, float]:
    """``VmRSS`` and its parts (``RssAnon``, ``RssFile``, ``RssShmem``) of /proc/<pid>/status,
    in MB of 10^6 bytes (as psutil's ``rss / 1e6``: the kernel's kB are KiB); empty where
    unreadable (not Linux, a process gone)."""
    out: dict[str, float] = {}
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key in ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem'):
                    out[key] = int(rest.split()[0]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        return {}
    return out


def memory_report(out: TextIO | None = None) -> str:
    """Write the memory report (see the module docstring) to ``out`` (default stderr) and
    return it."""
    global _last_snapshot
    import tracemalloc

    t0 = time.monotonic()
    lines = [f'--- memory report of pid {os.getpid()} ({sys.argv[0]}) ---']
    st = memory_status()
    if st:
        own = st.get('VmRSS', 0.0) - st.get('RssShmem', 0.0)
        lines.append(f"rss {st.get('VmRSS', 0.0):.1f} MB = own {own:.1f} MB (anon "
                     f"{st.get('RssAnon', 0.0):.1f}, file {st.get('RssFile', 0.0):.1f}) + "
                     f"shared memory {st.get('RssShmem', 0.0):.1f} MB")
    objects = gc.get_objects()
    by_type = collections.Counter(type(o).__name__ for o in objects)
    lines.append(f'python objects tracked by gc: {len(objects)}; uncollectable: '
                 f'{len(gc.garbage)}; by type:')
    del objects
    lines += [f'  {n:>9}  {name}' for name, n in by_type.most_common(TOP)]
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        if _last_snapshot is None:
            lines.append(f'tracemalloc: the {TOP} largest allocation sites '
                         f'(the next report shows growth since this one):')
            lines += [f'  {s}' for s in snap.statistics('lineno')[:TOP]]
        else:
            lines.append(f'tracemalloc: the {TOP} sites that grew most since the last report:')
            lines += [f'  {s}' for s in snap.compare_to(_last_snapshot, 'lineno')[:TOP]]
        _last_snapshot = snap
    else:
        lines.append('tracemalloc: off (start the node with PYTHONTRACEMALLOC=10 to see '
                     'allocation sites)')
    lines.append(f'--- end of memory report ({time.monotonic() - t0:.2f} s) ---')
    text = '\n'.join(lines) + '\n'
    stream = out if out is not None else sys.stderr
    stream.write(text)
    stream.flush()
    return text


def install(stack_signal: int = signal.SIGUSR1, memory_signal: int = signal.SIGUSR2) -> bool:
    """Install both reports; False (nothing installed) off the main thread or where the
    signals do not exist. A handler the process set before is kept."""
    if not hasattr(signal, 'SIGUSR2'):
        return False
    try:
        if signal.getsignal(memory_signal) in (signal.SIG_DFL, None):
            signal.signal(memory_signal, lambda _sig, _frame: memory_report())
        if signal.getsignal(stack_signal) in (signal.SIG_DFL, None):
            faulthandler.register(stack_signal, all_threads=True)
    except ValueError:      # not the main thread
        return False
    return True
