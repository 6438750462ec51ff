"""Lumiere's editing applications (arXiv 2401.12945, section 4, "Applications"): one conditioning
interface, three edits.

The STUNet's input is ⟨noisy clip, masked conditioning clip, mask⟩ (3 + 3 + 1 channels; mask
1 = given). Lumiere section 4 turns that one interface into several applications; here:

* ``inpaint``: a clip and a mask (True = regenerate): the conditioning is the clip with the masked
  pixels zeroed, the mask says which pixels are given ("video inpainting", section 4).
* ``cinemagraph``: an image and a region (True = may move): the conditioning is the image repeated
  over time; the first frame is fully given, later frames are given outside the region
  ("cinemagraphs", section 4).
* ``video_to_video``: SDEdit (Meng et al. 2022): the input clip is noised part-way (``strength``
  of the schedule) and denoised under the new prompt, with no conditioning. Lumiere section 4
  ("stylized generation" / video-to-video) notes that a base model at the full frame rate makes
  this work without a temporal super-resolution cascade; here the base model is the whole model.

For inpainting and cinemagraphs the given pixels are pasted back exactly at the end
(``Edit.video``), so "unchanged" is exact; ``Edit.raw`` is the model's own clip before the paste
and ``Edit.psnr_given`` measures how closely the model itself kept the given pixels.

Every edit goes through ``Pipeline.iter_batch`` (so it works with any model the pipeline loads)
and streams its steps (``EditRequest.iter``) for the studio; ``inspection.Inspector`` records it as it
records a generation. Shapes: clips t h w 3 uint8 (numpy) outside, b c t h w in [-1, 1] inside.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from .sampling import StepOutput
from .video import from_uint8, to_uint8

MODES = ("inpaint", "cinemagraph", "video_to_video")


def sdedit_steps(steps: int, strength: float) -> int:
    """Denoising steps SDEdit runs out of ``steps`` at ``strength`` (as ``sampling.iter_sample``: at least 1)."""
    check_strength(strength)
    return steps if strength >= 1.0 else max(1, int(round(steps * strength)))


def check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    return float(strength)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean (..., H, W) mask to (..., h, w) (pixel centres sampled)."""
    mask = np.asarray(mask, dtype=bool)
    H, W = mask.shape[-2:]
    h, w = size
    if (H, W) == (h, w):
        return mask
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    return mask[..., rows[:, None], cols[None, :]]


def _check_frames_count(cfg, t: int) -> None:
    if t < 1:
        raise ValueError("the clip has no frames")
    if t <= cfg.frames:
        cfg.check_frames(t)        # a multiple of the temporal factor (the U-Net halves time)


def check_clip(video, cfg, what: str = "clip") -> np.ndarray:
    """A t h w 3 uint8 clip at the model's size (frames: as a generation's), else ValueError."""
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"the {what} must be a uint8 array (t, h, w, 3)")
    if video.shape[1:3] != (cfg.height, cfg.width):
        raise ValueError(f"the {what} must be {cfg.height}x{cfg.width} pixels (the model's size), "
                         f"got {video.shape[1]}x{video.shape[2]}")
    _check_frames_count(cfg, video.shape[0])
    return video


def fit_frames(video: np.ndarray, cfg) -> np.ndarray:
    """The longest prefix of ``video`` (t h w 3) whose length is a multiple of the temporal factor
    (the U-Net halves time ``log2(factor)`` times); ValueError under one factor's worth of frames."""
    f = cfg.temporal_factor
    if video.shape[0] < f:
        raise ValueError(f"the clip has {video.shape[0]} frames; the model needs at least {f}")
    return video[: video.shape[0] - video.shape[0] % f]


def check_image(image, cfg) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != (cfg.height, cfg.width, 3):
        raise ValueError(f"the image must be a uint8 array ({cfg.height}, {cfg.width}, 3)")
    return image


