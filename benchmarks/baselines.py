"""The designs the STUNet is measured against: its VDM-style twin, and diffusers'
``UNet3DConditionModel`` with widths searched to the STUNet's parameter count."""
from __future__ import annotations

import os


def vdm_twin(cfg):
    """The VDM-style twin of a STUNet config: same widths, no temporal down/upsampling, no
    temporal convs, temporal attention at every level (at least one layer, the coarsest's count)."""
    L = cfg.levels
    attn = tuple(max(1, n) for n in cfg.temporal_attention)
    return cfg.replace(temporal_down=(False,) * (L - 1), temporal_conv=(False,) * L, temporal_attention=attn)


def model_configs(preset_name: str, baseline: str, overrides: dict | None = None):
    """(config of the preset, config of the baseline): ``baseline`` is a preset name or "twin"."""
    from stunet.config import preset
    overrides = overrides or {}
    a = preset(preset_name, **overrides)
    b = vdm_twin(a) if baseline == "twin" else preset(baseline, **overrides)
    return a, b


def stunet_parameters(cfg) -> int:
    from stunet.checkpoint import estimate_parameters
    return estimate_parameters(cfg)


def unet3d_kwargs(cfg, widths: tuple[int, ...], layout: str) -> dict:
    """``UNet3DConditionModel`` arguments shaped like ``cfg`` (levels, groups, text width).

    layout "default": diffusers' own pattern, cross/self/temporal attention blocks at every
    level except the coarsest (plus the mid block); "matched": attention blocks only at the
    levels where the STUNet has cross or spatial attention (plus the mid block).
    """
    L = len(widths)
    if layout == "default":
        attn = [i < L - 1 for i in range(L)]
    elif layout == "matched":
        attn = [bool(cfg.cross_attention[i] or cfg.spatial_attention[i]) for i in range(L)]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    heads = 1
    while (widths[-1] // (2 * heads)) >= cfg.head_dim and all(w % (2 * heads) == 0 for w in widths):
        heads *= 2
    return dict(sample_size=cfg.height, in_channels=cfg.video_channels, out_channels=cfg.video_channels,
                down_block_types=tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in attn),
                up_block_types=tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(attn)),
                block_out_channels=tuple(widths), layers_per_block=cfg.blocks_per_level,
                norm_num_groups=cfg.groups, cross_attention_dim=cfg.text_dim, attention_head_dim=heads)


def quiet_diffusers():
    """No warnings, no hub access, diffusers' logging at error level."""
    import warnings
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from diffusers.utils import logging as dlog
        dlog.set_verbosity_error()
    except Exception:   # pragma: no cover - logging is cosmetic
        pass


def unet3d_parameters(kwargs: dict) -> int:
    quiet_diffusers()
    import torch
    from diffusers import UNet3DConditionModel
    with torch.device("meta"):
        return sum(p.numel() for p in UNet3DConditionModel(**kwargs).parameters())


def match_unet3d(cfg, target: int, layout: str) -> tuple[dict, int]:
    """Widths ``round(s * cfg.channels)`` (multiples of ``groups``) with the parameter count closest
    to ``target``; the count grows with ``s``, so a bisection over the distinct width tuples."""
    g = cfg.groups

    def widths(s):
        return tuple(max(g, int(round(s * c / g)) * g) for c in cfg.channels)

    # Distinct tuples in order of s: each width is non-decreasing in s, so is the count.
    cands = list(dict.fromkeys(widths(k / 64) for k in range(4, 257)))
    counts: dict[tuple, int] = {}

    def count(i):
        w = cands[i]
        if w not in counts:
            counts[w] = unet3d_parameters(unet3d_kwargs(cfg, w, layout))
        return counts[w]

    lo, hi = 0, len(cands) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    best = cands[min((lo, hi), key=lambda i: abs(count(i) - target))]
    # One round of refinement: one level's width one group up or down (widths stay non-decreasing).
    for i in range(len(best)):
        for d in (-g, g):
            w = best[:i] + (best[i] + d,) + best[i + 1:]
            if w[i] >= g and all(x <= y for x, y in zip(w, w[1:])) and w not in counts:
                counts[w] = unet3d_parameters(unet3d_kwargs(cfg, w, layout))
    best = min(counts, key=lambda w: (abs(counts[w] - target), w))
    return unet3d_kwargs(cfg, best, layout), counts[best]
