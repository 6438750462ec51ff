"""Training pairs for the SSR model from the shapes world, which draws one clip at any size.

A pair is one world clip of ``config.window`` frames drawn twice from the same trajectory: at the base's size
(``world.make_clip``'s drawing, 4x supersampled: exactly what the base model is trained on) and ``scale``
times larger. The network is fully convolutional, so it trains on crops: a ``crop`` x ``crop`` window of the
large clip (a multiple of ``scale * unshuffle``, placed near the object) and the matching crop of the small
one; the large crop is drawn with 2x supersampling (each output pixel averages 4 samples). The world's
default 4x costs 4x more at this size; against it, 2x changes only edge pixels (a full 128x128 frame: 0.08
levels of 255 on average, at most 58 on an edge pixel).

Shapes: hi b 3 t crop crop, lo b 3 t (crop / scale) (crop / scale), both in [-1, 1].
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..shapes import world
from ..shapes.data import to_tensor
from .config import SSRConfig

HI_SUPERSAMPLE = 2
STRIDES = (1, 2, 4)
STRIDE_P = (4 / 6, 1 / 6, 1 / 6)       # as the base's video stage: stride 1 four times as often


@dataclasses.dataclass
class SSRBatch:
    hi: torch.Tensor        # b 3 t H W, the target
    lo: torch.Tensor        # b 3 t h w, the base-size clip it is conditioned on
    captions: list[str]


def pair(spec: world.ClipSpec, frames: int, stride: int, seed: int, cfg: SSRConfig, crop: int | None = None,
         origin: tuple[int, int] | None = None, style: str = "flat",
         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo): one clip at ``cfg.size`` (or its ``crop`` from ``origin`` = (top, left) in large pixels,
    multiples of ``cfg.scale``; with ``rng`` and no origin, placed near the object by ``crop_origin``) and at
    ``cfg.base_size`` (the same crop), t h w 3 uint8."""
    s = cfg.scale
    c = world.make_clip(spec, frames, cfg.base_size, stride, seed, style=style)
    crop = cfg.size if crop is None else crop
    if origin is None:
        origin = crop_origin(rng, (c.x, c.y), cfg, crop) if rng is not None else (0, 0)
    top, left = origin
    if crop % s or top % s or left % s or not (0 <= top <= cfg.size - crop and 0 <= left <= cfg.size - crop):
        raise ValueError(f"crop {crop} at {origin} must lie in the frame, in multiples of the scale {s}")
    hi = world.render(spec.shape, world.COLORS[spec.color], c.x * s - left, c.y * s - top, c.radius * s, c.angle,
                      crop, crop, supersample=HI_SUPERSAMPLE, style=style)
    lo = c.video[:, top // s:(top + crop) // s, left // s:(left + crop) // s]
    return hi, lo


def crop_origin(rng: np.random.Generator, clip_xy: tuple[np.ndarray, np.ndarray], cfg: SSRConfig, crop: int
                ) -> tuple[int, int]:
    """(top, left) of a crop near the object's mean position (jittered), on the grid of scale * unshuffle."""
    grid = cfg.scale * cfg.unshuffle
    if crop >= cfg.size:
        return 0, 0
    cx, cy = (float(np.mean(v)) * cfg.scale for v in clip_xy)
    jitter = rng.uniform(-crop / 3, crop / 3, size=2)

    def place(centre):
        v = int(round((centre - crop / 2) / grid)) * grid
        return min(max(v, 0), cfg.size - crop)
    return place(cy + jitter[0]), place(cx + jitter[1])


def ssr_batch(rng: np.random.Generator, cfg: SSRConfig, batch: int, crop: int | None = None,
              spec_p: np.ndarray | None = None) -> SSRBatch:
    """``batch`` pairs of ``cfg.window`` frames, clip kinds uniform (or ``spec_p``), strides as the base's."""
    crop = cfg.size if crop is None else crop
    grid = cfg.scale * cfg.unshuffle
    if crop % grid or not grid <= crop <= cfg.size:
        raise ValueError(f"crop must be a multiple of {grid} in [{grid}, {cfg.size}], got {crop}")
    his, los, caps = [], [], []
    for _ in range(batch):
        spec = world.random_spec(rng, p=spec_p)
        stride = int(rng.choice(STRIDES, p=STRIDE_P))
        seed = int(rng.integers(2**62))
        hi, lo = pair(spec, cfg.window, stride, seed, cfg, crop, rng=rng)
        his.append(hi); los.append(lo); caps.append(spec.caption)
    return SSRBatch(to_tensor(np.stack(his)), to_tensor(np.stack(los)), caps)
