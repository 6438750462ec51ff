"""Helpers for other code's tests: a random tiny cascade checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from ..defaults import SamplingDefaults
from ..model import STUNet
from ..shapes.data import tokenizer_for
from .checkpoint import save_cascade
from .config import net_preset, preset


def tiny_cascade_net(seed: int = 0, perturb: float = 0.05) -> STUNet:
    """The ``tiny`` cascade network, its zero-initialised weights perturbed (so it makes more than grey)."""
    torch.manual_seed(seed)
    model = STUNet(net_preset("tiny"))
    if perturb:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    return model.eval()


def save_tiny_cascade(directory: str | Path, seed: int = 0, steps: int = 2, shared: bool = True) -> Path:
    """A random ``tiny`` cascade checkpoint (16x16 frames, 32 per clip) in ``directory``; its sampling
    defaults are ``steps`` DDIM steps at guidance 3 (fast). ``shared=False``: separate K and T weights."""
    cfg = preset("tiny") if shared else preset("tiny", keyframe="keyframe", tsr="tsr")
    k = tiny_cascade_net(seed)
    t = None if shared else tiny_cascade_net(seed + 100)
    return save_cascade(directory, cfg, k, tokenizer_for(k.config), t,
                        sampling=SamplingDefaults(steps=steps, guidance=3.0, sampler="ddim"))
