"""The network as a sampler sees it: ``denoiser(x, timestep, step) -> prediction``.

As k-diffusion's model wrappers (``CFGDenoiser``) and EDM's preconditioned network, this owns
everything about *calling the model* so that the sampling loop only steps a solver:

* conditioning: text, frame stride (frame-rate conditioning), the masked conditioning clip and
  its mask (Lumiere section 4: first frame, a region, some frames);
* classifier-free guidance against the learned empty prompt (one batched call, 2 rows per clip),
  or, for a distilled model that takes the guidance scale as an input (``config.guidance_embedding``,
  ``stunet.distill``), one row per clip with the scale passed to the model;
* guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024, arXiv 2404.07724):
  with ``interval=(lo, hi)`` a step at diffusion timestep ``lo <= t <= hi`` is guided and any
  other step is the conditional prediction alone (scale 1), which costs one row instead of two;
  or, with ``elsewhere`` != 1, guided at that other scale (a two-level schedule: e.g. a stronger
  scale at the high-noise steps where a clip's motion is decided);
* temporal MultiDiffusion (Lumiere section 3.2 applied to time): a clip longer than the
  training window is covered by overlapping windows, each denoised, the predictions averaged
  where windows overlap; a clip that fits one window is one plain call, bit for bit;
* precision (``precision.Precision``: autocast on the model's device type) and device;
* announcing each model call to an ``Inspector`` (``inspection.step_scope``), so its hooks know the
  step; the inspector's per-step record is an ordinary callback of the loop.

Shapes: x, cond b c t h w; mask b 1 t h w; the prediction b c t h w, in the model's target
parametrisation (v or epsilon), fp32.
"""
from __future__ import annotations

import torch

