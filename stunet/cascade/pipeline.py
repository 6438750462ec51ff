"""Prompt in, clip out, by the cascade: keyframes (K), then temporal super-resolution (T).

``CascadePipeline`` has the surface of ``stunet.pipeline.Pipeline`` that callers use
(``from_pretrained``, ``defaults``, ``precision``, ``tokenizer``, ``config``, ``complete``,
``validate``, ``__call__ -> Generation``, ``generate``, ``sample_batch``), plus the two halves of the
cascade: ``sample_keyframes`` (K alone) and ``fill`` (T alone, on given keyframes: the oracle
control runs it on the world's true keyframes).

Sampling one clip of 32 frames (``shapes``; b clips: every count times b):

1. K: 8 keyframes at stride 4 (base frames 0, 4, ..., 28), text-to-video, or image-to-video with
   keyframe 0 given through the <noisy, conditioning, mask> input; guided, by the library's sampler
   (``Pipeline.iter_batch`` -> ``sampling.iter_sample`` -> ``Denoiser``).
2. The keyframes become uint8 frames (what ``fill`` is given), then T's conditioning: noised to
   ``cond_noise_step`` (Imagen Video's conditioning augmentation; one draw from the generator).
3. T, interpolation: the 7 windows of 5 frames (keyframes j and j+1 given at the window's ends,
   the 3 frames between generated), batched: one sampling run of 7 rows.
4. T, extrapolation: frames 28-31, a window of 4 frames with only its first frame (the last
   keyframe) given: the same mask interface, the 8th keyframe's continuation. (The keyframes cover
   frames 0-28; a 32-frame clip at stride 1 needs 3 more, and there is no 9th keyframe.)
5. The clip: keyframes at their positions exactly (as K made them), T's frames between and after.

Everything is drawn from the one ``torch.Generator`` passed in (``__call__``: seeded by
``settings.seed``), in the order K noise, conditioning noise, interpolation noise, extrapolation
noise, so a seed gives one clip, and ``sample_batch(g) == fill(sample_keyframes(g), g)`` for two
generators seeded alike. Only stride 1 and the cascade's frame count (32) are supported.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..defaults import SAMPLERS, SamplingDefaults
from ..diffusion import add_noise, alphas_cumprod
from ..model import STUNet
from ..pipeline import Generation, Pipeline, Settings
from ..precision import Precision
from ..sampling import StepOutput
from ..text import Tokenizer
from ..video import from_uint8, to_uint8
from .checkpoint import is_cascade, load_cascade
from .config import CascadeConfig


class CascadePipeline:
    """A loaded cascade (K and T, one shared network or two), its tokenizer and compute precision."""

    def __init__(self, config: CascadeConfig, keyframe_model: STUNet, tsr_model: STUNet | None, tokenizer: Tokenizer,
                 precision: Precision | str | None = None, defaults: SamplingDefaults | None = None):
        tsr_model = keyframe_model if tsr_model is None else tsr_model
        config.check_net(keyframe_model.config, "keyframe")
        config.check_net(tsr_model.config, "tsr")
        self.cascade_config = config
        self.keyframe_pipe = Pipeline(keyframe_model, tokenizer, precision, defaults)
        self.precision = self.keyframe_pipe.precision
        self.tsr_pipe = self.keyframe_pipe if tsr_model is keyframe_model else \
            Pipeline(tsr_model, tokenizer, self.precision, defaults)
        self.tokenizer = tokenizer
        self.defaults = self.keyframe_pipe.defaults
        self.device = self.keyframe_pipe.device

    @classmethod
    def from_pretrained(cls, directory: str | Path, precision: Precision | str | None = None,
                        device: str | torch.device | None = None) -> "CascadePipeline":
        """Load a cascade checkpoint (``stunet.cascade.checkpoint``); precision and device as ``Pipeline``."""
        config, keyframe, tsr, tok, sampling = load_cascade(directory)
        if device is not None:
            keyframe = keyframe.to(device)
            tsr = keyframe if tsr is keyframe or config.shared else tsr.to(device)
        return cls(config, keyframe, tsr, tok, precision, sampling)

    # ------------------------------------------------------------------ what callers read
    @property
    def config(self) -> CascadeConfig:
        return self.cascade_config

    @property
    def net_config(self):
        """The keyframe network's ``STUNetConfig`` (frame size, vocabulary, strides)."""
        return self.keyframe_pipe.config

    @property
    def model(self) -> STUNet:
        """The keyframe network (T's too when shared)."""
        return self.keyframe_pipe.model

    @property
    def keyframe_model(self) -> STUNet:
        return self.keyframe_pipe.model

    @property
    def tsr_model(self) -> STUNet:
        return self.tsr_pipe.model

    @property
    def distilled(self) -> bool:
        return False

    @property
    def keyframe_frames(self) -> tuple[int, ...]:
        """Base-frame index of every keyframe in the clip: (0, 4, ..., 28)."""
        return self.cascade_config.keyframe_frames

    def complete(self, s: Settings) -> Settings:
        """``s`` with unset steps / guidance / sampler taken from the model's defaults."""
        return self.keyframe_pipe.complete(s)

    def validate(self, s: Settings) -> None:
        c = self.cascade_config
        s = self.complete(s)
        if s.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}")
        if not isinstance(s.steps, int) or not 1 <= s.steps <= 1000:
            raise ValueError("steps must be in [1, 1000]")
        if s.guidance_interval is not None:
            raise ValueError("the cascade baseline guides every step; a guidance interval is not supported")
        why = (f"the cascade makes {c.frames}-frame clips at stride 1 only ({c.keyframes} keyframes at stride "
               f"{c.keyframe_stride}, then temporal super-resolution between them)")
        if s.stride != 1:
            raise ValueError(f"{why}; stride {s.stride} is not supported")
        if s.frames != c.frames:
            raise ValueError(f"{why}; frames={s.frames} is not supported")
        if s.overlap is not None:
            raise ValueError(f"{why}; there is no MultiDiffusion overlap to set")

    # ------------------------------------------------------------------ the two halves
    def _check_frames(self, name: str, x: np.ndarray, shape: tuple) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or tuple(x.shape) != shape:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{name} must be uint8 of shape {shape}, got {got}")

    def sample_keyframes(self, prompts: Sequence[str], *, generator: torch.Generator, steps: int | None = None,
                         guidance: float | None = None, sampler: str | None = None,
                         first_frames: np.ndarray | None = None, inspector=None,
                         callback: Callable[[StepOutput], None] | None = None) -> np.ndarray:
        """K alone: the keyframes of one clip per prompt, (b, keyframes, h, w, 3) uint8.
        first_frames: (b, h, w, 3) uint8, given as keyframe 0 (image-to-video). The inspector records K only."""
        c, net = self.cascade_config, self.net_config
        b = len(prompts)
        cond = mask = None
        if first_frames is not None:
            self._check_frames("first frames", first_frames, (b, net.height, net.width, 3))
            cond = from_uint8(np.repeat(first_frames[:, None], c.keyframes, 1))
            mask = torch.zeros(b, 1, c.keyframes, net.height, net.width)
            mask[:, :, 0] = 1
        last = None
        for last in self.keyframe_pipe.iter_batch(prompts, generator=generator, steps=steps, guidance=guidance,
                                                  sampler=sampler, frames=c.keyframes, stride=c.keyframe_stride,
                                                  cond=cond, mask=mask, inspector=inspector, callback=callback):
            pass
        return np.stack([to_uint8(x) for x in last.sample.clamp(-1, 1).cpu()])

    def _assemble(self, keys: torch.Tensor, inner: torch.Tensor | None, tail: torch.Tensor | None) -> torch.Tensor:
        """The clip, b c frames h w, from keyframes (b c K h w), the interpolation windows' frames
        (b (K-1) c window h w; None: keyframes held) and the extrapolation window (b c stride h w; None: held)."""
        c = self.cascade_config
        s = c.keyframe_stride
        clip = keys.repeat_interleave(s, dim=2).clone()                     # keyframes held: b c frames h w
        if inner is not None:
            for j in range(c.keyframes - 1):
                clip[:, :, j * s + 1:(j + 1) * s] = inner[:, j, :, 1:s]
        if tail is not None:
            clip[:, :, (c.keyframes - 1) * s + 1:] = tail[:, :, 1:]
        clip[:, :, ::s] = keys
        return clip

    @torch.no_grad()
    def fill(self, prompts: Sequence[str], keyframes: np.ndarray, *, generator: torch.Generator,
             steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
             callback: Callable[[StepOutput], None] | None = None) -> np.ndarray:
        """T alone: the clips through the given keyframes, (b, frames, h, w, 3) uint8.

        keyframes: (b, keyframes, h, w, 3) uint8, the frames at ``keyframe_frames``; they are in the
        output exactly. callback: every step of T's two runs (``StepOutput`` with the clip so far)."""
        c, net = self.cascade_config, self.tsr_pipe.config
        b, K, s = len(prompts), c.keyframes, c.keyframe_stride
        self._check_frames("keyframes", keyframes, (b, K, net.height, net.width, 3))
        keys = from_uint8(keyframes)                                          # b c K h w
        cond_keys = keys
        if c.cond_noise_step > 0:                                             # conditioning augmentation
            ac = alphas_cumprod(net)
            noise = torch.randn(keys.shape, generator=generator, device=generator.device).cpu()
            cond_keys = add_noise(ac, keys, noise, torch.full((b,), c.cond_noise_step))
        ch, h, w = keys.shape[1], keys.shape[3], keys.shape[4]
        # interpolation: K-1 windows per clip (clip-major rows), both ends given
        cond = torch.zeros(b, K - 1, ch, c.window, h, w)
        cond[:, :, :, 0] = cond_keys[:, :, :-1].transpose(1, 2)
        cond[:, :, :, -1] = cond_keys[:, :, 1:].transpose(1, 2)
        mask = torch.zeros(b * (K - 1), 1, c.window, h, w)
        mask[:, :, 0] = mask[:, :, -1] = 1
        rows = [p for p in prompts for _ in range(K - 1)]
        kw = dict(generator=generator, steps=steps, guidance=guidance, sampler=sampler, stride=1)
        k = 0 if callback is None else self._steps(steps)

        def report(phase: int, fn):
            if callback is None:
                return None
            return lambda out: callback(StepOutput(phase * k + out.step, 2 * k, out.timestep, *fn(out)))

        def inner_of(x):
            return x.reshape(b, K - 1, *x.shape[1:]).cpu()
        last = None
        for last in self.tsr_pipe.iter_batch(
                rows, frames=c.window, cond=cond.reshape(b * (K - 1), ch, c.window, h, w), mask=mask,
                callback=report(0, lambda o: (self._assemble(keys, inner_of(o.sample), None),
                                              self._assemble(keys, inner_of(o.x0), None))), **kw):
            pass
        inner = inner_of(last.sample.clamp(-1, 1))
        # extrapolation: the frames after the last keyframe, only that keyframe given
        cond = torch.zeros(b, ch, s, h, w)
        cond[:, :, 0] = cond_keys[:, :, -1]
        mask = torch.zeros(b, 1, s, h, w)
        mask[:, :, 0] = 1
        for last in self.tsr_pipe.iter_batch(
                list(prompts), frames=s, cond=cond, mask=mask,
                callback=report(1, lambda o: (self._assemble(keys, inner, o.sample.cpu()),
                                              self._assemble(keys, inner, o.x0.cpu()))), **kw):
            pass
        clip = self._assemble(keys, inner, last.sample.clamp(-1, 1).cpu())
        out = np.stack([to_uint8(x) for x in clip])
        out[:, list(c.keyframe_frames)] = keyframes                            # exactly as given
        return out

    def _steps(self, steps: int | None) -> int:
        return self.defaults.steps if steps is None else steps

    # ------------------------------------------------------------------ prompt -> clip
    def sample_batch(self, prompts: Sequence[str], *, generator: torch.Generator, steps: int | None = None,
                     guidance: float | None = None, sampler: str | None = None, frames: int | None = None,
                     stride: int = 1) -> np.ndarray:
        """One clip per prompt: (b, frames, h, w, 3) uint8 (K, then T; see the module docstring).
        frames / stride: as ``Pipeline.sample_batch`` takes them; only the cascade's own (32, 1) are accepted."""
        self.validate(Settings("", steps=steps, guidance=guidance, sampler=sampler,
                               frames=self.config.frames if frames is None else frames, stride=stride))
        keys = self.sample_keyframes(prompts, generator=generator, steps=steps, guidance=guidance, sampler=sampler)
        return self.fill(prompts, keys, generator=generator, steps=steps, guidance=guidance, sampler=sampler)

    def __call__(self, s: Settings, first_frame: np.ndarray | None = None, inspector=None,
                 callback: Callable[[StepOutput], None] | None = None) -> Generation:
        """One clip (b = 1). callback: every step of K, then of T (3 x steps in all: ``StepOutput.step`` counts
        them all, ``num_steps`` is their total; its sample / x0 are always the whole clip, b c frames h w,
        frames not made yet held from the keyframe before them). The inspector records K's calls."""
        t0 = time.perf_counter()
        s = self.complete(s)
        self.validate(s)
        self.tokenizer.check(s.prompt)                 # a prompt with no word of content: text.PromptError
        gen = torch.Generator().manual_seed(int(s.seed))
        n = s.steps
        S = self.config.keyframe_stride
        kcb = None if callback is None else lambda out: callback(StepOutput(      # keyframes held: the whole clip
            out.step, 3 * n, out.timestep, out.sample.repeat_interleave(S, dim=2), out.x0.repeat_interleave(S, dim=2)))
        tcb = None if callback is None else lambda out: callback(replace(out, step=n + out.step, num_steps=3 * n))
        first = None if first_frame is None else first_frame[None]
        keys = self.sample_keyframes([s.prompt], generator=gen, steps=s.steps, guidance=s.guidance,
                                     sampler=s.sampler, first_frames=first, inspector=inspector, callback=kcb)
        video = self.fill([s.prompt], keys, generator=gen, steps=s.steps, guidance=s.guidance, sampler=s.sampler,
                          callback=tcb)[0]
        enc = self.tokenizer.encode(s.prompt)
        return Generation(video, s, enc, time.perf_counter() - t0, first_frame, self.precision)

    def generate(self, prompt: str, **kw) -> Generation:
        first_frame = kw.pop("first_frame", None)
        inspector = kw.pop("inspector", None)
        callback = kw.pop("callback", None)
        return self(Settings(prompt, **kw), first_frame, inspector, callback)


def load_pipeline(directory: str | Path | None = None, precision: Precision | str | None = None,
                  device: str | torch.device | None = None) -> Pipeline | CascadePipeline:
    """A ``Pipeline`` (a STUNet checkpoint) or a ``CascadePipeline`` (``"model_type": "cascade"`` in its
    config.json) for ``directory`` (None: the shipped model, as ``Pipeline.from_pretrained``)."""
    if is_cascade(directory):
        return CascadePipeline.from_pretrained(directory, precision=precision, device=device)
    return Pipeline.from_pretrained(directory, precision=precision, device=device)
