"""Make torchvision importable next to a CPU torch build whose ops it cannot load.

On these machines torch is the CPU build (``torch==2.13.0+cpu``) and pip's ``torchvision``
wheel is the CUDA build: its compiled ops (``torchvision/_C.so``) do not load beside the CPU
torch, and ``import torchvision`` then fails with ``operator torchvision::nms does not exist``
(its fake-tensor registrations need the op's schema). Ultralytics imports torchvision while it
trains, and its NMS calls ``torchvision.ops.nms`` once torchvision is imported.

:func:`ensure_torchvision_ops` runs before the first import of torchvision (the YOLO and
SAM2 backends call it). When torchvision's own library loads, it does nothing: a normal
install, GPU or CPU, is untouched. When it does not, it defines ``torchvision::nms`` and
``torchvision::qnms`` with a pure-torch CPU kernel (the reference greedy NMS: the boxes in
descending score order, each kept unless it overlaps a kept box by more than the IoU
threshold), so that torchvision imports and ``torchvision.ops.nms`` works; the other
compiled ops (RoI align, deformable convolution) stay unavailable and say so when called.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
import threading
from typing import Any

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def nms_reference(boxes, scores, iou_threshold: float):  # noqa: ANN001, ANN201 - torch types
    """Greedy NMS over ``boxes`` (N x 4, x1 y1 x2 y2) by ``scores`` (N): the kept indices in
    descending score order (torchvision's contract)."""
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    # pairwise IoU once (N is at most a few thousand after ultralytics' confidence filter)
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter).clamp(min=1e-12)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    over = (iou > iou_threshold).cpu()
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return torch.as_tensor(keep, dtype=torch.long, device=boxes.device)


def _own_ops_load() -> bool:
    """Whether torchvision's compiled ops load into this torch (without importing
    torchvision, whose import fails when they do not)."""
    import torch

    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return True         # not installed: nothing to make importable
    libs = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], '_C*.so')) + \
        glob.glob(os.path.join(list(spec.submodule_search_locations)[0], '_C*.pyd'))
    if not libs:
        return False
    try:
        torch.ops.load_library(libs[0])
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_ops() -> str:
    """Make ``import torchvision`` and ``torchvision.ops.nms`` work (see the module doc).

    Returns what was found: ``'native'`` (torchvision's own ops, or no torchvision),
    ``'reference-nms'`` (the pure-torch NMS stands in) or ``'imported'`` (torchvision was
    imported before this was called: left as it is).
    """
    with _LOCK:
        if 'state' in _STATE:
            return _STATE['state']
        if 'torchvision' in sys.modules:
            _STATE['state'] = 'imported'
            return 'imported'
        if _own_ops_load():
            _STATE['state'] = 'native'
            return 'native'
        import torch

        lib = torch.library.Library('torchvision', 'DEF')
        for op in ('nms', 'qnms'):
            lib.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
            lib.impl(op, nms_reference, 'CPU')
        _STATE['lib'] = lib      # keep the registration alive
        import torchvision.ops.boxes

        torchvision.ops.boxes._assert_has_ops = lambda: None    # nms and qnms exist now
        _STATE['state'] = 'reference-nms'
        return 'reference-nms'


__all__ = ['ensure_torchvision_ops', 'nms_reference']
