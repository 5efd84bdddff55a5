"""The agent verbs: `enpire task|policy|cell|train ...`.

`task` shows, locks and verifies the frozen task contract; `policy` submits (validates in a
sandbox first), lists, shows, watches and activates revisions; `cell` reads a cell's status
and pauses, resumes or homes it. The operations live in :mod:`enpire_agent_bridge.tools`
(the MCP tools of `enpire mcp` call them too); a handler here maps the parsed args onto one
and returns its result, and ``text`` renders that (see enpire_bringup.cli). Exit codes: 0 ok,
1 failed (no cell / bridge), 2 usage or contract mismatch, 3 timeout, 4 policy rejected.

``policy show`` lists a revision's trials when the assembled CLI supplies ``trial_stats``
(:data:`enpire_agent_bridge.tools.TrialStats`) in the parsed args: the experiment store
belongs to a higher layer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from enpire_common.paths import enpire_home


def register(sub: argparse._SubParsersAction) -> None:
    _register_task(sub)
    _register_policy(sub)
    _register_cell(sub)
    _register_train(sub)


def _register_task(sub: argparse._SubParsersAction) -> None:
    task = sub.add_parser('task', help='show, lock and verify task contracts')
    verbs = task.add_subparsers(dest='verb', metavar='<verb>', required=True)

    p = verbs.add_parser('list', help='list registered tasks')
    p.set_defaults(func=_list, text=lambda out, _args: '\n'.join(
        f'{name}\t{path}' for name, path in out['tasks'].items()) or None)

    p = verbs.add_parser('show', help='print a task contract (spec, views, limits, seeds)')
    p.add_argument('task')
    p.set_defaults(func=_show)

    p = verbs.add_parser('lock', help='record the contract hash (deliberate re-lock)')
    p.add_argument('task')
    p.set_defaults(func=_lock, text=lambda out, _args: (
        f"locked {out['task']} contract {out['sha256']}"))

    p = verbs.add_parser('verify', help='check the contract against its lock')
    p.add_argument('task')
    p.set_defaults(func=_verify, text=lambda out, _args: (
        f"{out['task']} contract unchanged ({out['sha256'][:12]})"))


def _list(_args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.tasks import available_tasks

    return {'ok': True, 'tasks': {name: str(path) for name, path in available_tasks().items()}}


def _show(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import task_show

    return task_show(args.task)


def _lock(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.tasks import load_task, lock_contract

    digest = lock_contract(load_task(args.task), enpire_home(args.home))
    return {'ok': True, 'task': args.task, 'sha256': digest}


def _verify(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.tasks import load_task, verify_contract

    digest = verify_contract(load_task(args.task), enpire_home(args.home),
                             lock_if_missing=False)
    return {'ok': True, 'task': args.task, 'sha256': digest}


# --- policy ----------------------------------------------------------------------------------
def _register_policy(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser('policy', help='submit, list, show, watch and activate revisions')
    verbs = policy.add_subparsers(dest='verb', metavar='<verb>', required=True)

    p = verbs.add_parser('submit', help='validate a policy dir in a sandbox and store it '
                                        '(exit 4 + what to fix when rejected)')
    p.add_argument('dir', help='policy directory (policy.py + policy.yaml)')
    p.add_argument('--parent', default='', help="parent revision (default: policy.yaml's)")
    p.set_defaults(func=_submit, text=_submit_text)

    p = verbs.add_parser('list', help='list stored revisions')
    p.set_defaults(func=_policy_list, text=_policy_list_text)

    p = verbs.add_parser('show', help='a revision: manifest, files, trial summary')
    p.add_argument('rev', help='revision id or unique prefix (>= 6 characters)')
    p.set_defaults(func=_policy_show)

    p = verbs.add_parser('watch', help="submit a revision whenever policy.yaml's version is "
                                       'bumped (one JSON line per event with --json)')
    p.add_argument('dir', help='policy directory to watch')
    p.add_argument('--cell', default='cell_0')
    p.add_argument('--activate', action='store_true',
                   help='activate each new revision on --cell (needs the agent bridge node)')
    p.add_argument('--debounce-s', type=float, default=1.0,
                   help='content must be unchanged this long before submitting (default 1.0)')
    p.add_argument('--poll-s', type=float, default=0.25, help='poll interval (default 0.25)')
    p.set_defaults(func=_watch, streams=True)

    p = verbs.add_parser('activate', help='hot-swap a cell to a revision (or hold)')
    p.add_argument('rev', help="revision id or prefix, or 'hold'")
    p.add_argument('--cell', default='cell_0')
    p.add_argument('--best-effort', action='store_true',
                   help='fall back to hold on failure (default: keep the previous revision)')
    p.add_argument('--wait-s', type=float, default=3.0,
                   help='how long to wait for the switch_policy service (default 3)')
    p.set_defaults(func=_activate, text=_activate_text)


def _submit(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import policy_submit

    return policy_submit(args.dir, parent=args.parent, home=args.home)


def _submit_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    state = 'stored' if out['created'] else 'already stored'
    check = out.get('check')
    lat = (f", act {check['act_latency_median_ms']:.1f} ms median / "
           f"{check['act_latency_max_ms']:.1f} ms max of {check['deadline_ms']:.0f} ms"
           if check else '')
    return (f"{state} revision {out['revision_id']} ({out['name']} "
            f"v{out['version']}{lat})")


def _policy_list(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import policy_list

    return policy_list(args.home)


def _policy_list_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    lines = [f"{r['short']}  {r['name']:<20} v{r['version']:<4} {r['regime']:<12} "
             f"{r['hypothesis'][:60]}" for r in out['revisions']]
    return '\n'.join(lines or ['no revisions stored'])


def _policy_show(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import policy_show

    return policy_show(args.rev, args.home, trial_stats=getattr(args, 'trial_stats', None))


def _activate(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import policy_activate

    return policy_activate(args.rev, cell=args.cell, home=args.home,
                           strict=not args.best_effort, wait_s=args.wait_s)


def _activate_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    return (f"/{out['cell']}: active {out['active_revision']} (was "
            f"{out['previous_revision'] or '-'}, switched in "
            f"{out['switch_latency_s'] * 1e3:.0f} ms)")


def _watch(args: argparse.Namespace) -> dict[str, Any]:
    """Stream one line per watch event (a JSON object each with --json) until Ctrl-C."""
    from pathlib import Path

    from enpire_agent_bridge.core.watch import PolicyWatcher, WatchConfig, WatchEvent
    from enpire_agent_bridge.tools import policy_activate, policy_submit
    from enpire_common.clock import SystemClock
    from enpire_common.errors import CellUnavailableError, ConfigError, EnpireError

    root = Path(args.dir).resolve()
    if not root.is_dir():
        raise ConfigError(f'{root}: not a directory; give the policy directory to watch')
    counts = {'submitted': 0, 'rejected': 0}

    def on_event(ev: WatchEvent) -> None:
        out = ev.to_dict()
        counts[ev.kind] = counts.get(ev.kind, 0) + 1
        if ev.kind == 'submitted' and args.activate:
            try:
                out['activation'] = policy_activate(out['revision_id'], cell=args.cell,
                                                    home=args.home)
            except CellUnavailableError:
                out['activation'] = {'ok': False, 'message': (
                    f'activation needs the agent bridge node: no switch_policy service on '
                    f'/{args.cell} (is the agent bridge running?)')}
            except EnpireError as err:
                out['activation'] = {'ok': False, 'error_code': err.code, 'message': str(err)}
        if args.json:
            print(json.dumps(out), flush=True)
        elif ev.kind == 'submitted':
            act = out.get('activation')
            print(f"v{ev.version}: revision {out['revision_id']}"
                  f"{' (already stored)' if not out['created'] else ''}"
                  f"{'; ' + act.get('message', 'activated') if act else ''}", flush=True)
        else:
            print(f'v{ev.version}: rejected: {ev.message}', flush=True)

    watcher = PolicyWatcher(root, lambda d: policy_submit(d, home=args.home), SystemClock(),
                            WatchConfig(debounce_s=args.debounce_s, poll_interval_s=args.poll_s),
                            on_event=on_event)
    print(f'watching {root} (Ctrl-C to stop)', file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        watcher.run(lambda: False)
    return {'ok': True, 'dir': str(root), **counts}


# --- cell ------------------------------------------------------------------------------------
def _register_cell(sub: argparse._SubParsersAction) -> None:
    cell = sub.add_parser('cell', help="a cell's status; pause, resume or home it")
    verbs = cell.add_subparsers(dest='verb', metavar='<verb>', required=True)
    p = verbs.add_parser('status', help='mode, step, episode, active revision, servers')
    p.add_argument('--cell', default='cell_0')
    p.add_argument('--wait-s', type=float, default=2.0,
                   help='how long to wait for the latched state (default 2)')
    p.set_defaults(func=_cell_status, text=_cell_status_text)
    for verb, helptext in (('pause', 'hold position and stop acting'),
                           ('resume', 'resume the active policy, and resets paused by '
                                      'failures'),
                           ('home', 'move to the home pose')):
        p = verbs.add_parser(verb, help=f'{helptext} (the agent bridge node; resume: or '
                                        'the reset server)')
        p.add_argument('--cell', default='cell_0')
        p.add_argument('--wait-s', type=float, default=3.0)
        p.set_defaults(func=_cell_command, cell_verb=verb, text=lambda out, args: (
            f"/{out['cell']}: {args.cell_verb} ok {out['message']}".rstrip()))


def _cell_status(args: argparse.Namespace) -> dict[str, Any]:
    """The cell's state; ``ok`` (and the exit code) says whether it answered."""
    from enpire_agent_bridge.tools import cell_status

    return cell_status(args.cell, wait_s=args.wait_s)


