"""The agent bridge's verbs: one implementation behind the CLI verbs and the MCP tools.

Every function returns the JSON object that ``enpire <noun> <verb> --json`` prints (``ok``
first) and raises :class:`EnpireError` subclasses on failure; the CLI maps those to exit
codes, the MCP server to tool errors carrying the same code and message. Verbs that other
packages own (``trial run|show|list``, ``exp compare``) live in those packages; the MCP tool
table that joins them is assembled in enpire_bringup (the top layer).

Verbs that run trials or activate a revision first check the frozen task contract
(:func:`precheck_contract`): an edited contract fails fast with exit code 2 here instead of
inside the rollout node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enpire_common.paths import enpire_home, revisions_root
from enpire_common.tasks import DEFAULT_TASK

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

    return RevisionStore(revisions_root(enpire_home(home)))


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


#: ``(home, revision_id) -> per-experiment trial counts`` (None: no experiment store). The
#: store belongs to a higher layer (enpire_evolution); whoever assembles the verbs passes it.
TrialStats = Callable[[Path, str], list[dict[str, Any]] | None]


def policy_show(ref: str, home: str | Path | None = None,
                trial_stats: TrialStats | None = None) -> dict[str, Any]:
    """A revision's manifest, files (sha256), integrity and trial summary.

    ``trials`` is ``trial_stats(home, revision_id)``, or None without one.
    """
    h = enpire_home(home)
    store = revision_store(h)
    rev = store.get(ref)
    return {'ok': True, **rev.to_dict(), 'short': rev.short, 'intact': store.verify(rev.id),
            'trials': trial_stats(h, rev.id) if trial_stats else None}


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
