"""ZeroGPU support: ``gpu(fn, duration)`` is ``spaces.GPU(duration=...)(fn)`` where the ``spaces`` package is
installed, and ``fn`` itself where it is not, so the studio runs unchanged without it.

On a ZeroGPU Space (Hugging Face's docs: https://huggingface.co/docs/hub/spaces-zerogpu; the ``spaces`` package's
own code, 0.51) a real GPU exists only while a decorated function runs, and it runs in a forked worker process:
its arguments and everything it returns or yields are pickled across, and whatever it changes in the studio's
memory stays in the worker. So exactly the handlers that run the network are decorated (``demo.app``: Generate,
the Edit tab's sampling, Compare); the views that only read a recording, the file serving and the page are not,
so they never wait for a GPU. Recordings are kept on the CPU (``stunet.inspection``), as a worker may not hand back
CUDA tensors. Outside a ZeroGPU Space ``spaces.GPU`` returns the function unchanged.

The models go to CUDA when the app is built, in the main thread, as the docs ask ("models must be placed on
``cuda`` at the root module level"; ``spaces`` emulates CUDA there): ``ZERO_GPU`` tells ``demo.app`` to load them
at once instead of in its background thread, where the emulation does not reach.

``duration``: a callable of the handler's own arguments (``spaces`` supports that) giving the seconds the request
may hold the GPU, from a cost model of the request's work (``clip_seconds``), never over ``MAX_DURATION_S``. A
shorter request is queued sooner, and a visitor's remaining daily quota is checked against it before it runs.
"""
from __future__ import annotations

import math
import os

try:                                   # first (app.py imports this module first): before torch and CUDA
    import spaces
except ImportError:                    # not installed: every Space but ZeroGPU, and local runs
    spaces = None

from . import limits as L              # noqa: E402
from .models import FAST, ONE_PASS     # noqa: E402

if spaces is not None and hasattr(spaces, "disable_gradio_auto_wrap"):
    # Gradio wraps every event handler in spaces.GPU where SPACES_GRADIO_AUTO_WRAP is set: only those decorated
    # here may hold (and wait for) a GPU.
    spaces.disable_gradio_auto_wrap()

ZERO_GPU_ENV = "SPACES_ZERO_GPU"       # set by Hugging Face on ZeroGPU hardware (read by the spaces package too)
ZERO_GPU = spaces is not None and os.environ.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "t", "true")

# --------------------------------------------------------------------------- the cost model (estimates)
# One forward pass of the shipped model on one 32-frame window (32x32), counted with torch's FlopCounterMode
# (convolutions, matrix products, attention; elementwise work not counted): 8.8 GFLOP. tests/test_space.py
# counts it again.
FORWARD_GFLOP = 8.8
# Effective bf16 throughput assumed for this small network (32-128 channels, 32x32 frames) on ZeroGPU's default
# `large` size (half an RTX Pro 6000 Blackwell): small convolutions use a small part of a GPU; pessimistic on purpose.
GPU_TFLOPS = 5.0
# Per network call: about 750 torch operators launched from Python, and the recording's copies to the CPU.
CALL_OVERHEAD_S = 0.05
# A fresh worker: fork, CUDA initialisation, the models' weights moved to the GPU (7 MB each).
START_S = 10.0
# Writing the MP4 (512 px) and the GIF (256 px) happens inside the handler, on the CPU: 0.066 s a frame
# measured here for a 128-frame clip of noise (the worst case for the encoders), doubled.
ENCODE_S_PER_FRAME = 0.15
# The SSR stage (Upscale, stunet.ssr): 4 steps over 5 windows of a 32-frame clip, each call a small
# space-to-depth network; the call overhead dominates on a GPU. Counted generously.
SSR_S = 2.0
# ZeroGPU's default duration (the spaces package's DEFAULT_SCHEDULE_DURATION): every account tier may ask it.
MAX_DURATION_S = 60


