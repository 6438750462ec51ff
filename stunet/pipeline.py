"""Prompt in, clip out: the thin layer the CLI, the studio and ``stunet eval`` share.

``Pipeline`` holds a loaded model, its tokenizer and the compute precision (resolved once:
"auto" measures, see ``precision``). Load once, share across requests; every call takes its
own seed -> its own ``torch.Generator`` and, when asked, its own ``Inspector``, so concurrent
requests neither share RNG state nor records.

* ``pipe(Settings(...))`` / ``pipe.iter(...)``: one clip (b = 1), streamed step by step;
* ``pipe.sample_batch(prompts, generator=...)``: the batched prompt-to-clip path (eval uses it).
Same seed + same precision = the same clip.

Steps, guidance and solver left unset (None) are the checkpoint's own (``pipe.defaults``, from its
``sampling.json``): 25 DPM-Solver++ steps at guidance 3 for the full model, the distilled
model's N DDIM steps for ``assets/stunet-shapes-fast``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import load_pretrained, read_sampling
from .defaults import SAMPLERS, SamplingDefaults, parse_elsewhere, parse_interval
from .conditioning import Conditioning
from .denoiser import Denoiser, model_device
from .model import STUNet
from .precision import Precision, resolve
from .sampling import StepOutput, denoise
from .text import Encoded, Tokenizer
from .video import from_uint8, to_uint8


@dataclass(frozen=True)
class Settings:
    """Everything about a request that determines a clip (with the pipeline's precision: the same
    Settings replayed in the same precision give the same clip). steps / guidance / sampler None:
    the model's own defaults (``Pipeline.complete`` fills them in; a ``Generation`` holds them filled)."""
    prompt: str
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    frames: int = 32
    sampler: str | None = None
    stride: int = 1
    overlap: int | None = None          # MultiDiffusion overlap (frames) when frames > window
    guidance_interval: tuple[int, int] | None = None    # timesteps guided (lo, hi); None: the model's own
    guidance_elsewhere: float | None = None     # the scale outside the interval; None: the model's own, else 1

    def __post_init__(self):
        object.__setattr__(self, "guidance_interval", parse_interval(self.guidance_interval))
        if self.guidance_elsewhere is not None:
            if self.guidance_interval is None:
                raise ValueError("a guidance scale outside the interval needs a guidance interval")
            object.__setattr__(self, "guidance_elsewhere", parse_elsewhere(self.guidance_elsewhere,
                                                                           self.guidance_interval))

    def to_dict(self) -> dict:
        """The fields as a dict; an unset guidance interval, and a scale of 1 (or unset) outside it, are left
        out (settings files stay as they were)."""
        d = asdict(self)
        if d["guidance_interval"] is None:
            del d["guidance_interval"]
        else:
            d["guidance_interval"] = list(d["guidance_interval"])
        if d["guidance_elsewhere"] in (None, 1.0):
            del d["guidance_elsewhere"]
        return d


@dataclass
class Generation:
    video: np.ndarray                   # t h w 3 uint8
    settings: Settings
    encoded: Encoded
    seconds: float
    first_frame: np.ndarray | None = field(default=None, repr=False)
    precision: Precision | None = None

    def record(self) -> dict:
        """The settings used, with the precision that ran and why (what a clip's settings file holds)."""
        d = self.settings.to_dict()
        if self.precision is not None:
            d.update(self.precision.to_dict())
        return d


