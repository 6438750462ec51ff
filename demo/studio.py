"""The studio's request handlers: validate, sample through ``stunet.pipeline``, render the views.

One ``Studio`` per app holds the shared (read-only) pipeline, the output folder (``files``), the
example cache and the record registry (``sessions``). Everything per request lives in the
request: its own ``torch.Generator`` (made by the pipeline from the seed), its own
``Inspector``, and the ``ClipRecord`` returned into the session's ``gr.State``.

The pipeline may still be loading when the page is served (``demo.app`` loads it in the
background): handlers reach it through ``Studio.pipe``, which waits for it.
"""
from __future__ import annotations

import html
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from stunet.inspection import Inspector
from stunet.pipeline import Pipeline, Settings
from stunet.style_weights import StyleError
from stunet.video import read_image, to_uint8, write_video

from . import figures as views
from . import limits as L
from .files import Outputs, uploaded_path
from .job_clock import JobClock
from .models import FULL, LABELS, NO_STYLE, ModelChoice, Styles, Upscaler
from .limits import LimitError
from .inspect_views import (HEAD_MEAN, LAYER_ALL, MODE_MEAN, MODE_POINT, InspectHandlers,  # noqa: F401 (re-exported)
                            InspectViews, StepViews, head_choices, save_recording)
from .outputs import NamedOutputs as _Outputs
from .markup import md_escape, slug  # noqa: F401 (re-exported)
from .sessions import LRU, ClipRecord, ExampleCache, Records, current_session

log = logging.getLogger("stunet.studio")

SAMPLER_LABELS = L.SAMPLER_LABELS
FEATURES_CACHE_SIZE = 16          # rendered feature views kept (all sessions together), so scrubbing back is instant


def precision_of(pipe) -> dict:
    """{"precision": name, "precision_reason": why} of the precision ``pipe`` computes in."""
    return pipe.precision.to_dict()


# ------------------------------------------------------------------------------ handler outputs
@dataclass
class GenerateOutputs(_Outputs):
    """What ``/generate`` returns, in its output order (``gr.skip()`` where nothing changed)."""
    video: Any
    mp4: Any
    gif: Any                      # None: made on request (the GIF button, ``/gif``)
    settings: Any
    preview: Any
    status: Any
    record: Any


def clip_name(s: Settings) -> str:
    """A clip's file name (no extension): prompt and seed."""
    return f"stunet-{slug(s.prompt)}-seed{s.seed}"