def gpu(fn, duration):
    """``fn`` decorated with ``spaces.GPU(duration=duration)`` where ``spaces`` is installed, else ``fn``.

    Decorate a function that already applies the error policy (``demo.errors.guarded``): on ZeroGPU it runs in
    another process, and only a ``gr.Error`` keeps its message on the way back."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn)


def windows(frames: int, window: int) -> int:
    """Temporal MultiDiffusion windows of a clip (``stunet.denoiser.temporal_windows``, overlap window / 2)."""
    from stunet.denoiser import temporal_windows
    return len(temporal_windows(frames, window, window // 2))


def clip_seconds(steps: int, frames: int, rows: int, window: int = 32) -> float:
    """Estimated GPU-held seconds of one clip: ``steps`` network calls on ``rows`` rows per window (2 with
    classifier-free guidance, 1 without or for a distilled model), then its encoding."""
    work = rows * windows(frames, window) * FORWARD_GFLOP * min(frames, window) / window
    return steps * (CALL_OVERHEAD_S + work / (GPU_TFLOPS * 1e3)) + frames * ENCODE_S_PER_FRAME


def seconds(estimate: float) -> int:
    """The duration asked of ZeroGPU for ``estimate`` seconds of work: a fresh worker's start added, whole
    seconds, at most ``MAX_DURATION_S``."""
    return int(min(MAX_DURATION_S, math.ceil(START_S + estimate)))


def _int(value, lo: int, hi: int, fallback: int) -> int:
    try:
        v = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return fallback
    return v if lo <= v <= hi else fallback


def _float(value, fallback: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return fallback
    return v if math.isfinite(v) else fallback


def generate_duration(studio):
    """``duration`` of ``Studio.generate``: from the request's steps, frames, guidance and model. Values that
    are out of range (the handler refuses them at once) count as the largest allowed."""
    window, factor = studio.window, studio.factor
    hi = L.frames_range(factor, window)[1]

    def duration(prompt=None, seed=None, steps=None, guidance=None, frames=None, sampler=None, stride=None,
                 fps=None, first_frame=None, model=None, style=None, style_strength=None, upscale=None,
                 *_, **__) -> int:
        n = _int(steps, L.MIN_STEPS, L.MAX_STEPS, L.MAX_STEPS)
        f = _int(frames, factor, hi, hi)
        try:
            distilled = studio.choice(model).key in (FAST, ONE_PASS)   # one row per window: the scale is an input
        except L.LimitError:
            distilled = False
        rows = 1 if distilled or _float(guidance, L.MAX_GUIDANCE) == 1.0 else 2
        try:
            ssr = studio.check_upscale(upscale)                  # None: the page's default (on where offered)
        except L.LimitError:
            ssr = False                                          # refused at once by the handler
        return seconds(clip_seconds(n, f, rows, window) + (SSR_S if ssr else 0.0))
    return duration


def edit_duration(studio):
    """``duration`` of the Edit tab's sampling (``EditTab._run(req, fps, progress)``), from the prepared request."""
    window = studio.window

    def duration(req=None, *_, **__) -> int:
        try:
            from stunet.editing import sdedit_steps
            steps = req.steps if req.steps is not None else studio.choices[0].defaults.steps
            return seconds(clip_seconds(sdedit_steps(steps, req.strength), req.frames, 2, window))
        except (AttributeError, TypeError, ValueError):       # not a prepared request: the largest edit
            return seconds(clip_seconds(L.MAX_STEPS, L.frames_range(studio.factor, window)[1], 2, window))
    return duration


def record_duration(studio):
    """``duration`` of ``Studio.record(model, settings, first_frame, style, strength)``: a clip sampled again with
    the Inspector attached, for the Inspect views (no encoding; the recording's copies to the CPU are in CALL_OVERHEAD_S)."""
    window = studio.window

    def duration(model=None, s=None, *_, **__) -> int:
        try:
            distilled = getattr(studio.pipe_for(model).config, "guidance_embedding", False)
            rows = 1 if distilled or s.guidance == 1.0 else 2
            return seconds(clip_seconds(s.steps, s.frames, rows, window) - s.frames * ENCODE_S_PER_FRAME)
        except (AttributeError, TypeError, ValueError, L.LimitError):
            return seconds(clip_seconds(L.MAX_STEPS, L.frames_range(studio.factor, window)[1], 2, window))
    return duration


def compare_duration(studio) -> int:
    """``duration`` of the Compare tab (fixed settings): the keyframe model and temporal super-resolution (three
    runs of the default steps, at most a window's work each) and the STUNet's clip, each encoded, counted as
    four default clips."""
    d = studio.choices[0].defaults
    return seconds(4 * clip_seconds(d.steps, studio.window, 2, studio.window))
