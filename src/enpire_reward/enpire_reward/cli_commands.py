"""``enpire verify ...`` commands."""

from __future__ import annotations

import argparse
import json
import math
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
    cc.add_argument('--renderer', choices=('area', 'gym-pusht'), default=None,
                    help="the sim cell's camera.renderer (default: the cell's default, area); "
                         "the view's camera model follows it (gym-pusht -> gym-pusht-pygame)")
    cc.add_argument('--json', action='store_true', help='print one JSON object')
    cc.set_defaults(func=_crosscheck)
    bk = sub.add_parser('backends', help='list verifier backends')
    bk.add_argument('--json', action='store_true')
    bk.set_defaults(func=_backends)


def _crosscheck(args: argparse.Namespace) -> int:
    from enpire_common.errors import ConfigError
    from enpire_common.tasks import load_task
    from enpire_reward.core import make_verifier
    from enpire_reward.core.camera_model import (
        CAMERA_MODEL_RENDERERS,
        camera_model_for_renderer,
        view_camera_model_name,
        with_camera_model,
    )
    from enpire_reward.core.crosscheck import cell_renderer, crosscheck

    if args.states < 1:
        raise ConfigError(f'--states={args.states} is invalid: must be >= 1')
    task = load_task(args.task)
    renderer = cell_renderer(args.renderer)
    # The verifier judges the images of this renderer with the matching camera model.
    for name in task.views:
        model = view_camera_model_name(task, name)
        if model in CAMERA_MODEL_RENDERERS and CAMERA_MODEL_RENDERERS[model] != renderer:
            task = with_camera_model(task, name, camera_model_for_renderer(renderer))
    verifier = make_verifier(args.backend, task)

    def progress(i: int, n: int) -> None:
        if not args.json and (i % 25 == 0 or i == n):
            print(f'  {i}/{n} states', file=sys.stderr)

    rep = crosscheck(verifier, task, args.states, seed=args.seed, progress=progress,
                     near_goal_noise=args.near_goal_noise, renderer=renderer)
    ok = rep.meets_targets()
    if args.json:
        # NaN (not computed) is not JSON: null.
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in rep.to_dict().items()}
        print(json.dumps({'ok': ok, **out}))
    else:
        print(f'{rep.states} states ({rep.positives} solved), backend {rep.backend}, '
              f'renderer {rep.renderer}')
        print(f'score MAE {rep.score_mae:.4f} (max {rep.score_max_error:.4f})')
        print(f'label agreement {rep.label_agreement:.2%}, FPR {rep.false_positive_rate:.2%} '
              f'({rep.false_positives}), FNR {rep.false_negative_rate:.2%} '
              f'({rep.false_negatives})')
        if math.isnan(rep.ideal_label_agreement):
            print('ideal image-only verifier: not computed (the area renderer has no '
                  'pixel-rounding ambiguity: its ideal is the ground truth)')
        else:
            print(f'ideal image-only verifier: label agreement '
                  f'{rep.ideal_label_agreement:.2%} ({rep.ideal_false_positives} FP, '
                  f'{rep.ideal_false_negatives} FN: poses that render the same pixels '
                  f'straddle the threshold)')
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
