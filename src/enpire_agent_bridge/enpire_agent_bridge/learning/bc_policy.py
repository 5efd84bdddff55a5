"""Behaviour-cloned policy: a small convolutional encoder per camera view and an MLP head that
predicts a chunk of future actions from the images and the state (ENPIRE ``bc`` regime).

This file is both the trainer's model code (``enpire train bc`` imports it) and, copied as
``policy.py``, the policy of every checkpoint directory, so that training and acting run the
same featuriser and network. It needs only numpy, OpenCV and torch, and reads its weights
(``weights.pt``, loaded with ``weights_only=True``) and its layout (``policy.yaml``
``params``) from its own directory.

Acting: every ``n_action_steps`` ticks the network predicts ``horizon`` actions from the
current observation; the policy executes the first ``n_action_steps`` of them (receding
horizon, as diffusion policy and ACT do), clipped to the action bounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = 'weights.pt'
ARCHS = ('mlp',)


def featurize(obs: dict[str, Any], layout: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(images (V, S, S, 3) uint8, state (D,) float32)`` of one observation.

    ``layout['images']``: the camera observation names, in order; each frame is resized to
    ``layout['image_size']`` square (area interpolation). ``layout['state']``: the state
    observation names whose values are concatenated, in order.
    """
    import cv2

    size = int(layout['image_size'])
    images = []
    for name in layout['images']:
        frame = np.asarray(obs[name])
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'observation {name!r} is not an H x W x 3 image: {frame.shape}')
        if frame.shape[:2] != (size, size):
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        images.append(frame)
    state = [np.atleast_1d(np.asarray(obs[name], dtype=np.float64)).reshape(-1)
             for name in layout['state']]
    state_vec = np.concatenate(state) if state else np.zeros(0)
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
            state_vec.astype(np.float32))


def build_model(config: dict[str, Any]) -> Any:
    """The network of ``config`` (arch, views, image_size, state_dim, action_dim, horizon,
    width, channels)."""
    import torch
    from torch import nn

    class SpatialSoftmax(nn.Module):
        """Expected image coordinates of each channel's softmax (keypoints): 2 per channel."""

        def __init__(self, size: int) -> None:
            super().__init__()
            lin = torch.linspace(-1.0, 1.0, size)
            ys, xs = torch.meshgrid(lin, lin, indexing='ij')
            self.register_buffer('grid', torch.stack([xs.reshape(-1), ys.reshape(-1)], 1))

        def forward(self, x: Any) -> Any:
            b, c, h, w = x.shape
            attn = torch.softmax(x.reshape(b, c, h * w), dim=-1)
            return (attn @ self.grid).reshape(b, 2 * c)

    class Encoder(nn.Module):
        def __init__(self, size: int, channels: int) -> None:
            super().__init__()
            c = channels
            # Two stride-2 stages and one at a quarter of the input size, no normalisation
            # layers (group norm's backward costs ~8x the convolutions on a CPU): ~1 ms a
            # 96 px frame to train on 2 cores, under 1 ms to act on one.
            self.conv = nn.Sequential(
                nn.Conv2d(3, c, 5, 2, 2), nn.ReLU(),
                nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * c, 2 * c, 3, 1, 1), nn.ReLU())
            out = (size + 1) // 2
            out = (out + 1) // 2
            self.keypoints = SpatialSoftmax(out)
            self.out_dim = 4 * c

        def forward(self, x: Any) -> Any:
            return self.keypoints(self.conv(x))

    class BCNet(nn.Module):
        """uint8 images (B, V, S, S, 3) + raw state (B, D) -> raw actions (B, H, A)."""

        def __init__(self, cfg: dict[str, Any]) -> None:
            super().__init__()
            if cfg['arch'] not in ARCHS:
                raise ValueError(f"arch {cfg['arch']!r}: this policy knows {ARCHS}")
            self.horizon, self.action_dim = int(cfg['horizon']), int(cfg['action_dim'])
            self.encoders = nn.ModuleList(Encoder(int(cfg['image_size']), int(cfg['channels']))
                                          for _ in range(int(cfg['views'])))
            feat = sum(e.out_dim for e in self.encoders) + int(cfg['state_dim'])
            width = int(cfg['width'])
            self.head = nn.Sequential(nn.Linear(feat, width), nn.ReLU(),
                                      nn.Linear(width, width), nn.ReLU(),
                                      nn.Linear(width, self.horizon * self.action_dim))
            # Min-max normalisation to [-1, 1] (set from the training set; saved with weights).
            for name, dim in (('state', int(cfg['state_dim'])),
                              ('action', self.action_dim)):
                self.register_buffer(f'{name}_low', torch.zeros(dim))
                self.register_buffer(f'{name}_high', torch.ones(dim))

        @staticmethod
        def _scale(x: Any, low: Any, high: Any) -> Any:
            return 2.0 * (x - low) / torch.clamp(high - low, min=1e-6) - 1.0

        @property
        def feature_dim(self) -> int:
            return sum(e.out_dim for e in self.encoders) + int(self.state_low.shape[0])

        def features(self, images: Any, state: Any) -> Any:
            """Keypoints of every view and the scaled state: (B, feature_dim)."""
            x = images.float().permute(0, 1, 4, 2, 3) / 255.0         # B, V, 3, S, S
            feats = [enc(x[:, i]) for i, enc in enumerate(self.encoders)]
            feats.append(self._scale(state, self.state_low, self.state_high))
            return torch.cat(feats, dim=1)

        def normalized(self, images: Any, state: Any) -> Any:
            out = self.head(self.features(images, state))
            return out.reshape(-1, self.horizon, self.action_dim)

        def normalize_action(self, action: Any) -> Any:
            return self._scale(action, self.action_low, self.action_high)

        def forward(self, images: Any, state: Any) -> Any:
            y = self.normalized(images, state)
            span = torch.clamp(self.action_high - self.action_low, min=1e-6)
            return (y + 1.0) / 2.0 * span + self.action_low

    return BCNet(config)


