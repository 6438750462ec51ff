"""The studio's Edit tab: Lumiere's editing applications (section 4) on the last clip or an upload.

* inputs: the session's last clip (from Generate or a previous edit), or an uploaded GIF / MP4
  (H.264) / image, decoded by ``stunet.video_decode`` (magic bytes, caps, a timed ffmpeg
  subprocess with a forced demuxer and file-only protocols);
* the mask (inpainting) or region (cinemagraph) is drawn on the input, enlarged, in a
  ``gr.ImageMask``: the drawn layers' alpha is the mask, resized to the model's size with nearest
  neighbour. API callers send a mask PNG as the layer (white or opaque = regenerate / may move);
* the edit runs through ``stunet.editing`` with an ``Inspector``, so the Inspect tab shows the
  result's insides like a generated clip's (its record replaces the session's last clip).

API endpoints (``gradio_client``; ``source`` is "upload" or "last"):

    /inpaint         (source, upload, mask, prompt, seed, steps, guidance, fps) -> input, result, settings, status
    /cinemagraph     (source, upload, region, prompt, seed, steps, guidance, fps) -> input, result, settings, status
    /video_to_video  (source, upload, prompt, seed, steps, guidance, strength, fps) -> input, result, settings, status

``upload``: ``handle_file("in.gif")``; ``mask`` / ``region``: an ImageMask value,
``{"background": None, "layers": [handle_file("mask.png")], "composite": None}`` (Gradio validates it
as one), the layer a PNG read by its alpha where it has transparency, else white = regenerate / may move.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from stunet import editing
from stunet.inspection import Inspector
from stunet.pipeline import Settings
from stunet.video import read_image, upscale, write_video
from stunet.video_decode import decode_video, read_mask, sniff

from . import limits as L
from .errors import guarded
from .files import uploaded_path
from .job_clock import JobClock
from .limits import LimitError
from .sessions import ClipRecord
from .studio import Studio, md_escape, precision_of, slug

log = logging.getLogger("stunet.studio")

SOURCE_LAST = "last"
SOURCE_UPLOAD = "upload"
SOURCES = [("The last clip (Generate or a previous edit)", SOURCE_LAST), ("An uploaded file", SOURCE_UPLOAD)]
UPLOAD_TYPES = [".gif", ".mp4", ".png", ".jpg", ".jpeg", ".webp", ".bmp"]
MODE_TITLES = {"inpaint": "Inpainting", "cinemagraph": "Cinemagraph", "video_to_video": "Video-to-video"}

INTRO = ("Lumiere's **applications** (section 4): the same network, given a masked clip and its mask. "
         "**Inpainting** regenerates the pixels you paint over (in every frame); a **cinemagraph** animates "
         "only the painted region of the first frame; **video-to-video** (SDEdit) noises the clip part-way "
         "and denoises it under a new prompt. Pixels you leave unpainted are kept exactly. "
         "Inspect shows the result's insides.")


MAX_BLOB_IDS = 64           # drawn masks kept by the ImageMask until an edit reads them (oldest dropped)
MAX_BLOB_LAYERS = 4


class BoundedBlobs(OrderedDict):
    """``ImageMask.blob_storage`` with at most ``limit`` entries: Gradio keeps every drawing sent to it until
    an event reads it, so a client that only sends drawings would grow it without bound."""

    def __init__(self, limit: int = MAX_BLOB_IDS):
        super().__init__()
        self.limit = limit
        self._lock = threading.Lock()

    def __setitem__(self, key, value):
        with self._lock:
            super().__setitem__(key, value)
            self.move_to_end(key)
            while len(self) > self.limit:
                self.popitem(last=False)


def harden_image_mask(mask) -> None:
    """Bound what a ``gr.ImageMask`` accepts from its ``accept_blobs`` server function (the browser posts
    each drawn layer there): one file of at most MAX_UPLOAD_BYTES, a layer index under MAX_BLOB_LAYERS
    (Gradio extends a list up to any index it is sent), a known part, at most MAX_BLOB_IDS drawings kept."""
    from gradio.components.base import server
    original = mask.accept_blobs
    mask.blob_storage = BoundedBlobs()

    @server
    def accept_blobs(data):
        d = getattr(data, "data", None) or {}
        files = getattr(data, "files", None) or []
        kind, index = d.get("type"), d.get("index")
        ok = (kind in ("layer", "background", "composite") and len(files) == 1
              and len(files[0][1]) <= L.MAX_UPLOAD_BYTES and isinstance(d.get("id"), str) and len(d["id"]) <= 64)
        if ok and kind == "layer":
            ok = isinstance(index, (int, str)) and str(index).isdigit() and int(index) < MAX_BLOB_LAYERS
        if not ok:
            raise gr.Error("The drawn mask was refused.", print_exception=False)
        return original(data)

    mask.accept_blobs = accept_blobs


@dataclass
class EditControls:
    """The Edit tab's components (built by ``build_edit_tab`` inside a ``gr.Tab``)."""
    source: Any
    upload: Any
    mask: Any
    prompt: Any
    seed: Any
    steps: Any
    guidance: Any
    strength: Any
    fps: Any
    inpaint_btn: Any
    cinemagraph_btn: Any
    v2v_btn: Any
    input_video: Any
    result_video: Any
    settings: Any
    status: Any