class Pipeline:
    def __init__(self, model: STUNet, tokenizer: Tokenizer, precision: Precision | str | None = None,
                 defaults: SamplingDefaults | None = None):
        # channels-last conv weights, like the activations (the spatial layers run channels-last):
        # 1.07x per step in the benchmark's levers table, the same clips bit for bit.
        self.model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.tokenizer = tokenizer
        self.device = model_device(model)
        self.precision = precision if isinstance(precision, Precision) else resolve(precision, self.device)
        self._uncond_ids = tokenizer.batch([""])[0]
        self.defaults = defaults or SamplingDefaults()

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, precision: Precision | str | None = None,
                        device: str | torch.device | None = None) -> "Pipeline":
        """Load a checkpoint directory (default: the shipped model, or $STUNET_MODEL).

        precision: "auto" (measure once per process), "fp32", "bf16"; None reads $STUNET_PRECISION,
        else auto. device: where the model runs (default CPU).
        """
        model, tok = load_pretrained(directory)
        if device is not None:
            model = model.to(device)
        return cls(model, tok, precision, read_sampling(directory))

    @property
    def config(self):
        return self.model.config

    @property
    def distilled(self) -> bool:
        """True for a few-step student that takes the guidance scale as an input (one forward per step)."""
        return bool(self.config.guidance_embedding)

    def complete(self, s: Settings) -> Settings:
        """``s`` with unset steps / guidance / sampler / guidance interval taken from the model's defaults; an
        unset scale outside the interval is the model's with the model's interval, else 1 (unguided)."""
        d = self.defaults
        own = s.guidance_interval is None
        interval = d.guidance_interval if own else s.guidance_interval
        elsewhere = s.guidance_elsewhere
        if elsewhere is None and interval is not None:
            elsewhere = d.guidance_elsewhere if own else 1.0
        return replace(s, steps=d.steps if s.steps is None else s.steps,
                       guidance=d.guidance if s.guidance is None else s.guidance,
                       sampler=d.sampler if s.sampler is None else s.sampler,
                       guidance_interval=interval, guidance_elsewhere=elsewhere)

    def validate(self, s: Settings) -> None:
        cfg = self.config
        s = self.complete(s)
        if s.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}")
        if s.stride not in cfg.strides:
            raise ValueError(f"stride must be one of {cfg.strides}")
        if s.frames < cfg.frames:
            cfg.check_frames(s.frames)

    @torch.no_grad()
    def iter_batch(self, prompts: Sequence[str], *, generator: torch.Generator, steps: int | None = None,
                   guidance: float | None = None, sampler: str | None = None, frames: int | None = None, stride: int = 1,
                   guidance_interval: tuple[int, int] | None = None, guidance_elsewhere: float | None = None,
                   overlap: int | None = None,
                   cond: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   init: torch.Tensor | None = None, strength: float = 1.0,    # SDEdit: as sampling.iter_sample
                   inspector=None, callback: Callable[[StepOutput], None] | None = None) -> Iterator[StepOutput]:
        """Denoising steps of one clip per prompt (b = len(prompts)); the last StepOutput's sample is the batch.
        steps / guidance / sampler / guidance_interval None: the model's defaults (an unset interval brings the
        model's scale outside it too; ``guidance_elsewhere`` None: 1, unguided outside a given interval)."""
        steps = self.defaults.steps if steps is None else steps
        if guidance_interval is None:
            guidance_interval = self.defaults.guidance_interval
            if guidance_elsewhere is None:
                guidance_elsewhere = self.defaults.guidance_elsewhere
        guidance_elsewhere = 1.0 if guidance_elsewhere is None else guidance_elsewhere
        guidance = self.defaults.guidance if guidance is None else guidance
        sampler = self.defaults.sampler if sampler is None else sampler
        ids, _ = self.tokenizer.batch(list(prompts))
        text = self.model.encode_text(ids.to(self.device))
        uncond = None
        if (guidance != 1.0 or guidance_elsewhere != 1.0) and not self.distilled:
            uncond = self.model.encode_text(self._uncond_ids.to(self.device).expand(len(prompts), -1))
        conditioning = Conditioning(text, uncond, stride=stride, cond=cond, mask=mask, overlap=overlap)
        frames = frames or (init.shape[2] if init is not None else self.config.frames)
        den = Denoiser(self.model, conditioning, frames=frames, guidance=guidance, interval=guidance_interval,
                       elsewhere=guidance_elsewhere, precision=self.precision, inspector=inspector)
        yield from denoise(den, generator=generator, steps=steps, sampler=sampler, init=init, strength=strength,
                           callback=callback)

    def sample_batch(self, prompts: Sequence[str], *, generator: torch.Generator, **kw) -> np.ndarray:
        """One clip per prompt: (b, t, h, w, 3) uint8. Keyword arguments as ``iter_batch``."""
        last = None
        for last in self.iter_batch(prompts, generator=generator, **kw):
            pass
        return np.stack([to_uint8(x) for x in last.sample.clamp(-1, 1).cpu()])

    def iter(self, s: Settings, first_frame: np.ndarray | None = None,
             inspector=None) -> Iterator[StepOutput]:
        """Denoising steps of one clip (b = 1); the last StepOutput's sample is the clip. A prompt with no
        word of content is refused (``text.PromptError``, a ValueError) before any step."""
        s = self.complete(s)
        self.validate(s)
        self.tokenizer.check(s.prompt)
        cfg = self.config
        gen = torch.Generator().manual_seed(int(s.seed))
        cond = mask = None
        if first_frame is not None:
            if first_frame.shape != (cfg.height, cfg.width, 3) or first_frame.dtype != np.uint8:
                raise ValueError(f"first frame must be uint8 {cfg.height}x{cfg.width}x3")
            cond = from_uint8(np.repeat(first_frame[None], s.frames, 0))
            mask = torch.zeros(1, 1, s.frames, cfg.height, cfg.width)
            mask[:, :, 0] = 1
        yield from self.iter_batch([s.prompt], generator=gen, steps=s.steps, guidance=s.guidance,
                                   sampler=s.sampler, guidance_interval=s.guidance_interval,
                                   guidance_elsewhere=s.guidance_elsewhere, frames=s.frames,
                                   stride=s.stride, overlap=s.overlap,
                                   cond=cond, mask=mask, inspector=inspector)

    def __call__(self, s: Settings, first_frame: np.ndarray | None = None, inspector=None,
                 callback: Callable[[StepOutput], None] | None = None) -> Generation:
        t0 = time.perf_counter()
        s = self.complete(s)
        last = None
        for out in self.iter(s, first_frame, inspector):
            if callback is not None:
                callback(out)
            last = out
        enc = self.tokenizer.encode(s.prompt)
        return Generation(to_uint8(last.sample.cpu()), s, enc, time.perf_counter() - t0, first_frame, self.precision)

    def generate(self, prompt: str, **kw) -> Generation:
        first_frame = kw.pop("first_frame", None)
        inspector = kw.pop("inspector", None)
        callback = kw.pop("callback", None)
        return self(Settings(prompt, **kw), first_frame, inspector, callback)
