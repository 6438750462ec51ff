"""What a denoising run is conditioned on, as one value built once per request.

``Conditioning`` gathers everything besides the noisy clip that a ``denoiser.Denoiser`` hands the
network on every call (Lumiere section 4: the text; the frame stride, the model's frame-rate
conditioning; a conditioning clip with its mask for image-to-video, inpainting and cinemagraphs;
the temporal windows of MultiDiffusion for clips longer than the training window, section 3.2).
``Pipeline`` builds it from a request, ``Denoiser`` turns it into network rows, distillation builds
one per teacher batch; nothing else relays these arguments one by one.

Shapes (notation b c t h w): text / uncond b rows; cond b c t h w (c = the video's channels);
mask b 1 t h w (1 = given).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .text import TextEncoding


@dataclass(frozen=True)
class Conditioning:
    text: TextEncoding                          # b rows: the prompts
    uncond: TextEncoding | None = None          # b rows: the empty prompt (classifier-free guidance); None: unguided
    stride: int = 1                             # frame stride (frame-rate conditioning)
    cond: torch.Tensor | None = None            # b c t h w: the given pixels (zero elsewhere is not required)
    mask: torch.Tensor | None = None            # b 1 t h w: 1 where ``cond`` is given
    window: int | None = None                   # MultiDiffusion window in frames (None: the model's own)
    overlap: int | None = None                  # frames shared by neighbouring windows (None: half a window)

    def __post_init__(self):
        if (self.cond is None) != (self.mask is None):
            raise ValueError("cond and mask go together")
        b = self.batch
        if self.uncond is not None and self.uncond.tokens.shape[0] != b:
            raise ValueError(f"uncond has {self.uncond.tokens.shape[0]} rows, text has {b}")
        for name, v in (("cond", self.cond), ("mask", self.mask)):
            if v is not None and (v.dim() != 5 or v.shape[0] != b):
                raise ValueError(f"{name} must be b c t h w with b = {b}, got {tuple(v.shape)}")
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be a positive integer, got {self.stride!r}")

    @property
    def batch(self) -> int:
        return self.text.tokens.shape[0]
