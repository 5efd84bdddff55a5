"""Push-T observations, hold action and validation scenes.

The cell's state vector is ``[x, y, vx, vy]`` (the pusher's position in px and velocity in
px/s); the contract's ``state``-sourced entries take these values (:data:`STATE_FIELDS`),
camera entries the frame of their topic. :func:`sample_readings` draws seeded scenes from the
contract's reset ranges and renders them with the cell's own camera model
(:class:`~enpire_tasks.push_t.render.AreaRenderer`), without a simulator: what ``policy
submit`` validates a policy on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.observation import TICK, build_from_sources, camera_sources, source_view
from enpire_tasks.plugin import CellReading
from enpire_tasks.push_t.render import AreaRenderer

#: The cell's state vector names, in order.
STATE_NAMES = ('x', 'y', 'vx', 'vy')
#: ``state``-sourced observation entries -> the state vector names they hold (or the tick).
STATE_FIELDS: dict[str, tuple[str, ...] | str] = {
    'agent_pos': ('x', 'y'), 'agent_vel': ('vx', 'vy'), 'step': TICK}


def build_observation(task: TaskSpec, reading: CellReading) -> dict[str, Any]:
    """The policy's observation of one tick (names and types of the contract's spec).

    Raises:
        CellError: the reading lacks a frame or a state value the spec needs.
    """
    return build_from_sources(task, reading, STATE_FIELDS)


def hold_action(task: TaskSpec, state: Mapping[str, float]) -> np.ndarray:
    """Hold: command the pusher's own position (``state['x'], state['y']``), within the
    action bounds; float64 of the action shape."""
    pos = np.asarray([state['x'], state['y']], dtype=np.float64)
    return np.clip(pos, np.asarray(task.action.low, dtype=np.float64),
                   np.asarray(task.action.high, dtype=np.float64))


def sample_readings(task: TaskSpec, n: int = 4, seed: int = 0) -> list[CellReading]:
    """``n`` seeded scenes: pusher and block drawn in the contract's reset ranges
    (``reset.agent_range_px``, ``block_range_px``, ``theta_range_rad``), every camera
    source rendered at its observation size, some with the pusher moving."""
    reset = task.section('reset')
    agent_lo, agent_hi = reset.get('agent_range_px', (50.0, 450.0))
    block_lo, block_hi = reset.get('block_range_px', (100.0, 400.0))
    theta_lo, theta_hi = reset.get('theta_range_rad', (-np.pi, np.pi))
    renderers = {}
    for name, source in camera_sources(task).items():
        h, w = task.observation[name].shape[:2]
        view = task.views[source_view(source)].scaled(w, h)
        renderers[source] = AreaRenderer(w, h, view.workspace_to_pixel, task.goal_pose)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        agent = rng.uniform(agent_lo, agent_hi, size=2)
        block = (*rng.uniform(block_lo, block_hi, size=2), rng.uniform(theta_lo, theta_hi))
        vel = rng.normal(0.0, 20.0, size=2) if i % 3 else np.zeros(2)
        images = {source: r.render(block, agent) for source, r in renderers.items()}
        state = dict(zip(STATE_NAMES, (*agent, *vel), strict=True))
        out.append(CellReading(images=images, state={k: float(v) for k, v in state.items()},
                               tick=i % 3, rollout={'retry_index': 0}))
    return out


__all__ = ['STATE_FIELDS', 'STATE_NAMES', 'build_observation', 'hold_action',
           'sample_readings']
