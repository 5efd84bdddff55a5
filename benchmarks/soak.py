"""Soak: sim cells run trials unattended for hours while faults hit their nodes at random.

It starts ``C`` lockstep sim cells (the task's fleet launch, ``on_cell_exit:=respawn``: every
node of a cell comes back after it dies) in a private ENPIRE_HOME, and each cell runs the
task's scripted policy in goals of ``--batch`` trials until ``--hours`` have passed. A fault
thread waits an exponential time (mean ``--fault-every-min``), then SIGKILLs a random node of
a random cell, or SIGSTOPs it for 3 s (:mod:`enpire_bringup.faults`).

Nothing here helps a cell that cannot go on by itself: a cell that stays unreachable for
``--lost-after-s`` or pauses its resets counts as an **intervention** (a person would have
been called). The soak resumes a paused cell, as that person would, and goes on.

Reported per hour (JSON on stdout with ``--json``, a table on stderr; progress on stderr):
- trials completed, successes, MRU per cell and mean (busy trial time / wall time);
- interventions needed (the goal: 0), faults injected;
- memory growth per process (% per hour, per process life) of its own memory: RSS less
  the pages of shared-memory files it maps (``RssShmem``), which are Fast DDS's transport
  segments. A reader of camera frames touches more and more of its writer's fixed-size
  segment (64 MB, config/dds/fastdds_cameras.xml) as frames that a killed peer pinned
  push the writer to new buffers; those pages are counted in every reader's RSS, but they
  are one shared segment of bounded size, not a process's growth. RSS and the shared pages
  are reported beside it. Also: open file descriptors, Fast DDS shared-memory segments in
  /dev/shm and their bytes, disk use of the home;
- MB per trial and per hour;
- integrity of every trial: trial.json, file hashes, the bag read by two readers, every MP4
  decoded (:func:`enpire_bringup.faults.check_experiment` + OpenCV); lost or unreadable
  trials (the goal: 0).

``--keep-per-revision N`` runs the retention policy (``enpire gc --apply``) at each hour's
end, as a day-long deployment would, and reports what it freed.

    . scripts/env.sh && export ROS_DOMAIN_ID=70 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    python benchmarks/soak.py --hours 2 --cells 4 --keep-per-revision 3 --json > soak.json
    python benchmarks/soak.py --hours 0.1 --cells 1 --fault-every-min 1     # CI's run
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = 'soak'
#: A process's first seconds, left out of its settled growth (see Soak.resources).
WARMUP_S = 300.0


def log(msg: str) -> None:
    print(f'[soak {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


class Soak:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.cells = [f'cell_{i}' for i in range(args.cells)]
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []       # faults, errors, interventions
        self.samples: list[dict[str, Any]] = []
        self.retention: list[dict[str, Any]] = []
        self.next_seed = collections.Counter()
        self.start = self.end = 0.0

    # --- events -------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        row = {'t': time.time(), 'kind': kind, **fields}
        with self.lock:
            self.events.append(row)
        log(f'{kind}: ' + ', '.join(f'{k}={v}' for k, v in fields.items()))

    # --- the cells' work ----------------------------------------------------------------------
    def work(self, index: int, cell: str, client: Any, session: Any) -> None:
        from enpire_evolution.core.agent import default_seed_policy

        policy = str(default_seed_policy(self.args.task))
        seed = 1000 * index
        while not self.stop.is_set():
            left = self.end - time.time()
            if left < 5.0:
                return
            try:
                result = client.run_trials(
                    count=self.args.batch, policy_dir=policy, seed_start=seed,
                    experiment_id=EXPERIMENT, max_episode_steps=self.args.max_steps,
                    max_wall_time_s=left, timeout_s=left + 600.0)
                seed += len(result.trials)
                if result.stop_reason == 'cell_paused':
                    self.event('intervention', cell=cell, why='resets paused (cell_paused)')
                    self.resume(cell)
            except Exception as exc:  # noqa: BLE001 - a fault's effect; the cell must recover
                seed += self.args.batch
                self.event('run_error', cell=cell, error=f'{type(exc).__name__}: {exc}'[:200])
                if not self.wait_cell(client, cell):
                    return

    def wait_cell(self, client: Any, cell: str) -> bool:
        """Wait for the cell to answer again (a respawned rollout); an intervention when it
        does not within --lost-after-s."""
        deadline = time.monotonic() + self.args.lost_after_s
        while time.monotonic() < deadline and not self.stop.is_set():
            if client.client.wait_ready(2.0):
                return True
        if self.stop.is_set():
            return False
        self.event('intervention', cell=cell,
                   why=f'unreachable for {self.args.lost_after_s:.0f} s after a fault')
        return False

    def resume(self, cell: str) -> None:
        env = {**os.environ, 'ENPIRE_HOME': str(self.home)}
        subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'cell', 'resume',
                        '--cell', cell], env=env, capture_output=True, timeout=120)

    # --- faults -------------------------------------------------------------------------------
    def faults(self, launch_pid: int) -> None:
        from enpire_bringup.faults import FAULTS, NODES, inject

        sim = 'push_t_cell' if self.args.task == 'push_t' else 'arm_cell'
        nodes = [n for n in NODES if n in (sim, 'verifier', 'reset_server', 'safety_supervisor',
                                           'recorder', 'rollout', 'markers', 'policy_host')]
        if self.args.nodes:
            nodes = [n for n in self.args.nodes.split(',') if n]
        mean_s = self.args.fault_every_min * 60.0
        while mean_s > 0 and not self.stop.wait(self.rng.expovariate(1.0 / mean_s)):
            if self.end - time.time() < 60.0:
                return      # the last minute is left to recover in
            cell, node = self.rng.choice(self.cells), self.rng.choice(nodes)
            fault = self.rng.choice(FAULTS)
            try:
                pid = inject(launch_pid, node, fault, cell=cell)
            except LookupError as exc:
                self.event('fault_skipped', cell=cell, node=node, fault=fault, why=str(exc))
                continue
            self.event('fault', cell=cell, node=node, fault=fault, pid=pid)

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, launch_pid: int) -> None:
        import psutil

        from enpire_common.diagnostics import memory_status

        me = psutil.Process()
        procs = []
        try:
            procs = [me, *psutil.Process(launch_pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = [me]
        rows = []
        for p in procs:
            try:
                cmd = p.cmdline()
                name = next((Path(a).name for a in cmd[1:2] if a), p.name())
                ns = next((a.split(':=/', 1)[1] for a in cmd if a.startswith('__ns:=/')), '')
                # RSS and its shared-memory part from one read, in the same units.
                st = memory_status(p.pid)
                rows.append({'pid': p.pid, 'name': f'{ns}/{name}' if ns else name,
                             'rss_mb': st.get('VmRSS', p.memory_info().rss / 1e6),
                             'shmem_mb': st.get('RssShmem', 0.0), 'fds': p.num_fds()})
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        shm = [e for e in os.scandir('/dev/shm') if e.name.startswith('fastrtps_')]
        shm_bytes = 0
        for e in shm:
            with contextlib.suppress(OSError):
                shm_bytes += e.stat().st_blocks * 512
        with self.lock:
            self.samples.append({'t': time.time(), 'procs': rows, 'shm_files': len(shm),
                                 'shm_mb': shm_bytes / 1e6, 'disk_mb': du_mb(self.home)})

    def sampler(self, launch_pid: int) -> None:
        next_hour = self.start + 3600.0
        while True:
            self.sample(launch_pid)
            if self.args.keep_per_revision and time.time() >= next_hour:
                self.retain()
                next_hour += 3600.0
            if self.stop.wait(self.args.sample_s):
                self.sample(launch_pid)
                return

    def retain(self) -> None:
        env = {**os.environ, 'ENPIRE_HOME': str(self.home)}
        proc = subprocess.run(
            [sys.executable, '-m', 'enpire_bringup.cli', 'gc', '--apply', '--keep-per-revision',
             str(self.args.keep_per_revision), '--json'], env=env, capture_output=True,
            text=True, timeout=600)
        try:
            out = json.loads(proc.stdout)
        except json.JSONDecodeError:
            out = {'error': (proc.stderr or proc.stdout)[-500:]}
        out['t'] = time.time()
        with self.lock:
            self.retention.append(out)
        log(f'retention: {json.dumps(out)[:300]}')

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from enpire_evolution.ros.trials_port import TrialsFleetSession

        log(f'starting {len(self.cells)} {self.args.task} cell(s) in {self.home}')
        session = TrialsFleetSession(home=self.home, cells=self.cells, task=self.args.task,
                                     probe_s=2.0, ready_timeout_s=600.0,
                                     launch_args={'on_cell_exit': 'respawn'}, log=log)
        try:
            if session.stack is None:
                raise SystemExit('soak: cells of these names already run on this domain; '
                                 'use another ROS_DOMAIN_ID')
            launch_pid = session.stack.proc.pid
            self.start = time.time()
            self.end = self.start + self.args.hours * 3600.0
            threads = [threading.Thread(target=self.work, args=(i, c, cl, session), daemon=True,
                                        name=f'work-{c}')
                       for i, (c, cl) in enumerate(zip(self.cells, session.clients,
                                                       strict=True))]
            threads.append(threading.Thread(target=self.faults, args=(launch_pid,),
                                            daemon=True, name='faults'))
            sampler = threading.Thread(target=self.sampler, args=(launch_pid,), daemon=True)
            sampler.start()
            for t in threads:
                t.start()
            progress = threading.Thread(target=self.progress, daemon=True)
            progress.start()
            for t in threads[:-1]:
                t.join()
            self.stop.set()
            sampler.join()
            if self.args.keep_per_revision:
                self.retain()
        finally:
            self.stop.set()
            session.close()
        return self.analyse()

    def progress(self) -> None:
        while not self.stop.wait(60.0):
            done = count_trials(self.home)
            log(f'{(time.time() - self.start) / 60:.1f} of {self.args.hours * 60:.0f} min: '
                f'{done} trials, {sum(e["kind"] == "fault" for e in self.events)} faults, '
                f'{sum(e["kind"] == "intervention" for e in self.events)} interventions')

    # --- the report ---------------------------------------------------------------------------
    def analyse(self) -> dict[str, Any]:
        from enpire_bringup.faults import check_experiment
        from enpire_evolution.core import metrics
        from enpire_evolution.core.store import ExperimentStore

        with ExperimentStore.open(self.home) as store:
            trials = store.trials_for(EXPERIMENT)
        checked = check_experiment(self.home / EXPERIMENT)
        videos = check_videos(checked['records'])
        stored = {t.trial_id for t in trials}
        on_disk = {(r.get('ids') or {}).get('trial_id') for r in checked['records']}
        # The trials under way at the nominal end finish after it: the last hour runs on to
        # the last trial's end.
        end = max([self.end, *(t.ended_at for t in trials)])
        span = end - self.start
        n_hours = max(1, math.ceil((self.end - self.start) / 3600.0 - 1e-9))
        hours = []
        for h in range(n_hours):
            a = self.start + 3600.0 * h
            b = end if h == n_hours - 1 else self.start + 3600.0 * (h + 1)
            done = [t for t in trials if a <= t.ended_at <= b]
            intervals: dict[str, list[tuple[float, float]]] = {c: [] for c in self.cells}
            for t in trials:
                if t.ended_at > a and t.started_at < b:
                    intervals.setdefault(t.cell, []).append((max(a, t.started_at),
                                                             min(b, t.ended_at)))
            mru = metrics.mru_by_cell(intervals, a, b)
            ev = [e for e in self.events if a <= e['t'] < b]
            hours.append({
                'hour': h + 1, 'span_min': (b - a) / 60.0, 'trials': len(done),
                'successes': sum(t.success for t in done),
                'mru_mean': mru.mean, 'mru_per_cell': mru.per_cell,
                'faults': sum(e['kind'] == 'fault' for e in ev),
                'interventions': sum(e['kind'] == 'intervention' for e in ev),
                **self.resources(a, b)})
        disk_mb = self.samples[-1]['disk_mb'] if self.samples else du_mb(self.home)
        return {
            'hours': self.args.hours, 'cells': len(self.cells), 'task': self.args.task,
            'home': str(self.home), 'trials': len(trials),
            'successes': sum(t.success for t in trials),
            'interventions': sum(e['kind'] == 'intervention' for e in self.events),
            'faults': collections.Counter(f"{e['fault']}-{e['node']}" for e in self.events
                                          if e['kind'] == 'fault'),
            'run_errors': sum(e['kind'] == 'run_error' for e in self.events),
            'lost_trials': sorted(stored - on_disk),
            'unreadable_trials': checked['problems'],
            'unreadable_videos': videos['unreadable'], 'videos_checked': videos['checked'],
            'disk_mb': disk_mb, 'mb_per_trial': disk_mb / len(trials) if trials else None,
            'mb_per_hour': disk_mb / (span / 3600.0) if span else None,
            'fault_outcomes': fault_outcomes(self.events, trials),
            'per_hour': hours, 'retention': self.retention, 'events': self.events,
            'samples': self.samples}

    def resources(self, a: float, b: float) -> dict[str, Any]:
        """Memory growth per process life within [a, b), fds, shm and disk at its end."""
        rows = [s for s in self.samples if a <= s['t'] <= b + 1.0]
        if not rows:
            return {}
        # (t, own MB, RSS MB, shared-memory MB) per process life; own = RSS - shared.
        lives: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
        for s in rows:
            for p in s['procs']:
                shmem = p.get('shmem_mb', 0.0)
                lives.setdefault((p['name'], p['pid']), []).append(
                    (s['t'], p['rss_mb'] - shmem, p['rss_mb'], shmem))
        growth = {}
        for (name, pid), pts in lives.items():
            if len(pts) < 2 or pts[-1][0] - pts[0][0] < 60.0:
                continue
            (t0, r0, rss0, sh0), (t1, r1, rss1, sh1) = pts[0], pts[-1]
            growth[f'{name}[{pid}]'] = row = {
                'own_mb': [round(r0, 1), round(r1, 1)],
                'rss_mb': [round(rss0, 1), round(rss1, 1)],
                'shmem_mb': [round(sh0, 1), round(sh1, 1)],
                'growth_pct_per_hour': round(100.0 * (r1 - r0) / max(r0, 1e-6)
                                             / ((t1 - t0) / 3600.0), 2),
                'rss_growth_pct_per_hour': round(100.0 * (rss1 - rss0) / max(rss0, 1e-6)
                                                 / ((t1 - t0) / 3600.0), 2)}
            # A process's first minutes are warm-up (imports, first trial's buffers, the
            # allocator's pools): its growth after WARMUP_S says whether it leaks, in a run
            # shorter than the hours the per-hour rows need.
            settled = [pt for pt in pts if pt[0] - pts[0][0] >= WARMUP_S]
            if len(settled) >= 2 and settled[-1][0] - settled[0][0] >= 60.0:
                (u0, q0, _, _), (u1, q1, _, _) = settled[0], settled[-1]
                row['settled_pct_per_hour'] = round(100.0 * (q1 - q0) / max(q0, 1e-6)
                                                    / ((u1 - u0) / 3600.0), 2)
        worst = max(growth.items(), key=lambda kv: kv[1]['growth_pct_per_hour'],
                    default=(None, None))
        last = rows[-1]
        return {'rss_total_mb': round(sum(p['rss_mb'] for p in last['procs']), 1),
                'max_fds': max((p['fds'] for p in last['procs']), default=0),
                'fds_total': sum(p['fds'] for p in last['procs']),
                'shm_files': last['shm_files'], 'shm_mb': round(last['shm_mb'], 1),
                'disk_mb': round(last['disk_mb'], 1),
                'worst_growth': {worst[0]: worst[1]} if worst[0] else {},
                'growth': growth}


NORMAL = ('success', 'failure')


def fault_outcomes(events: list[dict[str, Any]], trials: list[Any]) -> dict[str, Any]:
    """The faults x outcome table: for each injected fault, the trial of its cell it hit (the
    one under way at that moment, else the next one to start) and the trial after that.

    A fault may cost the trial it hits (``aborted``, with a reason); the next one must be a
    normal trial (success or failure): that is the recovery the soak asserts.
    """
    by_cell: dict[str, list[Any]] = collections.defaultdict(list)
    for t in trials:
        by_cell[t.cell].append(t)
    for ts in by_cell.values():
        ts.sort(key=lambda t: t.started_at)
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if e['kind'] != 'fault':
            continue
        ts = by_cell.get(e['cell'], [])
        hit = next((t for t in ts if t.started_at <= e['t'] <= t.ended_at), None)
        between = hit is None
        if between:     # between two trials: the next one meets the fault
            hit = next((t for t in ts if t.started_at > e['t']), None)
        after = next((t for t in ts if hit is not None and t.started_at > hit.started_at),
                     None)
        row = rows.setdefault(f"{e['fault']}-{e['node']}", {
            'faults': 0, 'hit': collections.Counter(), 'between_trials': 0,
            'next_normal': 0, 'next_other': collections.Counter(), 'reasons': []})
        row['faults'] += 1
        row['between_trials'] += between
        if hit is not None:
            row['hit'][hit.outcome] += 1
            if hit.outcome not in NORMAL and hit.reason and len(row['reasons']) < 3:
                row['reasons'].append(hit.reason[:160])
        if after is not None and after.outcome in NORMAL:
            row['next_normal'] += 1
        else:
            row['next_other'][after.outcome if after is not None else 'none'] += 1
    return {k: {**v, 'hit': dict(v['hit']), 'next_other': dict(v['next_other'])}
            for k, v in sorted(rows.items())}


def du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total / 1e6


def count_trials(home: Path) -> int:
    return sum(1 for _ in (home / EXPERIMENT / 'trials').glob('*/trial.json'))


def check_videos(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Decode every MP4 a trial record lists (a gc-thinned video is no longer listed)."""
    import cv2

    checked, bad = 0, {}
    for rec in records:
        trial_dir = Path(rec['dir'])
        for name in rec.get('files') or {}:
            if not name.endswith('.mp4'):
                continue
            checked += 1
            cap = cv2.VideoCapture(str(trial_dir / name))
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
            if not ok:
                bad[f'{trial_dir.name}/{name}'] = 'does not decode'
    return {'checked': checked, 'unreadable': bad}


