"""Fleet scaling: the same total trial budget on 1, 2 and 4 lockstep sim cells.

For each fleet size N it starts ``launch/fleet_sim.launch.yaml cells:=N`` (embedded launcher,
a private ENPIRE_HOME), splits ``--trials`` seeds of the scripted Push-T policy round-robin
over the cells, runs them through each cell's ``run_trials`` at once (one thread and one
RolloutClient per cell), and prints, next to the 1-cell baseline measured in the same process:

* time to success: the wall time until the whole workload (all ``--trials`` trials) is done,
  the speed-up ratio of that vs 1 cell, and the time to the first verified success;
* MRU per cell and the fleet mean (trial started_at..ended_at from the store over the run's
  wall span, :func:`enpire_evolution.core.fleet.fleet_mru`; how: see MRU_HOW below);
* trials/hour per cell and in total, and the idle gaps between a cell's trials.

Launch start-up is not counted (each fleet is ready before the clock starts).

    . scripts/env.sh && ROS_DOMAIN_ID=50 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
        python benchmarks/fleet_scaling.py [--cells 1,2,4] [--trials 8] [--max-steps 300]
        [--record] [--json]

``--improve-min M`` instead runs ``enpire improve --cells N --budget-min M`` (the built-in
agents, pipelined) per fleet size and reports the same MRU figures plus candidates tried, the
policy faults (hard deadline misses end a trial as policy_fault) and the idle gaps by kind.
``--analyse HOME`` prints that analysis for an existing ENPIRE_HOME (e.g. a finished
``enpire improve --cells 4`` run) without running anything.

On a shared 2-core machine the cells compete for the same cores: expect far from linear.

Measured here (2 cores shared with other engineers, lockstep, no GPU):
* ``--cells 4 --improve-min 8`` (pipelined agents, recording on): fleet MRU 0.955 (cells
  0.949 / 0.963 / 0.964 / 0.945) over a 490 s span, 97 trials, 0 policy faults, 0 missed
  ``command`` ticks; per cell: lead 5.5-7.3 s, 0.2 s between trials of one revision,
  4.9-6.9 s at a revision switch (0.6-0.9 s of it the agent, the rest the rollout starting
  the new revision's policy host), tail 0.2-8.5 s.
* ``--cells 1,2,4 --trials 8`` (no recording): 62.6 / 43.6 / 35.2 s, speed-up 1.43x / 1.78x;
  MRU 0.94 / 0.88 / 0.82 (two trials per cell at 4 cells: the host start-up lead and the
  tail dominate such a short workload).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
MRU_HOW = ('MRU of a cell = (union of its trials\' started_at..ended_at intervals: reset + '
           'episode + verification + record, aborted trials included) / (the fleet run\'s '
           'common wall span); fleet MRU = mean over cells')


def gaps(trials: list[Any], span: tuple[float, float]) -> dict[str, Any]:
    """Idle time of one cell: before its first trial, between trials (split by whether the
    revision changed: a new candidate's policy host start, the agent's turn), after its last.
    """
    ts = sorted(trials, key=lambda t: t.started_at)
    if not ts:
        return {'lead_s': span[1] - span[0], 'same_revision_s': [], 'new_revision_s': [],
                'tail_s': 0.0}
    same, new = [], []
    for a, b in zip(ts, ts[1:], strict=False):
        (same if a.revision == b.revision else new).append(max(0.0, b.started_at - a.ended_at))
    return {'lead_s': max(0.0, ts[0].started_at - span[0]), 'same_revision_s': same,
            'new_revision_s': new, 'tail_s': max(0.0, span[1] - max(t.ended_at for t in ts))}


def _stat(xs: list[float]) -> str:
    if not xs:
        return '-'
    xs = sorted(xs)
    return (f'n={len(xs)} sum={sum(xs):.0f}s median={xs[len(xs) // 2]:.1f}s '
            f'max={xs[-1]:.1f}s')


def analyse(home: Path, experiment: str | None = None,
            span: tuple[float, float] | None = None) -> dict[str, Any]:
    """MRU per cell + mean, gaps, outcomes and policy faults of one experiment in ``home``
    (the span: the last fleet run's, else first trial start to last trial end)."""
    from enpire_evolution.core.fleet import FLEET_RUN, fleet_mru
    from enpire_evolution.core.store import ExperimentStore

    with ExperimentStore.open(home) as store:
        exps = [e.id for e in store.experiments()]
        exp = experiment or exps[-1]
        trials = store.trials_for(exp)
        runs = store.events(exp, FLEET_RUN)
        if span is None:
            span = (tuple(runs[-1].data['span']) if runs else
                    (min(t.started_at for t in trials), max(t.ended_at for t in trials)))
        trials = [t for t in trials if t.ended_at >= span[0] and t.started_at <= span[1]]
        cells = sorted({t.cell for t in trials})
        mru = fleet_mru(store, exp, cells, *span)
    by_cell = {c: [t for t in trials if t.cell == c] for c in cells}
    outcomes: dict[str, int] = {}
    for t in trials:
        outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1
    faults = [f'{t.cell} s{t.seed}: {t.reason[:120]}' for t in trials
              if t.outcome == 'policy_fault']
    # Lockstep: a cell steps once per command, so a missed control deadline shows as a
    # command the recorder expected (rate x duration) and did not see.
    missing = {'command': 0, 'policy/command': 0, 'records': 0}
    for t in trials:
        path = Path(t.record_dir) / 'trial.json' if t.record_dir else None
        if path is None or not path.is_file():
            continue
        streams = json.loads(path.read_text()).get('streams') or {}
        missing['records'] += 1
        for topic in ('command', 'policy/command'):
            missing[topic] += int((streams.get(topic) or {}).get('missing') or 0)
    return {'experiment': exp, 'span_s': span[1] - span[0], 'mru': mru['per_cell'],
            'mru_mean': mru['mean'], 'how': MRU_HOW, 'outcomes': outcomes,
            'policy_faults': faults, 'command_missing': missing,
            'revisions': len({t.revision for t in trials}),
            'gaps': {c: gaps(v, span) for c, v in by_cell.items()},
            'first_success_s': min((t.ended_at - span[0] for t in trials if t.success),
                                   default=None)}


def print_analysis(a: dict[str, Any]) -> None:
    print(f"experiment {a['experiment']}: span {a['span_s']:.0f} s, {a['revisions']} "
          f"revisions, outcomes {a['outcomes']}")
    print('MRU ' + '  '.join(f'{c} {v:.3f}' for c, v in a['mru'].items())
          + f"  fleet mean {a['mru_mean']:.3f}")
    print(f"  how: {a['how']}")
    print(f"policy faults (hard deadline misses, crashes): {len(a['policy_faults'])}"
          + ''.join(f'\n  {f}' for f in a['policy_faults'][:10]))
    m = a['command_missing']
    print(f"missed control ticks (expected - recorded commands) over {m['records']} trial "
          f"records: command {m['command']}, policy/command {m['policy/command']}")
    for c, g in a['gaps'].items():
        print(f"  {c} idle: lead {g['lead_s']:.1f}s | between trials, same revision "
              f"{_stat(g['same_revision_s'])} | new revision {_stat(g['new_revision_s'])} "
              f"| tail {g['tail_s']:.1f}s")


def run_improve(n: int, budget_min: float, home: Path) -> dict[str, Any]:
    """``enpire improve --cells n`` for ``budget_min`` in its own ENPIRE_HOME."""
    import subprocess

    env = {**os.environ, 'ENPIRE_HOME': str(home)}
    with open(home / 'improve.log', 'wb') as log:
        out = subprocess.run(
            [sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--cells', str(n),
             '--budget-min', str(budget_min), '--no-report', '--json', '--home', str(home)],
            stdout=subprocess.PIPE, stderr=log, env=env, check=False).stdout
    result = json.loads(out.decode().strip().splitlines()[-1])
    a = analyse(home, result['experiment'])
    hours = a['span_s'] / 3600.0
    n_trials = sum(a['outcomes'].values())
    return {'cells': n, 'trials_done': n_trials, 'time_s': a['span_s'],
            'successes': a['outcomes'].get('success', 0),
            'mru': a['mru'], 'mru_mean': a['mru_mean'],
            'trials_per_hour': n_trials / hours if hours else 0.0,
            'candidates': sum(x['candidates'] for x in result['agents']),
            'candidates_per_hour': (sum(x['candidates'] for x in result['agents']) / hours
                                    if hours else 0.0),
            'first_success_s': a['first_success_s'], 'policy_faults': a['policy_faults'],
            'analysis': a, 'errors': {x['cell']: x['error'] for x in result['agents']
                                      if x['error']}}


def run_fleet(n: int, trials: int, max_steps: int, record: bool, home: Path) -> dict[str, Any]:
    from enpire_evolution.core.fleet import fleet_mru
    from enpire_evolution.core.store import ExperimentStore
    from enpire_evolution.ros.trials_port import TrialsFleetSession

    cells = [f'cell_{i}' for i in range(n)]
    experiment = f'bench-fleet-{n}'
    seeds = {c: [s for s in range(trials) if s % n == i] for i, c in enumerate(cells)}
    session = TrialsFleetSession(home=home, cells=cells, probe_s=2.0, ready_timeout_s=300.0,
                                 log=lambda m: print(f'  {m}', file=sys.stderr))
    errors: dict[str, str] = {}
    try:
        def work(cell: str, client: Any) -> None:
            try:
                client.run_trials(count=len(seeds[cell]), seeds=seeds[cell],
                                  policy_dir=str(SCRIPTED), experiment_id=experiment,
                                  max_episode_steps=max_steps, record=record)
            except Exception as exc:  # noqa: BLE001 - reported per cell, the others go on
                errors[cell] = f'{type(exc).__name__}: {exc}'

        start = time.time()
        threads = [threading.Thread(target=work, args=(c, cl), daemon=True)
                   for c, cl in zip(cells, session.clients, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end = time.time()
    finally:
        session.close()
    with ExperimentStore.open(home) as store:
        mru = fleet_mru(store, experiment, cells, start, end)
        done = store.trials_for(experiment)
    hours = (end - start) / 3600.0
    return {'cells': n, 'trials_done': len(done), 'time_s': end - start,
            'successes': sum(t.success for t in done), 'mru': mru['per_cell'],
            'mru_mean': mru['mean'],
            'first_success_s': min((t.ended_at - start for t in done if t.success),
                                   default=None),
            'gaps': {c: gaps([t for t in done if t.cell == c], (start, end)) for c in cells},
            'trials_per_hour_per_cell': {c: k / hours for c, k in
                                         mru['trials_per_cell'].items()},
            'trials_per_hour': len(done) / hours, 'errors': errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cells', default='1,2,4', help='fleet sizes, comma separated (1..4)')
    p.add_argument('--trials', type=int, default=8, help='total trials per fleet size')
    p.add_argument('--max-steps', type=int, default=300, help='episode step limit')
    p.add_argument('--record', action='store_true', help='record bags/videos (default off)')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    p.add_argument('--improve-min', type=float, default=0.0,
                   help='run `enpire improve --cells N` for this many minutes per fleet size '
                        'instead of a fixed trial workload')
    p.add_argument('--analyse', default=None, metavar='HOME',
                   help='only print the MRU/gap analysis of an existing ENPIRE_HOME')
    p.add_argument('--experiment', default=None, help='experiment to analyse (with --analyse)')
    args = p.parse_args(argv)
    if args.analyse:
        a = analyse(Path(args.analyse), args.experiment)
        if args.json:
            print(json.dumps(a, sort_keys=True, default=str))
        else:
            print_analysis(a)
        return 0
    sizes = [int(x) for x in args.cells.split(',')]
    rows = []
    for n in sizes:
        home = Path(tempfile.mkdtemp(prefix=f'enpire-fleet-{n}-'))
        os.environ['ENPIRE_HOME'] = str(home)
        if args.improve_min:
            print(f'fleet of {n}: enpire improve for {args.improve_min} min ...',
                  file=sys.stderr)
            rows.append(run_improve(n, args.improve_min, home))
            continue
        print(f'fleet of {n}: {args.trials} trials ...', file=sys.stderr)
        rows.append(run_fleet(n, args.trials, args.max_steps, args.record, home))
    base = next((r for r in rows if r['cells'] == 1), rows[0])
    for r in rows:
        r['speedup_vs_1_cell'] = base['time_s'] / r['time_s'] if r['time_s'] else 0.0
    if args.json:
        print(json.dumps({'trials': args.trials, 'max_steps': args.max_steps,
                          'record': args.record, 'improve_min': args.improve_min,
                          'mru_how': MRU_HOW, 'rows': rows}, sort_keys=True, default=str))
        return 0
    if args.improve_min:
        print(f"{'cells':>5} {'trials':>6} {'span s':>7} {'MRU mean':>8} {'trials/h':>9} "
              f"{'cand/h':>7} {'1st success s':>13} {'faults':>6}  MRU per cell")
        for r in rows:
            first = r['first_success_s']
            print(f"{r['cells']:5d} {r['trials_done']:6d} {r['time_s']:7.0f} "
                  f"{r['mru_mean']:8.3f} {r['trials_per_hour']:9.0f} "
                  f"{r['candidates_per_hour']:7.1f} "
                  f"{'-' if first is None else f'{first:.0f}':>13} "
                  f"{len(r['policy_faults']):6d}  "
                  + ' '.join(f'{c} {v:.3f}' for c, v in r['mru'].items()))
        for r in rows:
            print_analysis(r['analysis'])
        print(f'MRU: {MRU_HOW}')
        return 0
    print(f"{'cells':>5} {'trials':>6} {'time s':>8} {'speed-up':>8} {'1st success s':>13} "
          f"{'MRU mean':>8} {'trials/h':>9} {'trials/h/cell':>14}  MRU per cell")
    for r in rows:
        per_cell = r['trials_per_hour'] / r['cells']
        first = r['first_success_s']
        print(f"{r['cells']:5d} {r['trials_done']:6d} {r['time_s']:8.1f} "
              f"{r['speedup_vs_1_cell']:7.2f}x {'-' if first is None else f'{first:.0f}':>13} "
              f"{r['mru_mean']:8.3f} {r['trials_per_hour']:9.0f} {per_cell:14.0f}  "
              + ' '.join(f'{c} {v:.3f}' for c, v in r['mru'].items())
              + (f"  errors: {r['errors']}" if r['errors'] else ''))
    for r in rows:
        for c, g in r['gaps'].items():
            print(f"  {r['cells']} cells, {c} idle: lead {g['lead_s']:.1f}s | between trials "
                  f"{_stat(g['same_revision_s'] + g['new_revision_s'])} | tail "
                  f"{g['tail_s']:.1f}s")
    print('time to success = wall time until all trials of the workload are done; speed-up = '
          '1-cell time / N-cell time (same process, same machine)')
    print(f'MRU: {MRU_HOW}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
