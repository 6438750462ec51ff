"""Sampling, separate from the model: a loop over a denoiser (k-diffusion's ``sample_euler``,
EDM's ``edm_sampler``).

* ``sample_loop(denoiser, x, scheduler, timesteps, generator=, callback=)``: the loop. It only
  steps the solver and reports every step (a ``StepOutput``) to ``callback`` and to its caller
  (it is a generator: stream, or stop between steps). Solvers are diffusers' schedulers (DDIM,
  DPM-Solver++ 2M), one fresh scheduler per run (they are stateful).
* ``denoiser.Denoiser`` owns calling the model: conditioning, classifier-free guidance,
  temporal MultiDiffusion windows, precision, device.
* ``denoise(denoiser, generator=...)``: the whole run over a built ``Denoiser`` (``Pipeline`` builds
  its ``conditioning.Conditioning`` and ``Denoiser`` once per request and calls this);
* ``iter_sample`` / ``sample``: the same from text encodings (noise from the given
  ``torch.Generator`` only, no global RNG; SDEdit with ``init`` + ``strength``: noise an input
  clip part-way and denoise it). An ``Inspector`` passed in is told of every model call by the
  denoiser and records x0-hat through the loop's callback.

The noise is drawn on the generator's device and moved to the model's, so a seed gives the
same starting noise on CPU and CUDA.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .defaults import GUIDANCE, SAMPLER, STEPS
from .conditioning import Conditioning
from .denoiser import Denoiser, temporal_windows
from .diffusion import make_scheduler, predict_x0
from .model import STUNet
from .precision import Precision
from .text import TextEncoding

__all__ = ["StepOutput", "sample_loop", "denoise", "iter_sample", "sample", "temporal_windows"]


@dataclass
class StepOutput:
    step: int               # 0-based index of the step just taken
    num_steps: int          # steps this call runs
    timestep: int           # diffusion timestep the model was evaluated at
    sample: torch.Tensor    # b c t h w, the noisy clip after this step (the clip itself after the last)
    x0: torch.Tensor        # b c t h w, predicted clean clip (x0-hat) at this step


def sample_loop(denoiser: Callable[[torch.Tensor, int, int], torch.Tensor], x: torch.Tensor, scheduler,
                timesteps, *, config, generator: torch.Generator | None = None,
                callback: Callable[[StepOutput], None] | None = None) -> Iterator[StepOutput]:
    """Step ``scheduler`` from ``x`` through ``timesteps``; yield (and report) every step.

    denoiser(x, timestep, step) -> the model's prediction (``config.prediction_type``) for x.
    """
    ac = scheduler.alphas_cumprod.float().to(x.device)
    n = len(timesteps)
    # stochastic solvers draw their noise from ``generator``; deterministic ones (UniPC) take none
    step_kw = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for k, t in enumerate(timesteps):
        t = int(t)
        pred = denoiser(x, t, k)
        x0 = predict_x0(config, ac, x, pred, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x = scheduler.step(pred, t, x, **step_kw).prev_sample
        out = StepOutput(k, n, t, x, x0)
        if callback is not None:
            callback(out)
        yield out


@torch.no_grad()
def denoise(den: Denoiser, *, generator: torch.Generator, steps: int = STEPS, sampler: str = SAMPLER,
            init: torch.Tensor | None = None, strength: float = 1.0,
            callback: Callable[[StepOutput], None] | None = None) -> Iterator[StepOutput]:
    """The run over a built ``Denoiser``: a fresh solver, the starting noise (from ``generator`` only; with
    ``init`` + ``strength`` < 1, SDEdit: ``init`` noised part-way), then ``sample_loop``; yields after every
    step. The denoiser's inspector (if any) records x0-hat through the loop's callback, then ``callback``."""
    cfg = den.config
    if not 1 <= steps <= 1000:
        raise ValueError("steps must be in [1, 1000]")
    if not 0.0 < strength <= 1.0:
        raise ValueError("strength must be in (0, 1]")
    if init is not None and tuple(init.shape) != den.shape:
        raise ValueError(f"init must have shape {den.shape}, got {tuple(init.shape)}")
    sched = make_scheduler(cfg, sampler)
    sched.set_timesteps(steps, device=den.device)
    timesteps = sched.timesteps
    noise = torch.randn(den.shape, generator=generator, device=generator.device).to(den.device)
    start = 0
    if init is not None and strength < 1.0:
        start = steps - max(1, int(round(steps * strength)))
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        x = sched.add_noise(init.float().to(den.device), noise, timesteps[start:start + 1])
    else:
        x = noise * sched.init_noise_sigma

    inspector = den.inspector
    callbacks = [c for c in (inspector.on_step if inspector is not None else None, callback) if c is not None]

    def report(out: StepOutput) -> None:
        for c in callbacks:
            c(out)

    yield from sample_loop(den, x, sched, timesteps[start:], config=cfg, generator=generator,
                           callback=report if callbacks else None)


def iter_sample(model: STUNet, text: TextEncoding, uncond: TextEncoding | None, *,
                generator: torch.Generator, steps: int = STEPS, guidance: float = GUIDANCE, sampler: str = SAMPLER,
                guidance_interval: tuple[int, int] | None = None, frames: int | None = None, stride: int = 1,
                cond: torch.Tensor | None = None, mask: torch.Tensor | None = None, init: torch.Tensor | None = None,
                strength: float = 1.0, window: int | None = None, overlap: int | None = None,
                precision: Precision | str | None = None, inspector=None,
                callback: Callable[[StepOutput], None] | None = None) -> Iterator[StepOutput]:
    """Denoise a batch of clips from text encodings; yields after every step (``Pipeline`` builds the
    ``Conditioning`` and ``Denoiser`` itself and calls ``denoise``; this is the same for callers holding
    encodings).

    text / uncond: encodings of the prompts and of the empty prompt (b rows each, on the model's
    device; uncond may be None when guidance == 1). cond, mask: b c t h w / b 1 t h w.
    init: b c t h w in [-1, 1] for SDEdit. precision: "auto" / "fp32" / "bf16" / a ``Precision``
    (None: $STUNET_PRECISION or auto). inspector: an active ``stunet.inspection.Inspector``; it
    records this call's forward passes only. guidance_interval: (lo, hi) diffusion timesteps where
    guidance applies (``Denoiser``); None: every step.
    """
    frames = frames or (init.shape[2] if init is not None else model.config.frames)
    c = Conditioning(text, uncond, stride=stride, cond=cond, mask=mask, window=window, overlap=overlap)
    den = Denoiser(model, c, frames=frames, guidance=guidance, interval=guidance_interval, precision=precision,
                   inspector=inspector)
    yield from denoise(den, generator=generator, steps=steps, sampler=sampler, init=init, strength=strength,
                       callback=callback)


def sample(model: STUNet, text: TextEncoding, uncond: TextEncoding | None, **kw) -> torch.Tensor:
    """Run ``iter_sample`` to the end (``callback`` per step); returns the clip, b c t h w, in [-1, 1]."""
    last = None
    for out in iter_sample(model, text, uncond, **kw):
        last = out
    return last.sample.clamp(-1, 1)
