"""Ports of enpire_reset: what a reset needs from the cell and from the verifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Placement:
    """A start state placed in the cell (task units: Push-T px and rad)."""

    object_pose: tuple[float, ...]
    agent_pos: tuple[float, ...] = ()
    seed: int = 0
    method: str = ''    # how: 'robot' or 'sim_place' (a teleport), as the cell reports it


@dataclass(frozen=True)
class ResetVerdict:
    """The camera verifier's judgement of a reset (VerifySuccess with goal ``reset``).

    Attributes:
        success: the verifier's own decision (scene matches AND task not solved).
        score: task score of the scene (Push-T: coverage), [0, 1].
        observed_pose: object pose seen in the images; empty if not found.
        error_code: non-zero when the verifier could not judge (no image, ...).
        detail: the verifier's explanation / error message.
        raw: the transport's verdict object (a ROS Verdict), passed through untouched.
    """

    success: bool
    score: float
    observed_pose: tuple[float, ...] = ()
    error_code: int = 0
    detail: str = ''
    raw: object = field(default=None, compare=False, repr=False)


@runtime_checkable
class PlacePort(Protocol):
    """A cell that places a start state (its `place` service, PlaceStart: a sim cell sets it,
    a real cell moves the robot). Raises EnpireError on failure."""

    def place(self, seed: int, timeout_s: float) -> Placement: ...


@runtime_checkable
class VerifierPort(Protocol):
    """Judges a reset from the cameras (never from simulator state)."""

    def verify_reset(self, expected_pose: tuple[float, ...], timeout_s: float
                     ) -> ResetVerdict: ...
