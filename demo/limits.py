"""Every limit and default of the studio, in one place (the README's limits table is this file).

The checks here run on the server for every request (the browser's slider bounds are a
convenience, not a guarantee: API callers send anything). They raise ``LimitError`` with
a short, plain-text message that names the limit; ``demo.errors`` turns it into a
``gr.Error`` (HTML-escaped).
"""
from __future__ import annotations

import math
import unicodedata

from stunet import defaults

# --------------------------------------------------------------------------- request limits
MAX_PROMPT_CHARS = 200
MIN_STEPS, MAX_STEPS = 1, 50
MIN_GUIDANCE, MAX_GUIDANCE = 1.0, 10.0
MIN_SEED, MAX_SEED = 0, 2**31 - 1
MAX_WINDOWS = 4                  # frames: a multiple of the temporal factor in [factor, MAX_WINDOWS x window]
MIN_FPS, MAX_FPS = 1, 30
# A clip's time limit scales with the machine: its first denoising step is timed, and the clip is
# stopped (between steps, with a message) once it runs, or is projected to run, past
# JOB_DEADLINE_MARGIN x its steps at that pace, and never before JOB_DEADLINE_FLOOR_S. The amount of
# work is bounded by the limits above (steps x windows), not by the clock.
JOB_DEADLINE_MARGIN = 3.0        # the pace may drop to a third of the first step's before the clip is stopped
JOB_DEADLINE_FLOOR_S = 60        # no clip is stopped before this, however quick its first step

# --------------------------------------------------------------------------- uploads (first frame, image-to-video)
MAX_UPLOAD_BYTES = 2 * 2**20     # launch(max_file_size=...) and checked again by the handler
MAX_UPLOAD_REQUEST_BYTES = MAX_UPLOAD_BYTES + 64 * 2**10   # one /upload request body (one file + multipart overhead)
MAX_IMAGE_SIDE = 4096            # width and height, read from the header before any pixel is decoded
MAX_IMAGE_PIXELS = 2048 * 2048   # width x height, likewise
from stunet.video import IMAGE_FORMATS  # noqa: E402,F401  (Pillow decoders tried; nothing else is opened)

# --------------------------------------------------------------------------- edits (inpainting, cinemagraph, video-to-video)
VIDEO_KINDS = ("GIF", "MP4 (H.264)")   # uploaded clips: by magic bytes; the same upload size limit as images
MAX_VIDEO_SIDE = 1024            # an uploaded clip's frames, from the header, before any frame is decoded
MAX_VIDEO_PIXELS = 1024 * 1024
DECODE_TIMEOUT_S = 20            # wall time to decode one upload (GIF: Pillow, checked per frame; MP4: ffmpeg subprocess)
MIN_STRENGTH, MAX_STRENGTH = 0.05, 1.0
DEFAULT_STRENGTH = 0.6
EDIT_CANVAS_SIDE = 256           # the frame the mask is drawn on, enlarged (nearest neighbour)

# --------------------------------------------------------------------------- serving
QUEUE_MAX_SIZE = 8               # waiting requests; beyond it the server answers "busy"
GENERATE_CONCURRENCY = 1         # one sampling run at a time (2 vCPU: torch uses both)
INSPECT_CONCURRENCY = 2          # inspect views are cheap; they never wait behind sampling
STATE_TTL_S = 1800               # a session's last clip and its recording are kept this long
RECORDS_MAX_BYTES = 512 * 2**20  # all sessions' recordings together; beyond it the oldest are released
                                 # (a generated clip is recorded again when a view asks: about one clip's time)
OUTPUT_TTL_S = 3600              # written MP4/GIF/NPZ files are deleted after this
MAX_OUTPUT_DIRS = 64             # and at most this many request folders are kept
GRADIO_CACHE_CLEANUP = (900, 3600)   # gr.Blocks(delete_cache=(every s, older than s))
CACHE_MAX_BYTES = 1 * 2**30      # files Gradio keeps for this app (outputs, previews, uploads): oldest deleted beyond
CACHE_MAX_FILES = 4000           # ... this many bytes or files, checked after every clip and every CACHE_PRUNE_EVERY_S
CACHE_PRUNE_EVERY_S = 30

