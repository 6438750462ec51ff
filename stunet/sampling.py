"""Sampling, separate from the model (as k-diffusion's ``sampling.py`` / EDM's sampler).

* diffusers' schedulers do the solver maths (DDIM, DPM-Solver++ 2M), one fresh
  scheduler per call (they are stateful).
* Randomness only from the ``torch.Generator`` passed in: no global RNG.
* Classifier-free guidance against the learned empty prompt.
* Conditioning clip + mask (Lumiere section 4): first frame, a region, some frames.
* SDEdit (``init`` + ``strength``): noise an input clip part-way and denoise it.
* Temporal MultiDiffusion (Lumiere section 3.2, applied to time): a clip longer than the
  training window is covered by overlapping windows; at every step each window is
  denoised and the predictions are averaged where windows overlap, then one solver step
  runs on the whole clip. A clip that fits one window is plain sampling, bit for bit.
* ``iter_sample`` yields a ``StepOutput`` after every step (stream / stop between steps);
  ``sample`` runs it to the end and calls ``callback`` per step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .config import DEFAULT_GUIDANCE
from .diffusion import predict_x0
from .inspect import step_scope
from .model import STUNet
from .text import TextEncoding


@dataclass
class StepOutput:
    step: int               # 0-based index of the step just taken
    num_steps: int          # steps this call runs
    timestep: int           # diffusion timestep the model was evaluated at
    sample: torch.Tensor    # b c t h w, the noisy clip after this step (the clip itself after the last)
    x0: torch.Tensor        # b c t h w, predicted clean clip (x0-hat) at this step


def temporal_windows(frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of length ``window`` covering ``frames``; the last one ends at ``frames``."""
    if frames <= window:
        return [(0, frames)]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    hop = window - overlap
    starts = list(range(0, frames - window + 1, hop))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return [(s, s + window) for s in starts]


def _check(model: STUNet, frames: int, window: int):
    cfg = model.config
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if frames <= window:
        cfg.check_frames(frames)
    elif window % cfg.temporal_factor:
        raise ValueError(f"window {window} must be a multiple of {cfg.temporal_factor}")


@torch.no_grad()
def iter_sample(model: STUNet, text: TextEncoding, uncond: TextEncoding | None, *,
                generator: torch.Generator, steps: int = 25, guidance: float = DEFAULT_GUIDANCE, sampler: str = "dpm++",
                frames: int | None = None, stride: int = 1, cond: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, init: torch.Tensor | None = None, strength: float = 1.0,
                window: int | None = None, overlap: int | None = None, bf16: bool = True,
                inspector=None) -> Iterator[StepOutput]:
    """Denoise a batch of clips; yields after every step.

    text / uncond: encodings of the prompts and of the empty prompt (b rows each; uncond may be
    None when guidance == 1). cond, mask: b c t h w / b 1 t h w. init: b c t h w in [-1, 1] for SDEdit.
    inspector: an active ``stunet.inspect.Inspector``; it records this call's forward passes only.
    """
    from .diffusion import make_scheduler
    cfg = model.config
    b = text.tokens.shape[0]
    frames = frames or (init.shape[2] if init is not None else cfg.frames)
    window = window or cfg.frames
    overlap = window // 2 if overlap is None else overlap
    _check(model, frames, window)
    if not 1 <= steps <= 1000:
        raise ValueError("steps must be in [1, 1000]")
    if not 0.0 < strength <= 1.0:
        raise ValueError("strength must be in (0, 1]")
    guided = guidance != 1.0
    if guided and uncond is None:
        raise ValueError("guidance != 1 needs the unconditional (empty prompt) encoding")
    shape = (b, cfg.video_channels, frames, cfg.height, cfg.width)
    for name, t_, ch in (("cond", cond, cfg.video_channels), ("mask", mask, 1), ("init", init, cfg.video_channels)):
        if t_ is not None and tuple(t_.shape) != (b, ch, *shape[2:]):
            raise ValueError(f"{name} must have shape {(b, ch, *shape[2:])}, got {tuple(t_.shape)}")
    if (cond is None) != (mask is None):
        raise ValueError("cond and mask go together")

    sched = make_scheduler(cfg, sampler)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps
    ac = sched.alphas_cumprod.float()
    noise = torch.randn(shape, generator=generator)
    start = 0
    if init is not None and strength < 1.0:
        start = steps - max(1, int(round(steps * strength)))
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        x = sched.add_noise(init.float(), noise, timesteps[start:start + 1])
    else:
        x = noise * sched.init_noise_sigma

    wins = temporal_windows(frames, window, overlap)
    n_w = len(wins)
    rows_text = TextEncoding.cat([text] * n_w + ([uncond] * n_w if guided else []))
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and x.device.type == "cpu" else contextlib.nullcontext()
    count = torch.zeros(1, 1, frames, 1, 1)
    for s, e in wins:
        count[:, :, s:e] += 1

    def crop(v):   # b ... t h w -> (windows b) ... window h w, window-major
        return None if v is None else torch.cat([v[:, :, s:e] for s, e in wins])

    n_run = steps - start
    for k, t in enumerate(timesteps[start:]):
        xin = crop(x)
        cin, min_ = crop(cond), crop(mask)
        if guided:
            xin = torch.cat([xin, xin])
            cin = None if cin is None else torch.cat([cin, cin])
            min_ = None if min_ is None else torch.cat([min_, min_])
        tt = torch.full((xin.shape[0],), int(t), dtype=torch.long)
        with step_scope(inspector, step=k, timestep=int(t)), amp:
            out = model(xin, tt, rows_text, stride, cin, min_).float()
        if guided:
            c_out, u_out = out.chunk(2)
            out = u_out + guidance * (c_out - u_out)
        # MultiDiffusion: average the windows' predictions where they overlap
        if n_w == 1:
            pred = out
        else:
            pred = torch.zeros(shape)
            for i, (s, e) in enumerate(wins):
                pred[:, :, s:e] += out[i * b:(i + 1) * b]
            pred = pred / count
        x0 = predict_x0(cfg, ac, x, pred, torch.full((b,), int(t), dtype=torch.long))
        x = sched.step(pred, t, x, generator=generator).prev_sample
        result = StepOutput(k, n_run, int(t), x, x0)
        if inspector is not None:
            inspector.on_step(result)
        yield result


def sample(model: STUNet, text: TextEncoding, uncond: TextEncoding | None, *,
           callback: Callable[[StepOutput], None] | None = None, **kw) -> torch.Tensor:
    """Run ``iter_sample`` to the end; returns the clip, b c t h w, clamped to [-1, 1]."""
    last = None
    for out in iter_sample(model, text, uncond, **kw):
        if callback is not None:
            callback(out)
        last = out
    return last.sample.clamp(-1, 1)
