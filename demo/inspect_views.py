"""The Inspect tab's handlers: the views of a session's clip, read from its recording.

``InspectHandlers`` is mixed into ``demo.studio.Studio``: every view first makes sure the clip is
recorded (``need`` -> ``Studio.recording_of``: recorded on demand, the clip sampled again with the
Inspector attached), then reads the ``stunet.inspection.Recording`` and draws it (``demo.figures``).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from . import figures as views
from . import limits as L
from .limits import LimitError
from .outputs import NamedOutputs as _Outputs
from .markup import md_escape, slug
from .sessions import ClipRecord, current_session

log = logging.getLogger("stunet.studio")

HEAD_MEAN = "mean"
LAYER_ALL = "all"
MODE_MEAN = "average over all positions"
MODE_POINT = "at the picked position"


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


class InspectHandlers:
    """The Inspect views (a mixin of ``Studio``: uses its ``cfg``, ``window``, ``files``, ``choices``,
    ``_features_cache``, ``_initial_pyramid``, ``factor`` and ``recording_of``)."""

    # ------------------------------------------------------------------ inspect helpers
    def need(self, rec) -> ClipRecord:
        """The session's clip, with its recording (made now if it has none, see ``recording_of``)."""
        if not isinstance(rec, ClipRecord):
            raise LimitError("No clip to inspect yet: generate one first (a clip is kept for "
                             f"{L.STATE_TTL_S // 60} minutes).")
        self.recording_of(rec, current_session())
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
        if rec.style:
            model += f" · style {md_escape(rec.style)} at {rec.style_strength:g}"
        info = (f"Inspecting **{md_escape(s.prompt)}** · seed {s.seed} · {n} steps{model} · {s.frames} frames. "
                f"Feature maps were recorded at steps {', '.join(map(str, r.feature_steps()))}; "
                f"attention at every step; x0-hat at {len(r.x0)} steps.")
        if rec.rerecorded_same is True:
            info += (" Recorded when you opened this tab: the clip was sampled again with the same seed and "
                     "precision, hooks attached, and came out identical.")
        elif rec.rerecorded_same is False:
            info += (" **Note:** sampled again for this recording, the clip came out slightly different from the "
                     "one shown (the views show the re-run).")
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
        if isinstance(rec, ClipRecord) and rec.recording is not None and isinstance(layer, str):
            heads = rec.recording.heads(layer)
        return gr.update(choices=head_choices(heads), value=HEAD_MEAN)

    def open_inspect(self, rec, inspected, request: gr.Request = None) -> list:
        """The Inspect tab was opened: render the session's clip (recording it first, ``recording_of``) unless
        it is the one already shown (``inspected``: that clip's id). Returns the ``InspectViews`` values and
        the id now shown."""
        if not isinstance(rec, ClipRecord) or (inspected == rec.id and rec.recording is not None):
            return [gr.skip()] * (len(InspectViews.names()) + 1)
        self.recording_of(rec, getattr(request, "session_hash", None) or current_session())
        return self.render_all(rec).values() + [rec.id]

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
                if rec.recording is None:
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
