"""``enpire verify ...`` commands."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser('verify', help='camera verifier tools')
    sub = verify.add_subparsers(dest='verb', metavar='<verb>')
    cc = sub.add_parser('crosscheck',
                        help='compare vision scores with simulator ground truth')
    cc.add_argument('--task', default='push_t')
    cc.add_argument('--backend', default='opencv-v1')
    cc.add_argument('--states', type=int, default=500)
    cc.add_argument('--seed', type=int, default=0)
    cc.add_argument('--near-goal-noise', choices=('wide', 'tight'), default='wide',
                    help="near-goal spread: 'wide' (3 px / 0.04 rad, default) or 'tight' "
                         '(1.5 px / 0.02 rad, piled at the 0.95 threshold)')
    cc.add_argument('--json', action='store_true', help='print one JSON object')
    cc.set_defaults(func=_crosscheck)
    bk = sub.add_parser('backends', help='list verifier backends')
    bk.add_argument('--json', action='store_true')
    bk.set_defaults(func=_backends)


def _crosscheck(args: argparse.Namespace) -> int:
    from enpire_common.errors import ConfigError
    from enpire_common.tasks import load_task
    from enpire_reward.core import make_verifier
    from enpire_reward.core.crosscheck import crosscheck

    if args.states < 1:
        raise ConfigError(f'--states={args.states} is invalid: must be >= 1')
    task = load_task(args.task)
    verifier = make_verifier(args.backend, task)

    def progress(i: int, n: int) -> None:
        if not args.json and (i % 25 == 0 or i == n):
            print(f'  {i}/{n} states', file=sys.stderr)

    rep = crosscheck(verifier, task, args.states, seed=args.seed, progress=progress,
                     near_goal_noise=args.near_goal_noise)
    ok = rep.meets_targets()
    if args.json:
        print(json.dumps({'ok': ok, **rep.to_dict()}))
    else:
        print(f'{rep.states} states ({rep.positives} solved), backend {rep.backend}')
        print(f'score MAE {rep.score_mae:.4f} (max {rep.score_max_error:.4f})')
        print(f'label agreement {rep.label_agreement:.2%}, FPR {rep.false_positive_rate:.2%} '
              f'({rep.false_positives}), FNR {rep.false_negative_rate:.2%} '
              f'({rep.false_negatives})')
        print(f'ideal image-only verifier: label agreement {rep.ideal_label_agreement:.2%} '
              f'({rep.ideal_false_positives} FP, {rep.ideal_false_negatives} FN: poses that '
              f'render the same pixels straddle the threshold)')
        print(f'latency p50 {rep.latency_p50_s * 1e3:.2f} ms, p95 '
              f'{rep.latency_p95_s * 1e3:.2f} ms, p99 {rep.latency_p99_s * 1e3:.2f} ms')
        print('targets met' if ok else 'targets NOT met (agreement >= 99%, FPR <= 0.5%, '
              'MAE <= 0.02)')
    return 0 if ok else 1


def _backends(args: argparse.Namespace) -> int:
    from enpire_reward.core import available_backends

    rows = [{'id': b.id, 'implemented': b.factory is not None, 'description': b.description}
            for b in available_backends().values()]
    if args.json:
        print(json.dumps({'ok': True, 'backends': rows}))
    else:
        for r in rows:
            print(f"{r['id']:<12} {'ready' if r['implemented'] else 'planned':<8} "
                  f"{r['description']}")
    return 0
