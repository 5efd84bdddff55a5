"""Shipped fakes of the reset ports (tests, dry runs, other packages' tests)."""

from __future__ import annotations

from collections.abc import Callable

from enpire_common.errors import CellUnavailableError, VerificationError
from enpire_reset.core.ports import Placement, ResetVerdict


class FakeSim:
    """A PlacePort whose start of a seed is a fixed function of the seed.

    Args:
        pose_of: seed -> object pose (default: a deterministic pose inside the table).
        unavailable: raise CellUnavailableError on place (a missing cell).
    """

    def __init__(self, pose_of: Callable[[int], tuple[float, ...]] | None = None,
                 unavailable: bool = False) -> None:
        self.pose_of = pose_of or (lambda s: (100.0 + s % 300, 150.0 + (7 * s) % 200,
                                              ((s % 62) - 31) / 10.0))
        self.unavailable = unavailable
        self.placed: list[int] = []
        self.current: Placement | None = None

    def place(self, seed: int, timeout_s: float) -> Placement:
        if self.unavailable:
            raise CellUnavailableError(f'fake cell unavailable (waited {timeout_s:.1f} s)')
        self.placed.append(seed)
        self.current = Placement(tuple(self.pose_of(seed)), (60.0, 60.0), seed)
        return self.current


class FakeVerifier:
    """A VerifierPort that sees what a FakeSim placed, with scripted distortions.

    Args:
        sim: the FakeSim whose current placement is "seen".
        score: score reported for every scene (Push-T coverage), default 0.1 (not solved).
        solved_seeds: seeds whose start is reported as solved (score 1.0).
        offsets: per call index, an (dx, dy, dtheta) added to the observed pose.
        always_solved: every scene is reported solved.
        error_code: a non-zero code makes every call a verifier error.
        unavailable_calls: the first this many calls answer VIEW_UNAVAILABLE (502, a camera
            with no fresh frame).
    """

    def __init__(self, sim: FakeSim, score: float = 0.1, solved_seeds: set[int] | None = None,
                 offsets: dict[int, tuple[float, float, float]] | None = None,
                 always_solved: bool = False, error_code: int = 0,
                 unavailable_calls: int = 0) -> None:
        self.sim = sim
        self.score = score
        self.solved_seeds = solved_seeds or set()
        self.offsets = offsets or {}
        self.always_solved = always_solved
        self.error_code = error_code
        self.unavailable_calls = unavailable_calls
        self.calls: list[tuple[float, ...]] = []

    def verify_reset(self, expected_pose: tuple[float, ...], timeout_s: float) -> ResetVerdict:
        index = len(self.calls)
        self.calls.append(tuple(expected_pose))
        if index < self.unavailable_calls:
            return ResetVerdict(False, 0.0, (), 502, 'latest camera/top image is 3.0 s old')
        if self.error_code:
            return ResetVerdict(False, 0.0, (), self.error_code, 'fake verifier error')
        placed = self.sim.current
        if placed is None:
            raise VerificationError('FakeVerifier called before anything was placed')
        dx, dy, dth = self.offsets.get(index, (0.0, 0.0, 0.0))
        pose = (placed.object_pose[0] + dx, placed.object_pose[1] + dy,
                placed.object_pose[2] + dth)
        solved = self.always_solved or placed.seed in self.solved_seeds
        score = 1.0 if solved else self.score
        matches = abs(dx) < 1e-9 and abs(dy) < 1e-9 and abs(dth) < 1e-9
        return ResetVerdict(matches and not solved, score, pose, 0, 'fake')