def _cell_status_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    servers = ' '.join(f"{k}:{'yes' if v else 'no'}" for k, v in out['servers'].items())
    if out['reachable']:
        line = (f"/{out['cell']}: {out['mode']} step {out['step']} episode {out['episode']} "
                f"revision {out['active_revision'] or '-'} | {servers}")
        if out.get('resets_paused'):
            line += (f"\nRESETS PAUSED: {out['resets_paused']}\n  look at the cell, then: "
                     f"enpire cell resume --cell {out['cell']}")
        if out.get('disk_low'):
            line += (f"\nDISK LOW: {out['disk_low']}\n  trials run again once there is "
                     'room: enpire gc --apply')
        return line
    return f"/{out['cell']}: no cell_state received (is the cell running?) | {servers}"


def _cell_command(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.tools import cell_command

    return cell_command(args.cell_verb, args.cell, wait_s=args.wait_s)


# --- train -------------------------------------------------------------------------------------
def _bc_arguments(p: argparse.ArgumentParser) -> None:
    from enpire_agent_bridge.learning.bc import BCConfig

    d = BCConfig()
    p.add_argument('--dataset', required=True, help='the LeRobot v3 dataset directory')
    p.add_argument('--out', required=True, help='the policy directory to write')
    p.add_argument('--task', default='', help="the task (default: the export's)")
    p.add_argument('--arch', default=d.arch, choices=['mlp', 'diffusion', 'act', 'knn'],
                   help='mlp: a network over the images and state (default); diffusion: '
                        'the same encoders with a denoising action-chunk head; act: a '
                        'CVAE transformer over keypoint tokens (ACT); knn: '
                        'nearest-neighbour cloning over the pose the task\'s '
                        'estimate_pose tool reads in each frame (planar tasks)')
    p.add_argument('--epochs', type=int, default=d.epochs)
    p.add_argument('--batch-size', type=int, default=d.batch_size)
    p.add_argument('--lr', type=float, default=d.lr)
    p.add_argument('--image-size', type=int, default=d.image_size,
                   help=f'camera frames are resized to this square size (default '
                        f'{d.image_size})')
    p.add_argument('--horizon', type=int, default=d.horizon,
                   help='actions predicted per observation')
    p.add_argument('--n-action-steps', type=int, default=d.n_action_steps,
                   help='of which the policy executes this many before predicting again')
    p.add_argument('--only-success', action='store_true',
                   help='train on the episodes whose trial succeeded only')
    p.add_argument('--max-episodes', type=int, default=d.max_episodes,
                   help='train on the first this many episodes (after --only-success; '
                        'default 0: all)')
    p.add_argument('--device', default=d.device, help='cpu (default) or cuda')
    p.add_argument('--seed', type=int, default=d.seed)
    p.add_argument('--work', default='',
                   help='checkpoints (default <out>.work); a killed run resumes from it')
    p.add_argument('--force', action='store_true', help='replace an existing --out')


def _iql_arguments(p: argparse.ArgumentParser) -> None:
    from enpire_agent_bridge.learning.bc import BCConfig

    d = BCConfig()
    p.add_argument('--gamma', type=float, default=d.gamma, help='discount per control tick')
    p.add_argument('--expectile', type=float, default=d.expectile,
                   help="IQL's expectile of V (0.5 = mean; higher = more optimistic)")
    p.add_argument('--beta', type=float, default=d.beta,
                   help='inverse temperature of the advantage weights')


def _register_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser('train', help='learning regimes: train a policy from a dataset, '
                                         'in the foreground or as a background job')
    verbs = train.add_subparsers(dest='verb', metavar='<verb>', required=True)
    bc = verbs.add_parser(
        'bc', help='behaviour cloning from a LeRobot dataset (enpire dataset export) into a '
                   'policy directory to submit as a revision')
    _bc_arguments(bc)
    bc.set_defaults(func=_train_bc, text=_train_bc_text, objective='bc')
    iql = verbs.add_parser(
        'iql', help='offline RL (implicit Q-learning) on the dataset\'s verifier rewards; the '
                    'actor is the bc network, weighted by its advantage')
    _bc_arguments(iql)
    _iql_arguments(iql)
    iql.set_defaults(func=_train_bc, text=_train_bc_text, objective='iql')
    submit = verbs.add_parser('submit', help='run a training (bc or iql) as a background job')
    submit.add_argument('--kind', default='bc', choices=['bc', 'iql'])
    _bc_arguments(submit)
    _iql_arguments(submit)
    submit.add_argument('--engine', default='local', choices=['local', 'ray', 'slurm'],
                        help='local process (default, submitit), a Ray cluster (a detached '
                             'actor per job) or Slurm (submitit)')
    submit.add_argument('--ray-address', default='',
                        help='--engine ray: the cluster\'s HOST:PORT (default $RAY_ADDRESS)')
    submit.add_argument('--cpus', type=int, default=1, help='CPU cores the job may use')
    submit.add_argument('--mem-gb', type=float, default=0.0,
                        help='address-space limit (default none)')
    submit.add_argument('--timeout-min', type=float, default=24 * 60.0)
    submit.set_defaults(func=_train_submit, text=_job_text)
    ls = verbs.add_parser('list', help='the training jobs and their state')
    ls.set_defaults(func=_train_list, text=_train_list_text)
    for name, help_ in (('logs', "a job's progress lines"), ('cancel', 'stop a job (its '
                        'checkpoints stay: resume continues)'),
                        ('resume', 'run a failed or cancelled job again from its last '
                                   'checkpoint')):
        verb = verbs.add_parser(name, help=help_)
        verb.add_argument('job', help='the job id (enpire train list)')
        if name == 'logs':
            verb.add_argument('--tail', type=int, default=50, help='lines (0: all)')
            verb.set_defaults(func=_train_logs, text=lambda r, _a: r['log'])
        else:
            verb.set_defaults(func=_train_cancel if name == 'cancel' else _train_resume,
                              text=_job_text)


def _bc_config(args: argparse.Namespace) -> Any:
    from enpire_agent_bridge.learning.bc import BCConfig

    objective = getattr(args, 'kind', None) or getattr(args, 'objective', 'bc')
    rl = {k: getattr(args, k) for k in ('gamma', 'expectile', 'beta') if hasattr(args, k)}
    return BCConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    image_size=args.image_size, horizon=args.horizon,
                    n_action_steps=args.n_action_steps, device=args.device, seed=args.seed,
                    only_success=args.only_success, max_episodes=args.max_episodes,
                    objective=objective, **rl)


