"""The studio's Inspect tab: the views of the last clip's insides (layout and events).

``build_inspect_tab`` lays the tab out (it opens its own ``gr.Tab``, whose select event records the clip) and
returns its ``InspectControls``; ``wire_inspect_open`` records and renders the clip when the tab is opened;
``wire_inspect_views`` adds one public endpoint per view (``/pyramid``, ``/features``, ``/temporal_attention``,
``/word_attention``, ``/xt_slice``, ``/export_npz``). The handlers are ``demo.inspect_views.InspectHandlers``'
(mixed into ``demo.studio.Studio``); the instruments below the views are ``demo.intervene``'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import gpu
from . import limits as L
from .errors import guarded
from .figures import layer_label
from .intervene import InterveneControls, InterveneTab, build_intervene_section
from .studio import HEAD_MEAN, LAYER_ALL, MODE_MEAN, MODE_POINT, InspectViews, StepViews, Studio, head_choices
from stunet.inspection import layer_names

# the inspect views' events: at most L.INSPECT_CONCURRENCY at a time, only the last of a burst of inputs
INSPECT_EVENT = dict(preprocess=False, concurrency_limit=L.INSPECT_CONCURRENCY, concurrency_id="inspect",
                     trigger_mode="always_last", show_progress="hidden")


@dataclass
class InspectControls:
    """The Inspect tab's components (built by ``build_inspect_tab``)."""
    tab: Any
    inspect_info: Any
    step: Any
    pyramid_plot: Any
    features_note: Any
    features_img: Any
    change_plot: Any
    t_layer: Any
    head: Any
    mode: Any
    hide_diag: Any
    picker: Any
    pos_row: Any
    pos_col: Any
    matrix_plot: Any
    offset_plot: Any
    distance_plot: Any
    x_layer: Any
    average: Any
    words_img: Any
    share_plot: Any
    xt_row: Any
    xt_img: Any
    film_img: Any
    intervene_tab: InterveneTab
    intervene: InterveneControls
    npz_btn: Any
    npz_file: Any


def _pyramid_and_features(c: dict) -> None:
    """The space-time pyramid and the feature maps (into ``c``)."""
    with gr.Accordion("The space-time pyramid", open=True):
        gr.Markdown("Each row is a level on the clip-time axis. A box is one frame of that level, "
                    "as wide as the clip frames it stands for and as tall as its spatial size: "
                    "time shrinks along with space. Orange rows hold temporal attention. "
                    "Hover a row for its layers.", elem_classes="section-note")
        c["pyramid_plot"] = gr.Plot(label="pyramid", show_label=False, elem_id="pyramid")  # filled on load
    with gr.Accordion("Feature maps", open=True):
        c["features_note"] = gr.Markdown(label="note", elem_classes="section-note")
        c["features_img"] = gr.Image(label="Each level's features per frame (PCA → RGB)", show_label=False,
                                     format="png",
                                     interactive=False, elem_classes="pixelated", elem_id="features",
                                     buttons=["download", "fullscreen"])
        c["change_plot"] = gr.Plot(label="frame change", show_label=False, elem_id="feature-change")


def _temporal_attention(c: dict, t_layers) -> None:
    """Temporal attention: layer / head / positions, the position picker, the matrix, by offset, over steps."""
    with gr.Accordion("Temporal attention", open=True):
        gr.Markdown("Every spatial position attends over the frames of its level. Left: query frame × "
                    "key frame. Right: the same by frame offset (0 = itself), since the raw average is "
                    "mostly a diagonal band. Click the image to look at one position.",
                    elem_classes="section-note")
        with gr.Row():
            c["t_layer"] = gr.Dropdown([(layer_label(n), n) for n, _ in t_layers],
                                       value=t_layers[0][0] if t_layers else None, label="Layer",
                                       elem_id="t-layer")
            c["head"] = gr.Dropdown(head_choices(t_layers[0][1] if t_layers else 0), value=HEAD_MEAN,
                                    label="Head", elem_id="t-head")
            c["mode"] = gr.Radio([MODE_MEAN, MODE_POINT], value=MODE_MEAN, label="Positions",
                                 elem_id="t-mode")
            c["hide_diag"] = gr.Checkbox(False, label="Hide the diagonal", elem_id="t-hide-diag")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=220):
                gr.Markdown("Click a position (all frames overlaid):", elem_classes="section-note")
                c["picker"] = gr.Image(label="Position picker", show_label=False, format="png",
                                       interactive=False, elem_classes="pixelated", elem_id="picker",
                                       buttons=[])
                with gr.Row():
                    c["pos_row"] = gr.Number(0, label="Row", precision=0, minimum=0, elem_id="pos-row")
                    c["pos_col"] = gr.Number(0, label="Column", precision=0, minimum=0, elem_id="pos-col")
            with gr.Column(scale=4):
                c["matrix_plot"] = gr.Plot(label="matrix", show_label=False, elem_id="t-matrix")
            with gr.Column(scale=4):
                c["offset_plot"] = gr.Plot(label="by offset", show_label=False, elem_id="t-offset")
        c["distance_plot"] = gr.Plot(label="distance over steps", show_label=False, elem_id="t-distance")


