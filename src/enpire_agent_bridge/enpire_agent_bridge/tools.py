"""The agent tool surface: one implementation behind the CLI verbs and the MCP tools.

Every function returns the JSON object that ``enpire <noun> <verb> --json`` prints (``ok``
first) and raises :class:`EnpireError` subclasses on failure; the CLI maps those to exit
codes, the MCP server to tool errors carrying the same code and message.

Verbs that other packages own (``trial run|show|list``, ``exp compare``) are run through their
own CLI handlers in-process with ``--json`` (:func:`cli_json`), so both surfaces return the
very same objects without a second implementation.

Verbs that run trials or activate a revision first check the frozen task contract
(:func:`precheck_contract`): an edited contract fails fast with exit code 2 here instead of
inside the rollout node.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, EnpireError, error_from_code
from enpire_common.paths import enpire_home

DEFAULT_TASK = 'push_t'
DEFAULT_CELL = 'cell_0'


# --- task ------------------------------------------------------------------------------------
def task_show(task: str = DEFAULT_TASK) -> dict[str, Any]:
    """The task contract an agent codes against: spec, views, limits, seeds, hash."""
    from enpire_common.tasks import contract_hash, load_task

    t = load_task(task)
    return {
        'ok': True, 'task': t.name, 'id': t.id, 'directory': str(t.directory),
        'contract_sha256': contract_hash(t),
        'observation': {k: {'shape': list(v.shape), 'dtype': v.dtype, 'source': v.source}
                        for k, v in t.observation.items()},
        'action': {'shape': list(t.action.shape), 'low': list(t.action.low),
                   'high': list(t.action.high), 'rate_hz': t.action.rate_hz,
                   'deadline_s': t.action.deadline_s},
        'views': {k: {'width_px': v.width_px, 'height_px': v.height_px}
                  for k, v in t.views.items()},
        'goal_pose': list(t.goal_pose), 'success_threshold': t.success_threshold,
        'safety': {'low': list(t.safety.low), 'high': list(t.safety.high),
                   'max_step_px': t.safety.max_step_px, 'mode': t.safety.mode},
        'episode': {'max_steps': t.max_steps, 'max_time_s': t.max_time_s},
        'seeds': {'tuning': list(t.tuning_seeds), 'evaluation': list(t.evaluation_seeds)},
    }


def precheck_contract(task: str, home: str | Path | None = None) -> str:
    """Refuse (ContractMismatchError, exit 2) when the task contract differs from its lock.

    Locks the contract on first use, like the rollout node does.
    """
    from enpire_common.tasks import load_task, verify_contract

    return verify_contract(load_task(task), enpire_home(home), lock_if_missing=True)


# --- policy ----------------------------------------------------------------------------------
def revision_store(home: str | Path | None = None) -> Any:
    from enpire_agent_bridge.core.revisions import RevisionStore

    return RevisionStore(enpire_home(home) / 'revisions')


def policy_submit(policy_dir: str | Path, *, parent: str = '', home: str | Path | None = None,
                  config: Any = None) -> dict[str, Any]:
    """Validate ``policy_dir`` in a sandbox and store it (see core.submit.submit_policy)."""
    from enpire_agent_bridge.core.submit import submit_policy

    h = enpire_home(home)
    result = submit_policy(policy_dir, revision_store(h), parent=parent, now_s=time.time(),
                           config=config, log_dir=h / 'logs' / 'submit')
    return result.to_dict()


def _summary(rev: Any) -> dict[str, Any]:
    return {'revision_id': rev.id, 'short': rev.short, 'name': rev.name, 'task': rev.task,
            'version': rev.version, 'regime': rev.regime, 'hypothesis': rev.hypothesis,
            'parent': rev.parent, 'commit': rev.commit, 'created_at': rev.created_at}


def policy_list(home: str | Path | None = None) -> dict[str, Any]:
    """Every stored revision, oldest first."""
    return {'ok': True, 'revisions': [_summary(r) for r in revision_store(home).list()]}


def _trial_stats(home: Path, revision_id: str) -> list[dict[str, Any]] | None:
    """Per-experiment trial counts of a revision from the experiment store (None: no store)."""
    try:
        from enpire_evolution.core.store import ExperimentStore
    except ImportError:  # the evolution package is optional for the bridge
        return None
    url = os.environ.get('ENPIRE_STORE_URL')
    if not url and not (home / 'enpire.db').is_file():
        return []  # never create a database just to read it
    rows = []
    with (ExperimentStore(url) if url else ExperimentStore.open(home)) as store:
        for e in store.experiments():
            for st in store.revision_stats(e.id):
                if st.revision == revision_id:
                    rows.append({'experiment': e.id, 'branch': st.branch, 'n': st.n,
                                 'successes': st.successes,
                                 'success_rate': round(st.success_rate, 6),
                                 'mean_score': st.mean_score})
    return rows


def policy_show(ref: str, home: str | Path | None = None) -> dict[str, Any]:
    """A revision's manifest, files (sha256), integrity and trial summary."""
    h = enpire_home(home)
    store = revision_store(h)
    rev = store.get(ref)
    return {'ok': True, **rev.to_dict(), 'short': rev.short, 'intact': store.verify(rev.id),
            'trials': _trial_stats(h, rev.id)}


