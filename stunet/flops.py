"""Training compute, counted: FLOPs of one forward + backward pass of a STUNet on one example.

Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies, convolutions and
attention; elementwise work is not counted) on one example run on the CPU (a fresh model, a second
or two per shape for ``shapes``, once per process), so the numbers are those of the real configs. A
batch of ``b`` examples costs ``b`` times one example. ``stunet train`` and ``stunet
train-cascade`` log their cumulative FLOPs with these numbers, so the two arms of issue 18's
comparison (``scripts/cascade_experiment.py``) can be held to the same training compute.
"""
from __future__ import annotations

import functools

import torch

from .config import STUNetConfig


@functools.lru_cache(maxsize=64)
def example_flops(cfg: STUNetConfig, frames: int, stride: int = 1) -> int:
    """FLOPs of one forward + backward of ``cfg``'s network on one clip of ``frames`` frames
    (text encoder included, conditioning inputs given), as in a training step."""
    from torch.utils.flop_counter import FlopCounterMode

    from .model import STUNet
    cfg.check_frames(frames)
    with torch.random.fork_rng(devices=[]):            # the caller's global RNG is left as it was
        model = STUNet(cfg)
    x = torch.zeros(1, cfg.video_channels, frames, cfg.height, cfg.width)
    ids = torch.zeros(1, cfg.max_words, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        text = model.encode_text(ids)
        out = model(x, torch.zeros(1, dtype=torch.long), text, stride, x, torch.ones_like(x[:, :1]))
        out.float().square().mean().backward()
    return int(counter.get_total_flops())


def stride_mixture_flops(cfg: STUNetConfig) -> float:
    """Expected FLOPs per training clip of ``stunet train``'s video stage: the clip's stride is drawn as
    ``shapes.data.stride_probs`` says (a clip always spans ``cfg.frames`` base frames)."""
    from .shapes.data import stride_probs
    strides, p = stride_probs(cfg)
    return float(sum(q * example_flops(cfg, cfg.frames // s, s) for s, q in zip(strides, p)))