# --------------------------------------------------------------------------- inspection
RECORD_MAX_BYTES = 96 * 2**20    # per request (Inspector max_bytes); about 45 MB at 20 steps x 32 frames
X0_MAX_BYTES = 16 * 2**20        # x0-hat is kept at every step up to this size, else at evenly spaced steps
FEATURE_STEPS = 6                # feature maps are recorded at this many denoising steps (evenly spaced)
VIDEO_SIDE = 128                 # the MP4 is upscaled (nearest neighbour) to about this many pixels; the
                                 # player scales it further with CSS image-rendering: pixelated (demo.style)
GIF_SIDE = 256
PREVIEW_MAX_FRAMES = 32          # live x0-hat preview shows at most this many frames
PREVIEW_CELL = 32                # pixels a side of a preview frame: the model's own (the browser scales it, pixelated;
                                 # a 64-px cell cost 15 ms of PNG a preview, 32 px under 1 ms)
PREVIEW_EVERY_S = 0.5            # at most one x0-hat preview per this many seconds while sampling
PROGRESS_EVERY_S = 0.25          # at most one progress-bar update per this many seconds (first and last always)

# --------------------------------------------------------------------------- defaults (sampling ones: stunet.defaults)
DEFAULT_SEED = 0
DEFAULT_STEPS = defaults.STEPS
DEFAULT_GUIDANCE = defaults.GUIDANCE
DEFAULT_SAMPLER = defaults.SAMPLER
SAMPLERS = defaults.SAMPLERS
SAMPLER_LABELS = defaults.SAMPLER_LABELS
DEFAULT_STRIDE = 1
# The model a plain Generate uses where both are offered ("fast": the distilled few-step model, "full"):
# fast only if its measured quality holds against the full model (assets/stunet-shapes-fast/README.md).
DEFAULT_MODEL = "full"
DEFAULT_FPS = 8
# A style (issue 33, demo.models.Styles): its spatial weights at this strength; "None" keeps the model's own.
MIN_STYLE_STRENGTH, MAX_STYLE_STRENGTH = 0.0, 1.0
DEFAULT_STYLE_STRENGTH = 1.0
STYLE_STRENGTH_STEP = 0.05       # the slider's step (API callers may send any strength in range)
DEFAULT_UPSCALE = True           # the Upscale choice (issue 34) starts on where offered: the SSR stage measured at 0.35 s a clip
                                 # (target 1 s; assets/stunet-ssr/README.md), its verdicts the base clip's
STYLED_MODELS_KEPT = 3           # styled copies of a model kept (all sessions together; each a copy of the model)


class LimitError(ValueError):
    """A request outside the documented limits (shown to the user, escaped)."""


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LimitError(f"{name} must be a number.")
    try:
        v = float(value)
    except OverflowError:                  # an int too large for a float (JSON allows any length)
        raise LimitError(f"{name} is out of range.") from None
    if not math.isfinite(v):
        raise LimitError(f"{name} must be a finite number.")
    return v


