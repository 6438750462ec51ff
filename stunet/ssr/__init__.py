"""Spatial super-resolution (SSR) over temporal windows: Lumiere's last stage (section 3.2, issue 34).

Lumiere's base STUNet makes a low-resolution clip; an SSR model lifts it to full resolution. The SSR model
cannot take the whole clip at once, so it runs on overlapping temporal windows whose predictions are
reconciled at every denoising step by MultiDiffusion (Bar-Tal et al. 2023): each window is denoised, and the
predictions are averaged where windows overlap, so window boundaries do not show as jumps.

* ``config``: ``SSRConfig`` (frozen, validated) and its presets.
* ``model``: ``SSRNet``, a small fully convolutional space-time denoiser conditioned on the base clip
  upsampled to the output size (noise-augmented, as cascaded models are).
* ``data``: training pairs from the shapes world, which renders the same clip at 32x32 and 128x128.
* ``sampling``: ``upscale``: windows reconciled by MultiDiffusion, or independent non-overlapping windows
  (the naive alternative), over a denoiser loop (``stunet.sampling.sample_loop``).

Notation: b batch, c channels, t frames, h w height and width of the output (``scale`` x the base's).
"""
from .config import SSR_PRESETS, SSRConfig, ssr_preset  # noqa: F401
from .model import SSRNet  # noqa: F401
