"""Upscaling a base clip with ``SSRNet`` over temporal windows (Lumiere section 3.2).

``upscale`` runs a denoiser loop (``stunet.sampling.sample_loop``) over the whole high-resolution clip; the
denoiser (``WindowedSSR``) calls the network on temporal windows and reconciles them:

* ``multidiffusion`` (Bar-Tal et al. 2023): windows of ``config.window`` frames overlapping by ``overlap``
  (default a quarter of a window: 32 frames in windows of 8 cost 40 frames' calls); at every step each window's prediction is made and the predictions are averaged
  frame by frame where windows overlap, so neighbouring windows agree on their shared frames at every step.
  A clip no longer than one window is one plain call, bit for bit.
* ``independent``: non-overlapping windows (the last one shorter when the clip does not divide), each
  denoised on its own: the naive alternative, whose window boundaries are free to jump.

Windows of one length are stacked into one batched call. Randomness comes from the caller's
``torch.Generator`` only (the starting noise and the conditioning's noise augmentation), so a seed gives the
same clip. With ``config.residual`` the loop runs on the residual over the bicubic upsampling of the base
clip (the callback sees residuals), which is added back at the end. Shapes: base b c t h w in [-1, 1]; the
result b c t H W in [-1, 1] (H = W = ``config.size``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..denoiser import model_device, temporal_windows
from ..diffusion import add_noise, make_scheduler
from ..precision import Precision, resolve
from ..sampling import StepOutput, sample_loop
from .model import SSRNet

WINDOW_MODES = ("multidiffusion", "independent")
SSR_STEPS = 4
SSR_SAMPLER = "ddim"


def ssr_windows(frames: int, window: int, mode: str = "multidiffusion", overlap: int | None = None
                ) -> list[tuple[int, int]]:
    """[start, end) windows covering ``frames``: overlapping (``multidiffusion``, ``overlap`` frames shared,
    default ``max(1, window // 4)``) or a partition (``independent``)."""
    if mode not in WINDOW_MODES:
        raise ValueError(f"windows must be one of {', '.join(WINDOW_MODES)}, got {mode!r}")
    if frames < 1 or window < 1:
        raise ValueError("frames and window must be >= 1")
    if mode == "independent":
        return [(s, min(s + window, frames)) for s in range(0, frames, window)]
    return temporal_windows(frames, window, max(1, window // 4) if overlap is None else overlap)


def upsample(base: torch.Tensor, size: int) -> torch.Tensor:
    """b c t h w -> b c t size size, bicubic per frame (the conditioning, and the bicubic baseline)."""
    b, c, t, h, w = base.shape
    frames = base.transpose(1, 2).reshape(b * t, c, h, w).float()
    up = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
    return up.reshape(b, t, c, size, size).transpose(1, 2)


class WindowedSSR:
    """The denoiser ``(x, timestep, step) -> prediction`` of a whole clip, from window calls of ``model``."""

    def __init__(self, model: SSRNet, cond: torch.Tensor, cond_step: int, windows: list[tuple[int, int]],
                 precision: Precision):
        self.model, self.cond, self.windows, self.precision = model, cond, windows, precision
        self.cond_step = cond_step
        self.device = cond.device

    def __call__(self, x: torch.Tensor, timestep: int, step: int) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        if len(self.windows) == 1 and self.windows[0] == (0, t):
            return self._call(x, self.cond, timestep)
        pred = torch.zeros_like(x, dtype=torch.float32)
        count = torch.zeros(1, 1, t, 1, 1, device=x.device)
        by_length: dict[int, list[tuple[int, int]]] = {}
        for s, e in self.windows:
            by_length.setdefault(e - s, []).append((s, e))
        for group in by_length.values():
            xs = torch.cat([x[:, :, s:e] for s, e in group])                     # (n b) c w H W
            cs = torch.cat([self.cond[:, :, s:e] for s, e in group])
            out = self._call(xs, cs, timestep)
            for i, (s, e) in enumerate(group):
                pred[:, :, s:e] += out[i * b:(i + 1) * b]
                count[:, :, s:e] += 1
        return pred / count

    def _call(self, x: torch.Tensor, cond: torch.Tensor, timestep: int) -> torch.Tensor:
        n = x.shape[0]
        ts = torch.full((n,), timestep, dtype=torch.long, device=x.device)
        cs = torch.full((n,), self.cond_step, dtype=torch.long, device=x.device)
        with self.precision.autocast(x.device.type):
            return self.model(x, ts, cond, cs).float()


@torch.no_grad()
def upscale(model: SSRNet, base: torch.Tensor, *, generator: torch.Generator, steps: int = SSR_STEPS,
            sampler: str = SSR_SAMPLER, windows: str = "multidiffusion", overlap: int | None = None,
            precision: Precision | str | None = None,
            callback: Callable[[StepOutput], None] | None = None) -> torch.Tensor:
    """The clip ``base`` (b c t h w, [-1, 1], h = w = ``config.base_size``) at ``config.size``: b c t H W."""
    cfg = model.config
    if base.ndim != 5 or base.shape[1] != cfg.video_channels or base.shape[3:] != (cfg.base_size, cfg.base_size):
        raise ValueError(f"base must be b {cfg.video_channels} t {cfg.base_size} {cfg.base_size}, "
                         f"got {tuple(base.shape)}")
    if not 1 <= steps <= cfg.train_timesteps:
        raise ValueError(f"steps must be in [1, {cfg.train_timesteps}]")
    device = model_device(model)
    precision = precision if isinstance(precision, Precision) else resolve(precision, device.type)
    b, c, t = base.shape[:3]
    shape = (b, c, t, cfg.size, cfg.size)
    sched = make_scheduler(cfg, sampler)
    sched.set_timesteps(steps, device=device)
    gdev = generator.device
    noise = torch.randn(shape, generator=generator, device=gdev).to(device)
    cond_noise = torch.randn(shape, generator=generator, device=gdev).to(device)
    up = upsample(base.to(device).float(), cfg.size)
    ac = sched.alphas_cumprod.float().to(device)
    cond = add_noise(ac, up, cond_noise, torch.full((b,), cfg.cond_noise_step, dtype=torch.long, device=device))
    den = WindowedSSR(model.eval(), cond, cfg.cond_noise_step, ssr_windows(t, cfg.window, windows, overlap), precision)
    x = noise * sched.init_noise_sigma
    last = None
    for last in sample_loop(den, x, sched, sched.timesteps, config=cfg, generator=generator, callback=callback):
        pass
    return (last.sample + up if cfg.residual else last.sample).clamp(-1, 1)


def upscale_clip(model: SSRNet, video, *, seed: int = 0, steps: int = SSR_STEPS, windows: str = "multidiffusion",
                 precision: Precision | str | None = None):
    """One clip (t h w 3 uint8, the base model's output) upscaled: t H W 3 uint8. The generator is seeded with
    ``seed`` (the clip's own seed: a clip and its upscale are reproduced together)."""
    from ..video import from_uint8, to_uint8
    out = upscale(model, from_uint8(video), generator=torch.Generator().manual_seed(seed), steps=steps,
                  windows=windows, precision=precision)
    return to_uint8(out[0])
