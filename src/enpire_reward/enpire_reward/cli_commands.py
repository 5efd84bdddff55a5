"""``enpire verify ...`` commands (verbs return their result; see enpire_bringup.cli)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from enpire_common.tasks import DEFAULT_TASK


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser('verify', help='camera verifier tools')
    sub = verify.add_subparsers(dest='verb', metavar='<verb>')
    cc = sub.add_parser('crosscheck',
                        help='compare vision scores with simulator ground truth')
    cc.add_argument('--task', default=DEFAULT_TASK)
    cc.add_argument('--backend', default='',
                    help="verifier backend, or a comma list judged side by side on the same "
                         "images (default: the task's)")
    cc.add_argument('--states', type=int, default=500)
    cc.add_argument('--seed', type=int, default=0)
    cc.add_argument('--near-goal-noise', choices=('wide', 'tight'), default='wide',
                    help="near-goal spread: 'wide' (3 px / 0.04 rad, default) or 'tight' "
                         '(1.5 px / 0.02 rad, piled at the 0.95 threshold)')
    cc.add_argument('--renderer', default=None,
                    help="the sim cell's camera.renderer (default: the cell's default, area); "
                         "the view's camera model follows it (gym-pusht -> gym-pusht-pygame)")
    cc.add_argument('--camera', choices=('sim', 'real'), default='sim',
                    help="'sim' (default): the views' own camera models (a forward model of "
                         "the sim's renderer, exact on its renders); 'real': no forward model, "
                         'as on a real camera, and every perturbation kind (--perturb)')
    cc.add_argument('--perturb', default=None, metavar='KINDS',
                    help='camera perturbations applied to the images first: a comma list of '
                         "clean, noise, blur, exposure, jpeg, all; or 'all-kinds' (default: "
                         "'clean' with --camera sim, 'all-kinds' with --camera real)")
    cc.set_defaults(func=_crosscheck, text=_crosscheck_text)
    ds = sub.add_parser('dataset', help="render an auto-labelled, randomised training set "
                        "from the task's sim cell (Ultralytics format)")
    ds.add_argument('--task', default=DEFAULT_TASK)
    ds.add_argument('--images', type=int, default=1000,
                    help='images to write (over every view the verifier reads)')
    ds.add_argument('--out', default='',
                    help='dataset directory (default: $ENPIRE_HOME/datasets/<task>-s<seed>-'
                         'n<images>)')
    ds.add_argument('--seed', type=int, default=0)
    ds.add_argument('--no-randomise', action='store_true',
                    help='the renders as they are (no pose, lighting, distractor or camera '
                         'randomisation)')
    ds.set_defaults(func=_dataset, text=_dataset_text)
    tr = sub.add_parser('train', help="train a learned verifier backend on the task's "
                        'labelled renders; the weights become a versioned artifact in the '
                        'task lock')
    tr.add_argument('--task', default=DEFAULT_TASK)
    tr.add_argument('--backend', default='yolo', choices=('yolo',))
    tr.add_argument('--epochs', type=int, default=30,
                    help='default 30: ~31-34 s per epoch on 600 images on 2 cores (~16 min); '
                         'the narrow net needs them for the arm tasks\' small parts (GPU '
                         'insertion: after 12 epochs no seated card was read; after 30, 100%% on '
                         'clean images)')
    tr.add_argument('--model', default='',
                    help="the architecture's Ultralytics yaml (default: ENPIRE's narrow "
                         'YOLOv8-seg, enpire_reward/models/enpire-seg.yaml; yolov8n-seg.yaml '
                         'is twice as wide and slow)')
    tr.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    tr.add_argument('--imgsz', type=int, default=320)
    tr.add_argument('--batch', type=int, default=16)
    tr.add_argument('--dataset', default='',
                    help='an enpire verify dataset directory (default: render one of '
                         '--images images with --seed)')
    tr.add_argument('--images', type=int, default=600)
    tr.add_argument('--seed', type=int, default=0)
    tr.set_defaults(func=_train, text=_train_text)
    rg = sub.add_parser('register', help='record a user-supplied SAM2 checkpoint for a task '
                        '(it must load into the named architecture), or an existing yolo '
                        'artifact under the current task contract')
    rg.add_argument('--task', default=DEFAULT_TASK)
    rg.add_argument('--backend', default='sam2', choices=('sam2', 'yolo'))
    rg.add_argument('--checkpoint', default='', help='sam2: a SAM2 .pt file ({"model": ...})')
    rg.add_argument('--artifact', default='',
                    help='yolo: an artifact directory of enpire verify train (after a '
                         'contract change dropped it from the lock; calibrate it again)')
    rg.add_argument('--sam2-config', default='sam2.1_hiera_t',
                    help='its architecture: sam2.1_hiera_t (default), _s, _b+, _l')
    rg.set_defaults(func=_register)
    cal = sub.add_parser('calibrate', help='score a backend on held-out labelled images with '
                         'camera effects; record it in the task lock (the gate trials need)')
    cal.add_argument('--task', default=DEFAULT_TASK)
    cal.add_argument('--backend', required=True)
    cal.add_argument('--states', type=int, default=300)
    cal.add_argument('--seed', type=int, default=None,
                     help='first held-out state (default 7919: far from the datasets and the '
                          "crosschecks' 0)")
    cal.add_argument('--labels', default='', metavar='DIR',
                     help='also score a human-labelled set (`enpire verify label`) as the kind '
                          "'human', under the same gate")
    cal.set_defaults(func=_calibrate, text=_calibrate_text,
                     exit_code=lambda out: 0 if out['passed'] else 2)
    bk = sub.add_parser('backends', help='list verifier backends')
    bk.set_defaults(func=_backends, text=_backends_text)


def _crosscheck(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.errors import ConfigError
    from enpire_common.tasks import load_task
    from enpire_reward.core import make_verifier
    from enpire_reward.core.crosscheck import cell_renderer, crosscheck_matrix
    from enpire_tasks.camera_models import (
        camera_model_for_renderer,
        camera_model_renderers,
        view_camera_model_name,
        with_camera_model,
        without_camera_models,
    )
    from enpire_tasks.sensor import perturbation_kinds

    if args.states < 1:
        raise ConfigError(f'--states={args.states} is invalid: must be >= 1')
    task = load_task(args.task)
    renderer = cell_renderer(args.renderer, task)
    model_renderers = camera_model_renderers(task)
    if args.camera == 'real':
        # a real camera has no forward model: the backends judge the images alone
        task = without_camera_models(task)
    for name in task.views:
        # The verifier judges the images of this renderer with the matching camera model (the
        # task's own models: another task's renderers never enter).
        model = view_camera_model_name(task, name)
        if model in model_renderers and model_renderers[model] != renderer:
            task = with_camera_model(task, name, camera_model_for_renderer(renderer, task))
    kinds = perturbation_kinds(args.perturb if args.perturb is not None else
                               ('all-kinds' if args.camera == 'real' else 'clean'))
    backends = [b.strip() for b in args.backend.split(',')] if args.backend else ['']
    verifiers = [make_verifier(b, task) for b in backends]

    def progress(i: int, n: int) -> None:
        if not args.json and (i % 25 == 0 or i == n):
            print(f'  {i}/{n} states', file=sys.stderr)

    matrix = crosscheck_matrix(verifiers, task, args.states, seed=args.seed,
                               perturbations=kinds, progress=progress,
                               near_goal_noise=args.near_goal_noise, renderer=renderer)
    reports = [rep for per_kind in matrix.values() for rep in per_kind.values()]

    def plain(rep: Any) -> dict[str, Any]:   # NaN (not computed) is not JSON: null
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in rep.to_dict().items()}

    out: dict[str, Any] = {'ok': all(r.meets_targets() for r in reports),
                           'camera': args.camera, 'task': task.name}
    if len(reports) == 1:       # one backend, one kind: its report's fields at the top
        out.update(plain(reports[0]))
    else:
        out['reports'] = [{'ok': r.meets_targets(), **plain(r)} for r in reports]
    return out


def _crosscheck_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    if 'reports' in out:
        return _crosscheck_table(out)
    from types import SimpleNamespace

    # The report's fields; null (not computed) is nan again.
    rep = SimpleNamespace(**{k: float('nan') if v is None else v for k, v in out.items()})
    lines = [f'{rep.states} states ({rep.positives} solved), backend {rep.backend}, '
             f'renderer {rep.renderer or "-"}, camera {rep.camera}'
             + ('' if rep.perturbation == 'clean' else f', perturbation {rep.perturbation}'),
             f'score MAE {rep.score_mae:.4f} (max {rep.score_max_error:.4f})',
             f'label agreement {rep.label_agreement:.2%}, FPR {rep.false_positive_rate:.2%} '
             f'({rep.false_positives}), FNR {rep.false_negative_rate:.2%} '
             f'({rep.false_negatives})']
    if math.isnan(rep.ideal_label_agreement):
        lines.append('ideal image-only verifier: not computed (the area renderer has no '
                     'pixel-rounding ambiguity: its ideal is the ground truth)')
    else:
        lines.append(f'ideal image-only verifier: label agreement '
                     f'{rep.ideal_label_agreement:.2%} ({rep.ideal_false_positives} FP, '
                     f'{rep.ideal_false_negatives} FN: poses that render the same pixels '
                     f'straddle the threshold)')
    lines.append(f'latency p50 {rep.latency_p50_s * 1e3:.2f} ms, p95 '
                 f'{rep.latency_p95_s * 1e3:.2f} ms, p99 {rep.latency_p99_s * 1e3:.2f} ms')
    lines.append('targets met' if out['ok'] else 'targets NOT met (agreement >= 99%, '
                 'FPR <= 0.5%, MAE <= 0.02)')
    return '\n'.join(lines)


def _crosscheck_table(out: dict[str, Any]) -> str:
    """Backends x perturbations, one row each: the side-by-side report."""
    reps = out['reports']
    first = reps[0]
    lines = [f"{out['task']}: {first['states']} states ({first['positives']} solved), "
             f"camera {out['camera']}, renderer {first['renderer'] or '-'}",
             f"{'backend':<16} {'perturbation':<12} {'agree':>7} {'FPR':>6} {'FNR':>6} "
             f"{'MAE':>7} {'p95 ms':>7}  targets"]
    for r in reps:
        lines.append(f"{r['backend']:<16} {r['perturbation']:<12} "
                     f"{r['label_agreement']:>7.2%} {r['false_positive_rate']:>6.2%} "
                     f"{r['false_negative_rate']:>6.2%} {r['score_mae']:>7.4f} "
                     f"{r['latency_p95_s'] * 1e3:>7.1f}  {'met' if r['ok'] else 'NOT met'}")
    lines.append('all targets met' if out['ok'] else 'targets NOT met everywhere (agreement '
                 '>= 99%, FPR <= 0.5%, MAE <= 0.02)')
    return '\n'.join(lines)


def _dataset(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_reward.core.dataset import (
        Randomisation,
        default_dir,
        stderr_progress,
        write_dataset,
    )

    task = load_task(args.task)
    out = Path(args.out) if args.out else \
        default_dir(enpire_home(), task.name, args.seed, args.images)
    rep = write_dataset(task, out, args.images, seed=args.seed,
                        randomisation=Randomisation.off() if args.no_randomise else None,
                        progress=None if args.json else stderr_progress())
    return {'ok': True, **rep.to_dict()}


def _dataset_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    inst = ', '.join(f'{k} {v}' for k, v in out['instances'].items())
    how = (f"{out['written']} rendered in {out['seconds']:.1f} s" if out['written']
           else 'already complete, nothing rendered')
    return (f"{out['task']}: {out['images']} images ({out['train']} train, {out['val']} val; "
            f"{how}) in {out['out']}\ninstances: {inst}\n"
            f"train with: data={out['out']}/data.yaml")


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_reward.core.dataset import default_dir, stderr_progress, write_dataset
    from enpire_reward.core.yolo import DEFAULT_MODEL, train_yolo

    task = load_task(args.task)
    quiet = bool(args.json)
    if args.dataset:
        dataset = Path(args.dataset)
    else:
        dataset = default_dir(enpire_home(), task.name, args.seed, args.images)
        write_dataset(task, dataset, args.images, seed=args.seed,
                      progress=None if quiet else stderr_progress())
    art = train_yolo(task, dataset, epochs=args.epochs, imgsz=args.imgsz, device=args.device,
                     batch=args.batch, seed=args.seed, model=args.model or DEFAULT_MODEL,
                     progress=(lambda _line: None) if quiet else None)
    return {'ok': True, 'backend': args.backend, 'task': task.name, 'artifact': str(art.path),
            **{k: art.meta[k] for k in ('version', 'weights_sha256', 'train_seconds',
                                        'epochs', 'imgsz', 'device', 'metrics')}}


def _train_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    m = out['metrics']
    mask = m.get('metrics/mAP50-95(M)')
    return (f"{out['task']}: {out['backend']} verifier {out['version']} trained in "
            f"{out['train_seconds']:.0f} s ({out['epochs']} epochs, {out['imgsz']} px, "
            f"{out['device']}){'' if mask is None else f', mask mAP50-95 {mask:.3f}'}\n"
            f"artifact {out['artifact']} (recorded in the task lock)\n"
            f"next: enpire verify crosscheck --task {out['task']} --camera real "
            f"--backend {out['backend']}")


def _register(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.errors import ConfigError
    from enpire_common.tasks import load_task
    from enpire_reward.core.sam2_backend import register_checkpoint

    task = load_task(args.task)
    if args.backend == 'yolo':
        from enpire_reward.core.yolo import adopt_artifact

        if not args.artifact:
            raise ConfigError('--backend yolo needs --artifact DIR (an enpire verify train '
                              'artifact)')
        entry = adopt_artifact(task, args.artifact).lock_entry()
    else:
        if not args.checkpoint:
            raise ConfigError('--backend sam2 needs --checkpoint FILE')
        entry = register_checkpoint(task, args.checkpoint, args.sam2_config)
    return {'ok': True, 'task': task.name, 'backend': args.backend, **entry,
            'next': f'enpire verify calibrate --task {task.name} --backend {args.backend}'}


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.tasks import load_task
    from enpire_reward.core.calibration import DEFAULT_SEED, calibrate
    from enpire_reward.core.labelled_set import load_labelled_set

    task = load_task(args.task)
    labelled = load_labelled_set(args.labels, task) if args.labels else None
    if labelled is not None and not args.json:
        for warning in labelled.warnings:
            print(f'warning: {warning}', file=sys.stderr)

    def progress(i: int, n: int) -> None:
        if not args.json and (i % 50 == 0 or i == n):
            print(f'  {i}/{n} states', file=sys.stderr)

    out = calibrate(task, args.backend, states=args.states,
                    seed=DEFAULT_SEED if args.seed is None else args.seed, progress=progress,
                    labelled=labelled)
    return {'ok': bool(out['passed']), 'task': task.name, **out}


def _calibrate_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    lines = [f"{out['task']} / {out['backend']}: {out['states']} held-out states (seed "
             f"{out['seed']}), every camera perturbation, no forward model"]
    if out.get('labels'):
        lab = out['labels']
        lines.append(f"  + human-labelled set {lab['path']} ({lab['frames']} frames: "
                     + ', '.join(f'{n} {k}' for k, n in lab['counts'].items()) + ')')
    for kind, r in (out.get('per_kind') or {}).items():
        lines.append(f"  {kind:<9} agreement {r['label_agreement']:.2%}  FPR "
                     f"{r['false_positive_rate']:.2%}  FNR {r['false_negative_rate']:.2%}  "
                     f"p95 {r['latency_p95_s'] * 1e3:.1f} ms"
                     + (f"  ({r['invalid_false_successes']} successes on invalid frames)"
                        if 'invalid_false_successes' in r else ''))
    if out['passed']:
        lines.append('PASSED: recorded in the task lock; the backend may judge trials')
    else:
        lines.append('FAILED (recorded; the backend judges no trial): '
                     + '; '.join(out['failures']))
    return '\n'.join(lines)


def _backends(_args: argparse.Namespace) -> dict[str, Any]:
    from enpire_reward.core import available_backends

    return {'ok': True, 'backends': [
        {'id': b.id, 'implemented': b.factory is not None, 'description': b.description}
        for b in available_backends().values()]}


def _backends_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    return '\n'.join(f"{r['id']:<16} {'ready' if r['implemented'] else 'planned':<8} "
                     f"{r['description']}" for r in out['backends'])