def check_int(name: str, value, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] (an integral float such as 20.0 is accepted)."""
    msg = f"{name} must be a whole number from {lo} to {hi}."
    try:
        v = _number(name, value)
    except LimitError:
        raise LimitError(msg) from None
    if v != int(v) or not lo <= v <= hi:
        raise LimitError(msg)
    return int(v)


def check_float(name: str, value, lo: float, hi: float) -> float:
    msg = f"{name} must be a number from {lo:g} to {hi:g}."
    try:
        v = _number(name, value)
    except LimitError:
        raise LimitError(msg) from None
    if not lo <= v <= hi:
        raise LimitError(msg)
    return v


def check_choice(name: str, value, choices):
    choices = list(choices)
    if isinstance(value, bool) or value not in choices:
        raise LimitError(f"{name} must be one of: {', '.join(str(c) for c in choices)}.")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise LimitError(f"{name} must be true or false.")
    return value


def frames_range(factor: int, window: int) -> tuple[int, int]:
    return factor, MAX_WINDOWS * window


def check_frames(value, factor: int, window: int) -> int:
    lo, hi = frames_range(factor, window)
    msg = (f"Frames must be a multiple of {factor} from {lo} to {hi} "
           f"(the model halves time {factor.bit_length() - 1} times; clips longer than {window} "
           f"frames use MultiDiffusion).")
    try:
        v = check_int("Frames", value, lo, hi)
    except LimitError:
        raise LimitError(msg) from None
    if v % factor:
        raise LimitError(msg)
    return v


def check_prompt(value) -> str:
    """A non-empty string of at most MAX_PROMPT_CHARS printable characters (whitespace trimmed)."""
    if not isinstance(value, str):
        raise LimitError("The prompt must be text.")
    if len(value) > MAX_PROMPT_CHARS:
        raise LimitError(f"The prompt is too long: at most {MAX_PROMPT_CHARS} characters.")
    for ch in value:
        if ch in "\t\n\r":
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise LimitError("The prompt contains control or invisible characters.")
    value = " ".join(value.split())
    if not value:
        raise LimitError("The prompt is empty: describe a clip, for example 'a red circle moving left'.")
    return value


def check_words(tokenizer, prompt: str):
    """The prompt's encoding (``stunet.text.Encoded``); refused when no word of it says what to draw (all
    unknown, or only stopwords such as "a"): the library's one rule, ``Tokenizer.check``, whose message names
    the unknown words and the vocabulary."""
    from stunet.text import PromptError
    try:
        return tokenizer.check(prompt)
    except PromptError as e:
        raise LimitError(str(e)) from None


def job_deadline_s(first_step_s: float, steps: int) -> float:
    """Seconds a clip of ``steps`` steps may take, given how long its first step took (see JOB_DEADLINE_MARGIN)."""
    return max(float(JOB_DEADLINE_FLOOR_S), JOB_DEADLINE_MARGIN * steps * first_step_s)


def limits_table(factor: int = 4, window: int = 32, strides=(1, 2, 4)) -> list[tuple[str, str]]:
    """(input, allowed values) rows for the README and the About tab."""
    lo, hi = frames_range(factor, window)
    return [
        ("prompt", f"1 to {MAX_PROMPT_CHARS} characters, at least one word the model knows that is not a "
                   "stopword (a, an, the, is)"),
        ("seed", f"whole number {MIN_SEED} to {MAX_SEED}"),
        ("steps", f"{MIN_STEPS} to {MAX_STEPS}"),
        ("guidance", f"{MIN_GUIDANCE:g} to {MAX_GUIDANCE:g}"),
        ("frames", f"multiple of {factor} from {lo} to {hi}; over {window} uses MultiDiffusion"),
        ("sampler", " or ".join(SAMPLERS)),
        ("stride", ", ".join(str(s) for s in strides)),
        ("fps", f"{MIN_FPS} to {MAX_FPS}"),
        ("first frame (optional)", f"{', '.join(IMAGE_FORMATS)} image up to {MAX_UPLOAD_BYTES // 2**20} MB, "
                                   f"{MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS / 1e6:.1f} Mpx"),
        ("edit input (optional)", f"the last clip, or an uploaded {' or '.join(VIDEO_KINDS)} up to "
                                  f"{MAX_UPLOAD_BYTES // 2**20} MB, {MAX_WINDOWS * window} frames, {MAX_VIDEO_SIDE} px a "
                                  f"side, decoded in {DECODE_TIMEOUT_S} s (or an image, for a cinemagraph)"),
        ("edit mask / region", "drawn (alpha) or an image (white); at least one pixel"),
        ("edit strength", f"{MIN_STRENGTH:g} to {MAX_STRENGTH:g} (video-to-video)"),
        ("job time", f"stopped past {JOB_DEADLINE_MARGIN:g}x its steps at its first step's pace "
                     f"(at least {JOB_DEADLINE_FLOOR_S} s)"),
        ("queue", f"{QUEUE_MAX_SIZE} waiting, {GENERATE_CONCURRENCY} sampling at a time"),
    ]