def _words_and_xt(c: dict, x_layers, cfg) -> None:
    """Word attention (DAAM for video), the X-T slice and x0-hat over the steps (into ``c``)."""
    with gr.Accordion("Word attention (DAAM for video)", open=True):
        gr.Markdown("Where each word of the prompt attends over space and time: text cross-attention "
                    "of every pixel of every frame, upsampled to the clip and averaged over layers; "
                    "the maps are normalised per word, the curves below are not.",
                    elem_classes="section-note")
        with gr.Row():
            c["x_layer"] = gr.Dropdown([("all layers (averaged)", LAYER_ALL)] +
                                       [(layer_label(n), n) for n in x_layers],
                                       value=LAYER_ALL, label="Layer", elem_id="x-layer")
            c["average"] = gr.Checkbox(False, label="Average over all steps", elem_id="x-average")
        c["words_img"] = gr.Image(label="Words × frames", show_label=False, format="png",
                                  interactive=False,
                                  elem_classes="pixelated", elem_id="word-maps",
                                  buttons=["download", "fullscreen"])
        c["share_plot"] = gr.Plot(label="share per word", show_label=False, elem_id="word-share")
    with gr.Accordion("X-T slice and x0-hat over the steps", open=True):
        gr.Markdown("One image row over time (Lumiere's figure 2): straight streaks are steady motion, "
                    "curves are acceleration, broken streaks are temporal incoherence. Below, the "
                    "predicted clean clip at the steps of the run.", elem_classes="section-note")
        c["xt_row"] = gr.Slider(0, cfg.height - 1, value=cfg.height // 2, step=1, label="Image row",
                                interactive=False, elem_id="xt-row")
        with gr.Row(equal_height=False):
            c["xt_img"] = gr.Image(label="X-T slice", show_label=False, format="png", interactive=False,
                                   elem_classes="pixelated", elem_id="xt", buttons=["download", "fullscreen"],
                                   scale=1)
            c["film_img"] = gr.Image(label="x0-hat over the denoising steps", show_label=False, format="png",
                                     interactive=False, elem_classes="pixelated", elem_id="filmstrip",
                                     buttons=["download", "fullscreen"], scale=3)


def build_inspect_tab(studio: Studio, cfg, steps: int) -> InspectControls:
    """The Inspect tab (opens its own ``gr.Tab``): the views, the instruments of ``demo.intervene`` and the
    ``.npz`` download. ``steps``: the default model's steps (the step slider's first range)."""
    t_layers, x_layers = layer_names(cfg)
    c = {}
    with gr.Tab("Inspect", id="inspect", elem_id="inspect-tab") as tab:
        c["tab"] = tab
        c["inspect_info"] = gr.Markdown("No clip yet: **generate one** in the Generate tab, then everything "
                                        "below shows what happened inside the network while it was made (the "
                                        "clip is recorded when you open this tab: sampled again, same seed).",
                                        elem_id="inspect-info")
        c["step"] = gr.Slider(0, steps - 1, value=steps - 1, step=1, interactive=False,
                              label="Denoising step (0 = pure noise, last = the clip)", elem_id="step",
                              buttons=[])
        _pyramid_and_features(c)
        _temporal_attention(c, t_layers)
        _words_and_xt(c, x_layers, cfg)
        c["intervene_tab"] = InterveneTab(studio)       # Intervene, Follow a point, summaries (demo/intervene.py)
        c["intervene"] = build_intervene_section(c["intervene_tab"])
        with gr.Accordion("Download the recording", open=False):
            gr.Markdown("Everything recorded for the last clip (features, temporal and word attention, "
                        "x0-hat per step, the clip and its settings) as one `.npz` (float16).",
                        elem_classes="section-note")
            c["npz_btn"] = gr.Button("Export .npz", size="sm", elem_id="npz-btn")
            c["npz_file"] = gr.File(label="Recording", interactive=False, elem_id="npz-file")
    return InspectControls(**c)


