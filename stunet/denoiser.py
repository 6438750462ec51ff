"""The network as a sampler sees it: ``denoiser(x, timestep, step) -> prediction``.

As k-diffusion's model wrappers (``CFGDenoiser``) and EDM's preconditioned network, this owns
everything about *calling the model* so that the sampling loop only steps a solver:

* conditioning: text, frame stride (frame-rate conditioning), the masked conditioning clip and
  its mask (Lumiere section 4: first frame, a region, some frames);
* classifier-free guidance against the learned empty prompt (one batched call, 2 rows per clip),
  or, for a distilled model that takes the guidance scale as an input (``config.guidance_embedding``,
  ``stunet.distill``), one row per clip with the scale passed to the model;
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

from .defaults import GUIDANCE
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


class Denoiser:
    """Guided, windowed, conditioned calls of a STUNet on a batch of ``b`` clips of ``frames`` frames."""

    def __init__(self, model: STUNet, text: TextEncoding, uncond: TextEncoding | None = None, *,
                 frames: int, guidance: float = GUIDANCE, stride: int = 1, cond: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, window: int | None = None, overlap: int | None = None,
                 precision: Precision | str | None = None, inspector=None):
        cfg = model.config
        self.model, self.config = model, cfg
        self.device = model_device(model)
        self.precision = precision if isinstance(precision, Precision) else resolve(precision, self.device)
        self.b = b = text.tokens.shape[0]
        self.frames = frames
        self.guidance = float(guidance)
        self.embedded = bool(getattr(cfg, "guidance_embedding", False))   # the model takes the scale itself
        self.guided = self.guidance != 1.0 and not self.embedded
        if self.guided and uncond is None:
            raise ValueError("guidance != 1 needs the unconditional (empty prompt) encoding")
        window = window or cfg.frames
        self.overlap = window // 2 if overlap is None else overlap
        if frames < 1:
            raise ValueError("frames must be >= 1")
        if frames <= window:
            cfg.check_frames(frames)
        elif window % cfg.temporal_factor:
            raise ValueError(f"window {window} must be a multiple of {cfg.temporal_factor}")
        self.shape = (b, cfg.video_channels, frames, cfg.height, cfg.width)
        for name, v, ch in (("cond", cond, cfg.video_channels), ("mask", mask, 1)):
            if v is not None and tuple(v.shape) != (b, ch, *self.shape[2:]):
                raise ValueError(f"{name} must have shape {(b, ch, *self.shape[2:])}, got {tuple(v.shape)}")
        if (cond is None) != (mask is None):
            raise ValueError("cond and mask go together")
        self.stride = stride
        self.inspector = inspector
        self.windows = temporal_windows(frames, window, self.overlap)
        n_w = len(self.windows)
        rows = [text] * n_w + ([uncond] * n_w if self.guided else [])
        self.text = TextEncoding.cat(rows)                               # on the model's device (encode_text)
        reps = 2 if self.guided else 1
        self.cond = None if cond is None else self._rows(cond.to(self.device), reps)
        self.mask = None if mask is None else self._rows(mask.to(self.device), reps)
        self.count = torch.zeros(1, 1, frames, 1, 1, device=self.device)
        for s, e in self.windows:
            self.count[:, :, s:e] += 1

    def _rows(self, v: torch.Tensor, reps: int) -> torch.Tensor:
        """b ... t h w -> (reps windows b) ... window h w: window-major, conditional rows first."""
        rows = torch.cat([v[:, :, s:e] for s, e in self.windows])
        return torch.cat([rows] * reps) if reps > 1 else rows

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, timestep: int, step: int = 0) -> torch.Tensor:
        """The guided, window-averaged prediction at diffusion ``timestep`` (``step``: index in the run)."""
        xin = self._rows(x, 2 if self.guided else 1)
        tt = torch.full((xin.shape[0],), int(timestep), dtype=torch.long, device=self.device)
        kw = {"guidance": self.guidance} if self.embedded else {}
        with step_scope(self.inspector, step=step, timestep=int(timestep)), self.precision.autocast(self.device.type):
            out = self.model(xin, tt, self.text, self.stride, self.cond, self.mask, **kw).float()
        if self.guided:
            c_out, u_out = out.chunk(2)
            out = u_out + self.guidance * (c_out - u_out)
        if len(self.windows) == 1:
            return out
        b = self.b
        pred = torch.zeros(self.shape, device=self.device)
        for i, (s, e) in enumerate(self.windows):
            pred[:, :, s:e] += out[i * b:(i + 1) * b]
        return pred / self.count
