"""Trials on ROS cells, recorded in the experiment store: evolution's side of ``run_trials``.

The rollout node runs stored revisions and reports each finished trial as a ``TrialResult``
(in the RunTrials feedback and result, and on ``trial_events``); it records nothing in the
experiment store, since it sits below evolution. This module is where those results enter
the store, through the one mapper (``trial_from_msg`` -> ``TrialRecord`` ->
``Trial.from_record``):

- :class:`TrialsClient` wraps a rollout client: it submits a policy directory to the revision
  store (or resolves a revision id prefix), runs the trials by revision id, and records each
  finished trial as it is reported (feedback), then any the feedback missed (result). Every
  caller that runs trials of a policy directory or revision on a cell goes through it
  (``enpire trial run``, the MCP ``trial_run`` tool). :class:`TrialsSession` and
  :class:`TrialsFleetSession` are the rollout's cell sessions with such clients: swapping
  ``CellSession`` for ``TrialsSession`` is all a caller of ``session.client.run_trials``
  changes.
- :class:`RosTrialsPort` is the built-in agent's TrialsPort over one cell;
  :func:`make_ros_trials_port` and :func:`make_ros_fleet_ports` build them (``enpire
  improve``).

The revisions and the store are those of ``home``, which must be the cell's ``ENPIRE_HOME``
(it is when the cell was started from here): the node runs the revision it finds under its
own ``<home>/revisions``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from enpire_common.errors import CellPausedError, ConfigError
from enpire_common.paths import revisions_root
from enpire_common.tasks import DEFAULT_TASK
from enpire_evolution.core.store import ExperimentStore
from enpire_evolution.core.trials_port import TrialOutcome, TrialRecorder
from enpire_rollout.core.trial_record import TrialRecord


class TrialsClient:
    """Runs trials through a rollout client and records every finished one in the store.

    Args:
        client: an ``enpire_rollout.client.RolloutClient`` (or anything with its
            ``run_trials``).
        home: runtime data directory: its ``revisions/`` and, unless ``store`` is given,
            its experiment store.
        store: the experiment store to record into (default: ``home``'s, opened on first
            use and closed by :meth:`close`).
        task: the task of the experiment a run that finishes without any trial creates.
        wall: epoch seconds (revision submission time, experiment creation time).
    """

    def __init__(self, client: Any, *, home: str | Path, store: ExperimentStore | None = None,
                 task: str = '', wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.home = Path(home)
        self.task = task
        self.wall = wall
        self._store = store
        self._own_store = store is None
        self._recorder: TrialRecorder | None = None

    @property
    def recorder(self) -> TrialRecorder:
        if self._recorder is None:
            if self._store is None:
                self._store = ExperimentStore.open(self.home)
            self._recorder = TrialRecorder(self._store)
        return self._recorder

    def revision(self, policy_dir: str = '', revision_id: str = '') -> Any:
        """The revision to run: ``policy_dir`` submitted (snapshot, same content -> same id),
        else the stored revision ``revision_id`` (full id or unique prefix)."""
        from enpire_agent_bridge.core.revisions import RevisionStore

        revisions = RevisionStore(revisions_root(self.home))
        if policy_dir:
            rev, _created = revisions.submit(policy_dir, now_s=self.wall())
            return rev
        if not revision_id:
            raise ConfigError('give revision_id or policy_dir')
        return revisions.get(revision_id)

    def run_trials(self, *, count: int, policy_dir: str = '', revision_id: str = '',
                   experiment_id: str = '', on_feedback: Callable[[Any], None] | None = None,
                   on_trial: Callable[[TrialRecord], None] | None = None,
                   **goal: Any) -> Any:
        """``RolloutClient.run_trials`` of a policy directory or revision, recording trials.

        Each finished trial is stored (experiment, revision and ``manual`` branch created
        first when the store does not know them) before ``on_feedback`` sees the feedback
        that reported it and before ``on_trial`` gets its record. Other keyword arguments
        (seeds, budget, record, attempts, allow_unconfined, timeout_s) go to the cell as
        they are. Returns the RunTrials result; raises its error.
        """
        rev = self.revision(policy_dir, revision_id)
        experiment = experiment_id or 'default'
        branch: list[str] = []
        seen: set[str] = set()
        lock = threading.Lock()

        def ensure(task: str) -> str:
            if not branch:
                branch.append(self.recorder.ensure(experiment, task, rev.id, self.wall(),
                                                   lambda: rev))
            return branch[0]

        def store(msg: Any) -> TrialRecord | None:
            """Record a reported trial once; its record the first time, else None."""
            from enpire_rollout.ros.conversions import trial_from_msg

            with lock:
                if not msg.trial_id or msg.trial_id in seen:
                    return None
                record = trial_from_msg(msg)
                self.recorder.record(record, ensure(record.task))
                seen.add(msg.trial_id)
                return record

        def feedback(fb: Any) -> None:
            try:
                record = store(fb.last)
            except Exception:  # noqa: BLE001 - an executor thread: the result records it
                record = None
            if record is not None and on_trial is not None:
                on_trial(record)
            if on_feedback is not None:
                on_feedback(fb)

        result = self.client.run_trials(count=count, revision_id=rev.id,
                                        experiment_id=experiment_id, on_feedback=feedback,
                                        **goal)
        for msg in result.trials:
            record = store(msg)
            if record is not None and on_trial is not None:
                on_trial(record)
        if not result.trials and (self.task or rev.task):
            with lock:
                ensure(self.task or rev.task)
        return result

    def wait_ready(self, timeout_s: float) -> bool:
        return bool(self.client.wait_ready(timeout_s))

    def cancel(self) -> None:
        self.client.cancel()

    def close(self) -> None:
        """Close the store if this client opened it (the rollout client is its owner's)."""
        if self._own_store and self._store is not None:
            self._store.close()
            self._store, self._recorder = None, None


class _RecordingSession:
    """A rollout session with TrialsClient clients; other attributes are the session's."""

    def __init__(self, session: Any, home: str | Path, clients: list[TrialsClient]) -> None:
        self.session, self.home, self._trials = session, Path(home), clients

    def __getattr__(self, name: str) -> Any:
        if name == 'session':   # not set yet: the session failed to start
            raise AttributeError(name)
        return getattr(self.session, name)

    def close(self) -> None:
        for client in self._trials:
            client.close()
        self.session.close()


class TrialsSession(_RecordingSession):
    """``enpire_rollout.client.CellSession`` (starts the sim cell when none answers) whose
    ``client`` is a :class:`TrialsClient`; other attributes are the session's (``stack``).

    Args:
        home: the cell launch's ENPIRE_HOME, its revisions and (default) its store.
        store, task: see :class:`TrialsClient`.
        session_kw: CellSession's (cell, start, launch_args, probe_s, ready_timeout_s, log).
    """

    def __init__(self, *, home: str | Path, store: ExperimentStore | None = None,
                 task: str = '', **session_kw: Any) -> None:
        from enpire_rollout.client import CellSession

        session = CellSession(home=Path(home), task=task or DEFAULT_TASK, **session_kw)
        self.client = TrialsClient(session.client, home=home, store=store, task=task)
        super().__init__(session, home, [self.client])


class TrialsFleetSession(_RecordingSession):
    """``enpire_rollout.client.FleetSession`` whose ``clients`` are TrialsClient objects
    (recording into ``store``, default ``home``'s); other attributes are the session's."""

    def __init__(self, *, home: str | Path, cells: Sequence[str],
                 store: ExperimentStore | None = None, **session_kw: Any) -> None:
        from enpire_rollout.client import FleetSession

        session = FleetSession(home=Path(home), cells=cells, **session_kw)
        self.clients = [TrialsClient(c, home=home, store=store) for c in session.clients]
        super().__init__(session, home, self.clients)


class RosTrialsPort:
    """The built-in agent's TrialsPort over a cell session; trials are recorded here."""

    def __init__(self, session: Any, *, home: str | Path,
                 store: ExperimentStore | None = None) -> None:
        self.session = session
        self.trials = TrialsClient(session.client, home=home, store=store)

    def run(self, *, experiment_id: str, revision_id: str, revision_dir: Path,
            seeds: Sequence[int], max_wall_time_s: float = 0.0,
            on_trial: Callable[[TrialOutcome], None] | None = None) -> list[TrialOutcome]:
        from enpire_rollout.ros.conversions import trial_from_msg

        def recorded(record: TrialRecord) -> None:
            if on_trial is not None:
                on_trial(TrialOutcome.from_record(record))

        result = self.trials.run_trials(
            count=len(seeds), revision_id=revision_id, seeds=list(seeds),
            experiment_id=experiment_id, max_wall_time_s=max_wall_time_s, on_trial=recorded)
        if result.stop_reason == 'disk_low':
            # Its trials are in the store already; an agent that went on would be refused
            # every trial (and spin) until a person frees space: the cell is paused.
            raise CellPausedError(
                f'{result.error_msg or "the records disk is too full"} (alert on the '
                "cell's alerts); free space (enpire gc --apply), then run the same command "
                'to resume')
        return [TrialOutcome.from_record(trial_from_msg(t)) for t in result.trials]

    def close(self) -> None:
        self.trials.close()
        self.session.close()


class _FleetCell:
    """One cell of a FleetSession as RosTrialsPort's session (closing is the fleet's job)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def close(self) -> None:
        pass


#: The most cells launch/fleet_sim.launch.yaml starts on one host (its cells_check).
FLEET_LAUNCH_MAX_CELLS = 16


def make_ros_fleet_ports(task: str, home: Path, cells: int,
                         log: Callable[[str], None] | None = None,
                         store: ExperimentStore | None = None, *, first: int = 0,
                         ) -> tuple[Any, list[RosTrialsPort]]:
    """One TrialsPort per cell of ``cell_<first>..cell_<first+cells-1>`` (started here,
    with the fleet launch's ``first:=<first>``, if none runs).

    Trials go into ``store`` (default: ``home``'s). Close the ports, then the returned
    session (it stops a launch it started).
    """
    from enpire_rollout.client import FleetSession

    if not 1 <= cells <= FLEET_LAUNCH_MAX_CELLS:
        raise ConfigError(f'cells={cells}: fleet_sim.launch.yaml starts 1 to '
                          f'{FLEET_LAUNCH_MAX_CELLS} cells')
    session = FleetSession(home=Path(home),
                           cells=[f'cell_{i}' for i in range(first, first + cells)],
                           log=log, task=task, launch_args={'first': str(first)})
    return session, [RosTrialsPort(_FleetCell(c), home=home, store=store)
                     for c in session.clients]


def make_ros_trials_port(task: str, home: Path, cells: int = 1,
                         log: Callable[[str], None] | None = None,
                         store: ExperimentStore | None = None, *,
                         cell: str = 'cell_0') -> RosTrialsPort:
    """A TrialsPort on ``cell`` (started here if no cell runs); trials go into ``store``
    (default: ``home``'s)."""
    from enpire_rollout.client import CellSession

    if cells != 1:
        raise ConfigError(f'cells={cells}: the ROS trials port drives one cell per agent; '
                          'use make_ros_fleet_ports (enpire improve --cells N)')
    return RosTrialsPort(CellSession(home=Path(home), cell=cell, log=log, task=task),
                         home=home, store=store)
