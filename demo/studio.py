"""The studio's request handlers: validate, sample through ``stunet.pipeline``, render the views.

One ``Studio`` per app holds the shared (read-only) pipeline, the output folder (``files``), the
example cache and the record registry (``sessions``). Everything per request lives in the
request: its own ``torch.Generator`` (made by the pipeline from the seed), its own
``Inspector``, and the ``ClipRecord`` returned into the session's ``gr.State``.

The pipeline may still be loading when the page is served (``demo.app`` loads it in the
background): handlers reach it through ``Studio.pipe``, which waits for it.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from stunet.inspect import Inspector
from stunet.pipeline import Pipeline, Settings
from stunet.video import read_image, to_uint8, write_video
from stunet.video import slug as _slug

from . import figures as views
from . import limits as L
from .files import Outputs, uploaded_path
from .models import FULL, ModelChoice
from .limits import LimitError
from .sessions import LRU, ClipRecord, ExampleCache, Records

log = logging.getLogger("stunet.studio")

SAMPLER_LABELS = L.SAMPLER_LABELS
HEAD_MEAN = "mean"
LAYER_ALL = "all"
MODE_MEAN = "average over all positions"
MODE_POINT = "at the picked position"
FEATURES_CACHE_SIZE = 16          # rendered feature views kept (all sessions together), so scrubbing back is instant


def slug(text: str, n: int = 32) -> str:
    """File-name part from a prompt (stunet.video.slug, shorter: output names also carry seed and time)."""
    return _slug(text, n)


def md_escape(text: str) -> str:
    """User text inside Markdown: Markdown punctuation backslash-escaped, then HTML-escaped."""
    return html.escape(re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", str(text)))


def precision_of(pipe) -> dict:
    """{"precision": name, "precision_reason": why} of the precision ``pipe`` computes in."""
    return pipe.precision.to_dict()


# ------------------------------------------------------------------------------ handler outputs
class _Outputs:
    """A handler's outputs by name; the field order is the order of the Gradio output list."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def values(self) -> list:
        return [getattr(self, n) for n in self.names()]

    def __iter__(self):
        return iter(self.values())

    def __len__(self) -> int:
        return len(dataclasses.fields(self))

    def __getitem__(self, i):
        return self.values()[i]


@dataclass
class StepViews(_Outputs):
    """Every view that depends on the denoising step (``gr.skip()`` where nothing changed)."""
    features_img: Any
    change_plot: Any
    features_note: Any
    picker: Any
    matrix_plot: Any
    offset_plot: Any
    distance_plot: Any
    words_img: Any
    share_plot: Any
    xt_img: Any
    film_img: Any
    shown_features: Any           # (clip id, recorded step) of the feature view on screen


@dataclass
class InspectViews(_Outputs):
    """The whole Inspect tab for a new clip: its controls reset, then every view."""
    inspect_info: Any
    step: Any
    t_layer: Any
    head: Any
    mode: Any
    x_layer: Any
    xt_row: Any
    pyramid_plot: Any
    features_img: Any
    change_plot: Any
    features_note: Any
    picker: Any
    matrix_plot: Any
    offset_plot: Any
    distance_plot: Any
    words_img: Any
    share_plot: Any
    xt_img: Any
    film_img: Any
    shown_features: Any


