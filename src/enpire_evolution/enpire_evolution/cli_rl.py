"""``enpire train residual``: online residual RL over a base revision on the cell
(:mod:`enpire_evolution.core.residual_rl`); it lives here because it runs trials and records
them in the experiment store, which the lower ``train`` verbs cannot reach."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError


def register_rl(sub: argparse._SubParsersAction) -> None:
    from enpire_common.tasks import DEFAULT_TASK
    from enpire_evolution.core.residual_rl import ResidualConfig
    from enpire_rollout.cli_commands import verbs_of

    d = ResidualConfig()
    p = verbs_of(sub, 'train').add_parser(
        'residual', help='online residual RL (evolution strategies) over a base revision: '
                         'rounds of trials on the cell, each round a new revision')
    p.add_argument('--task', default=DEFAULT_TASK)
    p.add_argument('--base', required=True, help='the base policy directory (a revision)')
    p.add_argument('--experiment', default='', help='default residual-<task>-<time>')
    p.add_argument('--rounds', type=int, default=d.rounds)
    p.add_argument('--episodes', type=int, default=d.episodes,
                   help='trials per round (even: antithetic pairs)')
    p.add_argument('--sigma', type=float, default=d.sigma)
    p.add_argument('--lr', type=float, default=d.lr)
    p.add_argument('--scale', type=float, default=d.scale,
                   help='residual bound as a fraction of the action range')
    p.add_argument('--seed-start', type=int, default=None,
                   help="first tuning seed (default the task's first)")
    p.add_argument('--url', default='', help='experiment store URL (default under --home)')
    p.set_defaults(func=_residual, text=_residual_text)


def _residual(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from enpire_agent_bridge.core.revisions import RevisionStore
    from enpire_common.paths import enpire_home, revisions_root
    from enpire_common.tasks import load_task
    from enpire_evolution.cli_commands import store_url
    from enpire_evolution.cli_improve import _ros_ports, close_ports
    from enpire_evolution.core.residual_rl import ResidualConfig, ResidualRL
    from enpire_evolution.core.store import ExperimentStore

    base = Path(args.base)
    if not (base / 'policy.py').is_file():
        raise ConfigError(f'--base {base}: no policy.py there')
    cfg = ResidualConfig(rounds=args.rounds, episodes=args.episodes, sigma=args.sigma,
                         lr=args.lr, scale=args.scale)
    home = enpire_home(args.home)
    exp = args.experiment or f"residual-{args.task}-{time.strftime('%Y%m%dT%H%M%S')}"

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    store = ExperimentStore(store_url(args.url, args.home))
    session, ports = None, []
    try:
        session, ports = _ros_ports(args.task, home, 1, log, store)
        rl = ResidualRL(load_task(args.task), base, cfg, store=store,
                        revisions=RevisionStore(revisions_root(home)), trials=ports[0],
                        experiment=exp, home=home, seed_start=args.seed_start, log=log)
        rounds = rl.run()
    finally:
        close_ports(ports, session, store)
    return {'ok': True, 'experiment': exp, 'config': asdict(cfg),
            'rounds': [asdict(r) for r in rounds]}


def _residual_text(res: dict[str, Any], _args: argparse.Namespace) -> str:
    lines = [f"experiment {res['experiment']}: {len(res['rounds'])} rounds"]
    lines += [f"  round {r['round']}: {r['successes']}/{r['n']} successes, mean return "
              f"{r['mean_return']:.3f}" for r in res['rounds']]
    lines.append(f"learning curve: enpire report {res['experiment']}")
    return '\n'.join(lines)