def _named(c: InspectControls, shown_features) -> dict:
    """The components by the names of ``InspectViews`` / ``StepViews`` fields."""
    names = set(InspectViews.names()) | set(StepViews.names())
    named = {n: getattr(c, n) for n in names if hasattr(c, n)}
    named["shown_features"] = shown_features
    return named


def wire_inspect_open(studio: Studio, c: InspectControls, record, inspected, shown_features) -> None:
    """Generate records nothing; opening Inspect records the session's clip (sampled again, same seed, hooks
    attached: ``Studio.recording_of``) and renders it, unless it is the clip already shown."""
    named = _named(c, shown_features)
    all_out = [named[n] for n in InspectViews.names()]
    studio.record_runner = gpu.gpu(guarded(studio.record), gpu.record_duration(studio))      # ZeroGPU: on the GPU
    c.tab.select(guarded(studio.open_inspect), [record, inspected], all_out + [inspected],
                 api_visibility="private", **{**INSPECT_EVENT, "show_progress": "full"})


def wire_inspect_views(studio: Studio, c: InspectControls, record, shown_features, frames) -> None:
    """One public endpoint per view, fired by its own controls; ``frames`` (the Generate tab's slider) redraws
    the pyramid."""
    temporal_fn = guarded(studio.view_temporal)
    t_in = [record, c.step, c.t_layer, c.head, c.mode, c.pos_row, c.pos_col, c.hide_diag]
    t_out = [c.picker, c.matrix_plot, c.offset_plot, c.distance_plot]
    named = _named(c, shown_features)
    step_out = [named[n] for n in StepViews.names()]

    gr.on([frames.release], guarded(studio.view_pyramid), frames, c.pyramid_plot, api_name="pyramid",
          **INSPECT_EVENT)
    # One handler per trigger: Gradio 6.31 re-runs events forever when two "always_last" handlers share one.
    step_in = [record, c.step, c.t_layer, c.head, c.mode, c.pos_row, c.pos_col, c.hide_diag, c.x_layer, c.average,
               c.xt_row, shown_features]
    gr.on([c.step.input], guarded(lambda *a: studio.view_step(*a).values()), step_in, step_out,
          api_visibility="private", **INSPECT_EVENT)
    gr.on([c.head.input, c.mode.input, c.hide_diag.input, c.pos_row.submit, c.pos_col.submit],
          temporal_fn, t_in, t_out, api_name="temporal_attention", **INSPECT_EVENT)
    gr.on([c.x_layer.input, c.average.input], guarded(studio.view_words), [record, c.step, c.x_layer, c.average],
          [c.words_img, c.share_plot], api_name="word_attention", **INSPECT_EVENT)
    gr.on([c.xt_row.input], guarded(studio.view_xt), [record, c.xt_row, c.step], [c.xt_img, c.film_img],
          api_name="xt_slice", **INSPECT_EVENT)
    api_only = gr.Button(visible=False)          # the features view has no control of its own but the step
    gr.on([api_only.click], guarded(studio.view_features), [record, c.step],
          [c.features_img, c.change_plot, c.features_note], api_name="features", **INSPECT_EVENT)
    c.picker.select(guarded(studio.pick), [record, c.t_layer], [c.pos_row, c.pos_col, c.mode], preprocess=False,
                    api_visibility="private", queue=False).then(
        temporal_fn, t_in, t_out, api_visibility="private", **INSPECT_EVENT)
    c.t_layer.input(lambda rec, layer: studio.head_update(rec, layer), [record, c.t_layer], c.head, queue=False,
                    preprocess=False, api_visibility="private").then(
        temporal_fn, t_in, t_out, api_visibility="private", **INSPECT_EVENT)
    c.npz_btn.click(guarded(studio.export_npz), record, c.npz_file, api_name="export_npz", preprocess=False,
                    concurrency_limit=1, concurrency_id="export")
