"""Stand-ins for the comparison's tests: a model that draws the world's true clips (a perfect STUNet), and a
keyframe cascade with ``stunet.cascade``'s API (``sample_batch``, ``fill``, ``keyframe_frames``) whose keyframes are
the world's and whose TSR stage is a linear cross-fade between keyframes."""
from __future__ import annotations


import numpy as np
import torch

from stunet.shapes import world

KEYFRAMES = tuple(range(0, 32, 4))


def crossfade(keyframes: np.ndarray, frames: int = 32, stride: int = 4) -> np.ndarray:
    """(b, k, h, w, 3) keyframes -> (b, frames, h, w, 3): linear blends between consecutive keyframes."""
    k = keyframes.astype(np.float32)
    out = []
    for f in range(frames):
        i, r = divmod(f, stride)
        j = min(i + 1, k.shape[1] - 1)
        a = r / stride if j != i else 0.0
        out.append((1 - a) * k[:, i] + a * k[:, j])
    return np.round(np.stack(out, 1)).astype(np.uint8)


class WorldModel:
    """``sample_batch`` draws the world's own clip of each prompt (its seed from the generator): a perfect model."""

    def __init__(self, size: int = 32):
        self.size = size
        self.calls = 0

    def sample_batch(self, prompts, *, generator, frames=32, **kw):
        self.calls += 1
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=generator).tolist()
        return np.stack([world.make_clip(world.parse_caption(p), frames, self.size, 1, seed=s).video
                         for p, s in zip(prompts, seeds)])


class WorldCascade:
    """A cascade whose keyframes are the world's (true clips at stride 4) and whose TSR cross-fades."""

    keyframe_frames = KEYFRAMES

    def __init__(self, size: int = 32):
        self.world = WorldModel(size)
        self.fills = 0

    def sample_batch(self, prompts, *, generator, steps=None, guidance=None, sampler=None):
        true = self.world.sample_batch(prompts, generator=generator)
        return self.fill(prompts, true[:, list(KEYFRAMES)], generator=generator)

    def fill(self, prompts, keyframes, *, generator, steps=None, guidance=None, sampler=None, callback=None):
        self.fills += 1
        assert keyframes.shape[1] == len(KEYFRAMES) and keyframes.dtype == np.uint8
        return crossfade(keyframes)
