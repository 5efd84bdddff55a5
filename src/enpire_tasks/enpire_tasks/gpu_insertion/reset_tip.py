"""The GPU reset skill's phases for a card standing upside down on its cooler (its edge up):
the right arm, level and closed, pushes its PCB near the top across, away from the
connector's riser, and the card falls flat, to be stood up as one lying flat
(:mod:`~enpire_tasks.gpu_insertion.reset_flat`). Whether a card seen low stands on its cooler
or lies flat: the PCB seen beside the cooler is, standing, its face above it in perspective
(a few mm across), and lying, a flat PCB (20-25 mm across)."""

from __future__ import annotations

from typing import Any

import numpy as np

from enpire_tasks.arm import colour_blob, principal_axis
from enpire_tasks.gpu_insertion.reset_flat import FLAT_PCB_OFFSET, FlatCard, rot90
from enpire_tasks.gpu_insertion.reset_motion import (
    GRIP_CLOSED,
    GRIP_OPEN,
    LIFT_Z,
    SETTLE_TICKS,
    SLOW,
    SPEED,
)

#: Tipping over a card upside down: the closed fingertips TIP_Z high (the card's top is 52
#: mm up; the gripper, level, cannot go below ~38 mm), from TIP_START behind its PCB to
#: TIP_END past it (pushed along it: from beyond its end, _ALONG); the start, and where the
#: card lands (TIP_LANDING beyond it), stay TIP_RISER_CLEAR (half sizes, m) from the slot's
#: centre (the riser, the housing and the latch).
TIP_Z, TIP_START, TIP_END = 0.045, 0.03, 0.03
TIP_START_ALONG, TIP_END_ALONG, TIP_LANDING = 0.05, 0.035, 0.06
TIP_RISER_CLEAR = (0.045, 0.03)


def _box_clear(xy: np.ndarray, centre: np.ndarray, half: tuple[float, float]) -> bool:
    """Whether ``xy`` is outside the box of half sizes ``half`` about ``centre``."""
    d = np.abs(np.asarray(xy) - centre)
    return bool(d[0] > half[0] or d[1] > half[1])


class UpsideDownCard(FlatCard):
    """Mixin of :class:`~enpire_tasks.gpu_insertion.reset_skill.GpuResetSkill`: tip over a
    card standing on its cooler (see the module doc)."""

    tip: Any
    tipped: bool
    looked: bool

    def _upside_down_seen(self, image: np.ndarray) -> bool:
        """Whether a card whose cooler is seen low (14-16 mm up: on its cooler, or lying
        flat) stands on its cooler: the PCB seen beside the cooler is then its face standing
        above it, in perspective (a few mm across), not a flat PCB (20-25 mm across)."""
        pose = self._flat_geometry(image)
        return pose is None or pose[3] < FLAT_PCB_OFFSET[0]

    def _take_upside_down(self, image: np.ndarray) -> None:
        """Plan the push that tips over a card standing on its cooler (or fail with why)."""
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            self._fail('upside down: no cooler in view')
            return
        z = self.p.cooler_size[2]               # its cooler's (lowest) face, up
        c, along = principal_axis(self._top_plane(*np.nonzero(blob.mask), z))
        across = rot90(along)                   # square to the PCB
        riser = np.asarray(self.p.slot_xy)
        # across the PCB (it tips over its cooler's 14 mm) or, where the riser is in the
        # way, along it (over the cooler's 36 mm): away from the riser, the pusher starting
        # clear of it and the card landing clear of it
        away = lambda n: -float(n @ (c - riser))  # noqa: E731
        options = [(n, TIP_START, TIP_END) for n in sorted((across, -across), key=away)] + \
            [(n, TIP_START_ALONG, TIP_END_ALONG) for n in sorted((along, -along), key=away)]
        for n, start, end in options:
            if _box_clear(c - start * n, riser, TIP_RISER_CLEAR) and \
                    _box_clear(c + TIP_LANDING * n, riser, TIP_RISER_CLEAR):
                self.tip = (c, n, start, end)
                self._go('tip_rise')
                return
        self._fail('upside down: no room to push it over (beside the connector)')

    def _tip_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._other_home_of('right', SPEED)
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('tip_over_start')

    def _tip_over_start(self, image: np.ndarray, ee: np.ndarray) -> None:
        c, n, back, _ = self.tip
        start = c - back * n
        self.grip = GRIP_CLOSED
        if self._via([np.array([*start, LIFT_Z]), np.array([*start, TIP_Z])], SPEED) and \
                self.ticks > SETTLE_TICKS:
            self._go('tip_push')

    def _tip_push(self, image: np.ndarray, ee: np.ndarray) -> None:
        c, n, _, end = self.tip
        if self._toward(np.array([*(c + end * n), TIP_Z]), SLOW / 2):
            self._go('tip_away')

    def _tip_away(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self.grip = GRIP_OPEN
            if float(ee[13]) > 0.9:         # open again (a closed gripper reads as holding)
                self.tipped = True
                self.looked = False         # look again (from home): it should lie flat now
                self._go('locate')


__all__ = ['UpsideDownCard']
