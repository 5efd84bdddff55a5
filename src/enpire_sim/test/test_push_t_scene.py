"""enpire_tasks.push_t.scene states gym-pusht's own scene: the physics bodies and colours.

The sim cell's camera and the verifier both draw and fit the T from these numbers, so they
are checked against the simulator they describe, not against a second copy.
"""

from __future__ import annotations

import pygame
import pytest
from gym_pusht.envs import pusht
from gym_pusht.envs import pymunk_override as override

from enpire_tasks.push_t import scene


@pytest.fixture(scope='module')
def env():
    e = pusht.PushTEnv()
    e.reset(seed=0)
    yield e
    e.close()


def _rgb(color) -> tuple[int, ...]:
    return tuple(round(float(v)) for v in (color.r, color.g, color.b))


def test_the_block_is_the_two_boxes_and_the_pusher_its_radius(env) -> None:
    polys = {tuple(tuple(v) for v in s.get_vertices()) for s in env.block.shapes}
    assert polys == {scene.box_corners(box) for box in scene.T_BOXES}
    (pusher,) = env.agent.shapes
    assert pusher.radius == scene.PUSHER_RADIUS_PX


def test_the_walls_are_the_static_segments(env) -> None:
    segments = {(frozenset((tuple(s.a), tuple(s.b))), s.radius)
                for s in env.space.static_body.shapes}
    assert segments == {(frozenset((a, b)), r) for a, b, r in scene.WALLS}


def test_the_colours_are_what_gym_pusht_draws(env) -> None:
    block = {_rgb(s.color) for s in env.block.shapes}
    assert block == {scene.BLOCK_BORDER}
    assert {_rgb(override.light_color(s.color)) for s in env.block.shapes} == {scene.BLOCK_FILL}
    (pusher,) = env.agent.shapes
    assert _rgb(pusher.color) == scene.PUSHER
    assert _rgb(override.light_color(pusher.color)) == scene.PUSHER_FILL
    assert {_rgb(s.color) for s in env.space.static_body.shapes} == {scene.WALL}
    assert tuple(pygame.Color('LightGreen'))[:3] == scene.GOAL