def _train_bc(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_agent_bridge.learning.bc import train_bc

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return train_bc(args.dataset, args.out, task_name=args.task, config=_bc_config(args),
                    work=args.work or None, progress=say, force=args.force).to_dict()


def _train_bc_text(res: dict[str, Any], _args: argparse.Namespace) -> str:
    if res['epochs'] == 0:                     # knn: a memory, no training epochs
        return (f"{res['out']}: nearest-neighbour policy from {res['episodes']} episodes "
                f"({res['frames']} frames), {res['train_s']:.0f} s\n"
                f"submit it: enpire policy submit {res['out']}")
    val = f", val loss {res['val_loss']:.4f}" if res.get('val_loss') is not None else ''
    resumed = f" (resumed at epoch {res['resumed_from']})" if res['resumed_from'] else ''
    return (f"{res['out']}: policy from {res['episodes']} episodes ({res['frames']} "
            f"frames), {res['epochs']} epochs, loss {res['final_loss']:.4f}{val}, "
            f"{res['train_s']:.0f} s{resumed}\nsubmit it: enpire policy submit {res['out']}")


def _queue(args: argparse.Namespace) -> Any:
    from enpire_agent_bridge.learning.jobs import JobQueue

    return JobQueue(enpire_home(args.home))


def _train_submit(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict
    from pathlib import Path

    from enpire_agent_bridge.learning.jobs import JobSpec

    cfg = asdict(_bc_config(args))
    cfg.pop('device')
    spec = JobSpec(kind=args.kind, engine=args.engine, cpus=args.cpus, mem_gb=args.mem_gb,
                   timeout_min=args.timeout_min, device=args.device,
                   ray={'address': args.ray_address} if args.engine == 'ray' else {},
                   args={'dataset': str(Path(args.dataset).resolve()),
                         'out': str(Path(args.out).resolve()), 'task_name': args.task,
                         'work': str(Path(args.work).resolve()) if args.work else None,
                         'force': args.force, 'config': cfg})
    return {'ok': True, **_queue(args).submit(spec)}


def _train_list(args: argparse.Namespace) -> dict[str, Any]:
    return {'ok': True, 'jobs': _queue(args).list()}


def _train_list_text(res: dict[str, Any], _args: argparse.Namespace) -> str:
    if not res['jobs']:
        return 'no training jobs'
    rows = [f"{'job':32} {'state':10} {'device':6} progress"]
    for j in res['jobs']:
        rows.append(f"{j.get('id', '?'):32} {j.get('state', '?'):10} "
                    f"{j.get('device', ''):6} {(j.get('error') or j.get('progress') or '')[:60]}")
    return '\n'.join(rows)


def _train_logs(args: argparse.Namespace) -> dict[str, Any]:
    return {'ok': True, 'job': args.job, 'log': _queue(args).logs(args.job, args.tail)}


def _train_cancel(args: argparse.Namespace) -> dict[str, Any]:
    return {'ok': True, **_queue(args).cancel(args.job)}


def _train_resume(args: argparse.Namespace) -> dict[str, Any]:
    return {'ok': True, **_queue(args).resume(args.job)}


def _job_text(res: dict[str, Any], _args: argparse.Namespace) -> str:
    line = f"job {res.get('id')}: {res.get('state')}"
    if res.get('error'):
        line += f" ({res['error']})"
    return line + f"\nfollow it: enpire train logs {res.get('id')}"