class EditTab:
    """The Edit tab's handlers, on a ``Studio`` (its pipeline, output files, records, limits)."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self.cfg = studio.cfg
        self.mask_component = None           # the gr.ImageMask (its blob storage holds drawn layers)
        self.now = time.perf_counter         # the job clock's time source (demo.job_clock; tests: a fake one)

    # ------------------------------------------------------------------ inputs
    def source_clip(self, rec, source, upload) -> np.ndarray:
        """The input: t h w 3 uint8 at the model's size (an image is one frame)."""
        source = L.check_choice("Input", source, [SOURCE_LAST, SOURCE_UPLOAD])
        size = (self.cfg.height, self.cfg.width)
        if source == SOURCE_LAST:
            if not isinstance(rec, ClipRecord):
                raise LimitError("No clip yet: generate one in the Generate tab, or choose an uploaded file.")
            return rec.video
        path = uploaded_path(upload, "input (GIF, MP4 or image)")
        with open(path, "rb") as f:
            kind = sniff(f.read(16))
        try:
            if kind in ("gif", "mp4"):
                return decode_video(path, size, max_bytes=L.MAX_UPLOAD_BYTES,
                                    max_frames=L.MAX_WINDOWS * self.cfg.frames, max_pixels=L.MAX_VIDEO_PIXELS,
                                    max_side=L.MAX_VIDEO_SIDE, timeout_s=L.DECODE_TIMEOUT_S)
            return read_image(path, size, max_bytes=L.MAX_UPLOAD_BYTES, max_pixels=L.MAX_IMAGE_PIXELS,
                              max_side=L.MAX_IMAGE_SIDE, formats=L.IMAGE_FORMATS)[None]
        except ValueError as e:
            why = str(e) if kind is not None or not str(e).startswith("not an image") else \
                "not a GIF, MP4 (H.264) or image file"
            raise LimitError(f"The uploaded file was refused: {why}.") from None

    def clip_for_edit(self, rec, source, upload) -> np.ndarray:
        video = self.source_clip(rec, source, upload)
        if len(video) < 2:
            raise LimitError("Inpainting and video-to-video need a clip (GIF, MP4 or the last clip), not an image.")
        try:
            return editing.fit_frames(video, self.cfg)
        except ValueError as e:
            raise LimitError(f"The clip was refused: {e}.") from None

    def canvas(self, video: np.ndarray) -> np.ndarray:
        """What the mask is drawn on: every frame overlaid (max), enlarged to about EDIT_CANVAS_SIDE."""
        scale = max(1, L.EDIT_CANVAS_SIDE // max(self.cfg.height, self.cfg.width))
        return upscale(video.max(0, keepdims=True), scale)[0]

    def mask_of(self, value, what: str) -> np.ndarray:
        """The drawn layers (alpha) or an uploaded mask image -> h w bool at the model's size; True = painted."""
        size = (self.cfg.height, self.cfg.width)
        sources: list = []
        if isinstance(value, dict) and value.get("id") and self.mask_component is not None:
            blobs = self.mask_component.blob_storage.pop(str(value["id"]), None)   # the browser's drawn layers
            sources = [b for b in (blobs.layers if blobs is not None else []) if b]
        elif isinstance(value, dict) and "layers" in value:
            layers = value.get("layers") or []
            if not isinstance(layers, list):
                raise LimitError(f"The {what} must be drawn layers or a mask image.")
            sources = [uploaded_path(x, what) for x in layers if x is not None]
        elif isinstance(value, dict) and "path" in value:
            sources = [uploaded_path(value, what)]
        m = np.zeros(size, bool)
        for src in sources[:8]:
            try:
                m |= read_mask(src, size, max_bytes=L.MAX_UPLOAD_BYTES, max_pixels=L.MAX_IMAGE_PIXELS,
                               max_side=L.MAX_IMAGE_SIDE)
            except ValueError as e:
                raise LimitError(f"The {what} was refused: {e}.") from None
        if not m.any():
            raise LimitError(f"The {what} is empty: paint over the pixels that should "
                             f"{'be regenerated' if what == 'mask' else 'move'}.")
        return m

    def load(self, rec, source, upload):
        """The input, put (enlarged) under the brush and shown playing: (editor value, input video, note).
        The last clip's own MP4 is shown and its canvas written beside it (no new folder per clip, while its
        folder is still kept)."""
        video = self.source_clip(rec, source, upload)
        own = Path(rec.mp4) if source == SOURCE_LAST and rec.mp4 else None
        if own is not None and own.is_file():
            d, shown = own.parent, own
        else:
            d = self.studio.files.request_dir()
            shown = write_video(d / "input.mp4", video, scale=self.studio.video_scale) if len(video) > 1 else None
        canvas = d / f"canvas-{rec.id}.png" if own is not None else d / "canvas.png"
        from PIL import Image
        Image.fromarray(self.canvas(video)).save(canvas)
        note = (f"Input: {len(video)} frame{'s' if len(video) > 1 else ''} at {self.cfg.width}×{self.cfg.height}. "
                "Paint the pixels to regenerate (inpainting) or that may move (cinemagraph); "
                "all frames are overlaid under the brush.")
        return {"background": str(canvas), "layers": [], "composite": None}, shown and str(shown), note

    def show(self, rec, source, upload):
        """An input chosen (or a new last clip): (editor value, input video, note, edit prompt). The input goes
        under the brush at once; the last clip also puts its prompt in the edit prompt (an upload leaves it).
        No clip or no file yet: an empty editor and a hint, not an error."""
        source = L.check_choice("Input", source, [SOURCE_LAST, SOURCE_UPLOAD])
        if source == SOURCE_LAST and not isinstance(rec, ClipRecord):
            return None, None, "No clip yet: generate one in the Generate tab, or upload a file.", gr.skip()
        if source == SOURCE_UPLOAD and not upload:
            return None, None, "Upload a GIF, MP4 (H.264) or image to edit.", gr.skip()
        value, shown, note = self.load(rec, source, upload)
        return value, shown, note, rec.settings.prompt if source == SOURCE_LAST else gr.skip()

    def uploaded(self, rec, upload):
        """A file uploaded: it becomes the input, (input choice, *``show``)."""
        return (SOURCE_UPLOAD, *self.show(rec, SOURCE_UPLOAD, upload))

    def follow(self, rec, source):
        """After a Generate: the new clip goes under the brush where the input is the last clip (else nothing)."""
        if source != SOURCE_LAST:
            return (gr.skip(),) * 4
        return self.show(rec, source, None)

    def cleared(self, rec, source):
        """The upload removed: where it was the input, the editor empties."""
        if source != SOURCE_UPLOAD:
            return (gr.skip(),) * 4
        return self.show(rec, source, None)

    def check_common(self, prompt, seed, steps, guidance, fps):
        prompt = L.check_prompt(prompt)
        L.check_words(self.studio.tok, prompt)
        return (prompt, L.check_int("Seed", seed, L.MIN_SEED, L.MAX_SEED),
                L.check_int("Steps", steps, L.MIN_STEPS, L.MAX_STEPS),
                L.check_float("Guidance", guidance, L.MIN_GUIDANCE, L.MAX_GUIDANCE),
                L.check_int("Frame rate", fps, L.MIN_FPS, L.MAX_FPS))

    # ------------------------------------------------------------------ the three edits
    def inpaint(self, rec, source, upload, mask, prompt, seed, steps, guidance, fps, progress=gr.Progress()):
        prompt, seed, steps, guidance, fps = self.check_common(prompt, seed, steps, guidance, fps)
        video = self.clip_for_edit(rec, source, upload)
        m = self.mask_of(mask, "mask")
        req = self._prepare(editing.prepare_inpaint, video, m, prompt, seed=seed, steps=steps, guidance=guidance)
        yield from self._run(req, fps, progress)

    def cinemagraph(self, rec, source, upload, region, prompt, seed, steps, guidance, fps,
                    progress=gr.Progress()):
        prompt, seed, steps, guidance, fps = self.check_common(prompt, seed, steps, guidance, fps)
        image = self.source_clip(rec, source, upload)[0]
        r = self.mask_of(region, "region")
        req = self._prepare(editing.prepare_cinemagraph, image, r, prompt, seed=seed, steps=steps,
                            guidance=guidance)
        yield from self._run(req, fps, progress)

    def video_to_video(self, rec, source, upload, prompt, seed, steps, guidance, strength, fps,
                       progress=gr.Progress()):
        prompt, seed, steps, guidance, fps = self.check_common(prompt, seed, steps, guidance, fps)
        strength = L.check_float("Strength", strength, L.MIN_STRENGTH, L.MAX_STRENGTH)
        video = self.clip_for_edit(rec, source, upload)
        req = self._prepare(editing.prepare_video_to_video, video, prompt, strength, seed=seed, steps=steps,
                            guidance=guidance)
        yield from self._run(req, fps, progress)

    def _prepare(self, fn, *args, **kw) -> editing.EditRequest:
        try:
            pipe = self.studio.pipe          # the model's own solver where it names one (a distilled model's)
            sampler = getattr(getattr(pipe, "defaults", None), "sampler", None) or L.DEFAULT_SAMPLER
            return fn(pipe, *args, sampler=sampler, **kw)
        except ValueError as e:
            msg = str(e)
            raise LimitError(f"{msg[:1].upper()}{msg[1:]}.") from None

    def _run(self, req: editing.EditRequest, fps: int, progress):
        """Sample with an Inspector, stop past the job deadline, then write the files and the record."""
        studio = self.studio
        self.studio._cleanup()
        skip = gr.skip()
        progress(0, desc="Loading the model" if studio._pipe is None else "Encoding the prompt")
        pipe = studio.pipe
        n = editing.sdedit_steps(req.steps, req.strength)
        s = Settings(req.prompt, seed=req.seed, steps=n, guidance=req.guidance, frames=req.frames,
                     sampler=req.sampler, stride=req.stride)
        inspector = Inspector(pipe.model, x0_steps=studio._x0_steps(s), feature_steps=studio._feature_steps(n),
                              max_bytes=L.RECORD_MAX_BYTES)
        title = MODE_TITLES[req.mode]
        clock = JobClock(lambda projected, deadline: (
            f"This edit would take about {projected / 60:.1f} minutes, over this server's limit "
            f"({deadline / 60:.1f} minutes here): use fewer steps or a shorter clip, or try again when the server "
            "is less busy."), now=self.now)
        last = None
        with inspector:
            for out in req.iter(pipe, inspector):
                last = out
                k = out.step + 1
                elapsed = clock.step(k, out.num_steps)
                progress(k / out.num_steps, desc=f"{title}: step {k}/{out.num_steps}")
                yield skip, skip, skip, f"{title}: denoising step {k}/{out.num_steps} · {elapsed:.0f} s", skip
        if last is None:
            raise RuntimeError("sampling produced no step")
        e = req.result(pipe, last, clock.elapsed_s())
        progress(1.0, desc="Encoding the video")
        d = studio.files.request_dir()
        name = f"stunet-{req.mode.replace('_', '-')}-{slug(req.prompt)}-seed{req.seed}"
        mp4 = write_video(d / f"{name}.mp4", e.video, fps=fps, scale=studio.video_scale, fast=True)
        src = write_video(d / "input.mp4", e.source, fps=fps, scale=studio.video_scale, fast=True)
        enc = studio.tok.encode(req.prompt)
        recording = inspector.recording          # an edit is recorded while it runs (its inputs are not kept)
        rec = ClipRecord(settings=s, fps=fps, video=e.video, words=list(enc.words), unknown=list(enc.unknown),
                         truncated=list(enc.truncated), mp4=str(mp4), gif=None, seconds=e.seconds,
                         recording=recording,
                         recorded_frames=recording.recorded_frames(min(e.video.shape[0], studio.window)),
                         precision=precision_of(pipe), edit=e.record())
        studio.records.add(rec)
        studio.prune_cache()
        yield str(src), str(mp4), rec.settings_dict(), self.status_md(e), rec

    @staticmethod
    def status_md(e: editing.Edit) -> str:
        r = e.record()
        extra = ""
        if e.given is not None:
            p = r["psnr_given_before_paste_db"]
            extra = (f" · {100 * r['regenerated_fraction']:.0f}% of the pixels regenerated; the kept ones are exact "
                     f"(the model itself kept them at {'∞' if p is None else f'{p:.1f}'} dB PSNR before the paste)")
        else:
            extra = f" · strength {e.settings['strength']:g}: {e.settings['steps_run']} of {e.settings['steps']} steps"
        return (f"**Done**: {MODE_TITLES[e.mode].lower()} of **{md_escape(e.prompt)}** in {e.seconds:.1f} s · "
                f"seed {e.settings['seed']}{extra}. The Inspect tab now shows this result.")


def build_edit_tab(tab: EditTab, prompt_value: str = "") -> EditControls:
    """The Edit tab's layout (call inside ``gr.Tab``)."""
    cfg = tab.cfg
    gr.Markdown(INTRO, elem_classes="section-note")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            source = gr.Radio(SOURCES, value=SOURCE_LAST, label="Input", elem_id="edit-source")
            upload = gr.File(label=f"Upload a GIF, MP4 (H.264) or image (up to {L.MAX_UPLOAD_BYTES // 2**20} MB)",
                             file_types=UPLOAD_TYPES, type="filepath", height=110, elem_id="edit-upload")
            mask = gr.ImageMask(label="Paint the mask (inpainting) or the region (cinemagraph)", type="filepath",
                                image_mode="RGBA", sources=[], transforms=[], layers=False,
                                brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed",
                                               default_size=max(4, L.EDIT_CANVAS_SIDE // 16)),
                                height=L.EDIT_CANVAS_SIDE + 80, elem_id="edit-mask", buttons=[])
            prompt = gr.Textbox(label="Prompt", value=prompt_value, max_length=L.MAX_PROMPT_CHARS, lines=1,
                                max_lines=2, elem_id="edit-prompt", info="What the edited clip shows.")
            with gr.Row():
                seed = gr.Number(label="Seed", value=L.DEFAULT_SEED, precision=0, minimum=L.MIN_SEED,
                                 maximum=L.MAX_SEED, elem_id="edit-seed")
                steps = gr.Slider(L.MIN_STEPS, L.MAX_STEPS, value=L.DEFAULT_STEPS, step=1, label="Steps",
                                  elem_id="edit-steps")
                guidance = gr.Slider(L.MIN_GUIDANCE, L.MAX_GUIDANCE, value=L.DEFAULT_GUIDANCE, step=0.5,
                                     label="Guidance", elem_id="edit-guidance")
            strength = gr.Slider(L.MIN_STRENGTH, L.MAX_STRENGTH, value=L.DEFAULT_STRENGTH, step=0.05,
                                 label="Strength (video-to-video)", elem_id="edit-strength",
                                 info="How much of the denoising schedule is redone: near 0 keeps the input, "
                                      "1 ignores it.")
            fps = gr.Slider(L.MIN_FPS, L.MAX_FPS, value=L.DEFAULT_FPS, step=1, label="Playback frame rate (fps)",
                            elem_id="edit-fps")
            with gr.Row():
                inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="edit-inpaint")
                cinemagraph_btn = gr.Button("Cinemagraph", variant="primary", elem_id="edit-cinemagraph")
                v2v_btn = gr.Button("Video-to-video", variant="primary", elem_id="edit-v2v")
        with gr.Column(scale=6):
            with gr.Row():
                input_video = gr.Video(label="Input", autoplay=True, loop=True, interactive=False, height=260,
                                       elem_id="edit-input", buttons=[])
                result_video = gr.Video(label="Result", autoplay=True, loop=True, interactive=False, height=260,
                                        elem_id="edit-result", buttons=["download"])
            status = gr.Markdown(f"Generate a clip, or upload a GIF, MP4 or image: it appears under the brush. "
                                 f"The model works at {cfg.width}×{cfg.height}.", elem_id="edit-status")
            with gr.Accordion("Edit settings", open=False):
                settings = gr.JSON(label="Settings", elem_id="edit-settings")
    harden_image_mask(mask)
    tab.mask_component = mask          # never replaced per session (no gr.update of it), so its blobs are these
    return EditControls(source, upload, mask, prompt, seed, steps, guidance, strength, fps, inpaint_btn,
                        cinemagraph_btn, v2v_btn, input_video, result_video, settings, status)


def wire_edit_tab(tab: EditTab, c: EditControls, record, *, concurrency_limit: int, then, generated=()) -> list:
    """The Edit tab's events: the chosen input under the brush at once (also after each of the ``generated``
    events, where the input is the last clip), and one public endpoint per edit; ``then(event)`` chains the
    Inspect refresh."""
    shown = [c.mask, c.input_video, c.status, c.prompt]
    private = dict(preprocess=False, api_visibility="private", concurrency_limit=2, concurrency_id="edit-load")
    c.source.input(guarded(tab.show), [record, c.source, c.upload], shown, **private)
    c.upload.upload(guarded(tab.uploaded), [record, c.upload], [c.source] + shown, **private)
    c.upload.clear(guarded(tab.cleared), [record, c.source], shown, **private)
    for e in generated:
        e.success(guarded(tab.follow), [record, c.source], shown, **private)
    out = [c.input_video, c.result_video, c.settings, c.status, record]
    common = dict(preprocess=False, concurrency_limit=concurrency_limit, concurrency_id="generate",
                  show_progress="minimal", show_progress_on=[c.result_video])
    head = [record, c.source, c.upload]
    tail = [c.prompt, c.seed, c.steps, c.guidance]
    events = [
        c.inpaint_btn.click(guarded(tab.inpaint), head + [c.mask] + tail + [c.fps], out, api_name="inpaint",
                            api_description="Inpaint: (source, upload, mask, prompt, seed, steps, guidance, fps) "
                                            "-> input, result, settings, status.", **common),
        c.cinemagraph_btn.click(guarded(tab.cinemagraph), head + [c.mask] + tail + [c.fps], out,
                                api_name="cinemagraph", api_description="Cinemagraph: (source, upload, region, "
                                "prompt, seed, steps, guidance, fps) -> input, result, settings, status.", **common),
        c.v2v_btn.click(guarded(tab.video_to_video), head + tail + [c.strength, c.fps], out,
                        api_name="video_to_video", api_description="Video-to-video (SDEdit): (source, upload, "
                        "prompt, seed, steps, guidance, strength, fps) -> input, result, settings, status.", **common),
    ]
    for e in events:
        then(e)
    return events
