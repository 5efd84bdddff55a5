"""A fleet: one built-in agent per cell, in parallel, sharing ideas through git alone.

``enpire improve --cells N`` runs N built-in agents, each composed with a
:class:`~enpire_evolution.core.fleet_behaviour.FleetBehaviour` (threads of one process; each
has its own trials port, i.e. its own cell and RolloutClient) in ONE experiment. N is not
capped here (the paper runs 8 agents on 8 cells; ``enpire improve`` and the sim fleet launch
file set their own limits). There is no central coordinator of ideas:

* each agent searches with its own optuna study (``<experiment>.<agent>``, sampler seed
  ``sampler_seed + i``) on its own git branch ``<experiment>/agent-<i>`` in its own worktree;
* after each kept revision it pushes its branch to the fleet's bare remote
  (``ENPIRE_HOME/remote.git``);
* before proposing, it fetches the remote and looks at its peers' best revisions in the shared
  store; when a peer's best beats its own best on the same tuning seeds (common random numbers:
  every agent uses the task's tuning seed block) by ``borrow_margin`` successes, it
  cherry-picks the peer's commit onto its own best (falling back to a copy of the peer's tree
  when the pick conflicts), commits it as a new revision whose ``origin`` is
  ``'borrowed from agent <k> revision <r>'`` and tries it on its OWN cell like any candidate
  (successive halving against its best: a peer's idea must reproduce here to be kept).

Utilisation: :func:`fleet_mru` is MRU per cell over the fleet run's wall span (the union of
each cell's trial ``started_at..ended_at`` intervals divided by the span; aborted trials count,
they occupied the cell), and the fleet mean. :class:`GpuSampler` reads NVML when
``nvidia-ml-py`` is installed and says 'unavailable' otherwise.

A lost cell (its port raises :class:`~enpire_common.errors.CellUnavailableError` or a timeout)
stops only its agent: :class:`GuardedTrialsPort` stores the trial that was running as
``aborted`` (void: excluded from statistics) and the agent's stop reason names the cell and
the error; the other agents go on. A cell whose rollout still answers but whose trials keep
ending void (``aborted`` / ``reset_failed``: its sim node died and does not come back, its
reset server is gone...) is lost too, after ``max_void_trials`` in a row, so its agent stops
with a clear reason instead of burning its budget on void trials. A single dead-and-respawned
cell node (fleet_sim.launch.yaml respawns it) costs one aborted trial and the agent goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import (
    CellUnavailableError,
    ConfigError,
    EnpireError,
    EnpireTimeoutError,
)
from enpire_evolution.core import metrics
from enpire_evolution.core.agent import BuiltinAgent, LogFn
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.candidate_writer import first_line
from enpire_evolution.core.compare import summarise
from enpire_evolution.core.fleet_behaviour import REMOTE, fleet_agent
from enpire_evolution.core.ledger import AGENT_STOPPED, CANDIDATE_DONE
from enpire_evolution.core.recipes import write_recipe
from enpire_evolution.core.store import ExperimentStore, Trial
from enpire_evolution.core.trials_port import VOID_OUTCOMES, TrialOutcome, TrialsPort

#: Event stored at the end of each fleet run: its MRU per cell and mean (with how it was
#: computed), its cells' status and the GPU figure; the report lists one row per run.
FLEET_RUN = 'fleet_run'
MRU_HOW = ('per cell: union of its trials\' started_at..ended_at intervals (reset + run + '
           'verify + record, aborted trials included) / the fleet run\'s wall span (all agents '
           'started -> all agents stopped; launch start-up excluded); fleet MRU = mean over '
           'cells')


def cell_name(i: int) -> str:
    return f'cell_{i}'


def fleet_agent_config(base: BuiltinAgentConfig, i: int) -> BuiltinAgentConfig:
    """Agent ``i``'s config: its id, branch, cell and sampler seed; one cell each."""
    return replace(base, agent_id=f'builtin-{i}', branch=f'agent-{i}', cell=cell_name(i),
                   cells=1, sampler_seed=base.sampler_seed + i)


