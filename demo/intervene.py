"""Inspect as an instrument (issue 30): Intervene, Follow a point and Attention summaries, in the Inspect tab.

Every view re-runs the session's last clip from its *settings* (prompt, seed, steps, guidance, sampler,
frames, stride, first frame, model, style: a clip is deterministic per seed and precision) through the
shared ``Pipeline`` (or its styled copy) with its own hooks (``stunet.interventions``, an ``Inspector``);
none reads the clip's stored recording. An edited clip (Edit tab) cannot be replayed from settings and is refused.

API endpoints (``gradio_client``, after ``/generate`` with the same client):

    /intervene  (part, mode, source_prompt) -> original, intervened, readings, x-t slices, record, status
                part: a name of ``stunet info --parts`` without its mode (``tattn:mid.0.0``, ``tconv:all``,
                ``word:red``, ``stride:4``, ``patch-attn:mid.0.0``, ``patch-features:mid``, ``none``);
                mode: identity | uniform (tattn); source_prompt: the patch's source (patch-*)
    /track      (frame, x, y, step) -> similarity per level, error plot, table, scores
    /attention_summary  (other_model) -> plot, note, values
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from stunet import interventions as I
from stunet import tracking
from stunet.attention_summary import summarize
from stunet.inspection import Inspector
from stunet.video import write_video

from . import gpu
from . import intervene_figures as F
from . import limits as L
from .errors import guarded
from .limits import LimitError
from .sessions import ClipRecord
from .studio import md_escape

MODES = I.TATTN_MODES
NEEDS_SOURCE = ("patch-attn", "patch-features")
TRACK_LEVELS_NOTE = ("Cosine similarity of the clicked position's features to every position of every frame "
                     "(DIFT, arXiv 2306.03881), per level of the pyramid at the chosen step; the circle is the best "
                     "match. For shapes-world prompts each level's track is scored against the object's measured "
                     "centroid.")


def part_choices(config, vocabulary) -> list[str]:
    """The Part dropdown: each concrete part without its mode, then a word of the vocabulary each."""
    names = I.model_names(config)
    out = ["none"] + [f"tattn:{n}" for n in names["tattn"] + ([I.ALL] if names["tattn"] else [])]
    out += [f"tconv:{n}" for n in names["tconv"] + ([I.ALL] if names["tconv"] else [])]
    out += [f"stride:{s}" for s in config.strides]
    out += [f"patch-attn:{n}" for n in names["tattn"] + ([I.ALL] if names["tattn"] else [])]
    out += [f"patch-features:{n}" for n in names["levels"]]
    return out + [f"word:{w}" for w in vocabulary]


class InterveneTab:
    """The handlers, on a ``demo.studio.Studio`` (its pipelines, output files and limits)."""

    def __init__(self, studio):
        self.studio = studio
        self.cfg = studio.cfg

    # ------------------------------------------------------------------ the clip, from its settings
    def clip(self, rec):
        """(pipeline, settings, first frame) of the session's last clip, from its public fields."""
        if not isinstance(rec, ClipRecord):
            raise LimitError("No clip yet: generate one first (Intervene, Follow a point and the summaries re-run "
                             "it from its settings).")
        if rec.edit:
            raise LimitError("The last clip is an edit (Edit tab), which cannot be re-run from settings alone: "
                             "generate a clip to intervene on.")
        return self.studio.pipe_of(rec.model, rec.style, rec.style_strength), rec.settings, rec.first_frame

    def part(self, rec, part, mode, source_prompt, pipe, settings) -> I.Part:
        if not isinstance(part, str) or not 0 < len(part) <= 80:
            raise LimitError("Part must be a part name such as 'tattn:mid.0.0' or 'tconv:all'.")
        kind, _, target = part.strip().partition(":")
        if kind == "tattn":
            mode = L.check_choice("Mode", mode, MODES)
        elif kind in NEEDS_SOURCE:
            try:
                mode = L.check_prompt(source_prompt)
            except LimitError as e:
                raise LimitError(f"{part} needs a source prompt to patch from (Patch from prompt): {e}") from None
        else:
            mode = ""
        try:
            p = I.Part(kind, target, mode) if kind in I.KINDS else I.parse_part(part)   # names the bad part
            I.prepare(pipe, settings, [p])                        # every check, before any sampling
        except ValueError as e:
            raise LimitError(f"{str(e)[:1].upper()}{str(e)[1:]}.") from None
        return p

    def _write(self, video: np.ndarray, name: str, fps: int) -> str:
        d = self.studio.files.request_dir()
        return str(write_video(d / f"{name}.mp4", video, fps=fps, scale=self.studio.video_scale))

    # ------------------------------------------------------------------ Intervene
    def intervene(self, rec, part, mode, source_prompt):
        """The clip again, with and without the part: both play, the detectors read both, their X-T slices."""
        pipe, s, first = self.clip(rec)
        p = self.part(rec, part, mode, source_prompt, pipe, s)
        self.studio._cleanup()
        original = pipe(s, first_frame=first).video
        changed = I.run(pipe, s, [p], first_frame=first).video
        fps = rec.fps
        a, b = self._write(original, "original", fps), self._write(changed, f"intervened-{p.kind}", fps)
        ra, rb = F.readings(original, s.prompt), F.readings(changed, s.prompt)
        row = self._xt_row(original)
        diff = float(np.abs(original.astype(np.int16) - changed.astype(np.int16)).mean())
        record = {"part": p.name, "what": I.describe(p), "settings": s.to_dict(), "identical": bool(diff == 0),
                  "mean_abs_pixel_difference": round(diff, 3),
                  "readings": {"original": ra, "intervened": rb} if ra else None}
        status = (f"**{md_escape(p.name)}**: {md_escape(I.describe(p))}. Same seed and noise; mean pixel difference "
                  f"{diff:.2f} / 255"
                  + (" (bit-identical)." if diff == 0 else "."))
        return a, b, F.readings_md(ra, rb, md_escape(p.name)), F.xt_pair(original, changed, row), record, status

    @staticmethod
    def _xt_row(video: np.ndarray) -> int:
        try:
            y = tracking.object_path(video)[0, 1]
            return int(y) if np.isfinite(y) else video.shape[1] // 2
        except ValueError:
            return video.shape[1] // 2

    # ------------------------------------------------------------------ Follow a point
    def check_track(self, rec, frame, x, y, step):
        pipe, s, first = self.clip(rec)
        frames = min(s.frames, self.studio.window)               # features cover the first window
        try:
            frame, x, y = tracking.check_point(*(L.check_int(n, v, -2**31, 2**31) for n, v in
                                                 (("Frame", frame), ("x", x), ("y", y))),
                                               (frames, self.cfg.height, self.cfg.width))
        except ValueError as e:
            raise LimitError(f"{str(e)[:1].upper()}{str(e)[1:]}.") from None
        step = L.check_int("Step", step, -s.steps, s.steps - 1) % s.steps     # negative: from the end
        return pipe, s, first, frame, x, y, step, frames

    def track(self, rec, frame, x, y, step):
        """Every level's similarity to the clicked point at ``step``, its track, and (shapes world) its error."""
        pipe, s, first, frame, x, y, step, frames = self.check_track(rec, frame, x, y, step)
        with Inspector(pipe.model, feature_steps=[step], attention=False, x0_steps=[],
                       max_bytes=L.RECORD_MAX_BYTES) as ins:
            video = pipe(s, first_frame=first, inspector=ins).video[:frames]
        tracks = tracking.follow_recording(ins.recording, frame, x, y, video.shape[:3])
        ordered = [tracks[(step, n)] for n in ins.recording.level_names if (step, n) in tracks]
        image = F.track_image(video, ordered)
        rows = []
        if F.readings(video, s.prompt) is not None:
            try:
                rows = tracking.score(tracks, video, frame, x, y)
            except ValueError:
                rows = []
        if rows:
            plot = F.track_error_figure(rows, f"Track error per frame, step {step}")
            table = F.track_table_md(rows, step, tracking.TOLERANCE_PX)
        else:
            plot = F.go.Figure()
            table = ("No object measured at the clicked frame, or not a shapes-world prompt: the tracks are shown "
                     "but not scored.")
        scores = {"frame": frame, "x": x, "y": y, "step": step,
                  "tracks": {t.level: np.round(t.points, 2).tolist() for t in ordered},
                  "scores": [{k: v for k, v in r.items()} for r in rows]}
        return image, plot, table, scores

    def picker(self, rec, frame, x, y):
        """The frame to click on, with the current point marked."""
        if not isinstance(rec, ClipRecord):
            return None
        frames = min(rec.settings.frames, self.studio.window, rec.video.shape[0])
        f = L.check_int("Frame", frame, 0, frames - 1)
        try:
            point = tracking.check_point(f, int(x), int(y), (frames, *rec.video.shape[1:3]))[1:]
        except (ValueError, TypeError):
            point = None
        return F.picker_frame(rec.video, f, point)

    def pick(self, rec, frame, evt: gr.SelectData):
        """A click on the enlarged frame -> (x, y) in clip pixels."""
        if not isinstance(rec, ClipRecord):
            raise LimitError("No clip yet: generate one first.")
        H, W = rec.video.shape[1:3]
        side = F.picker_frame(rec.video, 0, None).shape[:2]
        ix, iy = evt.index if isinstance(evt.index, (list, tuple)) else (0, 0)
        return F.clicked_pixel(float(ix), float(iy), (side[1], side[0]), (W, H))

    # ------------------------------------------------------------------ Attention summaries
    def summary(self, rec, other_model):
        """Entropy and off-diagonal share per layer, head and step; with ``other_model`` also the other model's
        clip of the same prompt and seed (its own steps, guidance and sampler)."""
        pipe, s, first = self.clip(rec)
        other = L.check_bool("Other model", other_model)
        groups = [(rec.model, self._summarize(pipe, s, first))]
        if other and len(self.studio.choices) > 1:
            c = next(c for c in self.studio.choices if c.key != rec.model)
            d = c.defaults
            s2 = dataclasses.replace(s, steps=d.steps, guidance=d.guidance, sampler=d.sampler)
            groups.append((c.key, self._summarize(self.studio.pipe_for(c.key), s2, first)))
        values = {name: [x.to_dict() for x in summ] for name, summ in groups}
        note = ("Per layer (columns) and head (lines), over the denoising steps: the entropy of each frame's attention "
                "over the frames (0: one frame, 1: all alike) and the share of weight on *other* frames "
                "(Enhance-A-Video's cross-frame intensity).")
        return F.summary_figure(groups), note, values

    @staticmethod
    def _summarize(pipe, s, first):
        with Inspector(pipe.model, features=False, x0_steps=[], max_bytes=L.RECORD_MAX_BYTES) as ins:
            pipe(s, first_frame=first, inspector=ins)
        return summarize(ins.recording)


