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

Arch ``diffusion`` (diffusion policy's objective on the same encoders): the head predicts the
noise in a noised action chunk (100 training steps, squared-cosine schedule) and acting
draws a chunk by 10 deterministic DDIM steps from Gaussian noise.

Arch ``act`` (ACT, Zhao et al. 2023, on the same encoders): each camera keypoint, the state
and a CVAE latent are tokens of a transformer encoder; a decoder's ``horizon`` queries read
out the chunk; training adds the CVAE encoder over the true chunk (loss L1 + 10 x KL), and
acting takes the latent at the prior's mean.

Arch ``knn`` (nearest-neighbour cloning, as VINN): no network. The task's pose tool
(``estimate_pose``, the verifier's estimate from the camera image) gives the object's planar
pose; the pusher and the goal, seen from the object's frame, are the features; the policy
replays the action chunk of the nearest recorded frame (``memory.npz``), rotated back into the
workspace. A regression network averages the teacher's choices where they switch (which side
of the block to push from) and drifts off its states; a lookup never blends two choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = 'weights.pt'
MEMORY = 'memory.npz'
ARCHS = ('mlp', 'diffusion', 'act', 'knn')
#: act: the CVAE latent's size and the KL weight of its loss (ACT's defaults: 32, 10).
ACT_LATENT = 32
ACT_KL_WEIGHT = 10.0
#: diffusion: noise steps of training (squared-cosine schedule) and DDIM steps of acting.
DIFFUSION_STEPS = 100
SAMPLE_STEPS = 10
#: knn: px of feature distance that one radian of the object's angle to the goal is worth.
ANGLE_SCALE_PX = 60.0


def _rotation(theta: float) -> np.ndarray:
    c, s = float(np.cos(theta)), float(np.sin(theta))
    return np.array([[c, -s], [s, c]])


def object_frame(position: np.ndarray, pose: Any, goal: Any,
                 angle_scale: float = ANGLE_SCALE_PX) -> tuple[np.ndarray, np.ndarray]:
    """``(features (6,), rotation (2, 2))`` of the knn policy for one observation.

    ``position`` (x, y) is the agent's, ``pose`` and ``goal`` are planar poses (x, y, theta),
    all in the workspace frame. The features are the agent's position and the goal's in the
    object's frame, and the goal's angle relative to the object as ``angle_scale`` *
    (cos, sin). ``rotation`` takes object-frame vectors to the workspace: an action chunk
    stored as object-frame offsets from the agent is ``position + offsets @ rotation.T``.
    """
    rot = _rotation(float(pose[2]))
    origin = np.asarray(pose[:2], dtype=np.float64)
    agent = rot.T @ (np.asarray(position, dtype=np.float64)[:2] - origin)
    target = rot.T @ (np.asarray(goal[:2], dtype=np.float64) - origin)
    dth = float(goal[2]) - float(pose[2])
    return (np.array([agent[0], agent[1], target[0], target[1],
                      angle_scale * np.cos(dth), angle_scale * np.sin(dth)]), rot)


def mirrored(features: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same frames reflected about the object's own y axis (x -> -x): for an object whose
    outline is symmetric about that axis, a push mirrored is a push that does the mirrored
    thing. ``features`` (N, 6), ``offsets`` (N, H, 2)."""
    f = features.copy()
    f[:, [0, 2, 5]] *= -1.0
    o = offsets.copy()
    o[..., 0] *= -1.0
    return f, o


def load_memory(directory: str | Path, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, 6) float64, offsets (N, horizon, 2) float64)`` of ``memory.npz``.

    Raises:
        RuntimeError: the file is missing, unreadable, truncated, or of other shapes.
    """
    path = Path(directory) / MEMORY
    if not path.is_file():
        raise RuntimeError(f'{path}: no memory; a knn policy directory holds {MEMORY}')
    try:
        with np.load(path, allow_pickle=False) as z:
            features = np.asarray(z['features'], dtype=np.float64)
            offsets = np.asarray(z['offsets'], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - zip and numpy raise many types for a bad file
        raise RuntimeError(f'{path}: unreadable memory ({type(exc).__name__}: {exc}); the '
                           'checkpoint is corrupt or truncated') from None
    n = features.shape[0] if features.ndim == 2 else -1
    if (n < 1 or features.shape[1] != 6 or offsets.shape != (n, horizon, 2)
            or not (np.all(np.isfinite(features)) and np.all(np.isfinite(offsets)))):
        raise RuntimeError(f'{path}: features {features.shape} and offsets {offsets.shape} do '
                           f'not fit policy.yaml (N x 6 and N x {horizon} x 2, finite)')
    return features, offsets


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
            chunk = self.horizon * self.action_dim
            self.diffusion = cfg['arch'] == 'diffusion'
            if self.diffusion:
                # Diffusion policy's head: predicts the noise in a noised action chunk from
                # the chunk, the step (sinusoidal embedding) and the observation features.
                self.steps = int(cfg.get('diffusion_steps', DIFFUSION_STEPS))
                self.sample_steps = int(cfg.get('sample_steps', SAMPLE_STEPS))
                t = torch.arange(self.steps + 1, dtype=torch.float64) / self.steps
                abar = torch.cos((t + 0.008) / 1.008 * torch.pi / 2) ** 2
                abar = (abar / abar[0]).clamp(min=1e-5)
                self.register_buffer('alpha_bar', abar[1:].float())
                self.head = nn.Sequential(nn.Linear(feat + chunk + 32, width), nn.Mish(),
                                          nn.Linear(width, width), nn.Mish(),
                                          nn.Linear(width, width), nn.Mish(),
                                          nn.Linear(width, chunk))
            elif cfg['arch'] == 'act':
                self._act_modules(cfg, width)
            else:
                self.head = nn.Sequential(nn.Linear(feat, width), nn.ReLU(),
                                          nn.Linear(width, width), nn.ReLU(),
                                          nn.Linear(width, chunk))
            # Min-max normalisation to [-1, 1] (set from the training set; saved with weights).
            for name, dim in (('state', int(cfg['state_dim'])),
                              ('action', self.action_dim)):
                self.register_buffer(f'{name}_low', torch.zeros(dim))
                self.register_buffer(f'{name}_high', torch.ones(dim))

        def _act_modules(self, cfg: dict[str, Any], width: int) -> None:
            """ACT (Zhao et al. 2023): a transformer encoder over the latent, the state and
            every camera keypoint as tokens; a decoder whose ``horizon`` queries read out
            the chunk; in training a CVAE encoder infers the latent from the true chunk."""
            heads = 4 if width % 4 == 0 else 1
            self.latent_dim = int(cfg.get('latent_dim', ACT_LATENT))
            self.kl_weight = float(cfg.get('kl_weight', ACT_KL_WEIGHT))
            n_kp = sum(e.out_dim // 2 for e in self.encoders)
            state_dim = int(cfg['state_dim'])

            def layer(decoder: bool = False) -> Any:
                kind = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
                return kind(width, heads, 2 * width, dropout=0.1, batch_first=True)

            self.kp_in = nn.Linear(2, width)
            self.kp_pos = nn.Parameter(torch.zeros(max(n_kp, 1), width))
            self.state_in = nn.Linear(max(state_dim, 1), width)
            self.latent_in = nn.Linear(self.latent_dim, width)
            self.tok_pos = nn.Parameter(torch.zeros(2, width))
            self.encoder = nn.TransformerEncoder(layer(), 2)
            self.decoder = nn.TransformerDecoder(layer(decoder=True), 1)
            self.queries = nn.Parameter(torch.randn(self.horizon, width) * 0.02)
            self.head = nn.Linear(width, self.action_dim)
            # The CVAE's encoder (training only): [cls, state, actions] -> latent mean, logvar.
            self.cls = nn.Parameter(torch.zeros(1, width))
            self.act_in = nn.Linear(self.action_dim, width)
            self.act_pos = nn.Parameter(torch.randn(self.horizon + 2, width) * 0.02)
            self.posterior = nn.TransformerEncoder(layer(), 2)
            self.to_latent = nn.Linear(width, 2 * self.latent_dim)

        def _act_tokens(self, images: Any, state: Any) -> Any:
            x = images.float().permute(0, 1, 4, 2, 3) / 255.0
            kps = [enc(x[:, i]).reshape(x.shape[0], -1, 2) for i, enc in enumerate(self.encoders)]
            st = self._scale(state, self.state_low, self.state_high)
            if st.shape[1] == 0:
                st = torch.zeros(st.shape[0], 1, device=st.device)
            kp = (self.kp_in(torch.cat(kps, dim=1)) + self.kp_pos) if kps else None
            return kp, self.state_in(st)

        def _act_decode(self, kp: Any, state_tok: Any, z: Any) -> Any:
            toks = torch.stack([self.latent_in(z), state_tok], dim=1) + self.tok_pos
            if kp is not None:
                toks = torch.cat([toks, kp], dim=1)
            memory = self.encoder(toks)
            q = self.queries.unsqueeze(0).expand(toks.shape[0], -1, -1)
            return self.head(self.decoder(q, memory))

        def act_loss(self, images: Any, state: Any, want: Any) -> Any:
            """ACT's loss of scaled chunks ``want`` (B, H, A): L1 of the chunk decoded from
            the posterior's latent + kl_weight * KL(posterior || N(0, I))."""
            kp, state_tok = self._act_tokens(images, state)
            b = want.shape[0]
            seq = torch.cat([self.cls.expand(b, 1, -1), state_tok.unsqueeze(1),
                             self.act_in(want)], dim=1) + self.act_pos
            stats = self.to_latent(self.posterior(seq)[:, 0])
            mu, logvar = stats[:, :self.latent_dim], stats[:, self.latent_dim:].clamp(-10, 10)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            pred = self._act_decode(kp, state_tok, z)
            kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum(dim=1).mean()
            return torch.nn.functional.l1_loss(pred, want) + self.kl_weight * kl

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
            """Scaled actions (B, H, A): the head's regression, or (diffusion) a DDIM
            sample from noise drawn by torch's generator."""
            if hasattr(self, 'decoder'):       # act: the prior's mean latent, z = 0
                kp, state_tok = self._act_tokens(images, state)
                z = torch.zeros(state_tok.shape[0], self.latent_dim, device=state_tok.device)
                return self._act_decode(kp, state_tok, z)
            feat = self.features(images, state)
            if not self.diffusion:
                return self.head(feat).reshape(-1, self.horizon, self.action_dim)
            x = torch.randn(feat.shape[0], self.horizon * self.action_dim,
                            device=feat.device)
            ts = torch.linspace(self.steps - 1, 0, self.sample_steps).round().long()
            for i, t in enumerate(ts.tolist()):
                abar = self.alpha_bar[t]
                eps = self._eps(x, t, feat)
                x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1.0, 1.0)
                if i + 1 == len(ts):
                    x = x0
                else:
                    nxt = self.alpha_bar[int(ts[i + 1])]
                    x = nxt.sqrt() * x0 + (1 - nxt).sqrt() * eps
            return x.reshape(-1, self.horizon, self.action_dim)

        def _eps(self, x: Any, t: Any, feat: Any) -> Any:
            tt = torch.as_tensor(t, device=feat.device).float().reshape(-1, 1)
            tt = tt.expand(feat.shape[0], 1)
            freqs = torch.exp(torch.arange(16, device=feat.device).float()
                              * (-torch.log(torch.tensor(1000.0)) / 16))
            emb = torch.cat([torch.sin(tt * freqs), torch.cos(tt * freqs)], dim=1)
            return self.head(torch.cat([x, emb, feat], dim=1))

        def diffusion_loss(self, images: Any, state: Any, want: Any) -> Any:
            """The denoising loss of scaled action chunks ``want`` (B, H, A): MSE of the
            predicted noise at a random step (torch's generator)."""
            feat = self.features(images, state)
            x0 = want.reshape(want.shape[0], -1)
            t = torch.randint(0, self.steps, (x0.shape[0],), device=x0.device)
            noise = torch.randn_like(x0)
            abar = self.alpha_bar[t].unsqueeze(1)
            xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
            return torch.nn.functional.mse_loss(self._eps(xt, t, feat), noise)

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
        if seed is not None and self.config.get('arch') == 'diffusion':
            import torch

            torch.manual_seed(int(seed))      # a trial's sampled chunks follow its seed

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        import torch

        if not self.queue:
            images, state = featurize(obs, self.layout)
            with torch.inference_mode():
                chunk = self.model(torch.from_numpy(images)[None],
                                   torch.from_numpy(state)[None])[0].numpy()
            self.queue = [row.astype(np.float64) for row in chunk[:self.n_exec]]
        return np.clip(self.queue.pop(0), self.low, self.high)


class KNNPolicy:
    """Nearest-neighbour cloning in the object's frame (see the module docstring)."""

    def __init__(self, spec: Any, directory: Path) -> None:
        params = dict(spec.params)
        knn = params['knn']
        self.view, self.image = str(knn['view']), str(knn['image'])
        self.position = str(knn['position'])
        self.angle_scale = float(knn.get('angle_scale', ANGLE_SCALE_PX))
        self.goal = np.asarray(knn['goal_pose'], dtype=np.float64)
        horizon = int(params['model']['horizon'])
        self.n_exec = max(1, min(int(params.get('n_action_steps', 1)), horizon))
        self.features, self.offsets = load_memory(directory, horizon)
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        self.tools = spec.tools
        self.queue: list[np.ndarray] = []

    def reset(self, seed: Any = None) -> None:
        self.queue = []

    def _pose(self, obs: dict[str, Any]) -> Any:
        tools = self.tools
        if tools is None or not getattr(tools, 'active', False) or self.image not in obs:
            return None
        try:
            est = tools.estimate_pose(view=self.view, image=obs[self.image])
        except Exception:  # noqa: BLE001 - a ToolError: no pose this tick, hold
            return None
        pose = est.get('pose')
        if not est.get('found') or pose is None or len(pose) < 3:
            return None
        return pose

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        position = np.asarray(obs[self.position], dtype=np.float64)[:2]
        if not self.queue:
            pose = self._pose(obs)
            if pose is None:          # the object unseen: hold where the agent is
                return np.clip(position, self.low, self.high)
            f, rot = object_frame(position, pose, self.goal, self.angle_scale)
            k = int(np.argmin(((self.features - f) ** 2).sum(axis=1)))
            chunk = position + self.offsets[k, :self.n_exec] @ rot.T
            self.queue = list(chunk)
        return np.clip(self.queue.pop(0), self.low, self.high)


def make_policy(spec: Any) -> BCPolicy | KNNPolicy:
    here = Path(__file__).resolve().parent
    if dict(spec.params).get('model', {}).get('arch') == 'knn':
        return KNNPolicy(spec, here)
    return BCPolicy(spec, here)
