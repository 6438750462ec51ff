"""The studio's handlers: validate, sample through ``stunet.pipeline``, keep files tidy, render views.

One ``Studio`` per app holds the shared (read-only) pipeline, the output folder and the
lazily filled example cache. Everything per request lives in the request: its own
``torch.Generator`` (made by the pipeline from the seed), its own ``Inspector``, and the
``ClipRecord`` returned into the session's ``gr.State``.
"""
from __future__ import annotations

import html
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from stunet.diffusion import SAMPLERS
from stunet.inspect import Inspector, Recording
from stunet.pipeline import Pipeline, Settings
from stunet.video import read_image, to_uint8, write_video

from . import limits as L
from . import figures as views
from .limits import LimitError

log = logging.getLogger("stunet.studio")

SAMPLER_LABELS = {"dpm++": "DPM-Solver++ (2M)", "ddim": "DDIM"}
HEAD_MEAN = "mean"
LAYER_ALL = "all"
MODE_MEAN = "average over all positions"
MODE_POINT = "at the picked position"
FEATURES_CACHE_SIZE = 16          # rendered feature views kept (all sessions together), so scrubbing back is instant


@dataclass
class ClipRecord:
    """A session's last clip: what the Inspect tab shows (no second sampling run)."""
    settings: Settings
    fps: int
    video: np.ndarray                   # t h w 3 uint8, the whole clip
    words: list[str]                    # known words, token positions 1..n
    unknown: list[str]
    truncated: list[str]
    recording: Recording
    recorded_frames: int                # frames the recording covers (the first window for long clips)
    mp4: str
    gif: str
    seconds: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    released: bool = False              # the recording was dropped to bound memory (see Studio._register)
    first_frame: np.ndarray | None = field(default=None, repr=False)   # h w 3 uint8 when image-to-video

    def release(self) -> None:
        self.recording = Recording(level_names=list(self.recording.level_names))
        self.released = True

    def settings_dict(self) -> dict:
        d = self.settings.to_dict()
        d.pop("overlap", None)
        d["fps"] = self.fps
        if self.first_frame is not None:
            d["first_frame"] = "uploaded image"
        return d


def slug(text: str, n: int = 32) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "clip"


