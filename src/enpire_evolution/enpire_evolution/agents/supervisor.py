"""Runs one coding agent headless until its budget: restarts, accounting, transcripts, stops.

:class:`AgentSupervisor` owns one agent of an experiment:

* its git clone (:mod:`.worktree`) and a scratch directory, the only places it may write
  (:mod:`.jail`); its verb gateway (:mod:`.gateway`), its only way to the cell;
* one **session** per process run: the prompt (:mod:`.prompt`), the adapter's command line,
  the JSONL it prints parsed into usage and turns (:mod:`.adapters`), the transcript saved
  (secrets redacted) under ``<home>/<experiment>/agents/``, and a row in the store
  (``agent_sessions``, a usage sample per turn in ``agent_usage``, its trials in
  ``agent_trials``);
* **budgets**: wall time (checked every 0.2 s), tokens and USD (checked at every turn the
  agent reports, so at most one turn past), trials (the gateway clamps and refuses). A stop
  ends the agent's process group (SIGTERM, then SIGKILL), interrupts its calls in flight,
  commits its worktree as a WIP inside its jail, and records why;
* **autonomy**: an agent that exits, crashes or hangs (no output and no call in flight for
  ``hang_s``) before its budget is restarted with a continuation prompt naming the best
  revision and the last failures, at most ``max_restarts`` times.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.process import end_groups
from enpire_evolution.agents.adapters import Adapter, Parser, RunSpec, Usage
from enpire_evolution.agents.gateway import GATEWAY_ENV, Gateway, Scope
from enpire_evolution.agents.prompt import (
    PromptContext,
    best_of,
    continuation_prompt,
    initial_prompt,
)
from enpire_evolution.agents.worktree import AgentRepos, branch_of, commit_wip, is_agent_branch
from enpire_evolution.core.agent_accounting import mtu
from enpire_evolution.core.store import AgentSession, ExperimentStore, Revision, UsageSample

#: How often an agent's branch is copied to the shared remote while it works.
PUBLISH_EVERY_S = 5.0
BUDGET_STOPS = ('budget_wall', 'budget_tokens', 'budget_usd', 'budget_trials', 'interrupted')
_SECRET_NAME = re.compile(r'(KEY|TOKEN|SECRET|PASSWORD|AUTH)', re.I)
_SECRET_VALUE = re.compile(r'(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|'
                           r'Bearer\s+[A-Za-z0-9._\-]{16,})')


@dataclass
class Budget:
    """Per-agent limits; None = no limit of that kind."""

    wall_s: float
    tokens: int | None = None
    usd: float | None = None
    trials: int | None = None


@dataclass
class AgentPlan:
    """Who runs where: agent id, adapter, cell, model, endpoint, price per Mtok."""

    agent: str
    adapter: Adapter
    cell: str = 'cell_0'
    model: str = ''
    endpoint: str = ''
    price: tuple[float, float, float] | None = None


@dataclass
class SupervisorConfig:
    """Knobs shared by every agent of a run."""

    experiment: str
    task: str
    home: Path
    tool_argv: list[str]
    tools: list[dict[str, Any]]
    mcp_command: list[str]
    contract: dict[str, Any]
    agents_md: str = ''
    recipes_path: Path | None = None
    hang_s: float = 300.0
    max_restarts: int = 5
    confinement: str = 'auto'
    allow_unconfined: bool = False
    ports: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class Redactor:
    """Masks secrets (credential-like environment values, API key shapes) in text."""

    def __init__(self, env: dict[str, str]) -> None:
        self.values = sorted({v for k, v in env.items() if _SECRET_NAME.search(k)
                              and len(v) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self.values:
            text = text.replace(v, '[REDACTED]')
        return _SECRET_VALUE.sub('[REDACTED]', text)


class AgentSupervisor:
    """One agent of an experiment, from its first session to its stop (see module doc)."""

    def __init__(self, plan: AgentPlan, config: SupervisorConfig, store: ExperimentStore,
                 repos: AgentRepos, budget: Budget, *, deadline: float,
                 stop: threading.Event | None = None,
                 peers: Callable[[], list[str]] = list,
                 log: Callable[[str], None] = print) -> None:
        self.plan, self.config, self.store, self.repos = plan, config, store, repos
        self.budget = budget
        self.deadline = deadline  # time.monotonic() at which the wall budget is spent
        self.stop_event = stop or threading.Event()
        self.peers = peers
        self._log = log
        self.branch = branch_of(plan.agent)
        self.dir = repos.agent_dir(plan.agent)
        self.scratch = self.dir / 'scratch'
        self.transcripts = config.home / config.experiment / 'agents'
        self.redact = Redactor({**os.environ, **config.env})
        self.usage = Usage()  # over the finished sessions of this run
        self.turns = 0
        self.sessions: list[AgentSession] = []
        self.stop_reason = ''
        self.restarts = 0
        self.denials = 0
        self.refusals = 0
        self.submitted: list[str] = []
        self.gateway: Gateway | None = None
        self.worktree: Path = self.dir / 'worktree'
        self.exe = ''
        self.error = ''

    def log(self, line: str) -> None:
        self._log(f'[{self.plan.agent} {self.plan.adapter.name}@{self.plan.cell}] {line}')

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run sessions until a budget or the restart cap; the agent's summary."""
        started = time.time()
        self.exe = self.plan.adapter.check(self.plan.endpoint)
        self.worktree = self.repos.worktree(self.plan.agent)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.transcripts.mkdir(parents=True, exist_ok=True)
        self.store.add_agent(self.config.experiment, self.plan.agent, self.plan.adapter.name,
                             self.plan.cell)
        self.store.add_branch(self.config.experiment, self.branch, agent=self.plan.agent,
                              created_at=started)
        scope = Scope(self.config.experiment, self.config.task, self.plan.cell, self.worktree,
                      max_trials=self.budget.trials, on_result=self._on_result,
                      on_error=self._on_error)
        env = {**os.environ, **self.config.env}
        # A short private path: AF_UNIX addresses are limited to 107 bytes, and the agent may
        # read but never write /tmp.
        self._sockdir = Path(tempfile.mkdtemp(prefix='enpire-gw-'))
        self.gateway = Gateway(self._sockdir / 'gateway.sock', scope, self.config.tool_argv,
                               env=env, tools=self.config.tools,
                               log=self.transcripts / f'{self.plan.agent}.tools.log').start()
        self._session_id = ''
        why = ''
        try:
            while True:
                reason = self._budget_spent(self.usage)
                if reason:
                    self.stop_reason = reason
                    break
                outcome = self._session(why)
                if outcome in BUDGET_STOPS:
                    self.stop_reason = outcome
                    break
                if self.restarts >= self.config.max_restarts:
                    self.stop_reason = 'max_restarts'
                    self.log(f'{outcome}; not restarted: {self.config.max_restarts} restarts '
                             'used')
                    break
                self.restarts += 1
                why = {'exited': 'the agent exited before its budget was spent',
                       'crashed': 'the agent process crashed',
                       'hang': f'no output for {self.config.hang_s:.0f} s'}.get(outcome,
                                                                                  outcome)
                self.log(f'{why}; restarting ({self.restarts}/{self.config.max_restarts})')
        finally:
            self.gateway.close()
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self.store.add_event(self.config.experiment, 'agent_stopped', time.time(), {
                'agent': self.plan.agent, 'kind': self.plan.adapter.name,
                'reason': self.stop_reason, 'restarts': self.restarts})
        return self.summary(time.time() - started)

    def _budget_spent(self, usage: Usage) -> str:
        """Why the agent must stop now with ``usage`` spent (a BUDGET_STOPS entry), or ''."""
        if self.stop_event.is_set():
            return 'interrupted'
        if time.monotonic() >= self.deadline:
            return 'budget_wall'
        b = self.budget
        if b.tokens is not None and usage.tokens >= b.tokens:
            return 'budget_tokens'
        if b.usd is not None and (usage.cost_usd or 0.0) >= b.usd:
            return 'budget_usd'
        if b.trials is not None and self.gateway is not None \
                and self.gateway.scope.trials_used >= b.trials and not self.gateway.busy:
            return 'budget_trials'
        return ''

    def budget_left(self) -> dict[str, Any]:
        b, u = self.budget, self.usage
        return {'wall_min_left': max(0.0, self.deadline - time.monotonic()) / 60.0,
                'tokens_left': None if b.tokens is None else max(0, b.tokens - u.tokens),
                'usd_left': None if b.usd is None else max(0.0, b.usd - (u.cost_usd or 0.0)),
                'trials_left': None if b.trials is None or self.gateway is None
                else max(0, b.trials - self.gateway.scope.trials_used)}

    def _prompt_context(self) -> PromptContext:
        recipes = ''
        rp = self.config.recipes_path
        if rp is not None and rp.is_file():
            recipes = rp.read_text(encoding='utf-8', errors='replace')
        return PromptContext(agent=self.plan.agent, task=self.config.task,
                             experiment=self.config.experiment, cell=self.plan.cell,
                             worktree=self.worktree, branch=self.branch,
                             contract=self.config.contract, agents_md=self.config.agents_md,
                             recipes=recipes, budget=self.budget_left(),
                             peers=[p for p in self.peers() if p != self.branch])

    def _jail(self) -> list[str]:
        argv = [sys.executable, '-m', 'enpire_evolution.agents.jail',
                '--mode', self.config.confinement,
                '--write', str(self.worktree), '--write', str(self.scratch)]
        for p in self.config.ports:
            argv += ['--port', str(p)]
        if self.config.allow_unconfined:
            argv.append('--allow-unconfined')
        return [*argv, '--']

    def _agent_env(self) -> dict[str, str]:
        env = {**os.environ, **self.config.env}
        for k in ('ROS_DOMAIN_ID',):
            env.pop(k, None)
        home, tmp = self.scratch / 'home', self.scratch / 'tmp'
        home.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        env.update({'HOME': str(home), 'TMPDIR': str(tmp), GATEWAY_ENV: str(self.gateway.address),
                    'ENPIRE_HOME': str(self.config.home), 'ENPIRE_AGENT': self.plan.agent,
                    'ENPIRE_EXPERIMENT': self.config.experiment, 'ENPIRE_CELL': self.plan.cell,
                    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'OFF', 'PYTHONDONTWRITEBYTECODE': '1',
                    'GIT_CONFIG_NOSYSTEM': '1'})
        env.update(self.plan.adapter.prepare(self.scratch))
        return env

    def _mcp_server(self) -> dict[str, Any]:
        cmd = self.config.mcp_command
        return {'command': cmd[0], 'args': cmd[1:],
                'env': {GATEWAY_ENV: str(self.gateway.address),
                        'ENPIRE_HOME': str(self.config.home),
                        'PATH': os.environ.get('PATH', ''),
                        'PYTHONPATH': os.environ.get('PYTHONPATH', '')}}

    # --- one session ----------------------------------------------------------------------
    def _session(self, why: str) -> str:
        c, store = self.config, self.store
        run = len(store.agent_sessions(c.experiment, self.plan.agent))
        sid = f'{self.plan.agent}-{run:02d}'
        self._session_id = sid
        ctx = self._prompt_context()
        prompt = initial_prompt(ctx, store) if not why else \
            continuation_prompt(ctx, store, why, self.restarts)
        spec = RunSpec(prompt=prompt, worktree=self.worktree, scratch=self.scratch,
                       mcp_server=self._mcp_server(), model=self.plan.model,
                       endpoint=self.plan.endpoint, session_id=str(uuid.uuid4()),
                       price=self.plan.price, usd_left=self.budget_left()['usd_left'])
        env = self._agent_env()
        argv = self._jail() + self.plan.adapter.argv(self.exe, spec)
        parser = self.plan.adapter.parser(spec)
        transcript = self.transcripts / f'{sid}.jsonl'
        row = AgentSession(experiment=c.experiment, id=sid, agent=self.plan.agent,
                           kind=self.plan.adapter.name, model=self.plan.model,
                           cell=self.plan.cell, branch=self.branch, run=run,
                           started_at=time.time(), transcript=str(transcript),
                           confinement=c.confinement)
        store.put_agent_session(row)
        (self.transcripts / f'{sid}.prompt.md').write_text(self.redact(prompt), encoding='utf-8')
        self.log(f'session {sid} starts ({"continuation: " + why if why else "first prompt"})')
        stderr = open(self.transcripts / f'{sid}.stderr.log', 'wb')  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, cwd=self.worktree, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=stderr,
                                    start_new_session=True)
        except OSError as exc:
            stderr.close()
            self._finish(row, parser, 'crashed', None)
            self.error = f'cannot start {self.plan.adapter.name}: {exc}'
            return 'crashed'
        lines: queue.Queue = queue.Queue()

        def reader() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        outcome = ''
        last_activity = last_publish = time.monotonic()
        eof = False
        with open(transcript, 'a', encoding='utf-8') as out:
            while True:
                try:
                    raw = lines.get(timeout=0.2)
                except queue.Empty:
                    raw = b''
                now = time.monotonic()
                if now - last_publish > PUBLISH_EVERY_S:  # peers see commits promptly
                    self.repos.publish(self.plan.agent)
                    last_publish = now
                if raw is None:
                    eof = True
                elif raw:
                    last_activity = now
                    turns = parser.turns
                    self._line(raw, parser, out)
                    if parser.turns != turns:
                        self._sample(sid, parser)
                spent = self._budget_spent(self.usage + parser.usage)
                if spent:
                    outcome = spent
                elif eof and proc.poll() is not None:
                    outcome = 'exited' if proc.returncode == 0 else 'crashed'
                elif self.gateway is not None and self.gateway.busy:
                    last_activity = now
                elif now - last_activity > c.hang_s:
                    outcome = 'hang'
                if outcome:
                    break
            if outcome in BUDGET_STOPS or outcome == 'hang':
                self.log(f'stopping the agent: {outcome}')
                if outcome in BUDGET_STOPS and self.gateway is not None:
                    self.gateway.close()
                end_groups([proc])
            else:
                proc.wait()
            while True:  # what it printed before it ended
                try:
                    raw = lines.get(timeout=1.0)
                except queue.Empty:
                    break
                if raw is None:
                    break
                self._line(raw, parser, out)
        stderr.close()
        parser.poll()
        self._finish(row, parser, outcome, proc.returncode)
        return outcome

    def _line(self, raw: bytes, parser: Parser, out: Any) -> None:
        text = self.redact(raw.decode('utf-8', errors='replace').rstrip('\n'))
        if not text.strip():
            return
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            out.write(text + '\n')
            n = len(parser.denials)
            parser.feed(obj)
            for d in parser.denials[n:]:
                self.denials += 1
                self.store.add_event(self.config.experiment, 'sandbox_denial', time.time(),
                                     {'agent': self.plan.agent, 'session': self._session_id,
                                      'what': d})
        else:
            out.write(json.dumps({'type': 'enpire.text', 'text': text}) + '\n')
        out.flush()

    def _record_usage(self, sid: str, parser: Parser) -> None:
        """The session's cumulative usage now, as a sample of the token-time curve."""
        self.store.add_usage_sample(UsageSample(
            experiment=self.config.experiment, session=sid, ts=time.time(),
            tokens=parser.usage.tokens, cost_usd=parser.usage.cost_usd, turns=parser.turns))

    def _sample(self, sid: str, parser: Parser) -> None:
        total = self.usage + parser.usage
        self._record_usage(sid, parser)
        self.log(f'turn {self.turns + parser.turns}: {total.tokens} tokens'
                 + (f', ${total.cost_usd:.4f}' if total.cost_usd is not None else ''))

    def _finish(self, row: AgentSession, parser: Parser, outcome: str,
                exit_code: int | None) -> None:
        u = parser.usage
        done = AgentSession(**{**row.__dict__, 'ended_at': time.time(), 'input_tokens': u.input,
                               'output_tokens': u.output, 'cache_read_tokens': u.cache_read,
                               'cache_write_tokens': u.cache_write, 'cost_usd': u.cost_usd,
                               'turns': parser.turns, 'stop_reason': outcome,
                               'exit_code': exit_code, 'cli_session': parser.session_id})
        self.store.put_agent_session(done)
        self._record_usage(row.id, parser)
        self.usage = self.usage + u
        self.turns += parser.turns
        self.sessions.append(done)
        wip = commit_wip(self._jail(), self.worktree,
                         f'WIP: {self.plan.agent} session {row.id} stopped ({outcome})')
        head = self.repos.publish(self.plan.agent)
        self.store.add_event(self.config.experiment, 'agent_session', time.time(), {
            'agent': self.plan.agent, 'session': row.id, 'outcome': outcome,
            'exit_code': exit_code, 'tokens': u.tokens, 'cost_usd': u.cost_usd,
            'turns': parser.turns, 'wip_commit': wip, 'head': head,
            'result': self.redact(parser.result_text)[:500]})
        self.log(f'session {row.id} ended: {outcome} (exit {exit_code}); {u.tokens} tokens, '
                 f'{parser.turns} turns{"; WIP committed" if wip else ""}')

    # --- gateway hooks -------------------------------------------------------------------
    def _on_result(self, tool: str, args: dict[str, Any], out: dict[str, Any]) -> None:
        exp = self.config.experiment
        now = time.time()
        if tool == 'policy_submit' and out.get('revision_id'):
            rid = str(out['revision_id'])
            parent = str(out.get('parent') or '') or None
            origin = ''
            if parent and self.store.has_revision(exp, parent):
                pb = self.store.revision(exp, parent).branch
                if pb != self.branch and is_agent_branch(pb):
                    origin = f'borrowed from {pb} revision {parent[:12]}'
                    self.store.add_event(exp, 'borrowed', now, {
                        'agent': self.plan.agent, 'from': pb, 'revision': rid,
                        'parent': parent})
            if not self.store.has_revision(exp, rid):
                self.store.add_revision(Revision(
                    experiment=exp, id=rid, branch=self.branch, parent=parent,
                    commit=str(out.get('commit') or ''),
                    hypothesis=str(out.get('hypothesis') or ''),
                    regime=str(out.get('regime') or 'heuristic'), created_at=now,
                    origin=origin, status='running'))
                self.submitted.append(rid)
                self.log(f'submitted revision {rid[:12]}' + (f' ({origin})' if origin else ''))
            self.repos.publish(self.plan.agent)
        elif tool == 'trial_run':
            ids = [t.get('trial_id', '') for t in out.get('trials') or []]
            self.store.add_agent_trials(exp, self._session_id, ids)
            self.log(f"trials of {str(out.get('revision_id', ''))[:12]}: "
                     f"{out.get('n_success', 0)}/{out.get('n_trials', 0)} successes")

    def _on_error(self, tool: str, args: dict[str, Any], err: dict[str, Any]) -> None:
        if err.get('error') == 'AGENT_SCOPE':
            self.refusals += 1
            self.store.add_event(self.config.experiment, 'agent_refused', time.time(), {
                'agent': self.plan.agent, 'session': self._session_id, 'tool': tool,
                'arguments': {k: str(v)[:200] for k, v in args.items()},
                'message': err.get('message', '')})

    # --- summary --------------------------------------------------------------------------
    def summary(self, wall_s: float) -> dict[str, Any]:
        u = self.usage
        mine = {s.id for s in self.sessions}
        trials = sum(sid in mine
                     for sid in self.store.agent_trial_ids(self.config.experiment).values())
        return {'agent': self.plan.agent, 'kind': self.plan.adapter.name,
                'model': self.plan.model, 'cell': self.plan.cell, 'branch': self.branch,
                'worktree': str(self.worktree), 'sessions': len(self.sessions),
                'restarts': self.restarts, 'stop_reason': self.stop_reason,
                'error': self.error,
                'usage': {'input_tokens': u.input, 'output_tokens': u.output,
                          'cache_read_tokens': u.cache_read,
                          'cache_write_tokens': u.cache_write, 'tokens': u.tokens,
                          'cost_usd': u.cost_usd},
                'turns': self.turns, 'wall_s': round(wall_s, 1),
                'mtu': mtu(u.tokens, wall_s),
                'trials': trials, 'revisions_submitted': len(self.submitted),
                'denials': self.denials, 'refusals': self.refusals,
                'best': best_of(self.store, self.config.experiment, self.branch)}


def run_agents(supervisors: Sequence[AgentSupervisor], stop: threading.Event
               ) -> list[dict[str, Any]]:
    """Run supervisors (one thread each) until all stop; Ctrl-C stops them all cleanly."""
    results: list[dict[str, Any] | None] = [None] * len(supervisors)
    errors: list[BaseException | None] = [None] * len(supervisors)

    def work(i: int) -> None:
        try:
            results[i] = supervisors[i].run()
        except BaseException as exc:  # noqa: BLE001 - reported with the others
            errors[i] = exc
            stop.set()

    threads = [threading.Thread(target=work, args=(i,), name=f'agent-{i}', daemon=True)
               for i in range(len(supervisors))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(30.0)
    for err in errors:
        if err is not None:
            raise err
    return [r for r in results if r is not None]