class Studio:
    def __init__(self, pipeline: Pipeline | None = None, examples: list[list] | None = None, *,
                 config=None, tokenizer=None, loader: Callable[[], Pipeline] | None = None,
                 choices: list[ModelChoice] | None = None, loaders: dict[str, Callable[[], Pipeline]] | None = None):
        """``pipeline``, or ``config`` + ``tokenizer`` (read without the weights) and a ``loader``
        that returns the pipeline (called on first use, from any thread; it may block).

        That is the default model, ``choices[0]``; further ``choices`` (the fast or the full model,
        ``demo.models``) load through ``loaders[key]`` on first use.
        """
        if pipeline is None and (config is None or tokenizer is None or loader is None):
            raise ValueError("Studio needs a pipeline, or config, tokenizer and loader")
        self._pipe = pipeline
        self._loader = loader
        self.choices = choices or [ModelChoice(FULL, None, pipeline.defaults)]
        self._loaders = dict(loaders or {})
        self._others: dict[str, Pipeline] = {}
        self._others_lock = threading.Lock()
        self.cfg = pipeline.config if pipeline is not None else config
        self.tok = pipeline.tokenizer if pipeline is not None else tokenizer
        self.factor = self.cfg.temporal_factor
        self.window = self.cfg.frames
        self.files = Outputs()
        self.examples = ExampleCache(examples, self.choices[0].defaults.sampler, self.choices[0].key)
        self.records = Records()
        self._features_cache = LRU(FEATURES_CACHE_SIZE)          # (clip id, step) -> (image, figure)
        self._initial_pyramid = None
        self.video_scale = max(1, L.VIDEO_SIDE // max(self.cfg.height, self.cfg.width))
        self.gif_scale = max(1, L.GIF_SIDE // max(self.cfg.height, self.cfg.width))

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
        enc = self.tok.encode(prompt)
        if not enc.words:
            raise LimitError("None of the prompt's words are known to the model, so it would ignore them all. "
                             f"It knows: {', '.join(self.tok.words)}.")
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
        if not enc.words:
            notes.append("no known word: nothing to generate from")
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
        why = ""
        if rec.precision:
            why = (f"\n\nComputed in **{md_escape(rec.precision['precision'])}**: "
                   f"{md_escape(rec.precision['precision_reason'])}.")
        return ("```python\nfrom gradio_client import Client, handle_file\nclient = Client(\"http://127.0.0.1:7860/\")  "
                "# or the Space's name\nvideo, mp4, gif, settings, preview, status = client.predict(\n"
                f"    {s.prompt!r}, {s.seed}, {s.steps}, {s.guidance:g}, {s.frames}{extra},\n"
                "    api_name=\"/generate\")\n```" + why)

    def _final(self, rec: ClipRecord, cached: bool = False):
        preview = views.preview_grid(rec.video, L.PREVIEW_MAX_FRAMES)
        return (rec.mp4, rec.mp4, rec.gif, rec.settings_dict(), preview, self.status_md(rec, cached), rec)

    def generate(self, prompt, seed, steps, guidance, frames, sampler=L.DEFAULT_SAMPLER,
                 stride=L.DEFAULT_STRIDE, fps=L.DEFAULT_FPS, first_frame=None, model=None, progress=gr.Progress()):
        """Generator: one preview per denoising step, then the clip, its files, settings and record.

        ``first_frame``: an uploaded image (image-to-video, Lumiere section 4): the clip starts from it.
        ``model``: "fast" (the distilled few-step model) or "full" where both are offered; None: the default.
        The clip is stopped between steps once it runs, or is projected to run, past
        ``limits.job_deadline_s`` (a multiple of its steps at the pace of its first step).
        """
        s, fps = self.check_generate(prompt, seed, steps, guidance, frames, sampler, stride, fps)
        choice = self.choice(model)
        first = self.check_first_frame(first_frame)
        key = self.examples.key(s, fps, choice.key) if first is None else None
        cached = self.examples.get(key)
        if cached is not None:
            yield self._final(cached, cached=True)
            return
        self._cleanup()
        skip = gr.skip()
        progress(0, desc="Encoding the prompt" if self.loaded(choice.key) else "Loading the model")
        pipe = self.pipe_for(choice.key)
        t0 = time.perf_counter()
        first_done = deadline = None
        inspector = Inspector(pipe.model, x0_steps=self._x0_steps(s),
                              feature_steps=self._feature_steps(s.steps), max_bytes=L.RECORD_MAX_BYTES)
        last = None
        with inspector:
            for out in pipe.iter(s, first_frame=first, inspector=inspector):
                last = out
                k, n = out.step + 1, out.num_steps
                now = time.perf_counter()
                elapsed = now - t0
                if first_done is None:
                    first_done, deadline = now, L.job_deadline_s(elapsed, n)
                elif k < n:
                    per_step = (now - first_done) / (k - 1)
                    projected = elapsed + per_step * (n - k)
                    if projected > deadline or elapsed > deadline:
                        raise LimitError(
                            f"This clip would take about {projected / 60:.1f} minutes, over this server's "
                            f"limit per clip ({L.JOB_DEADLINE_MARGIN:g}x its steps at the pace of its first "
                            f"step, {deadline / 60:.1f} minutes here): use fewer steps or frames, or try again "
                            "when the server is less busy.")
                progress(k / n, desc=f"Denoising step {k}/{n}")
                frames_now = views.V.clip_uint8(out.x0[:1])
                yield (skip, skip, skip, skip, views.preview_grid(frames_now, L.PREVIEW_MAX_FRAMES),
                       f"Denoising step {k}/{n} · {elapsed:.0f} s · x0-hat (the predicted clean clip) sharpens",
                       skip)
        if last is None:
            raise RuntimeError("sampling produced no step")
        video = to_uint8(last.sample)
        seconds = time.perf_counter() - t0
        progress(1.0, desc="Encoding the video")
        d = self.files.request_dir(example=key is not None)
        name = f"stunet-{slug(s.prompt)}-seed{s.seed}"
        mp4 = write_video(d / f"{name}.mp4", video, fps=fps, scale=self.video_scale)
        gif = write_video(d / f"{name}.gif", video, fps=fps, scale=self.gif_scale)
        enc = self.tok.encode(s.prompt)
        recording = inspector.recording
        rec = ClipRecord(s, fps, video, list(enc.words), list(enc.unknown), list(enc.truncated), recording,
                         recording.recorded_frames(min(s.frames, self.window)), str(mp4), str(gif), seconds,
                         first_frame=first, precision=precision_of(pipe), model=choice.key)
        if recording.dropped:
            log.warning("recording hit max_bytes: %d records dropped", recording.dropped)
        if key is not None:
            self.examples.put(key, rec)
        else:
            self.records.add(rec)
        self.prune_cache()
        yield self._final(rec)

    # ------------------------------------------------------------------ replay / seed
    @staticmethod
    def random_seed() -> int:
        return secrets.randbelow(L.MAX_SEED + 1)

    def replay(self, rec: ClipRecord | None):
        if rec is None:
            raise LimitError("Nothing to replay yet: generate a clip first.")
        s = rec.settings
        return (s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, rec.fps, rec.first_frame,
                rec.model)

    # ------------------------------------------------------------------ inspect helpers
    @staticmethod
    def need(rec) -> ClipRecord:
        if not isinstance(rec, ClipRecord):
            raise LimitError("No clip to inspect yet: generate one first (a clip is kept for "
                             f"{L.STATE_TTL_S // 60} minutes).")
        if rec.released:
            raise LimitError("This clip's recording was released to free memory for other users: press "
                             "Generate again (the same seed gives the same clip).")
        return rec

    @staticmethod
    def check_step(rec: ClipRecord, step) -> int:
        n = rec.settings.steps
        return L.check_int("Step", step, 0, n - 1)

    def inspect_controls(self, rec):
        """After a clip: the ranges and choices of the Inspect tab's controls."""
        rec = self.need(rec)
        r = rec.recording
        n = rec.settings.steps
        t_layers = r.temporal_layers()
        x_layers = r.cross_layers()
        s = rec.settings
        model = f" · {rec.model} model" if len(self.choices) > 1 else ""
        info = (f"Inspecting **{md_escape(s.prompt)}** · seed {s.seed} · {n} steps{model} · {s.frames} frames. "
                f"Feature maps were recorded at steps {', '.join(map(str, r.feature_steps()))}; "
                f"attention at every step; x0-hat at {len(r.x0)} steps.")
        if r.dropped:
            info += f" ({r.dropped} records were left out to stay under {L.RECORD_MAX_BYTES // 2**20} MB.)"
        if rec.recorded_frames < s.frames:
            info += (f" Features and attention cover frames 0–{rec.recorded_frames - 1} (the first "
                     f"MultiDiffusion window); the x-t slice and x0-hat cover the whole clip.")
        return (
            info,
            gr.update(maximum=n - 1, value=n - 1, interactive=True),
            gr.update(choices=[(views.layer_label(x), x) for x in t_layers], value=t_layers[0] if t_layers else None),
            gr.update(choices=head_choices(r.heads(t_layers[0]) if t_layers else 0), value=HEAD_MEAN),
            gr.update(choices=[("all layers (averaged)", LAYER_ALL)] + [(views.layer_label(x), x) for x in x_layers],
                      value=LAYER_ALL),
            gr.update(maximum=rec.video.shape[1] - 1, value=rec.video.shape[1] // 2, interactive=True),
        )

    def head_update(self, rec, layer):
        """The temporal-attention layer changed: its heads, reset to the mean."""
        heads = 0
        if isinstance(rec, ClipRecord) and not rec.released and isinstance(layer, str):
            heads = rec.recording.heads(layer)
        return gr.update(choices=head_choices(heads), value=HEAD_MEAN)

    def render_all(self, rec) -> InspectViews:
        """Everything the Inspect tab shows for a new clip, in one request: controls reset, then every view."""
        rec = self.need(rec)
        info, step_u, t_layer_u, head_u, x_layer_u, row_u = self.inspect_controls(rec)
        r = rec.recording
        last = rec.settings.steps - 1
        t_layers = r.temporal_layers()
        row = rec.video.shape[1] // 2
        if t_layers:
            temporal = self.view_temporal(rec, last, t_layers[0], HEAD_MEAN, MODE_MEAN, 0, 0, False)
        else:
            msg = views.empty_figure("This model has no temporal attention.")
            temporal = (views.message_image("No temporal attention."), msg, msg, msg)
        if r.cross_layers():
            words = self.view_words(rec, last, LAYER_ALL, False)
        else:
            words = (views.message_image("No text cross-attention."), views.empty_figure("No cross-attention."))
        recorded = r.feature_steps()
        shown = (rec.id, views.nearest(recorded, last)) if recorded else None
        features_img, change_plot, features_note = self.view_features(rec, last)
        picker, matrix_plot, offset_plot, distance_plot = temporal
        words_img, share_plot = words
        xt_img, film_img = self.view_xt(rec, row, last)
        out = InspectViews(
            inspect_info=info, step=step_u, t_layer=t_layer_u, head=head_u, mode=MODE_MEAN, x_layer=x_layer_u,
            xt_row=row_u, pyramid_plot=self.view_pyramid(rec.settings.frames), features_img=features_img,
            change_plot=change_plot, features_note=features_note, picker=picker, matrix_plot=matrix_plot,
            offset_plot=offset_plot, distance_plot=distance_plot, words_img=words_img, share_plot=share_plot,
            xt_img=xt_img, film_img=film_img, shown_features=shown)
        threading.Thread(target=self._warm_features, args=(rec,), name="stunet-warm-features", daemon=True).start()
        return out

    def view_step(self, rec, step, t_layer, head, mode, row, col, hide_diagonal, x_layer, average, xt_row,
                  shown) -> StepViews:
        """The step slider moved: every step-dependent view in one request (one handler per trigger).

        Outputs that do not depend on the step (the position picker, the distance-over-steps
        curve, the x-t slice of the clip) and a feature view already on screen (``shown``:
        (clip id, recorded step)) are skipped: every figure redrawn costs the browser time.
        """
        rec = self.need(rec)
        skip = gr.skip()
        step = self.check_step(rec, step)
        r = rec.recording
        recorded = r.feature_steps()
        key = (rec.id, views.nearest(recorded, step)) if recorded else None
        features = (skip,) * 3 if key is not None and key == shown else self.view_features(rec, step)
        matrix = offsets = skip
        if r.temporal_layers():
            _, matrix, offsets, _ = self.view_temporal(rec, step, t_layer, head, mode, row, col, hide_diagonal)
        words = self.view_words(rec, step, x_layer, average) if r.cross_layers() else (skip,) * 2
        film = self.view_xt(rec, xt_row, step)[1]
        return StepViews(*features, picker=skip, matrix_plot=matrix, offset_plot=offsets, distance_plot=skip,
                         words_img=words[0], share_plot=words[1], xt_img=skip, film_img=film, shown_features=key)

    def initial_pyramid(self):
        """The pyramid of the training window, shown before any clip (drawn once, on the first page load)."""
        if self._initial_pyramid is None:
            self._initial_pyramid = views.pyramid_figure(self.cfg, self.window)
        return self._initial_pyramid

    def view_pyramid(self, frames):
        frames = L.check_frames(frames, self.factor, self.window)
        return views.pyramid_figure(self.cfg, frames)

    def view_features(self, rec, step):
        rec = self.need(rec)
        step = self.check_step(rec, step)
        recorded = rec.recording.feature_steps()
        if not recorded:
            raise LimitError("No feature maps were recorded for this clip.")
        shown = views.nearest(recorded, step)
        hit = self._features(rec, shown)
        note = (f"Feature maps at step **{shown}**" + (f" (nearest recorded to step {step})" if shown != step else "")
                + f" · recorded steps: {', '.join(map(str, recorded))} · colours: the first three principal "
                "components of each level's channels (one basis per level).")
        return hit[0], hit[1], note

    def _features(self, rec: ClipRecord, step: int) -> tuple:
        """(image, figure) of the feature view at a recorded step, from a small LRU cache."""
        key = (rec.id, step)
        hit = self._features_cache.get(key)
        if hit is None:
            hit = views.features_image(rec.recording, step), views.change_figure(rec.recording, step)
            self._features_cache.put(key, hit)
        return hit

    def _warm_features(self, rec: ClipRecord) -> None:
        """Render the other recorded steps in the background, so moving the step slider is quick."""
        try:
            for s in reversed(rec.recording.feature_steps()):
                if rec.released:
                    return
                self._features(rec, s)
        except Exception:  # pragma: no cover - only a speed-up
            log.exception("warming the feature views failed")

    def _tattn_args(self, rec: ClipRecord, step, layer, head, mode, row, col):
        r = rec.recording
        layers = r.temporal_layers()
        if not layers:
            raise LimitError("This model has no temporal attention layers.")
        step = self.check_step(rec, step)
        layer = L.check_choice("Layer", layer, layers)
        head = L.check_choice("Head", head if isinstance(head, str) else str(head),
                              [HEAD_MEAN] + [str(i) for i in range(r.heads(layer))])
        mode = L.check_choice("Mode", mode, [MODE_MEAN, MODE_POINT])
        t, gh, gw = r.grid(layer)
        pos = None
        if mode == MODE_POINT:
            pos = (L.check_int("Position row", row, 0, gh - 1), L.check_int("Position column", col, 0, gw - 1))
        if (step, layer) not in r.temporal_attention:
            raise LimitError(f"No temporal attention was recorded at step {step}.")
        return step, layer, None if head == HEAD_MEAN else int(head), pos, (gh, gw)

    def view_temporal(self, rec, step, layer, head, mode, row, col, hide_diagonal):
        rec = self.need(rec)
        step, layer, head_i, pos, grid = self._tattn_args(rec, step, layer, head, mode, row, col)
        hide = L.check_bool("Hide diagonal", hide_diagonal)
        r = rec.recording
        m = views.V.attention_matrix(r.temporal_attention[(step, layer)], head_i, pos)
        where = "averaged over all positions" if pos is None else f"at position (row {pos[0]}, col {pos[1]})"
        who = "mean of heads" if head_i is None else f"head {head_i}"
        title = f"{views.layer_label(layer)} · step {step} · {who} · {where}"
        clip_frames = rec.recorded_frames
        return (views.picker_image(rec.video[:clip_frames], grid, pos),
                views.temporal_matrix_figure(m, clip_frames, "Query × key frame<br><sup>" + title + "</sup>", hide),
                views.offset_figure(m, "Relative to the diagonal: by frame offset<br><sup>" + title + "</sup>"),
                views.distance_figure(r, head_i, pos))

    def pick(self, rec, layer, evt: gr.SelectData):
        """A click on the picker image -> (row, col) at the layer's resolution, and switch to that mode."""
        rec = self.need(rec)
        layer = L.check_choice("Layer", layer, rec.recording.temporal_layers())
        t, gh, gw = rec.recording.grid(layer)
        x, y = evt.index if isinstance(evt.index, (list, tuple)) else (0, 0)
        H, W = rec.video.shape[1:3]
        side = 256
        row, col = views.picked_cell(float(x), float(y), (side, side * H // W), (gh, gw))
        return row, col, MODE_POINT

    def view_words(self, rec, step, layer, average):
        rec = self.need(rec)
        step = self.check_step(rec, step)
        r = rec.recording
        layers = r.cross_layers()
        if not layers:
            raise LimitError("This model has no text cross-attention layers.")
        layer = L.check_choice("Layer", layer, [LAYER_ALL] + layers)
        average = L.check_bool("Average over steps", average)
        T = rec.recorded_frames
        H, W = rec.video.shape[1:3]
        maps = r.word_attention(len(rec.words), T, (H, W), None if average else step,
                                None if layer == LAYER_ALL else layer)
        when = "averaged over all steps" if average else f"step {step}"
        which = "all layers" if layer == LAYER_ALL else views.layer_label(layer)
        return (views.word_attention_image(rec.video[:T], rec.words, maps),
                views.word_share_figure(rec.words, maps, f"Share of the pixels' attention per word ({which}, {when})"))

    def view_xt(self, rec, row, step):
        rec = self.need(rec)
        H = rec.video.shape[1]
        row = L.check_int("Row", row, 0, H - 1)
        step = self.check_step(rec, step)
        return views.xt_image(rec.video, row), views.x0_filmstrip(rec.recording, row, current=step)

    def export_npz(self, rec):
        rec = self.need(rec)
        d = self.files.request_dir()
        path = d / f"stunet-recording-{slug(rec.settings.prompt)}-seed{rec.settings.seed}.npz"
        save_recording(rec, path)
        return str(path)


def head_choices(heads: int) -> list[tuple[str, str]]:
    return [("mean of heads", HEAD_MEAN)] + [(f"head {i}", str(i)) for i in range(heads)]


def save_recording(rec: ClipRecord, path: Path) -> Path:
    """Everything recorded, uncompressed float16 as recorded (fast), plus the clip and settings.

    Keys as ``Recording.to_npz``: ``features/SSS/level``, ``temporal_attention/SSS/layer``,
    ``cross_attention/SSS/layer``, ``x0/SSS``, ``timesteps`` (step, timestep), and here also
    ``video`` (t h w 3 uint8), ``words`` and ``settings`` (JSON).
    """
    import json
    with open(path, "wb") as f:
        rec.recording.save_npz(f, video=rec.video, words=np.array(rec.words, dtype=np.str_),
                               settings=np.array(json.dumps(rec.settings_dict())))
    return path