# ----------------------------------------------------------------------------- layout and events
@dataclass
class InterveneControls:
    part: Any
    mode: Any
    source: Any
    run_btn: Any
    original: Any
    intervened: Any
    readings: Any
    xt: Any
    record: Any
    status: Any
    track_box: Any
    picker: Any
    frame: Any
    x: Any
    y: Any
    step: Any
    track_btn: Any
    track_img: Any
    track_plot: Any
    track_table: Any
    track_json: Any
    other: Any
    summary_btn: Any
    summary_plot: Any
    summary_note: Any
    summary_json: Any


def build_intervene_section(tab: InterveneTab) -> InterveneControls:
    """The three accordions (call inside the Inspect tab). Each re-runs the last clip, so each has a button."""
    cfg, studio = tab.cfg, tab.studio
    with gr.Accordion("Intervene: switch a temporal part off", open=False, elem_id="intervene-box"):
        gr.Markdown("The last clip again, same seed and noise, with one part of the network switched off or "
                    "swapped (`stunet info --parts`): temporal attention as the identity (each frame attends only to "
                    "itself) or uniform, temporal convolutions skipped, a word removed from cross-attention, another "
                    "frame-rate stride, or a temporal-attention map / a level's features patched in from another "
                    "prompt's run.", elem_classes="section-note")
        with gr.Row():
            part = gr.Dropdown(part_choices(cfg, studio.tok.words), value="tattn:all", label="Part",
                               allow_custom_value=True, elem_id="iv-part")
            mode = gr.Radio(list(MODES), value="identity", label="Mode (temporal attention)", elem_id="iv-mode")
            source = gr.Textbox(label="Patch from prompt (patch-*)", placeholder="a blue square quickly spinning",
                                max_length=L.MAX_PROMPT_CHARS, elem_id="iv-source")
        run_btn = gr.Button("Run", variant="primary", elem_id="iv-run")
        with gr.Row():
            original = gr.Video(label="Original", autoplay=True, loop=True, interactive=False, height=260,
                                elem_id="iv-original", buttons=[])
            intervened = gr.Video(label="Intervened", autoplay=True, loop=True, interactive=False, height=260,
                                  elem_id="iv-intervened", buttons=["download"])
        status = gr.Markdown(elem_id="iv-status")
        readings = gr.Markdown(elem_id="iv-readings")
        xt = gr.Image(label="X-T slices through the object's row", format="png", interactive=False,
                      elem_classes="pixelated", elem_id="iv-xt", buttons=["download"])
        with gr.Accordion("Record", open=False):
            record = gr.JSON(label="Intervention", elem_id="iv-record")
    with gr.Accordion("Follow a point", open=False, elem_id="track-box") as track_box:
        gr.Markdown(TRACK_LEVELS_NOTE, elem_classes="section-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=240):
                picker = gr.Image(label="Click a point on the frame", format="png", interactive=False,
                                  elem_classes="pixelated", elem_id="track-picker", buttons=[])
                frame = gr.Slider(0, studio.window - 1, value=0, step=1, label="Frame", elem_id="track-frame")
                with gr.Row():
                    x = gr.Number(cfg.width // 2, label="x (column)", precision=0, elem_id="track-x")
                    y = gr.Number(cfg.height // 2, label="y (row)", precision=0, elem_id="track-y")
                step = gr.Number(-4, label="Step (negative: from the end, -1 = the last)", precision=0,
                                 elem_id="track-step")
                track_btn = gr.Button("Follow", variant="primary", elem_id="track-btn")
            with gr.Column(scale=5):
                track_img = gr.Image(label="Similarity per level (rows) and frame", format="png",
                                     interactive=False, elem_classes="pixelated", elem_id="track-img",
                                     buttons=["download", "fullscreen"])
                track_plot = gr.Plot(label="error", show_label=False, elem_id="track-plot")
                track_table = gr.Markdown(elem_id="track-table")
                track_json = gr.JSON(visible=False)
    with gr.Accordion("Attention summaries", open=False, elem_id="summary-box"):
        other = gr.Checkbox(len(studio.choices) > 1, label="Also the other model's clip (same prompt and seed)",
                            visible=len(studio.choices) > 1, elem_id="summary-other")
        summary_btn = gr.Button("Summarize", variant="primary", elem_id="summary-btn")
        summary_plot = gr.Plot(label="summaries", show_label=False, elem_id="summary-plot")
        summary_note = gr.Markdown(elem_classes="section-note")
        summary_json = gr.JSON(visible=False)
    return InterveneControls(part, mode, source, run_btn, original, intervened, readings, xt, record, status,
                             track_box, picker, frame, x, y, step, track_btn, track_img, track_plot, track_table,
                             track_json, other, summary_btn, summary_plot, summary_note, summary_json)


def _duration(tab: InterveneTab, runs: int):
    """ZeroGPU seconds for ``runs`` re-runs of the session's clip (``demo.gpu``'s cost model)."""
    hi = L.frames_range(tab.studio.factor, tab.studio.window)[1]

    def duration(rec=None, *_, **__) -> int:
        s = getattr(rec, "settings", None)
        steps, frames = (s.steps, s.frames) if s is not None else (L.MAX_STEPS, hi)
        return gpu.seconds(runs * gpu.clip_seconds(steps, frames, 2, tab.studio.window))
    return duration


def wire_intervene(tab: InterveneTab, c: InterveneControls, record, *, concurrency_limit: int) -> None:
    """Events: /intervene, /track, /attention_summary (sampling: the Generate queue), and the point picker."""
    sample = dict(preprocess=False, concurrency_limit=concurrency_limit, concurrency_id="generate",
                  show_progress="minimal")
    c.run_btn.click(gpu.gpu(guarded(tab.intervene), _duration(tab, 3)), [record, c.part, c.mode, c.source],
                    [c.original, c.intervened, c.readings, c.xt, c.record, c.status], api_name="intervene",
                    api_description="The last clip with a part switched off: (part, mode, source_prompt) -> "
                    "original, intervened, readings, x-t slices, record, status.", **sample)
    track_in, track_out = [record, c.frame, c.x, c.y, c.step], [c.track_img, c.track_plot, c.track_table, c.track_json]
    track_fn = gpu.gpu(guarded(tab.track), _duration(tab, 1))
    c.track_btn.click(track_fn, track_in, track_out, api_name="track", api_description="Follow a point: (frame, x, "
                      "y, step) -> similarity per level, error plot, table, scores.", **sample)
    picker_fn = guarded(tab.picker)
    quick = dict(preprocess=False, api_visibility="private", queue=False)
    c.picker.select(guarded(tab.pick), [record, c.frame], [c.x, c.y], **quick).then(
        picker_fn, [record, c.frame, c.x, c.y], c.picker, **quick).then(
        track_fn, track_in, track_out, api_visibility="private", **sample)
    gr.on([c.frame.input, c.track_box.expand], picker_fn, [record, c.frame, c.x, c.y], c.picker, **quick)
    c.summary_btn.click(gpu.gpu(guarded(tab.summary), _duration(tab, 2)), [record, c.other],
                        [c.summary_plot, c.summary_note, c.summary_json], api_name="attention_summary",
                        api_description="Temporal attention entropy and off-diagonal share per layer, head and "
                        "step: (other_model) -> plot, note, values.", **sample)