def load_model(directory: str | Path, config: dict[str, Any]) -> Any:
    """The network of ``config`` with the weights of ``directory/weights.pt``.

    Raises:
        RuntimeError: the weights are missing, unreadable, truncated or of other shapes.
    """
    import torch

    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise RuntimeError(f'{path}: no weights; a bc policy directory holds {WEIGHTS}')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise RuntimeError(f'{path}: unreadable weights ({type(exc).__name__}: {exc}); the '
                           'checkpoint is corrupt or truncated') from None
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - size mismatches, missing keys
        raise RuntimeError(f'{path}: the weights do not fit the network of policy.yaml '
                           f'({str(exc).splitlines()[0]})') from None
    model.eval()
    return model


class BCPolicy:
    def __init__(self, spec: Any, directory: Path) -> None:
        import torch

        torch.set_num_threads(1)
        params = dict(spec.params)
        self.layout = params['layout']
        self.config = params['model']
        self.n_exec = max(1, min(int(params.get('n_action_steps', 1)),
                                 int(self.config['horizon'])))
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        self.model = load_model(directory, self.config)
        self.queue: list[np.ndarray] = []
        # The first act imports OpenCV and sets up torch's kernels (~100 ms): pay it here,
        # outside the act deadline, on an observation of the contract's shapes.
        blank = {name: np.zeros(tuple(f.shape), dtype=f.dtype)
                 for name, f in spec.observation.items()}
        for _ in range(2):
            self.act(blank)
        self.queue = []

    def reset(self, seed: Any = None) -> None:
        self.queue = []

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        import torch

        if not self.queue:
            images, state = featurize(obs, self.layout)
            with torch.inference_mode():
                chunk = self.model(torch.from_numpy(images)[None],
                                   torch.from_numpy(state)[None])[0].numpy()
            self.queue = [row.astype(np.float64) for row in chunk[:self.n_exec]]
        return np.clip(self.queue.pop(0), self.low, self.high)


def make_policy(spec: Any) -> BCPolicy:
    return BCPolicy(spec, Path(__file__).resolve().parent)
