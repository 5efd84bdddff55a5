"""``check_cell``: a Gymnasium ``check_env``-style contract checker for simulated cells.

Every simulated cell passes it in tests. It drives the cell through its :class:`CellPort`
and raises :class:`CellContractError` naming the first broken rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from enpire_common.errors import CellError, CommandRejectedError
from enpire_sim.core.ports import CellPort


class CellContractError(CellError):
    """A cell broke the cell contract; the message names the rule and the values seen."""


def _fail(rule: str, detail: str) -> None:
    raise CellContractError(f'check_cell: {rule}: {detail}')


def _gt_tuple(gt: object) -> tuple:
    return (tuple(gt.object_pose), tuple(gt.agent_pos), float(gt.coverage), bool(gt.success),
            int(gt.step), int(gt.seed))


def check_cell(cell: CellPort, *, seed: int = 7, n_steps: int = 5,
               image_shape: tuple[int, int, int] | None = None,
               actions: Sequence[Sequence[float]] | None = None) -> None:
    """Check that ``cell`` honours the cell contract.

    Rules: it implements :class:`CellPort`; the same seed gives the same start (ground truth
    and image bytes) and the same actions give the same trajectory; images are (H, W, 3)
    uint8 (of ``image_shape`` when given); state vectors are finite float arrays; ``step``
    counts control steps since reset; coverage is in [0, 1] and ``success`` is a bool;
    NaN, wrong-shape and out-of-bounds actions raise CommandRejectedError and leave the
    scene unchanged.

    Args:
        cell: the cell under test (it is reset several times).
        seed: the seed used for the determinism checks.
        n_steps: control steps per trajectory.
        image_shape: the expected image shape, if known.
        actions: the actions to drive (default: ``n_steps`` uniform in the bounds; an arm
            cell's bounds hold many targets its arms cannot reach, which it refuses).

    Raises:
        CellContractError: the first rule the cell breaks.
    """
    if not isinstance(cell, CellPort):
        _fail('implements CellPort', f'{type(cell).__name__} lacks reset/step/render/'
              'ground_truth/agent_state/low/high')
    low = np.asarray(cell.low, dtype=np.float64)
    high = np.asarray(cell.high, dtype=np.float64)
    if low.shape != high.shape or not np.all(low < high):
        _fail('bounds', f'low={low.tolist()} high={high.tolist()} must be ordered')
    if actions is None:
        rng = np.random.default_rng(seed)
        actions = [rng.uniform(low, high) for _ in range(n_steps)]

    def episode() -> tuple[list, bytes, list[tuple]]:
        state = cell.reset(seed=seed)
        _check_state(state, 'reset')
        img = cell.render()
        _check_image(img, image_shape)
        gts = [_gt_tuple(cell.ground_truth())]
        states = [np.asarray(state).tolist()]
        for i, a in enumerate(actions):
            s = cell.step(a)
            _check_state(s, f'step {i}')
            states.append(np.asarray(s).tolist())
            gt = cell.ground_truth()
            gts.append(_gt_tuple(gt))
            if int(gt.step) != i + 1:
                _fail('step counter', f'ground_truth().step={gt.step} after {i + 1} steps')
            if not (0.0 <= float(gt.coverage) <= 1.0) or math.isnan(float(gt.coverage)):
                _fail('coverage in [0, 1]', f'coverage={gt.coverage}')
            if not isinstance(gt.success, (bool, np.bool_)):
                _fail('success is a bool', f'success={gt.success!r}')
        return states, img.tobytes(), gts

    first = episode()
    second = episode()
    if first[2][0] != second[2][0]:
        _fail('same seed -> same start', f'{first[2][0]} != {second[2][0]}')
    if first[1] != second[1]:
        _fail('same seed -> same image', 'start images differ byte-wise')
    if first[0] != second[0] or first[2] != second[2]:
        _fail('same seed + actions -> same trajectory', 'trajectories differ')
    if int(first[2][0][5]) != seed:
        _fail('ground truth records the seed', f'seed={first[2][0][5]}, reset with {seed}')

    cell.reset(seed=seed)
    before = _gt_tuple(cell.ground_truth())
    bad_actions = {
        'NaN': [float('nan'), float(low[1])],
        'inf': [float(low[0]), float('inf')],
        'wrong length': [float(low[0])] * (len(low) + 1),
        'below low': (low - 1.0).tolist(),
        'above high': (high + 1.0).tolist(),
    }
    for name, bad in bad_actions.items():
        try:
            cell.step(bad)
        except CommandRejectedError:
            pass
        else:
            _fail('bad actions are rejected', f'{name} action {bad} was accepted')
        if _gt_tuple(cell.ground_truth()) != before:
            _fail('a rejected action leaves the scene unchanged', f'{name} changed it')
    state = np.asarray(cell.agent_state())
    _check_state(state, 'agent_state')


def _check_state(state: object, where: str) -> None:
    arr = np.asarray(state)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        _fail('state is a 1-D float vector', f'{where}: shape {arr.shape} dtype {arr.dtype}')
    if not np.all(np.isfinite(arr)):
        _fail('state is finite', f'{where}: {arr.tolist()}')


def _check_image(img: object, shape: tuple[int, int, int] | None) -> None:
    if not isinstance(img, np.ndarray):
        _fail('render returns an ndarray', f'got {type(img).__name__}')
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        _fail('image is (H, W, 3) uint8', f'shape {img.shape} dtype {img.dtype}')
    if shape is not None and tuple(img.shape) != tuple(shape):
        _fail('image has the configured size', f'{img.shape} != {shape}')
