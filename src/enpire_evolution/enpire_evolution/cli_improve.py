"""``enpire improve``: the built-in agent improves a task policy until a goal or a budget.

``--cells 1`` runs one :class:`BuiltinAgent`; ``--cells N`` a :class:`Fleet` of N agents, one
per cell. ``--fake`` swaps the ROS trials ports for FakeTrialsPorts on simulated clocks.
Progress goes to stdout, or to stderr with ``--json``; the exit code is 0 when the goal was
met and 1 when the budget ran out first.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError
from enpire_common.tasks import DEFAULT_TASK
from enpire_evolution.cli_commands import _common, store_url

IMPROVE_AGENTS = ('builtin', 'claude-code', 'codex', 'kimi', 'openai')
#: The most cells one ``enpire improve`` drives (one agent each; the paper runs 8 on 8).
#: core.fleet.Fleet and the sim fleet launch check their own limits.
MAX_IMPROVE_CELLS = 8


def register_improve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'improve', help='let an agent improve the task policy until a goal or a budget',
        description='The built-in agent searches the seed policy\'s params with optuna (TPE), '
                    'tries each candidate on common tuning seeds (successive halving), keeps '
                    'or reverts it, and evaluates the best on held-out seeds until GOAL '
                    'consecutive successes. Resumable: run the same command again. Exit 0 '
                    'when the goal is met, 1 when the budget ran out first.')
    p.add_argument('--task', default=DEFAULT_TASK, help=f'task name (default {DEFAULT_TASK})')
    p.add_argument('--agent', default='builtin', choices=IMPROVE_AGENTS,
                   help='which agent improves the policy: the built-in parameter search, or a '
                        'coding agent run headless in its own git worktree (claude-code, '
                        'codex, kimi: their CLIs; openai: any Chat Completions endpoint)')
    p.add_argument('--model', default='', help='model of a coding agent (default: its own)')
    p.add_argument('--endpoint', default='',
                   help='openai: the Chat Completions base URL (default api.openai.com; '
                        'vLLM, Ollama, llama.cpp server, ...)')
    p.add_argument('--budget-tokens', type=int, default=None,
                   help='coding agents: stop each agent at this many tokens (input, cache and '
                        'output; checked at every turn the agent reports)')
    p.add_argument('--budget-usd', type=float, default=None,
                   help='coding agents: stop each agent at this cost (needs an agent that '
                        'reports cost, or --price-per-mtok)')
    p.add_argument('--budget-trials', type=int, default=None,
                   help='coding agents: at most this many trials per agent')
    p.add_argument('--price-per-mtok', default='',
                   help='openai: USD per million input,output[,cached] tokens, for --budget-usd')
    p.add_argument('--hang-s', type=float, default=300.0,
                   help='coding agents: restart an agent silent this long with no call in '
                        'flight (default 300)')
    p.add_argument('--max-restarts', type=int, default=5,
                   help='coding agents: restarts per agent before it is given up (default 5)')
    p.add_argument('--agent-sandbox', default='auto', choices=('auto', 'landlock', 'bwrap'),
                   help='what confines a coding agent (default: Landlock, else bubblewrap)')
    p.add_argument('--allow-unconfined-agent', action='store_true',
                   help='run a coding agent unconfined where no sandbox is available')
    p.add_argument('--budget-min', type=float, default=30.0,
                   help='wall-clock budget of this run in minutes (default 30)')
    p.add_argument('--experiment', default=None,
                   help='experiment id (default improve-<task>)')
    p.add_argument('--goal-consecutive', type=int, default=50,
                   help='consecutive held-out successes that meet the goal (default 50)')
    p.add_argument('--cells', type=int, default=1,
                   help=f'cells to run trials on (default 1, at most {MAX_IMPROVE_CELLS}); N > 1 '
                        'runs a fleet: one agent per cell on its own branch, sharing ideas '
                        'through <home>/remote.git (see enpire_evolution.core.fleet)')
    p.add_argument('--first-cell', type=int, default=0, metavar='K',
                   help='number this run\'s cells, agents and branches from K: cell_K.. '
                        '(agent builtin-K, branch agent-K), for a fleet spread over hosts '
                        'whose launches run cells from first:=K on one shared store '
                        '(default 0: cell_0, and agent builtin alone)')
    p.add_argument('--seed-policy', default=None,
                   help='policy directory seeding the workspace (default '
                        'examples/policies/<task>/scripted)')
    p.add_argument('--fake', action='store_true',
                   help='no ROS: a synthetic success model over the params decides each trial '
                        '(FakeTrialsPort + peaked_success_model, 5 simulated s per trial, '
                        'simulated clock); demonstrates the whole loop')
    p.add_argument('--escalate-after', type=int, default=6,
                   help='built-in agent: candidates in a row without a keep before it tries '
                        'the other regimes (tool calling, BC), each once (default 6; 0 = '
                        'never)')
    p.add_argument('--no-report', action='store_true', help='skip the HTML report')
    _common(p)
    p.set_defaults(func=_improve, text=_improve_text,
                   exit_code=lambda out: 0 if out['goal_met'] or out.get('coding') else 1)


def _write_report(store: Any, experiment: str, goal_consecutive: int, home: Path) -> Path:
    """Render ``<home>/reports/<experiment>.html`` at the end of an improve run."""
    from enpire_evolution.core.config import ReportConfig
    from enpire_evolution.core.report import build_report, render_html

    report = build_report(store, experiment, ReportConfig(goal_consecutive=goal_consecutive))
    path = home / 'reports' / f'{experiment}.html'
    render_html(report, path, home=home)
    return path


def _fake_ports(store: Any, task: str, cells: int, first: int = 0
                ) -> tuple[list[Any], list[Any]]:
    """One FakeTrialsPort per cell on its own simulated clock: (clocks, ports)."""
    from enpire_common.clock import FakeClock
    from enpire_common.tasks import load_task
    from enpire_evolution.core.fleet import cell_name
    from enpire_evolution.core.trials_port import (
        PUSH_T_FAKE_OPTIMUM,
        FakeTrialsPort,
        peaked_success_model,
    )

    seeds = load_task(task).evaluation_seeds
    start = time.time()
    clocks = [FakeClock(start_s=start) for _ in range(cells)]
    model = peaked_success_model(PUSH_T_FAKE_OPTIMUM)
    return clocks, [FakeTrialsPort(store, model, evaluation_seeds=seeds, clock=c, trial_s=5.0,
                                   cell=cell_name(first + i), wall=c.now_s)
                    for i, c in enumerate(clocks)]


def _ros_ports(task: str, home: Path, cells: int, log: Callable[[str], None], store: Any,
               first: int = 0) -> tuple[Any, list[Any]]:
    """(session or None, one ROS trials port per cell, recording into ``store``, the agents'
    own); starts the sim cell(s) if none run."""
    try:
        from enpire_evolution.ros.trials_port import make_ros_fleet_ports, make_ros_trials_port
    except ImportError as exc:
        raise ConfigError(f'the ROS trials port is unavailable ({exc}); install '
                          'enpire_rollout and ROS 2, or pass --fake') from None
    if cells == 1:
        return None, [make_ros_trials_port(task, home, cells, log=log, store=store,
                                           cell=f'cell_{first}')]
    return make_ros_fleet_ports(task, home, cells, log=log, store=store, first=first)


def close_ports(ports: list[Any], session: Any, store: Any) -> None:
    """Close the trials ports, their ROS session (if any) and the store, in that order."""
    for port in ports:
        close = getattr(port, 'close', None)
        if callable(close):
            close()
    if session is not None:
        session.close()
    store.close()


def _improve(args: argparse.Namespace) -> dict[str, Any]:
    if args.agent != 'builtin':
        if args.first_cell:
            raise ConfigError(f'--first-cell {args.first_cell}: only the built-in agent '
                              'numbers its cells; a coding agent drives cell_0..')
        from enpire_evolution.cli_agents import improve_with_coding_agents

        return improve_with_coding_agents(args)
    from enpire_agent_bridge.core.revisions import RevisionStore
    from enpire_common.clock import SystemClock
    from enpire_common.paths import enpire_home, revisions_root
    from enpire_evolution.core.agent import BuiltinAgent
    from enpire_evolution.core.agent_config import BuiltinAgentConfig
    from enpire_evolution.core.branches import PolicyWorkspace
    from enpire_evolution.core.fleet import Fleet, LockedWorkspace
    from enpire_evolution.core.store import ExperimentStore

    if args.cells > MAX_IMPROVE_CELLS:
        raise ConfigError(f'--cells {args.cells}: enpire improve drives 1 to '
                          f'{MAX_IMPROVE_CELLS} cells (one agent each); use --cells '
                          f'1..{MAX_IMPROVE_CELLS} on this host (or several hosts)')
    if args.first_cell < 0:
        raise ConfigError(f'--first-cell {args.first_cell}: cells are numbered from 0')
    home = enpire_home(args.home)
    fleet = args.cells > 1
    config = BuiltinAgentConfig(task=args.task, experiment=args.experiment or '',
                                budget_min=args.budget_min,
                                goal_consecutive=args.goal_consecutive,
                                escalate_after=args.escalate_after,
                                cells=1 if fleet else args.cells)  # a fleet agent: one cell
    if args.first_cell and not fleet:
        # one agent of a fleet spread over hosts: its own id, branch and cell
        from enpire_evolution.core.fleet import fleet_agent_config

        config = fleet_agent_config(config, args.first_cell)
    stream = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=stream, flush=True)

    store = ExperimentStore(store_url(args.url, args.home))
    session, ports = None, []
    try:
        if args.fake:
            clocks, ports = _fake_ports(store, args.task, args.cells, args.first_cell)
            walls: list[Callable[[], float]] = [c.now_s for c in clocks]
        else:
            session, ports = _ros_ports(args.task, home, args.cells, log, store,
                                        args.first_cell)
            clocks, walls = [SystemClock()] * args.cells, [time.time] * args.cells
        revisions = RevisionStore(revisions_root(home))
        workspace = home / 'workspace' / args.task
        if fleet:
            runner: Any = Fleet(config, store, revisions, LockedWorkspace(workspace), ports,
                                home=home, seed_policy=args.seed_policy, clocks=clocks,
                                walls=walls, log=log, first=args.first_cell)
        else:
            runner = BuiltinAgent(config, store, revisions, PolicyWorkspace(workspace),
                                  ports[0], home=home, seed_policy=args.seed_policy,
                                  clock=clocks[0], wall=walls[0], log=log)
        result = runner.run()
        report = None if args.no_report else _write_report(
            store, result.experiment, config.goal_consecutive, home)
    finally:
        close_ports(ports, session, store)
    return {'ok': True, **result.to_dict(), 'report': str(report) if report else None}


def _improve_text(out: dict[str, Any], args: argparse.Namespace) -> str:
    if out.get('coding'):
        from enpire_evolution.cli_agents import coding_text

        return coding_text(out)
    goal = 'GOAL MET' if out['goal_met'] else 'goal not met'
    if args.cells > 1:
        lines = [f"experiment {out['experiment']} (fleet of {args.cells}): {goal}"]
        for a in out['agents']:
            bt = a['best_tuning']
            lines.append(f"  {a['branch']}@{a['cell']}: {a['stop_reason']}"
                         f"{(' - ' + a['error']) if a['error'] else ''}; best "
                         f"{(a['best_revision'] or '-')[:12]} tuning {bt.get('successes', 0)}/"
                         f"{bt.get('n', 0)}; {a['candidates']} candidates")
        m, g = out['mru'], out['gpu']
        lines.append(f"borrowed ideas: {len(out['borrowed'])} ("
                     f"{sum(b['status'] == 'kept' for b in out['borrowed'])} kept)")
        per_cell = '  '.join(f'{c} {v:.2f}' for c, v in m['per_cell'].items())
        lines.append(f"MRU {per_cell}  fleet mean {m['mean']:.2f} over {m['span_s']:.0f} s "
                     f"({m['how']})")
        lines.append(f"GPU utilisation {g['mean']:.2f}" if g.get('available') else
                     f"GPU utilisation unavailable ({g.get('reason', '')})")
        lines.append(f"{out['n_trials']} trials in the experiment, this run "
                     f"{out['wall_time_s']:.0f} s; recipe {out['recipe_path']}")
    else:
        bt, tts = out['best_tuning'], out['time_to_success_s']
        lines = [
            f"experiment {out['experiment']}: {goal} ({out['stop_reason']})",
            f"best revision {(out['best_revision'] or '-')[:12]}  tuning "
            f"{bt.get('successes', 0)}/{bt.get('n', 0)} (95% CI {bt.get('ci_low', 0):.2f}-"
            f"{bt.get('ci_high', 1):.2f})",
            f"best evaluation streak {out['best_eval_streak']}/{out['goal_consecutive']}  "
            f"evaluation seeds used {out['eval_seeds_used']}",
            f"{out['n_candidates']} candidates, {out['n_trials']} trials, this run "
            f"{out['wall_time_s']:.0f} s, time to success "
            f"{'-' if tts is None else f'{tts:.0f} s'}",
            f"recipe {out['recipe_path']}"]
    if out['report']:
        lines.append(f"report {out['report']}")
    return '\n'.join(lines)