from .conditioning import Conditioning
from .defaults import GUIDANCE, parse_elsewhere, parse_interval
from .inspection import step_scope
from .model import STUNet
from .precision import Precision, resolve
from .text import TextEncoding


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


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _head(v: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if v is None else v[:n]


class Denoiser:
    """Guided, windowed, conditioned calls of a STUNet on a batch of ``b`` clips of ``frames`` frames.

    guidance: one scale for every clip, or a tensor of ``b`` scales (one per clip, as distillation
    draws them). interval: ``(lo, hi)`` timesteps where guidance applies (None: every step);
    elsewhere: the scale of the steps outside it (1: the conditional prediction alone, one row).
    """

    def __init__(self, model: STUNet, conditioning: Conditioning, *, frames: int,
                 guidance: float | torch.Tensor = GUIDANCE, interval: tuple[int, int] | None = None,
                 elsewhere: float = 1.0, precision: Precision | str | None = None, inspector=None):
        cfg, c = model.config, conditioning
        self.model, self.config, self.conditioning = model, cfg, c
        self.device = model_device(model)
        self.precision = precision if isinstance(precision, Precision) else resolve(precision, self.device)
        self.b = b = c.batch
        self.frames = frames
        self.embedded = bool(getattr(cfg, "guidance_embedding", False))   # the model takes the scale itself
        if isinstance(guidance, torch.Tensor):
            if tuple(guidance.shape) != (b,):
                raise ValueError(f"per-clip guidance must have shape ({b},), got {tuple(guidance.shape)}")
            self.guidance = guidance.float().to(self.device)
            self.scaled = True                                            # guided even where a scale is 1
        else:
            self.guidance, self.scaled = float(guidance), float(guidance) != 1.0
        self.guided = self.scaled and not self.embedded
        if self.guided and c.uncond is None:
            raise ValueError("guidance != 1 needs the unconditional (empty prompt) encoding")
        self.interval = parse_interval(interval)
        self.elsewhere = parse_elsewhere(elsewhere, self.interval)
        if self.elsewhere != 1.0:
            if isinstance(guidance, torch.Tensor):
                raise ValueError("a scale outside the guidance interval needs one guidance scale, not one per clip")
            self.scaled = True
            self.guided = not self.embedded
            if self.guided and c.uncond is None:
                raise ValueError("guidance != 1 needs the unconditional (empty prompt) encoding")
        self.rows_run = 0                   # network rows evaluated so far (b x windows x 1 or 2 a step)
        window = c.window or cfg.frames
        self.overlap = window // 2 if c.overlap is None else c.overlap
        if frames < 1:
            raise ValueError("frames must be >= 1")
        if frames <= window:
            cfg.check_frames(frames)
        elif window % cfg.temporal_factor:
            raise ValueError(f"window {window} must be a multiple of {cfg.temporal_factor}")
        self.shape = (b, cfg.video_channels, frames, cfg.height, cfg.width)
        for name, v, ch in (("cond", c.cond, cfg.video_channels), ("mask", c.mask, 1)):
            if v is not None and tuple(v.shape) != (b, ch, *self.shape[2:]):
                raise ValueError(f"{name} must have shape {(b, ch, *self.shape[2:])}, got {tuple(v.shape)}")
        self.stride = c.stride
        self.inspector = inspector
        self.windows = temporal_windows(frames, window, self.overlap)
        n_w = len(self.windows)
        rows = [c.text] * n_w + ([c.uncond] * n_w if self.guided else [])
        self.text = TextEncoding.cat(rows)                               # on the model's device (encode_text)
        reps = 2 if self.guided else 1
        self.cond = None if c.cond is None else self._rows(c.cond.to(self.device), reps)
        self.mask = None if c.mask is None else self._rows(c.mask.to(self.device), reps)
        self.count = torch.zeros(1, 1, frames, 1, 1, device=self.device)
        for s, e in self.windows:
            self.count[:, :, s:e] += 1

    def _rows(self, v: torch.Tensor, reps: int) -> torch.Tensor:
        """b ... t h w -> (reps windows b) ... window h w: window-major, conditional rows first."""
        rows = torch.cat([v[:, :, s:e] for s, e in self.windows])
        return torch.cat([rows] * reps) if reps > 1 else rows

    def _per_row(self, v: torch.Tensor, reps: int) -> torch.Tensor:
        """A value per clip (b) -> one per network row (reps x windows x b), in the rows' order."""
        return v.repeat(reps * len(self.windows))

    def in_interval(self, timestep: int | torch.Tensor) -> bool:
        """Whether diffusion ``timestep`` lies in the guidance interval (always, when none is set)."""
        if self.interval is None:
            return True
        if isinstance(timestep, torch.Tensor) and timestep.numel() > 1:
            raise ValueError("a guidance interval needs one timestep for the whole batch")
        return self.interval[0] <= int(timestep) <= self.interval[1]

    def scale_at(self, timestep: int | torch.Tensor) -> float | torch.Tensor:
        """The guidance scale of the step at diffusion ``timestep``: ``guidance`` inside the interval,
        ``elsewhere`` outside it."""
        return self.guidance if self.in_interval(timestep) else self.elsewhere

    def guides_at(self, timestep: int | torch.Tensor) -> bool:
        """Whether the step at diffusion ``timestep`` is guided (its scale is not 1, or per clip)."""
        if not self.scaled:
            return False
        w = self.scale_at(timestep)
        return isinstance(w, torch.Tensor) or w != 1.0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, timestep: int | torch.Tensor, step: int = 0) -> torch.Tensor:
        """The guided, window-averaged prediction at diffusion ``timestep`` (one for the batch, or a tensor
        of ``b``, one per clip); ``step``: the index in the run, for an inspector."""
        guide = self.guides_at(timestep)
        two = self.guided and guide                  # both rows; else the conditional rows alone
        reps = 2 if two else 1
        xin = self._rows(x, reps)
        n = xin.shape[0]
        text, cond, mask = ((self.text, self.cond, self.mask) if two or not self.guided else
                            (self.text[:n], _head(self.cond, n), _head(self.mask, n)))
        if isinstance(timestep, torch.Tensor) and timestep.dim() == 1:
            tt = self._per_row(timestep.to(self.device, torch.long), reps)
            at = -1                                  # several timesteps: none to announce
        else:
            at = int(timestep)
            tt = torch.full((n,), at, dtype=torch.long, device=self.device)
        kw = {}
        w = self.scale_at(timestep) if guide else 1.0
        if self.embedded:
            kw["guidance"] = self._per_row(w, reps) if isinstance(w, torch.Tensor) else w
        self.rows_run += n
        with step_scope(self.inspector, step=step, timestep=at), self.precision.autocast(self.device.type):
            out = self.model(xin, tt, text, self.stride, cond, mask, **kw).float()
        if two:
            c_out, u_out = out.chunk(2)
            if isinstance(w, torch.Tensor):
                w = self._per_row(w, 1).view(-1, *([1] * (out.dim() - 1)))
            out = u_out + w * (c_out - u_out)
        if len(self.windows) == 1:
            return out
        b = self.b
        pred = torch.zeros(self.shape, device=self.device)
        for i, (s, e) in enumerate(self.windows):
            pred[:, :, s:e] += out[i * b:(i + 1) * b]
        return pred / self.count
