"""In-process fakes of the trial runner's ports (shipped: tests and dry runs use them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from enpire_common.clock import FakeClock
from enpire_common.errors import EnpireTimeoutError, PolicyFaultError, ResetFailedError
from enpire_rollout.core.trial import (
    Checkpoints,
    Progress,
    ResetInfo,
    TrialRecord,
    VerifyOutcome,
)


class FakeCell:
    """Resets always succeed unless the seed is in ``failing_seeds`` (RESET_FAILED) or in
    ``timeout_seeds`` (the reset call times out, as with a dying cell)."""

    def __init__(self, failing_seeds: set[int] | None = None,
                 timeout_seeds: set[int] | None = None) -> None:
        self.failing_seeds = failing_seeds or set()
        self.timeout_seeds = timeout_seeds or set()
        self.resets: list[int] = []
        self.safe_calls = 0

    def reset(self, seed: int, timeout_s: float) -> ResetInfo:
        self.resets.append(seed)
        if seed in self.failing_seeds:
            raise ResetFailedError(f'no verified start for seed {seed} after 3 attempts')
        if seed in self.timeout_seeds:
            raise EnpireTimeoutError(f'reset_cell did not answer within {timeout_s:g} s')
        return ResetInfo(start_pose=(float(seed), 0.0, 0.0), observed_pose=(float(seed), 0, 0))

    def make_safe(self) -> None:
        self.safe_calls += 1


class FakeController:
    """A policy that 'solves' seed s after ``solve_steps(s)`` steps (None: never).

    Each poll advances ``steps_per_poll`` steps and the fake clock by one control period per
    step. ``fault_seeds`` fault at step 3; ``abort_seeds`` trigger a safety abort at step 2.
    """

    def __init__(self, clock: FakeClock, rate_hz: float = 10.0,
                 solve_steps: Callable[[int], int | None] = lambda s: 20,
                 steps_per_poll: int = 1, fault_seeds: set[int] | None = None,
                 abort_seeds: set[int] | None = None, start_fault_seeds: set[int] | None = None,
                 step_time_s: float | None = None, late_acts_per_episode: int = 0) -> None:
        self.clock, self.rate_hz = clock, rate_hz
        self.late_acts_per_episode = late_acts_per_episode
        self.solve_steps, self.steps_per_poll = solve_steps, steps_per_poll
        self.fault_seeds = fault_seeds or set()
        self.abort_seeds = abort_seeds or set()
        self.start_fault_seeds = start_fault_seeds or set()
        self.step_time_s = 1.0 / rate_hz if step_time_s is None else step_time_s
        self.seed: int | None = None
        self.steps = 0
        self.running = False
        self.episodes: list[int] = []
        self.retries: list[tuple[int, int]] = []   # (seed, retry_index) of pass@k retries
        self._carried = 0   # steps of the earlier attempts at the current subtask
        self.checkpoints: Checkpoints | None = None
        self.resumes = 0

    def start_episode(self, seed: int, retry_index: int = 0,
                      checkpoints: Checkpoints | None = None) -> None:
        """A retry (``retry_index`` > 0) goes on from the scene as it is: its steps count
        towards ``solve_steps`` together with the earlier attempts' (progress is kept)."""
        if seed in self.start_fault_seeds:
            raise PolicyFaultError('policy raised in reset(): ValueError')
        if retry_index:
            self.retries.append((seed, retry_index))
            self._carried = self._carried + self.steps if seed == self.seed else 0
        else:
            self._carried = 0
        self.seed, self.steps, self.running = seed, 0, True
        self.episodes.append(seed)
        self.checkpoints = checkpoints

    def resume(self) -> None:
        self.resumes += 1

    def poll(self, timeout_s: float) -> Progress:
        assert self.running, 'poll() outside an episode'
        self.steps += self.steps_per_poll
        self.clock.advance(self.steps_per_poll * self.step_time_s)
        if self.seed in self.fault_seeds and self.steps >= 3:
            return Progress(self.steps, fault='act() returned NaN')
        if self.seed in self.abort_seeds and self.steps >= 2:
            return Progress(self.steps, safety_abort='command 900 px outside bounds [10, 502]')
        return Progress(self.steps)

    def stop_episode(self) -> dict[str, int]:
        self.running = False
        return {'late_acts': self.late_acts_per_episode}

    def sandbox(self) -> dict[str, Any]:
        return {'confinement': 'landlock', 'allow_unconfined': False,
                'sandbox_denials': {'count': 0, 'first': []}}

    def solved(self) -> bool:
        need = self.solve_steps(self.seed) if self.seed is not None else None
        return need is not None and self.steps + self._carried >= need


class FakeVerifier:
    """Judges success from the fake controller's state, like a camera would."""

    def __init__(self, controller: FakeController, unreadable_seeds: Iterable[int] = (),
                 stages: Callable[[int], tuple[str, ...]] | None = None) -> None:
        """``stages(steps)``: the task stages the cameras show at that step of the episode."""
        self.controller = controller
        self.unreadable_seeds = frozenset(unreadable_seeds)
        self.stages = stages or (lambda _steps: ())
        self.calls = 0

    def verify(self, not_before_s: float | None = None) -> VerifyOutcome:
        self.calls += 1
        if self.controller.seed in self.unreadable_seeds:   # the camera cannot see the object
            view = {'view': 'top', 'success': False, 'invalid': True, 'score': 0.0,
                    'detail': 'INVALID: no object found'}
            return VerifyOutcome(False, 0.0, (view, {**view, 'view': 'fused',
                                                     'detail': 'INVALID: all of 1 view(s)'}),
                                 invalid=True)
        ok = self.controller.solved()
        score = 1.0 if ok else 0.4
        return VerifyOutcome(ok, score, ({'view': 'top', 'success': ok, 'score': score},),
                             stages=tuple(self.stages(self.controller.steps)))


class ListRecorder:
    """Keeps finished records in memory."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[TrialRecord] = []

    def start(self, record: TrialRecord) -> str:
        self.started.append(record.trial_id)
        return f'/records/{record.trial_id}'

    def finish(self, record: TrialRecord) -> None:
        self.finished.append(record)
