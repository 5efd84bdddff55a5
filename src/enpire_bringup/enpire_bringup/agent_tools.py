"""The agent tools of ``enpire mcp``, assembled from the verbs each package exports.

The tools are the CLI verbs with the same names and the same JSON objects: task_show,
policy_submit, policy_list, policy_show, policy_activate, cell_status
(:mod:`enpire_agent_bridge.tools`), trial_run, trial_show, trial_list
(:mod:`enpire_evolution.cli_trial`) and exp_compare (:mod:`enpire_evolution.cli_commands`).
They are joined here, in the top layer, and handed to :mod:`enpire_agent_bridge.mcp_server`,
so no lower package imports a higher one. The same place gives ``policy show`` its trial
counts from the experiment store (:func:`revision_trials`).
"""

from __future__ import annotations

import faulthandler
import functools
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from enpire_common.paths import enpire_home
from enpire_common.tasks import DEFAULT_TASK

TOOL_NAMES = ('task_show', 'policy_submit', 'policy_list', 'policy_show', 'policy_activate',
              'trial_run', 'trial_show', 'trial_list', 'exp_compare', 'cell_status')

INSTRUCTIONS = (
    'ENPIRE: improve a robot policy by experiment. Loop: task_show -> edit your policy dir -> '
    'policy_submit (validates; fix what a rejection says) -> trial_run with the revision id '
    '-> exp_compare baseline candidate -> keep or revert in git. Never edit config/tasks or '
    'runs/. See AGENTS.md.')


def revision_trials(home: Path, revision_id: str) -> list[dict[str, Any]] | None:
    """Per-experiment trial counts of a revision (None where enpire_evolution is absent)."""
    try:
        from enpire_evolution.cli_commands import revision_trials as from_store
    except ImportError:
        return None
    return from_store(home, revision_id)


def recording_session(**kw: Any) -> Any:
    """A cell session whose trials are recorded in the experiment store (replay --rerun)."""
    from enpire_evolution.ros.trials_port import TrialsSession

    return TrialsSession(**kw)


def build_tools(home: str | Path | None = None) -> list[Callable[..., dict[str, Any]]]:
    """The MCP tools, acting on the runtime directory ``home``, in :data:`TOOL_NAMES` order."""
    from enpire_agent_bridge import tools as bridge
    from enpire_evolution import cli_commands as evolution
    from enpire_evolution import cli_trial as trials

    h = str(enpire_home(home))

    def task_show(task: str = DEFAULT_TASK) -> dict[str, Any]:
        """The frozen task contract: observation/action spec, rate, views, limits, seeds."""
        return bridge.task_show(task)

    def policy_submit(policy_dir: str, parent: str = '') -> dict[str, Any]:
        """Validate a policy directory in a sandbox and store it as a revision.

        Same content gives the same revision_id. A rejection (error 401) says what to fix;
        nothing is stored then.
        """
        return bridge.policy_submit(policy_dir, parent=parent, home=h)

    def policy_list() -> dict[str, Any]:
        """Every stored revision (id, name, version, regime, hypothesis, parent, commit)."""
        return bridge.policy_list(h)

    def policy_show(revision: str) -> dict[str, Any]:
        """One revision: manifest, files with sha256, integrity, trial counts per experiment."""
        return bridge.policy_show(revision, h, trial_stats=revision_trials)

    def policy_activate(revision: str, cell: str = 'cell_0',
                        best_effort: bool = False) -> dict[str, Any]:
        """Hot-swap a cell to a revision (or 'hold'); needs the agent bridge node."""
        return bridge.policy_activate(revision, cell=cell, home=h, strict=not best_effort)

    def trial_run(count: int = 10, policy_dir: str = '', revision: str = '',
                  seed_start: int | None = None, experiment: str = 'trials',
                  cell: str = 'cell_0', task: str = DEFAULT_TASK) -> dict[str, Any]:
        """Run `count` budgeted trials of a revision (or a policy dir) on a cell.

        Starts the simulated cell when none runs (30-60 s), stops it afterwards. Returns
        successes, Wilson 95% interval, outcomes and one entry per trial (trial_id for
        trial_show).
        """
        return trials.trial_run(count=int(count), policy_dir=policy_dir, revision=revision,
                                 task=task, seed_start=seed_start, experiment=experiment,
                                 cell=cell, home=h)

    def trial_show(trial: str) -> dict[str, Any]:
        """One trial's record: outcome, reason, score, seed, videos, evidence, bag."""
        return trials.trial_show(trial, h)

    def trial_list(experiment: str = 'trials') -> dict[str, Any]:
        """The recorded trials of an experiment."""
        return trials.trial_list(experiment, h)

    def exp_compare(a: str, b: str, experiment: str = '', trials: str = 'all') -> dict[str, Any]:
        """Compare baseline a with candidate b (revision ids or branches): Wilson CIs,
        Fisher exact p, decision keep / revert / inconclusive."""
        return evolution.exp_compare(a, b, experiment=experiment or None, trials=trials,
                                     home=h)

    def cell_status(cell: str = 'cell_0') -> dict[str, Any]:
        """Mode, step, episode, active revision of a cell and which servers answer."""
        return bridge.cell_status(cell)

    return [task_show, policy_submit, policy_list, policy_show, policy_activate, trial_run,
            trial_show, trial_list, exp_compare, cell_status]