def policy_activate(ref: str, *, cell: str = DEFAULT_CELL, home: str | Path | None = None,
                    strict: bool = True, wait_s: float = 3.0,
                    warmup_timeout_s: float = 10.0) -> dict[str, Any]:
    """Hot-swap ``cell`` to revision ``ref`` (or ``hold``) through the bridge's switch_policy."""
    from enpire_agent_bridge.core.revisions import HOLD
    from enpire_agent_bridge.ros.agent_client import switch_policy

    if ref == HOLD:
        rid, rdir, task = HOLD, '', DEFAULT_TASK
    else:
        rev = revision_store(home).get(ref)
        rid, rdir, task = rev.id, str(rev.path), rev.task or DEFAULT_TASK
    precheck_contract(task, home)
    return switch_policy(cell, rid, rdir, strict=strict, warmup_timeout_s=warmup_timeout_s,
                         wait_s=wait_s)


# --- cell ------------------------------------------------------------------------------------
def cell_status(cell: str = DEFAULT_CELL, wait_s: float = 2.0) -> dict[str, Any]:
    from enpire_agent_bridge.ros.agent_client import cell_status as status

    return status(cell, wait_s=wait_s)


def cell_command(verb: str, cell: str = DEFAULT_CELL, wait_s: float = 3.0) -> dict[str, Any]:
    from enpire_agent_bridge.ros.agent_client import cell_command as command

    return command(cell, verb, wait_s=wait_s)


# --- verbs of other packages, through their CLI handlers --------------------------------------
class _StdoutRouter(io.TextIOBase):
    """sys.stdout that sends one thread's writes to a buffer while it runs a CLI handler."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.local = threading.local()

    def _out(self) -> Any:
        buf = getattr(self.local, 'buf', None)
        return self.target if buf is None else buf

    def write(self, s: str) -> int:
        return self._out().write(s)

    def flush(self) -> None:
        self._out().flush()

    def isatty(self) -> bool:
        return False


_router_lock = threading.Lock()


def _router() -> _StdoutRouter:
    with _router_lock:
        if not isinstance(sys.stdout, _StdoutRouter):
            sys.stdout = _StdoutRouter(sys.stdout)
        return sys.stdout


def cli_json(argv: Sequence[str]) -> dict[str, Any]:
    """Run ``enpire <argv> --json`` in this process and return the object it printed.

    Raises:
        EnpireError: what the handler raised, or the error its JSON reported.
    """
    from enpire_bringup.cli import build_parser

    argv = [*argv, '--json']
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        raise ConfigError(f"invalid arguments for `enpire {' '.join(argv)}`") from None
    router = _router()
    buf = io.StringIO()
    router.local.buf = buf
    try:
        code = int(args.func(args) or 0)
    finally:
        router.local.buf = None
    out: dict[str, Any] | None = None
    for line in reversed(buf.getvalue().splitlines()):
        try:
            candidate = json.loads(line)
        except ValueError:
            continue
        if isinstance(candidate, dict):
            out = candidate
            break
    if out is None:
        raise EnpireError(f"`enpire {' '.join(argv)}` printed no JSON object (exit {code})")
    if code or out.get('ok') is False:
        raise error_from_code(int(out.get('error_code', 1) or 1),
                              str(out.get('message') or out.get('error') or f'exit {code}'))
    return out


def _home_args(home: str | Path | None) -> list[str]:
    return ['--home', str(enpire_home(home))]


def trial_run(*, count: int = 10, policy_dir: str = '', revision: str = '',
              seed_start: int | None = None, experiment: str = 'trials',
              cell: str = DEFAULT_CELL, task: str = DEFAULT_TASK,
              home: str | Path | None = None) -> dict[str, Any]:
    """Run ``count`` budgeted trials (starts the sim cell through CellSession if none runs)."""
    if bool(policy_dir) == bool(revision):
        raise ConfigError('give exactly one of policy_dir or revision')
    precheck_contract(task, home)
    argv = ['trial', 'run', '--task', task, '--trials', str(int(count)), '--experiment',
            experiment, '--cell', cell, *_home_args(home)]
    argv += ['--policy', str(Path(policy_dir).resolve())] if policy_dir else ['--revision',
                                                                              revision]
    if seed_start is not None:
        argv += ['--seed-start', str(int(seed_start))]
    return cli_json(argv)


def trial_show(trial: str, home: str | Path | None = None) -> dict[str, Any]:
    return cli_json(['trial', 'show', trial, *_home_args(home)])


def trial_list(experiment: str = 'trials', home: str | Path | None = None) -> dict[str, Any]:
    return cli_json(['trial', 'list', '--experiment', experiment, *_home_args(home)])


def exp_compare(a: str, b: str, *, experiment: str | None = None, trials: str = 'all',
                home: str | Path | None = None) -> dict[str, Any]:
    argv = ['exp', 'compare', a, b, '--trials', trials, *_home_args(home)]
    if experiment:
        argv += ['--experiment', experiment]
    return cli_json(argv)