def as_mask(mask, t: int, h: int, w: int, what: str = "mask") -> np.ndarray:
    """A (h w) or (t h w) boolean (or 0/1) mask -> t h w bool; a wrong shape or non-0/1 values are errors."""
    m = np.asarray(mask)
    if m.dtype != bool:
        if m.dtype.kind not in "iuf" or not np.isin(m, (0, 1)).all():
            raise ValueError(f"the {what} must be boolean (or 0/1)")
        m = m.astype(bool)
    if m.shape == (h, w):
        m = np.broadcast_to(m, (t, h, w))
    if m.shape != (t, h, w):
        raise ValueError(f"the {what} must have shape ({h}, {w}) or ({t}, {h}, {w}), got {tuple(m.shape)}")
    return np.ascontiguousarray(m)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) of uint8 arrays a vs b over the pixels where ``where`` (t h w) holds; inf when equal."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        d = d[where]
    if d.size == 0:
        return float("nan")
    mse = float(np.mean(d ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


@dataclass
class Edit:
    """An edit's result: the clip, the model's own clip before the paste, and what it was made from."""
    mode: str
    video: np.ndarray                    # t h w 3 uint8: the result (given pixels pasted back exactly)
    raw: np.ndarray                      # t h w 3 uint8: the model's clip before the paste
    source: np.ndarray                   # t h w 3 uint8: the input (a cinemagraph's image repeated over time)
    given: np.ndarray | None             # t h w bool: pixels given to the model (and pasted back); None for SDEdit
    prompt: str
    settings: dict                       # seed, steps, guidance, sampler, stride, strength, steps_run, ...
    seconds: float = 0.0
    precision: object = field(default=None, repr=False)

    @property
    def psnr_given(self) -> float | None:
        """PSNR of the model's own clip against the input over the given pixels (before the paste)."""
        if self.given is None or not self.given.any():
            return None
        return psnr(self.raw, self.source, self.given)

    def record(self) -> dict:
        d = {"mode": self.mode, "prompt": self.prompt, **self.settings}
        if self.given is not None:
            d["regenerated_fraction"] = round(float(1.0 - self.given.mean()), 4)
            p = self.psnr_given
            d["psnr_given_before_paste_db"] = None if p is None or not math.isfinite(p) else round(p, 2)
        if self.precision is not None:
            d.update(self.precision.to_dict())
        return d


@dataclass
class EditRequest:
    """One edit, checked and ready to sample: ``iter`` streams its steps, ``result`` builds the ``Edit``.

    ``given`` (t h w bool) is what the model is told is known (mask 1) and what is pasted back;
    ``strength`` < 1 makes it SDEdit from ``source``.
    """
    mode: str
    prompt: str
    source: np.ndarray                   # t h w 3 uint8
    given: np.ndarray | None = None      # t h w bool
    seed: int = 0
    steps: int | None = None             # None: the pipeline's default (the model's own, where it has one)
    guidance: float | None = None
    sampler: str | None = None
    stride: int = 1
    strength: float = 1.0

    @property
    def frames(self) -> int:
        return int(self.source.shape[0])

    def _tensors(self):
        cond = mask = init = None
        x = from_uint8(self.source)                                  # 1 c t h w in [-1, 1]
        if self.given is not None:
            mask = torch.from_numpy(self.given.astype(np.float32))[None, None]   # 1 1 t h w, 1 = given
            cond = x * mask
        if self.strength < 1.0:
            init = x
        return cond, mask, init

    def iter(self, pipe, inspector=None,
             callback: Callable[[StepOutput], None] | None = None) -> Iterator[StepOutput]:
        """The denoising steps (b = 1); the last StepOutput's sample is the model's clip."""
        cond, mask, init = self._tensors()
        opt = {k: v for k, v in dict(steps=self.steps, guidance=self.guidance, sampler=self.sampler).items()
               if v is not None}
        gen = torch.Generator().manual_seed(int(self.seed))
        yield from pipe.iter_batch([self.prompt], generator=gen, frames=self.frames, stride=self.stride, cond=cond,
                                   mask=mask, init=init, strength=self.strength, inspector=inspector,
                                   callback=callback, **opt)

    def result(self, pipe, last: StepOutput, seconds: float = 0.0) -> Edit:
        raw = to_uint8(last.sample.clamp(-1, 1).cpu())               # t h w 3
        video = raw.copy()
        if self.given is not None:
            video[self.given] = self.source[self.given]              # the given pixels, exactly
        settings = dict(seed=int(self.seed), steps=self.steps, guidance=self.guidance, sampler=self.sampler,
                        stride=self.stride, frames=self.frames, steps_run=int(last.num_steps))
        if self.mode == "video_to_video":
            settings["strength"] = self.strength
        return Edit(self.mode, video, raw, self.source, self.given, self.prompt, settings, seconds,
                    getattr(pipe, "precision", None))

    def run(self, pipe, inspector=None, callback: Callable[[StepOutput], None] | None = None) -> Edit:
        t0 = time.perf_counter()
        last = None
        for last in self.iter(pipe, inspector, callback):
            pass
        if last is None:
            raise RuntimeError("sampling produced no step")
        return self.result(pipe, last, time.perf_counter() - t0)


def _check_prompt(pipe, prompt) -> str:
    """The prompt, stripped; refused when empty or when no word of it carries content (``text.PromptError``)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty")
    pipe.tokenizer.check(prompt)
    return prompt.strip()


def prepare_inpaint(pipe, video: np.ndarray, mask, prompt: str, **kw) -> EditRequest:
    """Inpainting: regenerate the pixels where ``mask`` (h w or t h w, True = regenerate) holds."""
    cfg = pipe.config
    video = check_clip(video, cfg)
    t, h, w, _ = video.shape
    regen = as_mask(mask, t, h, w)
    if not regen.any():
        raise ValueError("the mask is empty: nothing to regenerate (True / white = regenerate)")
    return EditRequest("inpaint", _check_prompt(pipe, prompt), video, ~regen, **kw)


def prepare_cinemagraph(pipe, image: np.ndarray, region, prompt: str, frames: int | None = None,
                        **kw) -> EditRequest:
    """Cinemagraph: the image repeated over time; frame 0 fully given, later frames given outside ``region``."""
    cfg = pipe.config
    image = check_image(image, cfg)
    frames = cfg.frames if frames is None else int(frames)
    _check_frames_count(cfg, frames)
    region = as_mask(region, 1, cfg.height, cfg.width, "region")[0]
    if not region.any():
        raise ValueError("the region is empty: nothing may move (True / white = may move)")
    source = np.repeat(image[None], frames, 0)                          # t h w 3
    given = np.repeat(~region[None], frames, 0)
    given[0] = True
    return EditRequest("cinemagraph", _check_prompt(pipe, prompt), source, given, **kw)


def prepare_video_to_video(pipe, video: np.ndarray, prompt: str, strength: float, **kw) -> EditRequest:
    """SDEdit: noise ``video`` to ``strength`` of the schedule (0 < strength <= 1) and denoise it under ``prompt``."""
    video = check_clip(video, pipe.config)
    strength = check_strength(strength)
    return EditRequest("video_to_video", _check_prompt(pipe, prompt), video, None, strength=strength, **kw)


def inpaint(pipe, video: np.ndarray, mask, prompt: str, *, seed: int = 0, steps: int | None = None,
            guidance: float | None = None, sampler: str | None = None, stride: int = 1, inspector=None,
            callback=None) -> Edit:
    """Inpaint ``video`` (t h w 3 uint8) where ``mask`` (h w or t h w bool, True = regenerate) holds.

    The result equals the input outside the mask exactly (pasted back); ``Edit.raw`` is the model's
    clip before the paste.
    """
    req = prepare_inpaint(pipe, video, mask, prompt, seed=seed, steps=steps, guidance=guidance, sampler=sampler,
                          stride=stride)
    return req.run(pipe, inspector, callback)


def cinemagraph(pipe, image: np.ndarray, region, prompt: str, *, frames: int | None = None, seed: int = 0,
                steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                stride: int = 1, inspector=None, callback=None) -> Edit:
    """Animate ``image`` (h w 3 uint8) inside ``region`` (h w bool, True = may move): frame 0 is the image,
    and every frame equals it outside the region."""
    req = prepare_cinemagraph(pipe, image, region, prompt, frames=frames, seed=seed, steps=steps,
                              guidance=guidance, sampler=sampler, stride=stride)
    return req.run(pipe, inspector, callback)


def video_to_video(pipe, video: np.ndarray, prompt: str, strength: float, *, seed: int = 0,
                   steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                   stride: int = 1, inspector=None, callback=None) -> Edit:
    """SDEdit ``video`` (t h w 3 uint8) towards ``prompt``: strength near 0 keeps the input, 1 ignores it."""
    req = prepare_video_to_video(pipe, video, prompt, strength, seed=seed, steps=steps, guidance=guidance,
                                 sampler=sampler, stride=stride)
    return req.run(pipe, inspector, callback)
