"""Temporal attention in two numbers per layer, head and denoising step.

* entropy: of each query frame's weights over the key frames, averaged over positions and queries,
  divided by log(frames) so 0 is one frame taken, 1 is all frames alike (attention entropy separates
  structure, low, from detail, high);
* off-diagonal share: the weight a frame gives to the *other* frames, 1 - p(i, i), averaged likewise:
  Enhance-A-Video's cross-frame intensity (arXiv 2502.07508), as a share so layers compare.

Input: an ``Inspector`` recording's ``temporal_attention[(step, layer)]``, h w heads t t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LayerSummary:
    layer: str
    frames: int
    steps: list[int]
    entropy: np.ndarray          # steps heads, in [0, 1]
    off_diagonal: np.ndarray     # steps heads, in [0, 1]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "frames": self.frames, "steps": self.steps,
                "entropy": np.round(self.entropy, 5).tolist(), "off_diagonal": np.round(self.off_diagonal, 5).tolist()}


def summarize_probs(probs) -> tuple[np.ndarray, np.ndarray]:
    """h w heads t t weights -> (entropy, off-diagonal share), one value per head."""
    p = torch.as_tensor(probs).float()
    t = p.shape[-1]
    if t < 2:
        z = np.zeros(p.shape[2], dtype=np.float32)
        return z, z.copy()
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / np.log(t)     # h w heads t
    diag = torch.diagonal(p, dim1=-2, dim2=-1)                         # h w heads t
    return ent.mean((0, 1, 3)).numpy(), (1.0 - diag).mean((0, 1, 3)).numpy()


def summarize(recording) -> list[LayerSummary]:
    """One ``LayerSummary`` per temporal-attention layer of a recording, over its recorded steps."""
    out = []
    for layer in recording.temporal_layers():
        steps = sorted(s for s, name in recording.temporal_attention if name == layer)
        ent, off = zip(*(summarize_probs(recording.temporal_attention[(s, layer)]) for s in steps))
        frames = int(recording.temporal_attention[(steps[0], layer)].shape[-1])
        out.append(LayerSummary(layer, frames, steps, np.stack(ent), np.stack(off)))
    return out