def table(out: dict[str, Any]) -> str:
    lines = [f"soak: {out['cells']} {out['task']} cell(s), {out['hours']} h: {out['trials']} "
             f"trials ({out['successes']} successes), {sum(out['faults'].values())} faults, "
             f"{out['interventions']} interventions, {len(out['lost_trials'])} lost, "
             f"{len(out['unreadable_trials'])} unreadable trials, "
             f"{len(out['unreadable_videos'])} of {out['videos_checked']} videos unreadable",
             f"disk {out['disk_mb']:.0f} MB; {out['mb_per_trial'] or 0:.2f} MB/trial; "
             f"{out['mb_per_hour'] or 0:.0f} MB/hour",
             'hour  min  trials  MRU    faults  interv  RSS MB  maxfds  shm(n/MB)  disk MB  '
             'worst own-memory growth %/h (after warm-up %/h)']
    for h in out['per_hour']:
        worst = next(iter(h.get('worst_growth', {}).items()), (None, {}))
        settled = max(((v['settled_pct_per_hour'], k) for k, v in h.get('growth', {}).items()
                       if 'settled_pct_per_hour' in v), default=None)
        lines.append(
            f"{h['hour']:>4} {h['span_min']:>4.0f} {h['trials']:>7} {h['mru_mean']:.3f} "
            f"{h['faults']:>7} {h['interventions']:>7} {h.get('rss_total_mb', 0):>7.0f} "
            f"{h.get('max_fds', 0):>7} {h.get('shm_files', 0):>4}/{h.get('shm_mb', 0):<5.0f} "
            f"{h.get('disk_mb', 0):>8.0f}  {worst[1].get('growth_pct_per_hour', '-')} "
            f"{worst[0] or ''}"
            + (f" ({settled[0]} {settled[1]})" if settled else ''))
    fo = out.get('fault_outcomes') or {}
    if fo:
        lines.append('fault                    n  between  hit trial outcomes            '
                     'next trial normal')
        for name, r in fo.items():
            hit = ', '.join(f'{k} {v}' for k, v in sorted(r['hit'].items())) or '-'
            lines.append(f"{name:<22} {r['faults']:>3} {r['between_trials']:>8}  {hit:<30} "
                         f"{r['next_normal']}/{r['faults']}"
                         + (f" (else {r['next_other']})" if r['next_other'] else ''))
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--hours', type=float, required=True)
    ap.add_argument('--cells', type=int, default=4)
    ap.add_argument('--task', default='push_t')
    ap.add_argument('--fault-every-min', type=float, default=10.0,
                    help='mean minutes between injected faults (0: none)')
    ap.add_argument('--nodes', default='', help='comma-separated nodes to fault (default: all)')
    ap.add_argument('--batch', type=int, default=10, help='trials per run_trials goal')
    ap.add_argument('--max-steps', type=int, default=300)
    ap.add_argument('--sample-s', type=float, default=30.0)
    ap.add_argument('--lost-after-s', type=float, default=180.0)
    ap.add_argument('--keep-per-revision', type=int, default=0,
                    help='run enpire gc --apply with this many videos per revision each hour')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--home', default='', help='ENPIRE_HOME (default: a new temp dir)')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args(argv)
    if args.hours <= 0 or args.cells < 1:
        ap.error('--hours must be > 0 and --cells >= 1')
    home = Path(args.home or tempfile.mkdtemp(prefix='enpire-soak-'))
    home.mkdir(parents=True, exist_ok=True)
    os.environ['ENPIRE_HOME'] = str(home)
    out = Soak(args, home).run()
    print(table(out), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    ok = out['interventions'] == 0 and not out['lost_trials'] and \
        not out['unreadable_trials'] and not out['unreadable_videos']
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
