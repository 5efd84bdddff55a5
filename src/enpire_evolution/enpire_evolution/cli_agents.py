"""``enpire improve --agent claude-code|codex|kimi|openai`` and ``enpire bench agents``.

A coding agent improves the policy headless (see :mod:`enpire_evolution.agents.supervisor`):
one agent per cell, each in its own git clone of a shared bare remote, all in one experiment.
The agent process is confined (:mod:`enpire_evolution.agents.jail`) and reaches the cell only
through its verb gateway. The cells are started here (or the running ones used) and kept up
for the whole run, so each ``trial_run`` the agent makes starts no cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from enpire_common.errors import ConfigError

#: A coding agent connects to its model's API on these TCP ports (and the endpoint's).
API_PORTS = (443,)


def _price(text: str) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        parts = [float(x) for x in text.split(',')]
    except ValueError:
        raise ConfigError(f"--price-per-mtok '{text}': give USD per million tokens as "
                          "IN,OUT[,CACHED], e.g. 2.0,8.0,0.5") from None
    if len(parts) not in (2, 3) or min(parts) < 0:
        raise ConfigError(f"--price-per-mtok '{text}': give IN,OUT[,CACHED] (>= 0)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else parts[0]


def _ports(endpoint: str) -> list[int]:
    ports = set(API_PORTS)
    for url in (endpoint, os.environ.get('HTTPS_PROXY', ''), os.environ.get('https_proxy', ''),
                os.environ.get('HTTP_PROXY', ''), os.environ.get('ANTHROPIC_BASE_URL', ''),
                os.environ.get('OPENAI_BASE_URL', ''), os.environ.get('KIMI_BASE_URL', '')):
        if url:
            u = urlparse(url)
            if u.port or u.scheme:
                ports.add(u.port or (443 if u.scheme == 'https' else 80))
    return sorted(ports)


def check_agent(kind: str, endpoint: str = '', mode: str = 'auto',
                allow_unconfined: bool = False) -> tuple[Any, str]:
    """(adapter, confinement) for ``kind``; ConfigError (exit 2, nothing started) when the
    agent is not installed, has no credentials, or cannot be confined."""
    from enpire_evolution.agents.adapters import ADAPTERS
    from enpire_evolution.agents.jail import confinement_mode

    if kind not in ADAPTERS:
        raise ConfigError(f"unknown coding agent '{kind}' (known: {', '.join(ADAPTERS)})")
    adapter = ADAPTERS[kind]()
    adapter.check(endpoint)
    confinement, detail = confinement_mode(mode)
    if confinement == 'none' and not allow_unconfined:
        raise ConfigError(f'{kind}: cannot confine a coding agent here ({detail}); it could '
                          'write the task contract, the store and other agents\' worktrees. '
                          'Use Landlock (Linux >= 5.13) or bubblewrap, or pass '
                          '--allow-unconfined-agent')
    return adapter, confinement


def improve_with_coding_agents(args: argparse.Namespace) -> dict[str, Any]:
    """``enpire improve --agent <coding agent>``: run the agents until their budgets."""
    from enpire_agent_bridge.tools import task_show
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task, verify_contract
    from enpire_evolution.agents.supervisor import (
        AgentPlan,
        AgentSupervisor,
        Budget,
        SupervisorConfig,
        run_agents,
    )
    from enpire_evolution.agents.worktree import AgentRepos
    from enpire_evolution.cli_commands import store_url
    from enpire_evolution.cli_improve import MAX_IMPROVE_CELLS, _write_report
    from enpire_evolution.core.agent import default_seed_policy, repo_root
    from enpire_evolution.core.agent_accounting import experiment_accounting
    from enpire_evolution.core.fleet import cell_name
    from enpire_evolution.core.store import ExperimentStore

    if not 1 <= args.cells <= MAX_IMPROVE_CELLS:
        raise ConfigError(f'--cells {args.cells}: 1 to {MAX_IMPROVE_CELLS}')
    if args.fake:
        raise ConfigError('--fake drives the built-in agent only; a coding agent runs real '
                          'trials on the sim cell')
    price = _price(args.price_per_mtok)
    adapter, confinement = check_agent(args.agent, args.endpoint, args.agent_sandbox,
                                       args.allow_unconfined_agent)
    if args.budget_usd is not None and not adapter.reports_cost and price is None:
        raise ConfigError(f'--budget-usd: {args.agent} reports no cost; give --price-per-mtok '
                          'IN,OUT (openai) or use --budget-tokens')
    home = enpire_home(args.home)
    spec = load_task(args.task)
    verify_contract(spec, home, lock_if_missing=True)  # a tampered contract starts nothing
    experiment = args.experiment or f'improve-{args.task}-{args.agent}'
    stream = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=stream, flush=True)

    store = ExperimentStore(store_url(args.url, args.home))
    store.create_experiment(experiment, spec.name, time.time(),
                            {'agent': args.agent, 'model': args.model, 'cells': args.cells,
                             'budget_min': args.budget_min})
    repos = AgentRepos(home / 'agents' / experiment)
    repos.ensure_remote(Path(args.seed_policy) if args.seed_policy
                        else default_seed_policy(args.task))
    tooling = args.agent_tooling(home)
    agents_md = repo_root() / 'AGENTS.md'
    config = SupervisorConfig(
        experiment=experiment, task=spec.name, home=home, tool_argv=tooling['tool_argv'],
        tools=tooling['tools'], mcp_command=tooling['mcp_command'],
        contract=task_show(spec.name), recipes_path=home / 'recipes' / f'{spec.name}.md',
        agents_md=agents_md.read_text(encoding='utf-8') if agents_md.is_file() else '',
        hang_s=args.hang_s, max_restarts=args.max_restarts, confinement=confinement,
        allow_unconfined=args.allow_unconfined_agent, ports=_ports(args.endpoint),
        env={'ENPIRE_HOME': str(home)})
    budget = Budget(wall_s=args.budget_min * 60.0, tokens=args.budget_tokens,
                    usd=args.budget_usd, trials=args.budget_trials)
    log(f'experiment {experiment}: {args.cells} x {args.agent} ({adapter.version() or "?"}), '
        f'confined by {confinement}; budget {args.budget_min:g} min'
        + (f', {args.budget_tokens} tokens' if args.budget_tokens else '')
        + (f', ${args.budget_usd:g}' if args.budget_usd else '')
        + (f', {args.budget_trials} trials' if args.budget_trials else '') + ' per agent')
    session = _cells(spec.name, home, args.cells, log)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + budget.wall_s
        sups = [AgentSupervisor(
            AgentPlan(agent=f'{args.agent}-{i}', adapter=adapter, cell=cell_name(i),
                      model=args.model, endpoint=args.endpoint, price=price),
            config, store, repos, budget, deadline=deadline, stop=stop,
            peers=repos.branches, log=log) for i in range(args.cells)]
        started = time.time()
        results = run_agents(sups, stop)
        acct = experiment_accounting(store, experiment)
        report = None if args.no_report else _write_report(
            store, experiment, args.goal_consecutive, home)
    finally:
        if session is not None:
            session.close()
        store.close()
    return {'ok': True, 'coding': True, 'goal_met': False, 'experiment': experiment,
            'agent': args.agent, 'cells': args.cells, 'confinement': confinement,
            'agents': results, 'accounting': acct, 'wall_time_s': round(time.time() - started, 1),
            'report': str(report) if report else None}


def _cells(task: str, home: Path, cells: int, log: Any) -> Any:
    """Keep the run's cells up (start them when none answers); the session to close."""
    try:
        from enpire_rollout.client import CellSession, FleetSession
    except ImportError as exc:
        raise ConfigError(f'the rollout client is unavailable ({exc}); install ROS 2 and '
                          'enpire_rollout') from None
    if cells == 1:
        return CellSession(home=home, cell='cell_0', log=log, task=task)
    return FleetSession(home=home, cells=[f'cell_{i}' for i in range(cells)], log=log,
                        task=task)