def md_escape(text: str) -> str:
    """User text inside Markdown: Markdown punctuation backslash-escaped, then HTML-escaped."""
    return html.escape(re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", str(text)))


def upload_folder() -> Path:
    """Where Gradio keeps uploaded files (the only place a first-frame path may point to)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()).resolve()


def prune_files(blocks, max_bytes: int, max_files: int) -> int:
    """Delete the oldest files Gradio keeps for ``blocks`` (outputs, previews, uploads) beyond the caps.

    Gradio's own ``delete_cache`` only deletes by age, so a busy hour (or a stream of uploads)
    could fill the disk; this keeps at most ``max_bytes`` and ``max_files``, deleting the oldest
    down to 80 % of either cap. Files marked ``keep_in_cache`` (examples) are kept.
    """
    keep = set()
    for component in list(blocks.blocks.values()):
        keep.update(getattr(component, "keep_in_cache", ()))
    files, seen = [], set()
    for temp_set in list(blocks.temp_file_sets):
        for f in list(temp_set):
            if f in keep:
                continue
            try:
                st = os.lstat(f)
            except OSError:
                temp_set.discard(f)
                continue
            if f not in seen:
                seen.add(f)
                files.append((st.st_mtime, st.st_size, f))
    total, n = sum(x[1] for x in files), len(files)
    if total <= max_bytes and n <= max_files:
        return 0
    files.sort()
    removed = 0
    root = upload_folder()
    for _, size, f in files:
        if total <= 0.8 * max_bytes and n <= 0.8 * max_files:
            break
        if not Path(f).resolve().is_relative_to(root):      # only ever delete inside Gradio's folder
            continue
        try:
            os.remove(f)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        for temp_set in list(blocks.temp_file_sets):
            temp_set.discard(f)
        parent = Path(f).resolve().parent
        if parent != root and parent.parent == root:        # Gradio's per-file hash folder
            try:
                parent.rmdir()
            except OSError:
                pass
        total, n, removed = total - size, n - 1, removed + 1
    log.info("pruned %d cached files (%d left, %.1f MB)", removed, n, total / 2**20)
    return removed


def _janitor(studio_ref, stop: threading.Event) -> None:
    while not stop.wait(L.CACHE_PRUNE_EVERY_S):
        studio = studio_ref()
        if studio is None:
            return
        try:
            studio.prune_cache()
        except Exception:  # pragma: no cover - housekeeping must never take the server down
            log.exception("pruning the file cache failed")
        del studio


class Studio:
    def __init__(self, pipeline: Pipeline, examples: list[list] | None = None):
        self.pipe = pipeline
        self.cfg = pipeline.config
        self.tok = pipeline.tokenizer
        self.factor = self.cfg.temporal_factor
        self.window = self.cfg.frames
        # Outputs are written inside Gradio's cache folder, so Gradio serves them as they are instead of
        # copying them: Gradio 6.31 never deletes its copies of gr.Video / gr.DownloadButton outputs
        # (they are missing from Blocks.temp_file_sets), while this folder is bounded by _cleanup.
        root = upload_folder()
        root.mkdir(parents=True, exist_ok=True)
        self.out_dir = Path(tempfile.mkdtemp(prefix="stunet-studio-", dir=root))
        weakref.finalize(self, shutil.rmtree, self.out_dir, ignore_errors=True)     # at exit, or when dropped
        self.example_dir = self.out_dir / "examples"
        self.examples = examples or []
        self._example_cache: dict[tuple, ClipRecord] = {}
        self._lock = threading.Lock()
        self._features_cache: OrderedDict[tuple, tuple] = OrderedDict()   # (clip id, step) -> (image, figure)
        self._live: OrderedDict[str, weakref.ref] = OrderedDict()         # session records, oldest first
        self.video_scale = max(1, L.VIDEO_SIDE // max(self.cfg.height, self.cfg.width))
        self.gif_scale = max(1, L.GIF_SIDE // max(self.cfg.height, self.cfg.width))
        self._blocks = None                                               # weakref to the gr.Blocks (attach)
        self._janitor_stop = threading.Event()
        weakref.finalize(self, self._janitor_stop.set)

    def attach(self, blocks, janitor: bool = True) -> None:
        """Bound the files Gradio keeps for ``blocks``: after every clip and every CACHE_PRUNE_EVERY_S."""
        self._blocks = weakref.ref(blocks)
        if janitor:
            threading.Thread(target=_janitor, args=(weakref.ref(self), self._janitor_stop),
                             name="stunet-cache-janitor", daemon=True).start()

    def prune_cache(self) -> int:
        blocks = self._blocks() if self._blocks is not None else None
        if blocks is None:
            return 0
        return prune_files(blocks, L.CACHE_MAX_BYTES, L.CACHE_MAX_FILES)

    # ------------------------------------------------------------------ validation
    def check_first_frame(self, value) -> np.ndarray | None:
        """An uploaded image (Gradio FileData dict or None) -> h w 3 uint8 at the model's size, or None.

        The handler runs with ``preprocess=False``, so the dict is what the caller sent: its
        path must lie in Gradio's upload folder (an API caller could name any file), and the
        file is size- and header-checked before any pixel is decoded (``read_image``).
        """
        if value is None or value == "":
            return None
        if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
            raise LimitError("The first frame must be an uploaded image file.")
        root = upload_folder()
        try:
            path = Path(value["path"]).resolve()
            inside = path.is_relative_to(root) and path != root and path.is_file()
        except (OSError, ValueError):
            inside = False
        if not inside:
            raise LimitError("The first frame must be an image uploaded to this app.")
        if path.stat().st_size > L.MAX_UPLOAD_BYTES:
            raise LimitError(f"The first-frame image is over the {L.MAX_UPLOAD_BYTES // 2**20} MB limit.")
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
        sampler = L.check_choice("Sampler", sampler, SAMPLERS)
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
        if not isinstance(prompt, str) or not prompt.strip():
            return ("<div class='words'><span class='hint'>Type a prompt: the words the model knows turn "
                    "green, the others are flagged.</span></div>")
        text = prompt[: L.MAX_PROMPT_CHARS]
        enc = self.tok.encode(text)
        known, cut = set(enc.words), list(enc.truncated)
        chips = []
        base = "display:inline-block;padding:1px 8px;margin:2px;border-radius:999px;border:1px solid;"
        strike = ";text-decoration:line-through"
        style = {"known": base + "background:#dcfce7;border-color:#86efac;color:#14532d",
                 "unknown": base + "background:#fee2e2;border-color:#fca5a5;color:#7f1d1d" + strike,
                 "cut": base + "background:#f3f4f6;border-color:#d1d5db;color:#6b7280" + strike}
        for w in self.tok.split(text):
            e = html.escape(w)
            if w in cut:
                cut.remove(w)
                chips.append(f"<span class='chip cut' style='{style['cut']}' "
                             f"title='beyond the {self.tok.max_words}-word limit: ignored'>{e}</span>")
            elif w in known:
                chips.append(f"<span class='chip known' style='{style['known']}' title='known word'>{e}</span>")
            else:
                chips.append(f"<span class='chip unknown' style='{style['unknown']}' "
                             f"title='not in the vocabulary: ignored'>{e}</span>")
        notes = []
        if enc.unknown:
            notes.append(f"{len(enc.unknown)} unknown word{'s' if len(enc.unknown) > 1 else ''} will be ignored")
        if len(prompt) > L.MAX_PROMPT_CHARS:
            notes.append(f"the prompt is over the {L.MAX_PROMPT_CHARS}-character limit")
        if not enc.words:
            notes.append("no known word: nothing to generate from")
        note = ""
        if notes:
            note = (f"<span class='hint warn' style='color:#b45309;margin-left:6px'>"
                    f"{html.escape('; '.join(notes))}</span>")
        return f"<div class='words'>{''.join(chips)} {note}</div>"

    def vocabulary_md(self) -> str:
        return "The model knows these words: " + ", ".join(f"`{w}`" for w in self.tok.words)

    # ------------------------------------------------------------------ files
    def _cleanup(self) -> None:
        """Delete request folders older than OUTPUT_TTL_S, and the oldest beyond MAX_OUTPUT_DIRS."""
        now = time.time()
        dirs = sorted((p for p in self.out_dir.iterdir() if p.is_dir() and p != self.example_dir),
                      key=lambda p: p.stat().st_mtime)
        for i, p in enumerate(dirs):
            if now - p.stat().st_mtime > L.OUTPUT_TTL_S or len(dirs) - i > L.MAX_OUTPUT_DIRS:
                shutil.rmtree(p, ignore_errors=True)

    def _request_dir(self, example: bool) -> Path:
        d = self.example_dir / uuid.uuid4().hex[:12] if example else self.out_dir / uuid.uuid4().hex[:12]
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------ examples (cached lazily)
    def _example_key(self, s: Settings, fps: int) -> tuple | None:
        for row in self.examples:
            p, seed, steps, guidance, frames = row
            if (s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, fps) == \
                    (p, seed, steps, float(guidance), frames, L.DEFAULT_SAMPLER, L.DEFAULT_STRIDE, L.DEFAULT_FPS):
                return (s, fps)
        return None

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
        how = "from the example cache" if cached else f"in {rec.seconds:.1f} s"
        return f"**Done** {how} · seed {s.seed} · {s.steps} steps · {s.frames} frames{extra}"

    def client_snippet(self, rec: ClipRecord | None) -> str:
        if rec is None:
            return ""
        s = rec.settings
        extra = ""
        if s.sampler != L.DEFAULT_SAMPLER or s.stride != L.DEFAULT_STRIDE or rec.fps != L.DEFAULT_FPS:
            extra = f", sampler={s.sampler!r}, stride={s.stride}, fps={rec.fps}"
        if rec.first_frame is not None:
            extra += ", first_frame=handle_file(\"first.png\")"
        return ("```python\nfrom gradio_client import Client, handle_file\nclient = Client(\"http://127.0.0.1:7860/\")  "
                "# or the Space's name\nvideo, mp4, gif, settings, preview, status = client.predict(\n"
                f"    {s.prompt!r}, {s.seed}, {s.steps}, {s.guidance:g}, {s.frames}{extra},\n"
                "    api_name=\"/generate\")\n```")

    def _final(self, rec: ClipRecord, cached: bool = False):
        preview = views.preview_grid(rec.video, L.PREVIEW_MAX_FRAMES)
        return (rec.mp4, rec.mp4, rec.gif, rec.settings_dict(), preview, self.status_md(rec, cached), rec)

    def generate(self, prompt, seed, steps, guidance, frames, sampler=L.DEFAULT_SAMPLER,
                 stride=L.DEFAULT_STRIDE, fps=L.DEFAULT_FPS, first_frame=None, progress=gr.Progress()):
        """Generator: one preview per denoising step, then the clip, its files, settings and record.

        ``first_frame``: an uploaded image (image-to-video, Lumiere section 4): the clip starts from it.
        """
        s, fps = self.check_generate(prompt, seed, steps, guidance, frames, sampler, stride, fps)
        first = self.check_first_frame(first_frame)
        key = self._example_key(s, fps) if first is None else None
        if key is not None and key in self._example_cache:
            yield self._final(self._example_cache[key], cached=True)
            return
        self._cleanup()
        skip = gr.skip()
        progress(0, desc="Encoding the prompt")
        t0 = time.perf_counter()
        first_done = None
        inspector = Inspector(self.pipe.model, x0_steps=self._x0_steps(s),
                                    feature_steps=self._feature_steps(s.steps), max_bytes=L.RECORD_MAX_BYTES)
        last = None
        with inspector:
            for out in self.pipe.iter(s, first_frame=first, inspector=inspector):
                last = out
                k, n = out.step + 1, out.num_steps
                now = time.perf_counter()
                elapsed = now - t0
                if first_done is None:
                    first_done = now
                elif k < n:
                    per_step = (now - first_done) / (k - 1)
                    projected = elapsed + per_step * (n - k)
                    if projected > L.JOB_DEADLINE_S * 1.15 or elapsed > L.JOB_DEADLINE_S:
                        raise LimitError(
                            f"This clip would take about {projected / 60:.1f} minutes, over this server's "
                            f"{L.JOB_DEADLINE_S // 60}-minute limit per clip: use fewer steps or frames.")
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
        d = self._request_dir(example=key is not None)
        name = f"stunet-{slug(s.prompt)}-seed{s.seed}"
        mp4 = write_video(d / f"{name}.mp4", video, fps=fps, scale=self.video_scale)
        gif = write_video(d / f"{name}.gif", video, fps=fps, scale=self.gif_scale)
        enc = self.tok.encode(s.prompt)
        rec_frames = self._recorded_frames(inspector.recording, s.frames)
        rec = ClipRecord(s, fps, video, list(enc.words), list(enc.unknown), list(enc.truncated),
                         inspector.recording, rec_frames, str(mp4), str(gif), seconds, first_frame=first)
        if inspector.recording.dropped:
            log.warning("recording hit max_bytes: %d records dropped", inspector.recording.dropped)
        if key is not None:
            with self._lock:
                self._example_cache.setdefault(key, rec)
        else:
            self._register(rec)
        self.prune_cache()
        yield self._final(rec)

    def _register(self, rec: ClipRecord) -> None:
        """Sessions keep their record in gr.State; this only bounds their total memory.

        Gradio keeps a closed tab's state for an hour, so many short visits could pile up
        recordings: past RECORDS_MAX_BYTES the oldest records still alive are released
        (their Inspect tab then asks to generate again; the same seed gives the same clip).
        """
        with self._lock:
            self._live[rec.id] = weakref.ref(rec)
            alive = [(k, r()) for k, r in self._live.items()]
            self._live = OrderedDict((k, self._live[k]) for k, r in alive if r is not None and not r.released)
            total = sum(r.recording.nbytes for _, r in alive if r is not None and not r.released)
            for k, r in alive:
                if total <= L.RECORDS_MAX_BYTES or r is None or r is rec:
                    continue
                total -= r.recording.nbytes
                r.release()
                self._live.pop(k, None)

    def _recorded_frames(self, recording: Recording, frames: int) -> int:
        for (s, name), x in recording.features.items():
            if name == recording.level_names[0]:
                return int(x.shape[1])
        return min(frames, self.window)

    # ------------------------------------------------------------------ replay / seed
    @staticmethod
    def random_seed() -> int:
        return secrets.randbelow(L.MAX_SEED + 1)

    def replay(self, rec: ClipRecord | None):
        if rec is None:
            raise LimitError("Nothing to replay yet: generate a clip first.")
        s = rec.settings
        return s.prompt, s.seed, s.steps, s.guidance, s.frames, s.sampler, s.stride, rec.fps, rec.first_frame

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
        t_layers = views.tattn_layers(r)
        x_layers = views.xattn_layers(r)
        heads = views.tattn_heads(r, t_layers[0]) if t_layers else 0
        s = rec.settings
        info = (f"Inspecting **{md_escape(s.prompt)}** · seed {s.seed} · {n} steps · {s.frames} frames. "
                f"Feature maps were recorded at steps {', '.join(map(str, views.feature_steps(r)))}; "
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
            gr.update(choices=head_choices(heads), value=HEAD_MEAN),
            gr.update(choices=[("all layers (averaged)", LAYER_ALL)] + [(views.layer_label(x), x) for x in x_layers],
                      value=LAYER_ALL),
            gr.update(maximum=rec.video.shape[1] - 1, value=rec.video.shape[1] // 2, interactive=True),
        )

    def render_all(self, rec):
        """Everything the Inspect tab shows for a new clip, in one request: controls reset, then every view."""
        rec = self.need(rec)
        info, step_u, t_layer_u, head_u, x_layer_u, row_u = self.inspect_controls(rec)
        r = rec.recording
        last = rec.settings.steps - 1
        t_layers = views.tattn_layers(r)
        row = rec.video.shape[1] // 2
        if t_layers:
            temporal = self.view_temporal(rec, last, t_layers[0], HEAD_MEAN, MODE_MEAN, 0, 0, False)
        else:
            msg = views.empty_figure("This model has no temporal attention.")
            temporal = (views.message_image("No temporal attention."), msg, msg, msg)
        if views.xattn_layers(r):
            words = self.view_words(rec, last, LAYER_ALL, False)
        else:
            words = (views.message_image("No text cross-attention."), views.empty_figure("No cross-attention."))
        recorded = views.feature_steps(r)
        shown = (rec.id, views.nearest(recorded, last)) if recorded else None
        out = (info, step_u, t_layer_u, head_u, MODE_MEAN, x_layer_u, row_u,
               self.view_pyramid(rec.settings.frames), *self.view_features(rec, last), *temporal, *words,
               *self.view_xt(rec, row, last), shown)
        threading.Thread(target=self._warm_features, args=(rec,), name="stunet-warm-features", daemon=True).start()
        return out

    def view_step(self, rec, step, t_layer, head, mode, row, col, hide_diagonal, x_layer, average, xt_row, shown):
        """The step slider moved: every step-dependent view in one request (one handler per trigger).

        Outputs that do not depend on the step (the position picker, the distance-over-steps
        curve, the x-t slice of the clip) and a feature view already on screen (``shown``:
        (clip id, recorded step)) are skipped: every figure redrawn costs the browser time.
        """
        rec = self.need(rec)
        skip = gr.skip()
        step = self.check_step(rec, step)
        recorded = views.feature_steps(rec.recording)
        key = (rec.id, views.nearest(recorded, step)) if recorded else None
        features = (skip,) * 3 if key is not None and key == shown else self.view_features(rec, step)
        if views.tattn_layers(rec.recording):
            temporal = (skip, *self.view_temporal(rec, step, t_layer, head, mode, row, col, hide_diagonal)[1:3], skip)
        else:
            temporal = (skip,) * 4
        words = self.view_words(rec, step, x_layer, average) if views.xattn_layers(rec.recording) else (skip,) * 2
        film = self.view_xt(rec, xt_row, step)[1]
        return (*features, *temporal, *words, skip, film, key)

    def view_pyramid(self, frames):
        frames = L.check_frames(frames, self.factor, self.window)
        return views.pyramid_figure(self.cfg, frames)

    def view_features(self, rec, step):
        rec = self.need(rec)
        step = self.check_step(rec, step)
        recorded = views.feature_steps(rec.recording)
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
        with self._lock:
            hit = self._features_cache.get(key)
            if hit is not None:
                self._features_cache.move_to_end(key)
                return hit
        hit = views.features_image(rec.recording, step), views.change_figure(rec.recording, step)
        with self._lock:
            self._features_cache[key] = hit
            while len(self._features_cache) > FEATURES_CACHE_SIZE:
                self._features_cache.popitem(last=False)
        return hit

    def _warm_features(self, rec: ClipRecord) -> None:
        """Render the other recorded steps in the background, so moving the step slider is quick."""
        try:
            for s in reversed(views.feature_steps(rec.recording)):
                if rec.released:
                    return
                self._features(rec, s)
        except Exception:  # pragma: no cover - only a speed-up
            log.exception("warming the feature views failed")

    def _tattn_args(self, rec: ClipRecord, step, layer, head, mode, row, col):
        r = rec.recording
        layers = views.tattn_layers(r)
        if not layers:
            raise LimitError("This model has no temporal attention layers.")
        step = self.check_step(rec, step)
        layer = L.check_choice("Layer", layer, layers)
        heads = views.tattn_heads(r, layer)
        head = L.check_choice("Head", head if isinstance(head, str) else str(head),
                              [HEAD_MEAN] + [str(i) for i in range(heads)])
        mode = L.check_choice("Mode", mode, [MODE_MEAN, MODE_POINT])
        t, gh, gw = views.tattn_grid(r, layer)
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
        layers = views.tattn_layers(rec.recording)
        layer = L.check_choice("Layer", layer, layers)
        t, gh, gw = views.tattn_grid(rec.recording, layer)
        x, y = evt.index if isinstance(evt.index, (list, tuple)) else (0, 0)
        H, W = rec.video.shape[1:3]
        side = 256
        row, col = views.picked_cell(float(x), float(y), (side, side * H // W), (gh, gw))
        return row, col, MODE_POINT

    def view_words(self, rec, step, layer, average):
        rec = self.need(rec)
        step = self.check_step(rec, step)
        r = rec.recording
        layers = views.xattn_layers(r)
        if not layers:
            raise LimitError("This model has no text cross-attention layers.")
        layer = L.check_choice("Layer", layer, [LAYER_ALL] + layers)
        average = L.check_bool("Average over steps", average)
        T = rec.recorded_frames
        H, W = rec.video.shape[1:3]
        maps = views.word_attention(r, rec.words, T, (H, W), None if average else step,
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
        d = self._request_dir(example=False)
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
