"""Prompt in, clip out: the thin layer the CLI and the studio share.

``Pipeline`` holds a loaded model and tokenizer (load once, share across requests);
every call takes its own seed -> its own ``torch.Generator`` and, when asked, its own
``Inspector``, so concurrent requests neither share RNG state nor records.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .checkpoint import load_pretrained
from .config import DEFAULT_GUIDANCE
from .diffusion import SAMPLERS
from .model import STUNet
from .sampling import StepOutput, iter_sample
from .text import Encoded, Tokenizer
from .video import from_uint8, to_uint8


@dataclass(frozen=True)
class Settings:
    """Everything that determines a clip (replaying the same Settings gives the same clip)."""
    prompt: str
    seed: int = 0
    steps: int = 25
    guidance: float = DEFAULT_GUIDANCE
    frames: int = 32
    sampler: str = "dpm++"
    stride: int = 1
    overlap: int | None = None          # MultiDiffusion overlap (frames) when frames > window

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    video: np.ndarray                   # t h w 3 uint8
    settings: Settings
    encoded: Encoded
    seconds: float
    first_frame: np.ndarray | None = field(default=None, repr=False)


class Pipeline:
    def __init__(self, model: STUNet, tokenizer: Tokenizer):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self._uncond_ids = tokenizer.batch([""])[0]

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None) -> "Pipeline":
        return cls(*load_pretrained(directory))

    @property
    def config(self):
        return self.model.config

    def validate(self, s: Settings) -> None:
        cfg = self.config
        if s.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}")
        if s.stride not in cfg.strides:
            raise ValueError(f"stride must be one of {cfg.strides}")
        if s.frames < cfg.frames:
            cfg.check_frames(s.frames)

    def iter(self, s: Settings, first_frame: np.ndarray | None = None,
             inspector=None) -> Iterator[StepOutput]:
        """Denoising steps of one clip (b = 1); the last StepOutput's sample is the clip."""
        self.validate(s)
        cfg = self.config
        ids, (enc,) = self.tokenizer.batch([s.prompt])
        gen = torch.Generator().manual_seed(int(s.seed))
        with torch.no_grad():
            text = self.model.encode_text(ids)
            uncond = self.model.encode_text(self._uncond_ids) if s.guidance != 1.0 else None
        cond = mask = None
        if first_frame is not None:
            if first_frame.shape != (cfg.height, cfg.width, 3) or first_frame.dtype != np.uint8:
                raise ValueError(f"first frame must be uint8 {cfg.height}x{cfg.width}x3")
            cond = from_uint8(np.repeat(first_frame[None], s.frames, 0))
            mask = torch.zeros(1, 1, s.frames, cfg.height, cfg.width)
            mask[:, :, 0] = 1
        yield from iter_sample(self.model, text, uncond, generator=gen, steps=s.steps, guidance=s.guidance,
                               sampler=s.sampler, frames=s.frames, stride=s.stride, cond=cond, mask=mask,
                               overlap=s.overlap, inspector=inspector)

    def __call__(self, s: Settings, first_frame: np.ndarray | None = None, inspector=None,
                 callback: Callable[[StepOutput], None] | None = None) -> Generation:
        t0 = time.perf_counter()
        last = None
        for out in self.iter(s, first_frame, inspector):
            if callback is not None:
                callback(out)
            last = out
        enc = self.tokenizer.encode(s.prompt)
        return Generation(to_uint8(last.sample), s, enc, time.perf_counter() - t0, first_frame)

    def generate(self, prompt: str, **kw) -> Generation:
        first_frame = kw.pop("first_frame", None)
        inspector = kw.pop("inspector", None)
        callback = kw.pop("callback", None)
        return self(Settings(prompt, **kw), first_frame, inspector, callback)