def coding_text(out: dict[str, Any]) -> str:
    acct = out['accounting']
    lines = [f"experiment {out['experiment']}: {out['cells']} x {out['agent']} "
             f"(confined by {out['confinement']}), {out['wall_time_s']:.0f} s"]
    for a in out['agents']:
        u, best = a['usage'], a['best']
        cost = '' if u['cost_usd'] is None else f", ${u['cost_usd']:.4f}"
        lines.append(
            f"  {a['agent']}@{a['cell']}: stopped by {a['stop_reason']} after "
            f"{a['sessions']} session(s) ({a['restarts']} restarts); {u['tokens']} tokens "
            f"(in {u['input_tokens']}, cache {u['cache_read_tokens']}+"
            f"{u['cache_write_tokens']}, out {u['output_tokens']}){cost}, {a['turns']} turns, "
            f"MTU {a['mtu']}/min; {a['revisions_submitted']} revisions, {a['trials']} trials; "
            + (f"best {best['revision'][:12]} {best['successes']}/{best['n']}" if best
               else 'no trials'))
    t = acct['totals']
    lines.append(f"total {t['tokens']} tokens"
                 + ('' if t['cost_usd'] is None else f", ${t['cost_usd']:.4f}")
                 + f", MTU {t['mtu']}/min; tokens to success "
                 f"{acct['tokens_to_success'] if acct['tokens_to_success'] is not None else '-'}"
                 f", time to success "
                 + (f"{acct['time_to_success_s']:.0f} s" if acct['time_to_success_s']
                    is not None else '-'))
    if out.get('report'):
        lines.append(f"report {out['report']}")
    return '\n'.join(lines)