class Studio(InspectHandlers):
    """Generate and its clip (sampling, files, on-demand recording); the Inspect views come from
    ``demo.inspect_views.InspectHandlers``."""
    RECORDS_DURING_GENERATE = False   # the Inspector runs when a view first asks (``recording_of``)
    GIF_ON_REQUEST = True             # /generate writes the MP4 only (``make_gif``)

    def __init__(self, pipeline: Pipeline | None = None, examples: list[list] | None = None, *,
                 config=None, tokenizer=None, loader: Callable[[], Pipeline] | None = None,
                 choices: list[ModelChoice] | None = None, loaders: dict[str, Callable[[], Pipeline]] | None = None,
                 styles: dict[str, Path] | None = None, ssr: Path | None = None):
        """``pipeline``, or ``config`` + ``tokenizer`` (read without the weights) and a ``loader``
        that returns the pipeline (called on first use, from any thread; it may block).

        That is the default model, ``choices[0]``; further ``choices`` (the fast or the full model,
        ``demo.models``) load through ``loaders[key]`` on first use. ``styles``: {name: style directory} offered
        by the Style choice (``demo.models.available_styles``), applied to whichever model is picked. ``ssr``: the
        SSR model directory of the Upscale choice (default: $STUNET_SSR, else assets/stunet-ssr; ``Upscaler``).
        """
        if pipeline is None and (config is None or tokenizer is None or loader is None):
            raise ValueError("Studio needs a pipeline, or config, tokenizer and loader")
        self._pipe = pipeline
        self._loader = loader
        self.choices = choices or [ModelChoice(FULL, None, pipeline.defaults)]
        self._loaders = dict(loaders or {})
        self._others: dict[str, Pipeline] = {}
        self._others_lock = threading.Lock()
        self.styles = Styles(styles, L.STYLED_MODELS_KEPT)
        self.cfg = pipeline.config if pipeline is not None else config
        self.upscaler = Upscaler(ssr, base_size=self.cfg.height)
        self.tok = pipeline.tokenizer if pipeline is not None else tokenizer
        self.factor = self.cfg.temporal_factor
        self.window = self.cfg.frames
        self.files = Outputs()
        self.examples = ExampleCache(examples, self.choices[0].defaults.sampler, self.choices[0].key)
        self.records = Records()
        self._record_lock = threading.Lock()      # one recording run at a time (they sample, like Generate)
        self.record_runner = self.record          # (model, settings, first_frame, style, strength) -> (recording, clip)
        self.preview_every_s = L.PREVIEW_EVERY_S  # tests set 0: a preview after every step but the last
        self.now = time.perf_counter              # the job clock's time source (demo.job_clock; tests: a fake one)
        self._features_cache = LRU(FEATURES_CACHE_SIZE)          # (clip id, step) -> (image, figure)
        self._initial_pyramid = None
        self.video_scale = max(1, L.VIDEO_SIDE // max(self.cfg.height, self.cfg.width))

    @property
    def pipe(self) -> Pipeline:
        """The shared pipeline (waits for the background load on first use)."""
        if self._pipe is None:
            self._pipe = self._loader()
        return self._pipe

    @pipe.setter
    def pipe(self, value) -> None:
        self._pipe = value

    @property
    def default_model(self) -> str:
        return self.choices[0].key

    def choice(self, key: str | None) -> ModelChoice:
        """The model choice ``key`` (None: the default), checked."""
        if key is None or key == "":
            return self.choices[0]
        for c in self.choices:
            if c.key == key:
                return c
        raise LimitError(f"Model must be one of {', '.join(repr(c.key) for c in self.choices)}, got {str(key)[:40]!r}.")

    def pipe_for(self, key: str | None) -> Pipeline:
        """The pipeline of model ``key`` (loaded on first use)."""
        c = self.choice(key)
        if c is self.choices[0]:
            return self.pipe
        with self._others_lock:
            if c.key not in self._others:
                self._others[c.key] = self._loaders[c.key]()
            return self._others[c.key]

    def loaded(self, key: str | None) -> bool:
        c = self.choice(key)
        return self._pipe is not None if c is self.choices[0] else c.key in self._others

    # ------------------------------------------------------------------ styles (issue 33: demo.models.Styles)
    def check_style(self, style, strength) -> tuple[str | None, float]:
        """(style name, or None for the model's own weights; strength) of a request, checked."""
        strength = L.DEFAULT_STYLE_STRENGTH if strength is None or strength == "" else strength
        strength = L.check_float("Style strength", strength, L.MIN_STYLE_STRENGTH, L.MAX_STYLE_STRENGTH)
        if style is None or style == "" or style == NO_STYLE:
            return None, strength
        return L.check_choice("Style", style, [NO_STYLE, *self.styles.names]), strength

    def check_upscale(self, upscale) -> bool:
        """Whether the request asks for the SSR stage: a bool; None for the page's default (``limits.DEFAULT_UPSCALE``
        where the server offers it, else no); "" for no. Asking where the server has no SSR model is a LimitError
        saying so."""
        if upscale is None:
            return L.DEFAULT_UPSCALE and self.upscaler.available
        if upscale == "":
            return False
        if not isinstance(upscale, bool):
            raise LimitError(f"Upscale must be true or false, got {str(upscale)[:40]!r}.")
        if upscale and not self.upscaler.available:
            raise LimitError("Upscale is not offered here: this server has no SSR model for this model's clips "
                             "(they are read from $STUNET_SSR or assets/stunet-ssr).")
        return upscale

    def scale_of(self, video, side: int) -> int:
        """Nearest-neighbour factor that shows ``video`` (t h w 3) about ``side`` pixels wide."""
        return max(1, side // max(video.shape[1], video.shape[2]))

    def pipe_of(self, model: str | None, style: str | None = None,
                strength: float = L.DEFAULT_STYLE_STRENGTH) -> Pipeline:
        """The pipeline that samples model ``model`` in ``style`` at ``strength``: the model's own (the same object)
        without a style or at strength 0, else its styled copy (made once, kept: ``demo.models.Styles``). A style
        that does not fit the model (another architecture, other base weights) is a LimitError saying why."""
        key = self.choice(model).key
        pipe = self.pipe_for(key)
        try:
            return self.styles.pipeline(pipe, key, style, strength)
        except StyleError as e:
            why = str(e).replace(f" ({self.styles.paths.get(style)})", "")      # no server paths in the message
            raise LimitError(f"Style {style!r} cannot be used with the {LABELS.get(key, key)} model: {why}.") from None

    def model_defaults(self, key):
        """Steps, guidance and sampler of model ``key``: the form follows the model picked."""
        d = self.choice(key).defaults
        return d.steps, d.guidance, d.sampler

    # ------------------------------------------------------------------ files (see demo.files)
    @property
    def out_dir(self) -> Path:
        return self.files.dir

    @property
    def example_dir(self) -> Path:
        return self.files.example_dir

    def attach(self, blocks, janitor: bool = True) -> None:
        self.files.attach(blocks, janitor)

    def prune_cache(self) -> int:
        return self.files.prune_cache()

    def _cleanup(self) -> None:
        self.files.cleanup()

    # ------------------------------------------------------------------ validation
    def check_first_frame(self, value) -> np.ndarray | None:
        """An uploaded image (Gradio FileData dict or None) -> h w 3 uint8 at the model's size, or None.

        The handler runs with ``preprocess=False``, so the dict is what the caller sent: its
        path must lie in Gradio's upload folder (an API caller could name any file), and the
        file is size- and header-checked before any pixel is decoded (``read_image``).
        """
        if value is None or value == "":
            return None
        path = uploaded_path(value, "first-frame image")
        try:
            return read_image(path, (self.cfg.height, self.cfg.width), max_bytes=L.MAX_UPLOAD_BYTES,
                              max_pixels=L.MAX_IMAGE_PIXELS, max_side=L.MAX_IMAGE_SIDE, formats=L.IMAGE_FORMATS)
        except ValueError as e:
            raise LimitError(f"The first-frame image was refused: {e}.") from None

    def check_generate(self, prompt, seed, steps, guidance, frames, sampler, stride, fps) -> tuple[Settings, int]:
        prompt = L.check_prompt(prompt)
        seed = L.check_int("Seed", seed, L.MIN_SEED, L.MAX_SEED)
        steps = L.check_int("Steps", steps, L.MIN_STEPS, L.MAX_STEPS)
        guidance = L.check_float("Guidance", guidance, L.MIN_GUIDANCE, L.MAX_GUIDANCE)
        frames = L.check_frames(frames, self.factor, self.window)
        sampler = L.check_choice("Sampler", sampler, L.SAMPLERS)
        if isinstance(stride, str) and stride.strip().isdigit():      # the API page lists the choices as text
            stride = int(stride)
        stride = L.check_int("Stride", stride, min(self.cfg.strides), max(self.cfg.strides))
        L.check_choice("Stride", stride, self.cfg.strides)
        fps = L.check_int("Frame rate", fps, L.MIN_FPS, L.MAX_FPS)
        L.check_words(self.tok, prompt)
        return Settings(prompt, seed=seed, steps=steps, guidance=guidance, frames=frames, sampler=sampler,
                        stride=stride), fps

    # ------------------------------------------------------------------ prompt words
    def prompt_html(self, prompt) -> str:
        """The prompt's words as chips (styled by ``demo.style.CSS``): known, unknown (ignored), cut."""
        if not isinstance(prompt, str) or not prompt.strip():
            return ("<div class='words'><span class='hint'>Type a prompt: the words the model knows turn "
                    "green, the others are flagged.</span></div>")
        text = prompt[: L.MAX_PROMPT_CHARS]
        enc = self.tok.encode(text)
        known, cut = set(enc.words), list(enc.truncated)
        chips = []
        for w in self.tok.split(text):
            e = html.escape(w)
            if w in cut:
                cut.remove(w)
                chips.append(f"<span class='chip cut' title='beyond the {self.tok.max_words}-word limit: "
                             f"ignored'>{e}</span>")
            elif w in known:
                chips.append(f"<span class='chip known' title='known word'>{e}</span>")
            else:
                chips.append(f"<span class='chip unknown' title='not in the vocabulary: ignored'>{e}</span>")
        notes = []
        if enc.unknown:
            notes.append(f"{len(enc.unknown)} unknown word{'s' if len(enc.unknown) > 1 else ''} will be ignored")
        if len(prompt) > L.MAX_PROMPT_CHARS:
            notes.append(f"the prompt is over the {L.MAX_PROMPT_CHARS}-character limit")
        if not enc.content:
            notes.append("no known word says what to draw: nothing to generate from")
        note = f"<span class='hint warn'>{html.escape('; '.join(notes))}</span>" if notes else ""
        return f"<div class='words'>{''.join(chips)} {note}</div>"

    def vocabulary_md(self) -> str:
        return "The model knows these words: " + ", ".join(f"`{w}`" for w in self.tok.words)

    # ------------------------------------------------------------------ generate
    def _feature_steps(self, steps: int) -> list[int]:
        return sorted(set(np.linspace(0, steps - 1, min(steps, L.FEATURE_STEPS)).round().astype(int).tolist()))

    def _x0_steps(self, s: Settings) -> list[int] | None:
        """Every step, unless that would pass X0_MAX_BYTES (long clips): then evenly spaced steps."""
        per_step = 2 * self.cfg.video_channels * s.frames * self.cfg.height * self.cfg.width
        if per_step * s.steps <= L.X0_MAX_BYTES:
            return None
        n = max(2, L.X0_MAX_BYTES // per_step)
        return sorted(set(np.linspace(0, s.steps - 1, min(s.steps, n)).round().astype(int).tolist()))

    def status_md(self, rec: ClipRecord, cached: bool = False) -> str:
        s = rec.settings
        extra = ""
        if rec.unknown:
            extra += f" · ignored unknown words: {md_escape(', '.join(rec.unknown))}"
        if rec.first_frame is not None:
            extra += " · from your first frame"
        if s.frames > self.window:
            extra += f" · {s.frames} frames via MultiDiffusion ({self.window}-frame windows)"
        if rec.style:
            extra += f" · style {md_escape(rec.style)} at {rec.style_strength:g}"
        if rec.upscaled is not None:
            side = rec.upscaled.shape[1]
            extra += f" · upscaled to {side}×{side} (SSR; Inspect shows the base clip)"
        if rec.precision:
            extra += f" · {md_escape(rec.precision['precision'])}"
        how = "from the example cache" if cached else f"in {rec.seconds:.1f} s"
        return f"**Done** {how} · seed {s.seed} · {s.steps} steps · {s.frames} frames{extra}"

    def client_snippet(self, rec: ClipRecord | None) -> str:
        if rec is None:
            return ""
        s = rec.settings
        extra = ""
        if s.sampler != self.choices[0].defaults.sampler or s.stride != L.DEFAULT_STRIDE or rec.fps != L.DEFAULT_FPS:
            extra = f", sampler={s.sampler!r}, stride={s.stride}, fps={rec.fps}"
        if rec.first_frame is not None:
            extra += ", first_frame=handle_file(\"first.png\")"
        if rec.model != self.default_model:
            extra += f", model={rec.model!r}"
        if rec.style:
            extra += f", style={rec.style!r}, style_strength={rec.style_strength:g}"
        if rec.upscaled is not None:
            extra += ", upscale=True"
        why = ""
        if rec.precision:
            why = (f"\n\nComputed in **{md_escape(rec.precision['precision'])}**: "
                   f"{md_escape(rec.precision['precision_reason'])}.")
        return ("```python\nfrom gradio_client import Client, handle_file\nclient = Client(\"http://127.0.0.1:7860/\")  "
                "# or the Space's name\nvideo, mp4, gif, settings, preview, status = client.predict(\n"
                f"    {s.prompt!r}, {s.seed}, {s.steps}, {s.guidance:g}, {s.frames}{extra},\n"
                "    api_name=\"/generate\")\n```" + why)

    def _final(self, rec: ClipRecord, cached: bool = False) -> "GenerateOutputs":
        preview = views.preview_grid(rec.video, L.PREVIEW_MAX_FRAMES, cell=L.PREVIEW_CELL)
        return GenerateOutputs(video=rec.mp4, mp4=rec.mp4, gif=rec.gif, settings=rec.settings_dict(),
                               preview=preview, status=self.status_md(rec, cached), record=rec)

    def generate(self, prompt, seed, steps, guidance, frames, sampler=L.DEFAULT_SAMPLER,
                 stride=L.DEFAULT_STRIDE, fps=L.DEFAULT_FPS, first_frame=None, model=None, style=NO_STYLE,
                 style_strength=L.DEFAULT_STYLE_STRENGTH, upscale=None, progress=gr.Progress()):
        """Generator: x0-hat previews while sampling (at most one per ``limits.PREVIEW_EVERY_S``), then
        the clip, its MP4, settings and record (``GenerateOutputs``; the GIF is made on request, ``make_gif``).

        Nothing is recorded while sampling: the Inspect views record the clip when first asked
        (``recording_of``: the same settings and seed sampled again with hooks give the same clip).
        ``first_frame``: an uploaded image (image-to-video, Lumiere section 4): the clip starts from it.
        ``model``: a model choice's key where several are offered; None: the default. ``style``: a style's name
        (``self.styles``) or "None", its spatial weights mixed in at ``style_strength`` (``pipe_of``).
        ``upscale``: lift the clip to the SSR model's size (Lumiere's SSR stage, ``stunet.ssr``: MultiDiffusion
        windows, seeded by the clip's seed); the large clip is shown and downloaded, Inspect keeps the base clip.
        None: the page's default (on where the server offers it).
        The clip is stopped between steps once it runs, or is projected to run, past
        ``limits.job_deadline_s`` (a multiple of its steps at the pace of its first step).
        """
        s, fps = self.check_generate(prompt, seed, steps, guidance, frames, sampler, stride, fps)
        choice = self.choice(model)
        style, strength = self.check_style(style, style_strength)
        first = self.check_first_frame(first_frame)
        upscale = self.check_upscale(upscale)
        key = self.examples.key(s, fps, choice.key, upscale) if first is None and style is None else None
        cached = self.examples.get(key)
        if cached is not None:
            yield self._final(cached, cached=True).values()
            return
        self._cleanup()
        skip = gr.skip()
        progress(0, desc="Encoding the prompt" if self.loaded(choice.key) else "Loading the model")
        pipe = self.pipe_of(choice.key, style, strength)
        clock = JobClock(lambda projected, deadline: (
            f"This clip would take about {projected / 60:.1f} minutes, over this server's limit per clip "
            f"({L.JOB_DEADLINE_MARGIN:g}x its steps at the pace of its first step, {deadline / 60:.1f} minutes "
            "here): use fewer steps or frames, or try again when the server is less busy."), now=self.now)
        t0 = clock.start
        last_preview = last_progress = t0
        last = None
        for out in pipe.iter(s, first_frame=first):
            last = out
            k, n = out.step + 1, out.num_steps
            elapsed = clock.step(k, n)                  # LimitError once past, or projected past, the deadline
            now = t0 + elapsed
            if k == 1 or k == n or now - last_progress >= L.PROGRESS_EVERY_S:
                last_progress = now                     # a progress event per step is traffic, not information
                progress(k / n, desc=f"Denoising step {k}/{n}")
            if k < n and now - last_preview >= self.preview_every_s:
                last_preview = now
                frames_now = views.V.clip_uint8(out.x0[:1])
                yield GenerateOutputs(
                    video=skip, mp4=skip, gif=skip, settings=skip,
                    preview=views.preview_grid(frames_now, L.PREVIEW_MAX_FRAMES, cell=L.PREVIEW_CELL),
                    status=f"Denoising step {k}/{n} · {elapsed:.0f} s · x0-hat (the predicted clean clip) sharpens",
                    record=skip).values()
        if last is None:
            raise RuntimeError("sampling produced no step")
        video = to_uint8(last.sample)
        large = None
        if upscale:
            progress(1.0, desc=f"Upscaling to {self.upscaler.size}×{self.upscaler.size} (SSR)")
            large = self.upscaler.upscale(video, s.seed, pipe.precision)
        seconds = clock.elapsed_s()
        progress(1.0, desc="Encoding the video")
        d = self.files.request_dir(example=key is not None)
        shown = video if large is None else large
        mp4 = write_video(d / f"{clip_name(s)}.mp4", shown, fps=fps, scale=self.scale_of(shown, L.VIDEO_SIDE),
                          fast=True)
        enc = self.tok.encode(s.prompt)
        rec = ClipRecord(settings=s, fps=fps, video=video, words=list(enc.words), unknown=list(enc.unknown),
                         truncated=list(enc.truncated), mp4=str(mp4), gif=None, seconds=seconds, rerun=True,
                         first_frame=first, precision=precision_of(pipe), model=choice.key, style=style,
                         style_strength=strength, upscaled=large)
        if key is not None:
            self.examples.put(key, rec)
        self.prune_cache()
        yield self._final(rec).values()

    def make_gif(self, rec) -> str:
        """The GIF of the session's last clip (made on request, once per clip): its path."""
        if not isinstance(rec, ClipRecord):
            raise LimitError("No clip yet: generate one first.")
        if rec.gif is None or not Path(rec.gif).is_file():
            d = Path(rec.mp4).parent
            shown = rec.video if rec.upscaled is None else rec.upscaled
            rec.gif = str(write_video(d / f"{clip_name(rec.settings)}.gif", shown, fps=rec.fps,
                                      scale=self.scale_of(shown, L.GIF_SIDE)))
        return rec.gif

    # ------------------------------------------------------------------ recording (on demand)
    def recording_of(self, rec: ClipRecord, session: str | None = None):
        """The clip's recording, made now if it has none: the clip sampled again (same settings, seed and
        precision) with the Inspector attached, by ``record_runner`` (``record``; on ZeroGPU the app runs it on
        the GPU). The clip made again is compared with the one shown (``rec.rerecorded_same``).
        ``session``: the Gradio session asking, whose end releases the recording (``release_session``)."""
        if rec.recording is not None:
            return rec.recording
        if not rec.rerun:
            raise LimitError("This clip's recording was released to free memory for other users: run the "
                             "edit again.")
        with self._record_lock:
            if rec.recording is None:              # else another view recorded it meanwhile
                recording, video = self.record_runner(rec.model, rec.settings, rec.first_frame, rec.style,
                                                      rec.style_strength)
                same = bool(np.array_equal(video, rec.video))
                if not same:
                    log.warning("clip %s sampled again for its recording differs from the clip shown", rec.id)
                rec.recorded_frames = recording.recorded_frames(min(rec.settings.frames, self.window))
                rec.recording, rec.released, rec.rerecorded_same = recording, False, same
            if session:
                rec.session = session
            self.records.add(rec)
            return rec.recording

    def record(self, model: str, s: Settings, first_frame=None, style: str | None = None,
               style_strength: float = L.DEFAULT_STYLE_STRENGTH):
        """Sample ``s`` with the Inspector attached: (recording, clip t h w 3 uint8). Runs the network: the clip's
        own (``pipe_of``: the model and, where the clip has one, its style at its strength)."""
        pipe = self.pipe_of(model, style, style_strength)
        inspector = Inspector(pipe.model, x0_steps=self._x0_steps(s), feature_steps=self._feature_steps(s.steps),
                              max_bytes=L.RECORD_MAX_BYTES)
        last = None
        with inspector:
            for last in pipe.iter(s, first_frame=first_frame, inspector=inspector):
                pass
        if inspector.recording.dropped:
            log.warning("recording hit max_bytes: %d records dropped", inspector.recording.dropped)
        return inspector.recording, to_uint8(last.sample)

    def release_session(self, request: gr.Request = None) -> None:
        """A tab closed (``demo.unload``): release its clips' recordings now, not an hour later."""
        self.records.release_session(getattr(request, "session_hash", None))

    # ------------------------------------------------------------------ replay / seed
    @staticmethod
    def random_seed() -> int:
        return secrets.randbelow(L.MAX_SEED + 1)

    def replay(self, rec: ClipRecord | None):
        if rec is None:
            raise LimitError("Nothing to replay yet: generate a clip first.")
        s = rec.settings
        return (s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, rec.fps, rec.first_frame,
                rec.model, rec.style or NO_STYLE, rec.style_strength, rec.upscaled is not None)
