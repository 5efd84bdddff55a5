"""`enpire mcp`: the agent verbs as MCP tools over stdio.

The tools are the CLI verbs with the same names and the same JSON objects (both call
:mod:`enpire_agent_bridge.tools`): task_show, policy_submit, policy_list, policy_show,
policy_activate, trial_run, trial_show, trial_list, exp_compare, cell_status. A failing tool
returns an MCP tool error (``is_error``) whose text is the CLI's ``--json`` error object:
``{"ok": false, "error_code": 401, "error": "POLICY_REJECTED", "message": "..."}``.

The stdio transport diverts fd 1 to stderr while it serves, so progress lines and stray
prints of the tools (or the nodes they start) never corrupt the protocol stream.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from enpire_agent_bridge import tools
from enpire_common.errors import EnpireError
from enpire_common.paths import enpire_home

F = TypeVar('F', bound=Callable[..., dict[str, Any]])

TOOL_NAMES = ('task_show', 'policy_submit', 'policy_list', 'policy_show', 'policy_activate',
              'trial_run', 'trial_show', 'trial_list', 'exp_compare', 'cell_status')

INSTRUCTIONS = (
    'ENPIRE: improve a robot policy by experiment. Loop: task_show -> edit your policy dir -> '
    'policy_submit (validates; fix what a rejection says) -> trial_run with the revision id '
    '-> exp_compare baseline candidate -> keep or revert in git. Never edit config/tasks or '
    'runs/. See AGENTS.md.')


def error_object(err: EnpireError) -> dict[str, Any]:
    """The CLI's ``--json`` error object for ``err``."""
    return {'ok': False, 'error_code': err.code, 'error': err.name, 'message': str(err)}


def _as_tool_error(fn: F) -> F:
    """Turn EnpireError into an MCP tool error that carries the code and message."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except EnpireError as err:
            raise ToolError(json.dumps(error_object(err))) from err

    return wrapper  # type: ignore[return-value]


def build_server(home: str | Path | None = None) -> Any:
    """An MCPServer whose tools act on the runtime directory ``home``."""
    from mcp.server.mcpserver import MCPServer

    h = str(enpire_home(home))
    server = MCPServer('enpire', instructions=INSTRUCTIONS)

    def tool(fn: F) -> F:
        server.tool()(_as_tool_error(fn))
        return fn

    @tool
    def task_show(task: str = 'push_t') -> dict[str, Any]:
        """The frozen task contract: observation/action spec, rate, views, limits, seeds."""
        return tools.task_show(task)

    @tool
    def policy_submit(policy_dir: str, parent: str = '') -> dict[str, Any]:
        """Validate a policy directory in a sandbox and store it as a revision.

        Same content gives the same revision_id. A rejection (error 401) says what to fix;
        nothing is stored then.
        """
        return tools.policy_submit(policy_dir, parent=parent, home=h)

    @tool
    def policy_list() -> dict[str, Any]:
        """Every stored revision (id, name, version, regime, hypothesis, parent, commit)."""
        return tools.policy_list(h)

    @tool
    def policy_show(revision: str) -> dict[str, Any]:
        """One revision: manifest, files with sha256, integrity, trial counts per experiment."""
        return tools.policy_show(revision, h)

    @tool
    def policy_activate(revision: str, cell: str = 'cell_0',
                        best_effort: bool = False) -> dict[str, Any]:
        """Hot-swap a cell to a revision (or 'hold'); needs the agent bridge node."""
        return tools.policy_activate(revision, cell=cell, home=h, strict=not best_effort)

    @tool
    def trial_run(count: int = 10, policy_dir: str = '', revision: str = '',
                  seed_start: int | None = None, experiment: str = 'trials',
                  cell: str = 'cell_0', task: str = 'push_t') -> dict[str, Any]:
        """Run `count` budgeted trials of a revision (or a policy dir) on a cell.

        Starts the simulated cell when none runs (30-60 s), stops it afterwards. Returns
        successes, Wilson 95% interval, outcomes and one entry per trial (trial_id for
        trial_show).
        """
        return tools.trial_run(count=count, policy_dir=policy_dir, revision=revision,
                               seed_start=seed_start, experiment=experiment, cell=cell,
                               task=task, home=h)

    @tool
    def trial_show(trial: str) -> dict[str, Any]:
        """One trial's record: outcome, reason, score, seed, videos, evidence, bag."""
        return tools.trial_show(trial, h)

    @tool
    def trial_list(experiment: str = 'trials') -> dict[str, Any]:
        """The recorded trials of an experiment."""
        return tools.trial_list(experiment, h)

    @tool
    def exp_compare(a: str, b: str, experiment: str = '', trials: str = 'all') -> dict[str, Any]:
        """Compare baseline a with candidate b (revision ids or branches): Wilson CIs,
        Fisher exact p, decision keep / revert / inconclusive."""
        return tools.exp_compare(a, b, experiment=experiment or None, trials=trials, home=h)

    @tool
    def cell_status(cell: str = 'cell_0') -> dict[str, Any]:
        """Mode, step, episode, active revision of a cell and which servers answer."""
        return tools.cell_status(cell)

    return server


def serve(home: str | Path | None = None) -> int:
    """Serve the tools on stdin/stdout until the client closes stdin."""
    build_server(home).run()
    return 0
