"""Fleet scaling: the same total trial budget on 1, 2 and 4 lockstep sim cells.

For each fleet size N it starts ``launch/fleet_sim.launch.yaml cells:=N`` (embedded launcher,
a private ENPIRE_HOME), splits ``--trials`` seeds of the scripted Push-T policy round-robin
over the cells, runs them through each cell's ``run_trials`` at once (one thread and one
RolloutClient per cell), and prints, next to the 1-cell baseline measured in the same process:

* time to the goal (all ``--trials`` trials done) and the speed-up ratio vs 1 cell;
* MRU per cell and the fleet mean (trial started_at..ended_at from the store over the run's
  wall span, :func:`enpire_evolution.core.fleet.fleet_mru`);
* trials/hour per cell and in total.

Launch start-up is not counted (each fleet is ready before the clock starts).

    . scripts/env.sh && ROS_DOMAIN_ID=50 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
        python benchmarks/fleet_scaling.py [--cells 1,2,4] [--trials 8] [--max-steps 300]
        [--record] [--json]

On a shared 2-core machine the cells compete for the same cores: expect far from linear.
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


def run_fleet(n: int, trials: int, max_steps: int, record: bool, home: Path) -> dict[str, Any]:
    from enpire_evolution.core.fleet import fleet_mru
    from enpire_evolution.core.store import ExperimentStore
    from enpire_rollout.client import FleetSession

    cells = [f'cell_{i}' for i in range(n)]
    experiment = f'bench-fleet-{n}'
    seeds = {c: [s for s in range(trials) if s % n == i] for i, c in enumerate(cells)}
    session = FleetSession(home=home, cells=cells, probe_s=2.0, ready_timeout_s=300.0,
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
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.cells.split(',')]
    rows = []
    for n in sizes:
        home = Path(tempfile.mkdtemp(prefix=f'enpire-fleet-{n}-'))
        os.environ['ENPIRE_HOME'] = str(home)
        print(f'fleet of {n}: {args.trials} trials ...', file=sys.stderr)
        rows.append(run_fleet(n, args.trials, args.max_steps, args.record, home))
    base = next((r for r in rows if r['cells'] == 1), rows[0])
    for r in rows:
        r['speedup_vs_1_cell'] = base['time_s'] / r['time_s'] if r['time_s'] else 0.0
    if args.json:
        print(json.dumps({'trials': args.trials, 'max_steps': args.max_steps,
                          'record': args.record, 'rows': rows}, sort_keys=True))
        return 0
    print(f"{'cells':>5} {'trials':>6} {'time s':>8} {'speed-up':>8} {'MRU mean':>8} "
          f"{'trials/h':>9} {'trials/h/cell':>14}  MRU per cell")
    for r in rows:
        per_cell = r['trials_per_hour'] / r['cells']
        print(f"{r['cells']:5d} {r['trials_done']:6d} {r['time_s']:8.1f} "
              f"{r['speedup_vs_1_cell']:7.2f}x {r['mru_mean']:8.2f} {r['trials_per_hour']:9.0f} "
              f"{per_cell:14.0f}  "
              + ' '.join(f'{c} {v:.2f}' for c, v in r['mru'].items())
              + (f"  errors: {r['errors']}" if r['errors'] else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
