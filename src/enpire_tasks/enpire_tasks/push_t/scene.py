"""The Push-T scene as gym-pusht builds and draws it: the T block, the pusher, walls, colours.

The simulated cell (``enpire_sim``: its cameras) and the verifier (``enpire_reward``: its pose
fit, palette and camera models) must agree on these facts to the last bit, so they live here
once. Plain data, no imports: a real cell's verifier reads the same numbers without the
simulator. Part of the push_t task contract (``contract.code_modules``).

Units are workspace px of gym-pusht's 512 x 512 table, y down. The T's body frame is
gym-pusht's ``add_tee`` (scale 30): the origin is the middle of the bar's outer edge, the stem
points along +y.
"""

from __future__ import annotations

#: Side of the square table in workspace px (gym-pusht renders it 1 px per workspace px).
TABLE_PX = 512

#: The T's two rectangles in the body frame, bar then stem:
#: ``(centre_x, centre_y, half_x, half_y)``. The bar is 120 x 30, the stem 30 x 90.
T_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 15.0, 60.0, 15.0),
    (0.0, 75.0, 15.0, 45.0),
)
#: Half width of the block's drawn border (gym-pusht strokes each edge 4 px wide).
BORDER_HALF_PX = 2.0
#: The pusher's disk and the lighter disk drawn inside it.
PUSHER_RADIUS_PX = 15.0
PUSHER_FILL_RADIUS_PX = 11.0
#: The four static walls: ``((ax, ay), (bx, by), radius)``.
WALLS: tuple[tuple[tuple[float, float], tuple[float, float], float], ...] = (
    ((5.0, 506.0), (5.0, 5.0), 2.0),
    ((5.0, 5.0), (506.0, 5.0), 2.0),
    ((506.0, 5.0), (506.0, 506.0), 2.0),
    ((5.0, 506.0), (506.0, 506.0), 2.0),
)

#: gym-pusht's colours (pygame names), RGB. pymunk draws a shape's fill ``light_color``
#: (1.2 x its colour, rounded, capped at 255) and its outline in the colour itself.
TABLE = (255, 255, 255)             # white
GOAL = (144, 238, 144)              # LightGreen
WALL = (211, 211, 211)              # LightGray
BLOCK_BORDER = (119, 136, 153)      # LightSlateGray
BLOCK_FILL = (143, 163, 184)        # light_color(LightSlateGray)
PUSHER = (65, 105, 225)             # RoyalBlue
PUSHER_FILL = (78, 126, 255)        # light_color(RoyalBlue)


def box_corners(box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
    """The corners of a body-frame box ``(cx, cy, hx, hy)``: top-left first, clockwise on
    screen (y down)."""
    cx, cy, hx, hy = box
    return ((cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy))


__all__ = ['BLOCK_BORDER', 'BLOCK_FILL', 'BORDER_HALF_PX', 'GOAL', 'PUSHER', 'PUSHER_FILL',
           'PUSHER_FILL_RADIUS_PX', 'PUSHER_RADIUS_PX', 'TABLE', 'TABLE_PX', 'T_BOXES',
           'WALL', 'WALLS', 'box_corners']