def gateway_tools(address: str, home: str | Path | None = None
                  ) -> list[Callable[..., dict[str, Any]]]:
    """The same tools (names, parameters, docstrings), each forwarding its call to a coding
    agent's gateway (:mod:`enpire_evolution.agents.gateway`) instead of running here."""
    from enpire_evolution.agents.gateway import call

    def forward(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def tool(*args: Any, **kwargs: Any) -> dict[str, Any]:
            bound = sig.bind(*args, **kwargs)
            return call(address, fn.__name__, dict(bound.arguments))
        return tool

    return [forward(fn) for fn in build_tools(home)]


def agent_tooling(home: str | Path | None = None) -> dict[str, Any]:
    """What ``enpire improve`` hands a coding agent's supervisor from this layer: the tool
    descriptions, the command that runs one tool, and the command of the MCP server."""
    from enpire_evolution.agents.gateway import describe_tools

    return {'tools': describe_tools(build_tools(home)),
            'tool_argv': [sys.executable, '-m', 'enpire_bringup.agent_tools'],
            'mcp_command': [sys.executable, '-m', 'enpire_bringup.cli', 'mcp']}


def build_server(home: str | Path | None = None) -> Any:
    """The MCP server of ``enpire mcp`` for the runtime directory ``home`` (inside a coding
    agent's sandbox, ``ENPIRE_GATEWAY`` set: tools that forward to its gateway)."""
    from enpire_agent_bridge.mcp_server import build_server as server
    from enpire_evolution.agents.gateway import GATEWAY_ENV

    address = os.environ.get(GATEWAY_ENV)
    tools = gateway_tools(address, home) if address else build_tools(home)
    return server(tools, name='enpire', instructions=INSTRUCTIONS)


def serve(home: str | Path | None = None) -> None:
    """Serve the agent tools on stdin/stdout until the client closes stdin."""
    build_server(home).run()


def run_one(name: str, arguments: dict[str, Any], home: str | Path | None = None
            ) -> dict[str, Any]:
    """Run the tool ``name``: its result, or its error object."""
    from enpire_common.errors import AgentScopeError, ConfigError, EnpireError

    tools = {fn.__name__: fn for fn in build_tools(home)}
    if name not in tools:
        return AgentScopeError(f"unknown tool '{name}'; tools: {sorted(tools)}").to_dict()
    try:
        return tools[name](**arguments)
    except EnpireError as err:
        return err.to_dict()
    except TypeError as exc:
        return ConfigError(f'{name}: {exc}').to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m enpire_bringup.agent_tools NAME``: run one tool, its arguments as a JSON
    object on stdin, its result as one JSON line on stdout (progress on stderr). The coding
    agents' gateway runs each call this way, outside the agent's sandbox."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print('usage: python -m enpire_bringup.agent_tools TOOL < arguments.json',
              file=sys.stderr)
        return 2
    from enpire_common.errors import CancelledError, ConfigError

    # The gateway stops a call with SIGINT (then SIGUSR1, then SIGKILL): take SIGINT as
    # KeyboardInterrupt whatever this process inherited (an ignored or blocked SIGINT would
    # leave a cancelled trial run going on the cell), and dump every thread's stack on
    # SIGUSR1 so that a call that did not stop says where it was.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGUSR1})
    inherited = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if inherited is signal.SIG_IGN:
        print(f'{args[0]}: SIGINT was ignored by the parent; handling it', file=sys.stderr)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        arguments = json.loads(sys.stdin.read() or '{}')
    except json.JSONDecodeError as exc:
        print(json.dumps(ConfigError(f'arguments are not JSON: {exc}').to_dict()))
        return 2
    real_stdout = os.dup(1)
    os.dup2(2, 1)  # stray prints of the verbs (and the nodes they start) go to stderr
    try:
        out = run_one(args[0], arguments)
    except KeyboardInterrupt:
        out = CancelledError(f'{args[0]} was interrupted (the agent was stopped)').to_dict()
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
    sys.stdout.write(json.dumps(out, default=str) + '\n')
    sys.stdout.flush()
    return 0 if out.get('ok', True) else 1


if __name__ == '__main__':
    sys.exit(main())