class LockedWorkspace(PolicyWorkspace):
    """A :class:`PolicyWorkspace` whose git commands run one at a time.

    The fleet's agents share one repository (one worktree each); git's ref and config locks
    make concurrent commands from threads fail at random, so they take turns (git commands
    take milliseconds; trials take seconds).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()

    def git(self, *args: str, cwd: str | Path | None = None, check: bool = True) -> str:
        with self._lock:
            return super().git(*args, cwd=cwd, check=check)


class GuardedTrialsPort:
    """A trials port that turns a lost cell into one ``aborted`` trial, then re-raises.

    Args:
        port: the cell's trials port.
        store: where the aborted trial is stored.
        cell: the cell's id (stored on the trial).
        wall: epoch seconds (start and end of the aborted trial).
        max_void_trials: this many void trials (aborted / reset_failed) in a row on the cell,
            across runs, make it lost (CellUnavailableError after the run); 0 = never.
    """

    def __init__(self, port: TrialsPort, store: ExperimentStore, cell: str,
                 wall: Callable[[], float] = time.time, max_void_trials: int = 4) -> None:
        if max_void_trials < 0:
            raise ConfigError(f'max_void_trials={max_void_trials}: must be >= 0 (0 = never '
                              'call a cell lost for void trials)')
        self.port = port
        self.store = store
        self.cell = cell
        self.wall = wall
        self.max_void_trials = max_void_trials
        self._void: list[TrialOutcome] = []

    def run(self, *, experiment_id: str, revision_id: str, revision_dir: Path,
            seeds: Sequence[int], max_wall_time_s: float = 0.0,
            on_trial: Callable[[TrialOutcome], None] | None = None) -> list[TrialOutcome]:
        done: list[int] = []
        last_end = [self.wall()]

        def seen(t: TrialOutcome) -> None:
            done.append(int(t.seed))
            last_end[0] = self.wall()
            self._void = [*self._void, t] if t.outcome in VOID_OUTCOMES else []
            if on_trial is not None:
                on_trial(t)

        try:
            out = self.port.run(experiment_id=experiment_id, revision_id=revision_id,
                                revision_dir=revision_dir, seeds=seeds,
                                max_wall_time_s=max_wall_time_s, on_trial=seen)
        except (CellUnavailableError, EnpireTimeoutError) as exc:
            open_seeds = [int(s) for s in seeds if int(s) not in done]
            if open_seeds:
                self._abort(experiment_id, revision_id, open_seeds[0], last_end[0], exc)
            raise
        if self.max_void_trials and len(self._void) >= self.max_void_trials:
            void, self._void = self._void, []
            raise CellUnavailableError(
                f'cell {self.cell} lost: its last {len(void)} trials ended void ('
                + ', '.join(sorted({t.outcome for t in void}))
                + f'; last: {first_line(void[-1].reason)[:300]}); check its nodes '
                f'(enpire doctor, the launch log), restart the cell and run the same command '
                'to resume')
        return out

    def _abort(self, experiment: str, revision: str, seed: int, started_at: float,
               exc: EnpireError) -> None:
        branch = (self.store.revision(experiment, revision).branch
                  if self.store.has_revision(experiment, revision) else 'manual')
        now = self.wall()
        self.store.record_trial(Trial(
            trial_id=f'{experiment}-{self.cell}-{revision[:12]}-s{seed}-aborted-{int(now)}',
            experiment=experiment, revision=revision, branch=branch, cell=self.cell,
            seed=seed, outcome='aborted', success=False, score=0.0, steps=0,
            started_at=started_at, ended_at=max(now, started_at), duration_s=0.0,
            reset_s=0.0, record_dir='', reason=f'cell {self.cell} lost: {exc}',
            is_eval=False))

    def close(self) -> None:
        close = getattr(self.port, 'close', None)
        if callable(close):
            close()


# --- utilisation -------------------------------------------------------------------------------
def fleet_mru(store: ExperimentStore, experiment: str, cells: Sequence[str],
              span_start_s: float, span_end_s: float) -> dict[str, Any]:
    """MRU per cell and the fleet mean over one wall span (see the module docstring).

    Cells in ``cells`` with no trial in the span count as 0.0; trials of other cells (an
    earlier run's) are counted too when they fall in the span.
    """
    intervals: dict[str, list[tuple[float, float]]] = {c: [] for c in cells}
    for t in store.trials_for(experiment):
        if t.ended_at >= span_start_s and t.started_at <= span_end_s:
            intervals.setdefault(t.cell, []).append((t.started_at, t.ended_at))
    summary = metrics.mru_by_cell(intervals, span_start_s, span_end_s)
    return {'per_cell': summary.per_cell, 'mean': summary.mean,
            'span_s': max(0.0, span_end_s - span_start_s),
            'trials_per_cell': {c: len(v) for c, v in sorted(intervals.items())},
            'how': MRU_HOW}


class GpuSampler:
    """Mean GPU utilisation (NVML) sampled in a thread; 'unavailable' without nvidia-ml-py.

    Args:
        interval_s: sampling period.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.reason = ''
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                             for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
            if not self._handles:
                self.reason = 'no GPU'
        except ImportError:
            self.reason = 'nvidia-ml-py not installed'
        except Exception as exc:  # noqa: BLE001 - any NVML failure means no GPU numbers
            self.reason = f'NVML: {exc}'

    @property
    def available(self) -> bool:
        return self._nvml is not None and not self.reason

    def start(self) -> GpuSampler:
        if self.available:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            rates = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
            self.samples.append(sum(rates) / len(rates) / 100.0)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if not self.available:
            return {'available': False, 'reason': self.reason}
        mean = sum(self.samples) / len(self.samples) if self.samples else 0.0
        return {'available': True, 'mean': mean, 'samples': len(self.samples)}


# --- the fleet ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetResult:
    """What a fleet run achieved: per agent, per cell, and overall."""

    experiment: str
    task: str
    goal_met: bool
    agents: list[dict[str, Any]]
    mru: dict[str, Any]
    gpu: dict[str, Any]
    wall_time_s: float
    n_trials: int
    best: dict[str, Any] = field(default_factory=dict)
    borrowed: list[dict[str, Any]] = field(default_factory=list)
    recipe_path: str = ''
    #: Per cell over this run: status ('ok', or 'lost' / 'error' / 'crashed' with the agent's
    #: error), trials, aborted trials and the last abort's reason.
    cells: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Fleet:
    """N fleet agents (:func:`fleet_agent`), one per trials port (cell), in threads of this
    process.

    Args:
        config: the base agent config (experiment, budget, goal, stages...); agent ``i`` gets
            :func:`fleet_agent_config`.
        store, revisions: shared by the agents.
        workspace: the shared policy repository (a :class:`LockedWorkspace`).
        ports: one trials port per agent; agent ``first + i`` runs on ``ports[i]`` (cell
            ``cell_<first + i>``).
        first: the number of this fleet's first agent and cell (0): a fleet spread over
            hosts numbers each host's agents from the first cell its launch runs
            (``fleet_sim.launch.yaml first:=K``), so agent ids and branches stay distinct.
        remote_path: the bare git remote (default ``<home>/remote.git``).
        clocks: one budget clock per agent, or one shared (default the system clock).
        walls: one epoch-seconds function per agent, or one shared (default time.time).
        borrow_margin: see :class:`~enpire_evolution.core.fleet_behaviour.Borrower`.
        max_void_trials: see :class:`GuardedTrialsPort`.
        Others: as :class:`BuiltinAgent`.
    """

    def __init__(self, config: BuiltinAgentConfig, store: ExperimentStore, revisions: Any,
                 workspace: LockedWorkspace, ports: Sequence[TrialsPort], *,
                 home: str | Path, remote_path: str | Path | None = None,
                 seed_policy: str | Path | None = None,
                 clocks: Clock | Sequence[Clock] | None = None,
                 walls: Callable[[], float] | Sequence[Callable[[], float]] | None = None,
                 log: LogFn | None = None, borrow_margin: int = 1,
                 max_void_trials: int = 4, first: int = 0, **agent_kwargs: Any) -> None:
        n = len(ports)
        if first < 0:
            raise ConfigError(f'first={first}: the first agent number is >= 0')
        if n < 1:
            raise ConfigError('a fleet needs at least 1 cell (one trials port each), got 0')
        self.config = config
        self.store = store
        self.workspace = workspace
        self.home = Path(home)
        self.remote_path = Path(remote_path) if remote_path else self.home / 'remote.git'
        self.log = log or (lambda _line: None)
        self.stop_event = threading.Event()
        numbers = range(first, first + n)
        self.cells = [cell_name(i) for i in numbers]
        clock_list = (list(clocks) if isinstance(clocks, Sequence)
                      else [clocks or SystemClock()] * n)
        wall_list = (list(walls) if isinstance(walls, Sequence) else [walls or time.time] * n)
        ids = [fleet_agent_config(config, i).agent_id for i in numbers]
        self.agents: list[BuiltinAgent] = []
        for i, number in enumerate(numbers):
            cfg = fleet_agent_config(config, number)
            prefix = f'[{cfg.branch}@{cfg.cell}] '
            self.agents.append(fleet_agent(
                cfg, store, revisions, workspace,
                GuardedTrialsPort(ports[i], store, cfg.cell, wall_list[i], max_void_trials),
                home=home, seed_policy=seed_policy, clock=clock_list[i], wall=wall_list[i],
                log=lambda line, p=prefix: self.log(p + line), peers=ids,
                stop_event=self.stop_event, borrow_margin=borrow_margin, **agent_kwargs))
        self._wall = wall_list[0]

    @property
    def experiment(self) -> str:
        return self.config.experiment_id

    def prepare(self) -> None:
        """The shared repository with the seed commit, and the bare remote holding main."""
        seed = self.agents[0].seed_policy
        if not (seed / 'policy.yaml').is_file():
            raise ConfigError(f'seed policy {seed} has no policy.yaml; pass an existing '
                              'policy directory')
        self.workspace.init(seed, message=f'seed policy {seed.name}')
        self.workspace.init_remote(self.remote_path, REMOTE)
        self.workspace.push(self.workspace.main_branch, REMOTE)

    def _run_agent(self, agent: BuiltinAgent, out: dict[str, Any]) -> None:
        cfg = agent.config
        try:
            res = agent.run()
            out.update(stop_reason=res.stop_reason, goal_met=res.goal_met, error='')
            if res.goal_met:
                self.stop_event.set()
                self.log(f'[{cfg.branch}@{cfg.cell}] goal met: stopping the other agents')
        except EnpireError as exc:
            reason = ('cell_lost' if isinstance(exc, (CellUnavailableError, EnpireTimeoutError))
                      else 'error')
            error = str(exc)
            if reason == 'cell_lost' and not error.startswith(f'cell {cfg.cell} lost'):
                error = f'cell {cfg.cell} lost: {error}'  # name the cell whatever failed
            out.update(stop_reason=reason, goal_met=False, error=error, code=exc.code)
            self.store.add_event(self.experiment, AGENT_STOPPED, agent.wall(), {
                'agent': cfg.agent_id, 'stop_reason': reason, 'error': error,
                'cell': cfg.cell})
            self.log(f'[{cfg.branch}@{cfg.cell}] STOPPED ({reason}): {error}; the other agents '
                     'go on')
        except Exception as exc:  # noqa: BLE001 - one agent's bug must not end the fleet
            out.update(stop_reason='crashed', goal_met=False, error=repr(exc))
            self.log(f'[{cfg.branch}@{cfg.cell}] CRASHED: {exc!r}; the other agents go on')

    def run(self) -> FleetResult:
        """Run every agent until the goal (any agent) or each one's budget; then summarise."""
        self.prepare()
        gpu = GpuSampler().start()
        start_wall = min(a.wall() for a in self.agents)
        t0 = time.monotonic()
        outs: list[dict[str, Any]] = [{} for _ in self.agents]
        threads = [threading.Thread(target=self._run_agent, args=(a, o),
                                    name=f'fleet-{a.config.branch}', daemon=True)
                   for a, o in zip(self.agents, outs, strict=True)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        end_wall = max(a.wall() for a in self.agents)
        gpu_stats = gpu.stop()
        recipe = write_recipe(self.store, self.experiment, self.config.task,
                              self.home / 'recipes')
        result = self.summarise(outs, start_wall, end_wall, time.monotonic() - t0, gpu_stats,
                                recipe)
        for c in result.cells:
            # The run's word on each cell that lost trials or stopped early (also in --json
            # mode, where this log goes to stderr and the same facts are in result.cells).
            if c['status'] != 'ok' or c['aborted']:
                self.log(f"[fleet] {c['cell']}: {c['status'].upper()}, {c['trials']} trials "
                         f"this run, {c['aborted']} aborted"
                         + (f" (last: {first_line(c['last_aborted_reason'])[:160]})"
                            if c['last_aborted_reason'] else '')
                         + (f"; stopped: {c['error'][:300]}" if c['error'] else ''))
        self.store.add_event(self.experiment, FLEET_RUN, end_wall, {
            'cells': self.cells, 'span': [start_wall, end_wall], 'mru': result.mru,
            'gpu': result.gpu, 'cell_status': result.cells, 'goal_met': result.goal_met})
        return result

    def summarise(self, outs: Sequence[dict[str, Any]], start_wall: float, end_wall: float,
                  wall_time_s: float, gpu: dict[str, Any], recipe: Path | None = None
                  ) -> FleetResult:
        """The fleet's result from the store (per agent: best, tuning, stop reason)."""
        agents = []
        best: dict[str, Any] = {}
        for a, o in zip(self.agents, outs, strict=True):
            b = a.ledger.best()
            tuning = summarise(list(a.ledger.tuning(b.id).values())) if b else {}
            row = {'agent': a.config.agent_id, 'branch': a.config.branch,
                   'cell': a.config.cell, 'stop_reason': o.get('stop_reason', ''),
                   'goal_met': bool(o.get('goal_met')), 'error': o.get('error', ''),
                   'best_revision': b.id if b else None, 'best_origin': b.origin if b else '',
                   'best_tuning': tuning,
                   'candidates': len(a.ledger.events(CANDIDATE_DONE))}
            agents.append(row)
            rate = tuning.get('success_rate', -1.0)
            if b and (not best or (rate, tuning.get('n', 0)) >
                      (best['success_rate'], best['n'])):
                best = {'agent': a.config.agent_id, 'revision': b.id, 'success_rate': rate,
                        'n': tuning.get('n', 0), 'successes': tuning.get('successes', 0)}
        borrowed = [{'revision': r.id, 'branch': r.branch, 'origin': r.origin,
                     'status': r.status}
                    for r in self.store.revisions(self.experiment) if r.origin]
        in_span = [t for t in self.store.trials_for(self.experiment)
                   if t.ended_at >= start_wall and t.started_at <= end_wall]
        cells = []
        for row in agents:
            mine = [t for t in in_span if t.cell == row['cell']]
            aborted = sorted((t for t in mine if t.outcome == 'aborted'),
                             key=lambda t: t.ended_at)
            stop = row['stop_reason']
            status = {'cell_lost': 'lost', 'error': 'error', 'crashed': 'crashed'}.get(stop,
                                                                                      'ok')
            cells.append({'cell': row['cell'], 'agent': row['agent'], 'status': status,
                          'trials': len(mine), 'aborted': len(aborted),
                          'last_aborted_reason': aborted[-1].reason if aborted else '',
                          'error': row['error']})
        return FleetResult(
            experiment=self.experiment, task=self.config.task,
            goal_met=any(a['goal_met'] for a in agents), agents=agents,
            mru=fleet_mru(self.store, self.experiment, self.cells, start_wall, end_wall),
            gpu=gpu, wall_time_s=wall_time_s,
            n_trials=self.store.count_trials(self.experiment), best=best, borrowed=borrowed,
            recipe_path=str(recipe or ''), cells=cells)
