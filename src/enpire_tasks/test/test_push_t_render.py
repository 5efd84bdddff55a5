from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_tasks.push_t.render import (
    BORDER,
    FILL,
    GOAL,
    PUSHER,
    WHITE,
    AreaRenderer,
    rounded_box_interval,
)

MAP = ((0.9375, 0.0, 0.0), (0.0, 0.9375, 0.0))
GOAL_POSE = (256.0, 256.0, math.pi / 4)
FAR = (-1e4, -1e4)  # the pusher off the image


@pytest.fixture(scope='module')
def renderer():
    return AreaRenderer(480, 480, MAP, GOAL_POSE)


def _px(x: float, y: float) -> tuple[int, int]:
    return int(round(0.9375 * y)), int(round(0.9375 * x))


def test_pixels_fully_inside_a_shape_have_its_exact_colour(renderer):
    img = renderer.render((150.0, 100.0, 0.0), (400.0, 420.0))
    assert img[_px(150.0, 15.0 + 100.0)].tolist() == list(FILL)      # bar interior
    assert img[_px(150.0 + 59.0, 115.0)].tolist() == list(BORDER)    # inside the border
    assert img[_px(400.0, 420.0)].tolist() == [78, 126, 255]        # pusher fill
    assert img[_px(400.0 + 13.5, 420.0)].tolist() == list(PUSHER)   # pusher rim
    assert img[_px(203.0, 309.0)].tolist() == list(GOAL)            # goal T's stem
    assert img[_px(60.0, 450.0)].tolist() == list(WHITE)


def test_a_pixel_half_covered_by_an_edge_is_the_mean_of_both_colours(renderer):
    # The bar's left edge grown by the 2 px border: x = 100 - 60 - 2 = 38 workspace px.
    # Place it on the middle of pixel column 40 (image x = 40.0 <-> workspace 42.667).
    x_edge = 40.0 / 0.9375
    img = renderer.render((x_edge + 62.0, 200.0, 0.0), FAR)
    mid = img[int(round(0.9375 * 215.0)), 40].astype(float)
    expected = 0.5 * (np.asarray(WHITE) + np.asarray(BORDER))
    assert mid == pytest.approx(expected, abs=1.0)


def test_a_sub_pixel_shift_of_the_block_changes_the_image(renderer):
    a = renderer.render((200.0, 150.0, 0.3), FAR)
    b = renderer.render((200.05, 150.0, 0.3), FAR)
    c = renderer.render((200.0, 150.0, 0.3005), FAR)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_same_pose_renders_the_same_bytes(renderer):
    pose, pusher = (211.3, 187.9, -2.2), (330.0, 300.0)
    assert renderer.render(pose, pusher).tobytes() == renderer.render(pose, pusher).tobytes()
    again = AreaRenderer(480, 480, MAP, GOAL_POSE)
    assert again.render(pose, pusher).tobytes() == renderer.render(pose, pusher).tobytes()


def test_block_coverage_integrates_to_the_silhouettes_area(renderer):
    # Union of the bar (124 x 34) and the stem (34 x 94) boxes grown by 2 px with round
    # corners: 4216 + 3196 - 136 (their overlap) - 6 corners x (4 - pi) px^2.
    box, alpha, fill = renderer.block_coverage((230.0, 260.0, 0.7))
    expected = 4216.0 + 3196.0 - 136.0 - 6.0 * (4.0 - math.pi)
    assert alpha.sum() / 0.9375 ** 2 == pytest.approx(expected, rel=2e-4)
    # The fill: bar (116 x 26) + stem (26 x 86) inside the borders.
    assert fill.sum() / 0.9375 ** 2 == pytest.approx(116 * 26 + 26 * 86, rel=2e-4)
    assert box[2] > box[0] and box[3] > box[1]


def test_the_pusher_is_drawn_over_the_block(renderer):
    img = renderer.render((200.0, 200.0, 0.0), (200.0, 215.0))
    assert img[_px(200.0, 215.0)].tolist() == [78, 126, 255]


def test_rounded_box_row_interval_matches_its_definition():
    y = np.array([-2.5, 0.0, 1.5])
    lo, hi = rounded_box_interval(y, (0.0, 0.0), 0.0, (5.0, 1.0), 2.0)
    # Row 0 is inside the box: +- (5 + 2); row 1.5 crosses the corner disks (radius 2).
    assert lo[1] == pytest.approx(-7.0) and hi[1] == pytest.approx(7.0)
    assert hi[2] == pytest.approx(5.0 + math.sqrt(4.0 - 0.25))
    assert hi[0] == pytest.approx(5.0 + math.sqrt(4.0 - 1.5 ** 2))


def test_a_rotated_camera_map_or_no_subrows_is_refused():
    with pytest.raises(ConfigError, match='axis-aligned top camera'):
        AreaRenderer(64, 64, ((0.5, 0.1, 0.0), (0.0, 0.5, 0.0)), GOAL_POSE)
    with pytest.raises(ConfigError, match='subrows=0 is invalid'):
        AreaRenderer(64, 64, ((0.125, 0.0, 0.0), (0.0, 0.125, 0.0)), GOAL_POSE, subrows=0)
