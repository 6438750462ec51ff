"""The studio's Blocks: ``build_demo(pipeline=None)`` and a lazily built module-level ``demo``.

    from demo.app import demo, launch_options
    demo.launch(**launch_options())

The model is loaded once per process (``shared_pipeline``) and shared read-only by all
requests; ``build_demo`` never samples. Without a pipeline, ``build_demo`` builds the page from
the checkpoint's header (``checkpoint_header``: config, vocabulary, parameter count) and the
weights load in a background thread once the server is up, so the page is served first; the
plotting and diffusers imports are warmed there too. Public API endpoints (``gradio_client``):

    /generate            (prompt, seed, steps, guidance, frames[, sampler, stride, fps, first_frame, model])
                         -> video, mp4, gif (None: see /gif), settings, preview, status
    /gif                 () -> the GIF of the session's last clip (made on request)
                         (first_frame: ``gradio_client.handle_file("image.png")``, image-to-video)
    /pyramid             (frames) -> plot
    /features            (step) -> image, plot, note
    /temporal_attention  (step, layer, head, mode, row, col, hide_diagonal) -> picker, matrix, offsets, distance
    /word_attention      (step, layer, average) -> image, plot
    /xt_slice            (row, step) -> x-t image, x0-hat filmstrip
    /export_npz          () -> .npz file
    /inpaint, /cinemagraph, /video_to_video   the Edit tab (see demo/editing.py)
    /compare             (prompt, seed) -> STUNet vs keyframe cascade, where a cascade is shipped (demo/compare.py)

The inspect endpoints read the caller's last clip (session state), so call /generate first
with the same ``Client``.
"""
from __future__ import annotations

import json
import logging
import struct
import threading
import time
from pathlib import Path

import gradio as gr

from . import gpu
from . import limits as L
from . import models
from .about import TEXT as ABOUT_TEXT
from .about import about_html
from .compare import build_compare_tab, compare_tab_for, wire_compare_tab
from .editing import EditTab, build_edit_tab, wire_edit_tab
from .intervene import InterveneTab, build_intervene_section, wire_intervene
from .errors import guarded
from .figures import layer_label
from .guard import guard_middleware
from .studio import (HEAD_MEAN, LAYER_ALL, MODE_MEAN, MODE_POINT, SAMPLER_LABELS, InspectViews, StepViews, Studio,
                     head_choices)
from .style import CSS, HEAD, theme
from stunet.inspection import layer_names

log = logging.getLogger("stunet.studio")

EXAMPLE_PROMPTS = [
    "a red circle moving right",
    "a blue square quickly spinning",
    "a green triangle bouncing",
    "a yellow circle slowly orbiting",
    "a purple square growing",
    "a white triangle moving up",
]


def launch_options() -> dict:
    """Keyword arguments for ``demo.launch()`` (Gradio 6: theme and css go here, not to Blocks)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from stunet.checkpoint import default_model_dir
    return dict(theme=theme(), css=CSS, head=HEAD, show_error=False, max_file_size=L.MAX_UPLOAD_BYTES,
                blocked_paths=[str(default_model_dir().resolve()), str(models.fast_model_dir().resolve()),
                               str(models.cascade_model_dir().resolve())],
                app_kwargs={"middleware": [guard_middleware()]})


# ----------------------------------------------------------------------------- the shared models
SERVER_WAIT_S = 30          # the background load waits at most this long for the server to start
AFTER_SERVER_S = 0.5        # ... and this long after it, so the first page is served without competing


def shared_pipeline(directory=None):
    """The process's one Pipeline of a checkpoint (default: ``STUNET_MODEL`` or ``assets/stunet-shapes``;
    ``demo.models.load``). Nothing is passed for the precision: ``$STUNET_PRECISION`` (default "auto") applies.
    """
    from stunet.checkpoint import default_model_dir
    return models.load(directory if directory is not None else default_model_dir())


def checkpoint_header(directory):
    """(config, tokenizer, parameter count) of a checkpoint, read without loading its weights.

    Cheap (two small JSON files and the safetensors header), so the page is built and served
    while the model itself loads in the background; ``load_pretrained`` checks it all again, strictly.
    """
    from stunet.checkpoint import VOCAB_NAME, WEIGHTS_NAME, read_config
    from stunet.text import Tokenizer
    d = Path(directory)
    config = read_config(d)
    tokenizer = Tokenizer.load(d / VOCAB_NAME)
    params = None
    try:
        with open(d / WEIGHTS_NAME, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(n, 16 * 2**20)))
        params = 0
        for k, v in header.items():
            if k != "__metadata__":
                count = 1
                for dim in v["shape"]:
                    count *= int(dim)
                params += count
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        params = None                       # the background load reports a bad file
    return config, tokenizer, params


def _warm_imports(studio=None):
    """Import the scheduler code and plotly's trace types, so the first Generate / Inspect does not pay;
    draw the page's first pyramid."""
    from stunet.diffusion import schedulers
    schedulers()   # under stunet's import lock: diffusers' lazy names are not thread-safe
    import numpy as np
    from . import figures
    if studio is not None:
        studio.initial_pyramid()
    figures.temporal_matrix_figure(np.eye(2), 2, "")
    figures.offset_figure(np.eye(2), "")
    figures.empty_figure("")


def _load_models(blocks, cascade: bool = False) -> None:
    """Load every model the page offers (the default first) and, with ``cascade``, the Compare tab's two."""
    blocks.studio.pipe                   # noqa: B018 - loads the default model
    for c in blocks.studio.choices[1:]:
        blocks.studio.pipe_for(c.key)
    if cascade and blocks.compare_tab is not None:
        blocks.compare_tab.cascade, blocks.compare_tab.stunet   # noqa: B018


def _background(blocks, load: bool) -> None:
    """Once the server is up (or after SERVER_WAIT_S): load the shared model if asked, then warm imports."""
    t0 = time.monotonic()
    while not getattr(blocks, "is_running", False) and time.monotonic() - t0 < SERVER_WAIT_S:
        time.sleep(0.05)
    time.sleep(AFTER_SERVER_S)
    try:
        if load:
            _load_models(blocks)
        _warm_imports(blocks.studio)
    except Exception:  # pragma: no cover - a request retries the load and reports the error
        log.exception("background model load / warm-up failed")


def build_demo(pipeline=None, warm: bool = True, *, queue_max_size: int | None = None,
               generate_concurrency: int | None = None, delete_cache: tuple[int, int] | None = None,
               janitor: bool = True, choices=None, loaders=None, cascade=None) -> gr.Blocks:
    """The studio's Blocks. The keyword arguments override the serving limits of ``demo.limits``
    (tests shrink the queue, or let several clips sample at once).

    Without ``pipeline``, the models offered are the full checkpoint and, when shipped, the fast one
    (``demo.models``), the default (``limits.DEFAULT_MODEL``) first. With ``pipeline`` (tests): that
    model, plus ``choices`` / ``loaders`` where given (``choices[0]`` describes ``pipeline``).
    ``cascade``: a loaded keyframe cascade for the Compare tab (tests); None: the shipped one if any
    (``demo.models.cascade_available``); False: no Compare tab."""
    queue_max_size = L.QUEUE_MAX_SIZE if queue_max_size is None else queue_max_size
    generate_concurrency = L.GENERATE_CONCURRENCY if generate_concurrency is None else generate_concurrency
    if pipeline is not None:
        cfg, tokenizer = pipeline.config, pipeline.tokenizer
        params = sum(p.numel() for p in pipeline.model.parameters())
        studio_kw = dict(pipeline=pipeline, choices=choices, loaders=loaders)
        choice = (choices or [models.ModelChoice(models.FULL, None, pipeline.defaults)])[0]
    else:           # the page is built from the checkpoints' headers; the weights load in the background
        from stunet.checkpoint import default_model_dir
        from stunet.device import resolve_device
        resolve_device()                # a bad $STUNET_DEVICE fails here, before anything is served
        choices = models.available(default_model_dir(), default=L.DEFAULT_MODEL)
        choice = choices[0]
        cfg, tokenizer, params = checkpoint_header(choice.directory)
        loaders = {c.key: (lambda d=c.directory: models.load(d)) for c in choices}
        studio_kw = dict(config=cfg, tokenizer=tokenizer, loader=loaders[choice.key], choices=choices,
                         loaders=loaders)
    d0 = choice.defaults
    window, factor = cfg.frames, cfg.temporal_factor
    examples = [[p, i, d0.steps, d0.guidance, window] for i, p in enumerate(EXAMPLE_PROMPTS)
                if not tokenizer.encode(p).unknown]
    studio = Studio(examples=examples, **studio_kw)
    t_layers, x_layers = layer_names(cfg)
    f_lo, f_hi = L.frames_range(factor, window)
    first_prompt = examples[0][0] if examples else ""

    with gr.Blocks(title="STUNet studio: how a space-time U-Net handles time",
                   delete_cache=delete_cache or L.GRADIO_CACHE_CLEANUP) as demo:
        record = gr.State(None, time_to_live=L.STATE_TTL_S)
        shown_features = gr.State(None)          # (clip id, step) of the feature view on screen
        inspected = gr.State(None)               # id of the clip the Inspect tab shows
        gr.Markdown("# STUNet studio\nGenerate a short clip with Lumiere's **space-time U-Net** "
                    "(arXiv 2401.12945), then look inside: how the network shrinks time along with space, "
                    "where temporal attention looks, and which words drive which pixels.")
        with gr.Tabs():
            # ================================================================ Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        prompt = gr.Textbox(label="Prompt", value=first_prompt, max_length=L.MAX_PROMPT_CHARS,
                                            placeholder="a red circle moving right", lines=1, max_lines=2,
                                            elem_id="prompt", info="Enter runs. Colour, shape, motion, speed.")
                        words_html = gr.HTML(studio.prompt_html(first_prompt), elem_id="prompt-words")
                        model_choice = gr.Radio([(c.label, c.key) for c in studio.choices], value=choice.key,
                                                label="Model", elem_id="model", visible=len(studio.choices) > 1,
                                                info="Fast: the distilled few-step model, one network pass per "
                                                     "step. Full: the 25-step model it was distilled from.")
                        with gr.Row():
                            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                            stop_btn = gr.Button("Stop", variant="secondary", elem_id="stop-btn", scale=1)
                        with gr.Accordion("Start from an image (optional)", open=False, elem_id="first-frame-box"):
                            first_frame = gr.Image(label="First frame", type="filepath", sources=["upload", "clipboard"],
                                                   image_mode="RGB", height=180, elem_id="first-frame",
                                                   buttons=[])
                            gr.Markdown(f"Image-to-video: the clip starts from this picture, scaled to "
                                        f"{cfg.width}×{cfg.height} (PNG, JPEG, GIF, WebP or BMP, up to "
                                        f"{L.MAX_UPLOAD_BYTES // 2**20} MB and {L.MAX_IMAGE_SIDE} px a side).",
                                        elem_classes="section-note")
                        with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                            with gr.Row(equal_height=False):
                                seed = gr.Number(label="Seed", value=L.DEFAULT_SEED, precision=0, minimum=L.MIN_SEED,
                                                 maximum=L.MAX_SEED, scale=3, elem_id="seed")
                                dice = gr.Button("Randomize", size="sm", scale=1, min_width=100, elem_id="randomize")
                            steps = gr.Slider(L.MIN_STEPS, L.MAX_STEPS, value=d0.steps, step=1,
                                              label="Denoising steps", elem_id="steps")
                            guidance = gr.Slider(L.MIN_GUIDANCE, L.MAX_GUIDANCE, value=d0.guidance, step=0.5,
                                                 label="Guidance (classifier-free)", elem_id="guidance")
                            sampler = gr.Dropdown([(SAMPLER_LABELS.get(s, s), s) for s in L.SAMPLERS],
                                                  value=d0.sampler, label="Sampler", elem_id="sampler")
                            frames = gr.Slider(f_lo, f_hi, value=window, step=factor, label="Frames",
                                               info=f"Multiples of {factor} (time is halved "
                                                    f"{factor.bit_length() - 1}×). Over {window} frames, "
                                                    f"overlapping {window}-frame windows are averaged "
                                                    "(MultiDiffusion).", elem_id="frames")
                            stride = gr.Dropdown([(f"{s}" + (" (every frame)" if s == 1 else " (faster motion)"), s)
                                                  for s in cfg.strides], value=L.DEFAULT_STRIDE,
                                                 label="Motion stride (frame-rate conditioning)", elem_id="stride",
                                                 info="The model is told the clip's frames are this many "
                                                      "source frames apart.")
                            fps = gr.Slider(L.MIN_FPS, L.MAX_FPS, value=L.DEFAULT_FPS, step=1,
                                            label="Playback frame rate (fps)", elem_id="fps")
                        ex = None
                        if examples:      # a model with another vocabulary may know none of these prompts
                            ex = gr.Examples(
                                [row + [d0.sampler, L.DEFAULT_STRIDE, L.DEFAULT_FPS, None, choice.key] for row in examples],
                                inputs=[prompt, seed, steps, guidance, frames, sampler, stride, fps, first_frame,
                                        model_choice],
                                visible_columns=[0], label="Examples: click to generate (cached after the first run)",
                                examples_per_page=12)
                        with gr.Accordion("Vocabulary", open=False):
                            gr.Markdown(studio.vocabulary_md())
                    with gr.Column(scale=6):
                        video = gr.Video(label="Clip", autoplay=True, loop=True, interactive=False, height=360,
                                         elem_id="clip", buttons=[])
                        status = gr.Markdown("Press **Generate**: the x0-hat preview below sharpens step by step.",
                                             label="status message", elem_id="status")
                        gr.Markdown("**x0-hat**, the clip the network predicts at each step (frames left to "
                                    "right, top to bottom):", elem_classes="section-note")
                        preview = gr.Image(label="x0-hat preview", show_label=False, format="png",
                                           interactive=False, elem_classes="pixelated", elem_id="preview",
                                           buttons=[])
                        with gr.Row():
                            mp4_btn = gr.DownloadButton("Download MP4", size="sm", elem_id="dl-mp4")
                            gif_make = gr.Button("Make a GIF", size="sm", elem_id="make-gif")
                            gif_btn = gr.DownloadButton("Download GIF", size="sm", elem_id="dl-gif", visible=False)
                        with gr.Accordion("Settings used (replayable)", open=False):
                            settings_json = gr.JSON(label="Settings", elem_id="settings")
                            replay_btn = gr.Button("Put these settings back in the form", size="sm")
                            snippet = gr.Markdown()

            # ================================================================ Edit (demo/editing.py)
            with gr.Tab("Edit", id="edit", elem_id="edit-tab"):
                edit_tab = EditTab(studio)
                # The edits' sampling runs on the GPU (ZeroGPU: in a worker process); the inputs, masks included,
                # are read before it, here, where the browser's drawn layers are.
                edit_tab._run = gpu.gpu(guarded(edit_tab._run), gpu.edit_duration(studio))
                edit_controls = build_edit_tab(edit_tab, first_prompt)

            # ================================================================ Inspect
            with gr.Tab("Inspect", id="inspect", elem_id="inspect-tab") as inspect_tab:
                inspect_info = gr.Markdown("No clip yet: **generate one** in the Generate tab, then everything "
                                           "below shows what happened inside the network while it was made (the "
                                           "clip is recorded when you open this tab: sampled again, same seed).",
                                           elem_id="inspect-info")
                step = gr.Slider(0, d0.steps - 1, value=d0.steps - 1, step=1, interactive=False,
                                 label="Denoising step (0 = pure noise, last = the clip)", elem_id="step",
                                 buttons=[])
                with gr.Accordion("The space-time pyramid", open=True):
                    gr.Markdown("Each row is a level on the clip-time axis. A box is one frame of that level, "
                                "as wide as the clip frames it stands for and as tall as its spatial size: "
                                "time shrinks along with space. Orange rows hold temporal attention. "
                                "Hover a row for its layers.", elem_classes="section-note")
                    pyramid_plot = gr.Plot(label="pyramid", show_label=False, elem_id="pyramid")  # filled on load
                with gr.Accordion("Feature maps", open=True):
                    features_note = gr.Markdown(label="note", elem_classes="section-note")
                    features_img = gr.Image(label="Each level's features per frame (PCA → RGB)", show_label=False,
                                            format="png",
                                            interactive=False, elem_classes="pixelated", elem_id="features",
                                            buttons=["download", "fullscreen"])
                    change_plot = gr.Plot(label="frame change", show_label=False, elem_id="feature-change")
                with gr.Accordion("Temporal attention", open=True):
                    gr.Markdown("Every spatial position attends over the frames of its level. Left: query frame × "
                                "key frame. Right: the same by frame offset (0 = itself), since the raw average is "
                                "mostly a diagonal band. Click the image to look at one position.",
                                elem_classes="section-note")
                    with gr.Row():
                        t_layer = gr.Dropdown([(layer_label(n), n) for n, _ in t_layers],
                                              value=t_layers[0][0] if t_layers else None, label="Layer",
                                              elem_id="t-layer")
                        head = gr.Dropdown(head_choices(t_layers[0][1] if t_layers else 0), value=HEAD_MEAN,
                                           label="Head", elem_id="t-head")
                        mode = gr.Radio([MODE_MEAN, MODE_POINT], value=MODE_MEAN, label="Positions",
                                        elem_id="t-mode")
                        hide_diag = gr.Checkbox(False, label="Hide the diagonal", elem_id="t-hide-diag")
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=2, min_width=220):
                            gr.Markdown("Click a position (all frames overlaid):", elem_classes="section-note")
                            picker = gr.Image(label="Position picker", show_label=False, format="png",
                                              interactive=False, elem_classes="pixelated", elem_id="picker",
                                              buttons=[])
                            with gr.Row():
                                pos_row = gr.Number(0, label="Row", precision=0, minimum=0, elem_id="pos-row")
                                pos_col = gr.Number(0, label="Column", precision=0, minimum=0, elem_id="pos-col")
                        with gr.Column(scale=4):
                            matrix_plot = gr.Plot(label="matrix", show_label=False, elem_id="t-matrix")
                        with gr.Column(scale=4):
                            offset_plot = gr.Plot(label="by offset", show_label=False, elem_id="t-offset")
                    distance_plot = gr.Plot(label="distance over steps", show_label=False, elem_id="t-distance")
                with gr.Accordion("Word attention (DAAM for video)", open=True):
                    gr.Markdown("Where each word of the prompt attends over space and time: text cross-attention "
                                "of every pixel of every frame, upsampled to the clip and averaged over layers; "
                                "the maps are normalised per word, the curves below are not.",
                                elem_classes="section-note")
                    with gr.Row():
                        x_layer = gr.Dropdown([("all layers (averaged)", LAYER_ALL)] +
                                              [(layer_label(n), n) for n in x_layers],
                                              value=LAYER_ALL, label="Layer", elem_id="x-layer")
                        average = gr.Checkbox(False, label="Average over all steps", elem_id="x-average")
                    words_img = gr.Image(label="Words × frames", show_label=False, format="png",
                                         interactive=False,
                                         elem_classes="pixelated", elem_id="word-maps",
                                         buttons=["download", "fullscreen"])
                    share_plot = gr.Plot(label="share per word", show_label=False, elem_id="word-share")
                with gr.Accordion("X-T slice and x0-hat over the steps", open=True):
                    gr.Markdown("One image row over time (Lumiere's figure 2): straight streaks are steady motion, "
                                "curves are acceleration, broken streaks are temporal incoherence. Below, the "
                                "predicted clean clip at the steps of the run.", elem_classes="section-note")
                    xt_row = gr.Slider(0, cfg.height - 1, value=cfg.height // 2, step=1, label="Image row",
                                       interactive=False, elem_id="xt-row")
                    with gr.Row(equal_height=False):
                        xt_img = gr.Image(label="X-T slice", show_label=False, format="png", interactive=False,
                                          elem_classes="pixelated", elem_id="xt", buttons=["download", "fullscreen"],
                                          scale=1)
                        film_img = gr.Image(label="x0-hat over the denoising steps", show_label=False, format="png",
                                            interactive=False, elem_classes="pixelated", elem_id="filmstrip",
                                            buttons=["download", "fullscreen"], scale=3)
                intervene_tab = InterveneTab(studio)            # Intervene, Follow a point, summaries (demo/intervene.py)
                intervene_controls = build_intervene_section(intervene_tab)
                with gr.Accordion("Download the recording", open=False):
                    gr.Markdown("Everything recorded for the last clip (features, temporal and word attention, "
                                "x0-hat per step, the clip and its settings) as one `.npz` (float16).",
                                elem_classes="section-note")
                    npz_btn = gr.Button("Export .npz", size="sm", elem_id="npz-btn")
                    npz_file = gr.File(label="Recording", interactive=False, elem_id="npz-file")

            # ================================================================ Compare (demo/compare.py)
            compare_tab = compare_tab_for(studio, cascade)
            if compare_tab is not None:
                with gr.Tab("Compare", id="compare", elem_id="compare-tab"):
                    compare_controls = build_compare_tab(compare_tab, first_prompt)

            # ================================================================ About
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT_TEXT)
                gr.HTML(about_html(cfg, params))

        # ==================================================================== events
        gen_inputs = [prompt, seed, steps, guidance, frames, sampler, stride, fps, first_frame, model_choice]
        gen_outputs = [video, mp4_btn, gif_btn, settings_json, preview, status, record]
        generate_fn = gpu.gpu(guarded(studio.generate), gpu.generate_duration(studio))    # ZeroGPU: on the GPU
        common = dict(preprocess=False, concurrency_limit=generate_concurrency, concurrency_id="generate",
                      show_progress="minimal", show_progress_on=[preview])
        inspect_common = dict(preprocess=False, concurrency_limit=L.INSPECT_CONCURRENCY, concurrency_id="inspect",
                              trigger_mode="always_last", show_progress="hidden")

        gen_event = gr.on([generate_btn.click, prompt.submit], generate_fn, gen_inputs, gen_outputs,
                          api_name="generate", api_description="Generate a clip: (prompt, seed, steps, guidance, "
                          "frames[, sampler, stride, fps, first_frame, model]) -> video, mp4, gif, settings, preview, "
                          "status (gif: None, made on request by /gif). model: 'full', 'one-pass' or 'fast' where offered (steps, guidance and sampler are "
                          "taken as given: pass the model's own, see /model_defaults).",
                          **common)
        gen_events = [gen_event]
        if ex is not None:
            gen_events.append(ex.load_input_event.then(generate_fn, gen_inputs, gen_outputs, api_visibility="private",
                                                       **common))
        stop_btn.click(lambda: "**Stopped.** Press Generate to start again.", None, status,
                       cancels=gen_events, api_visibility="private", queue=False)

        prompt.change(guarded(studio.prompt_html), prompt, words_html, queue=False, show_progress="hidden",
                      preprocess=False, api_visibility="private", trigger_mode="always_last")
        dice.click(studio.random_seed, None, seed, queue=False, api_visibility="private")
        model_choice.input(guarded(studio.model_defaults), model_choice, [steps, guidance, sampler], queue=False,
                           preprocess=False, api_name="model_defaults")
        replay_btn.click(guarded(studio.replay), record, gen_inputs, queue=False, preprocess=False,
                         api_visibility="private")

        features_fn = guarded(studio.view_features)
        temporal_fn = guarded(studio.view_temporal)
        words_fn = guarded(studio.view_words)
        xt_fn = guarded(studio.view_xt)
        f_in, f_out = [record, step], [features_img, change_plot, features_note]
        t_in = [record, step, t_layer, head, mode, pos_row, pos_col, hide_diag]
        t_out = [picker, matrix_plot, offset_plot, distance_plot]
        w_in, w_out = [record, step, x_layer, average], [words_img, share_plot]
        x_in, x_out = [record, xt_row, step], [xt_img, film_img]

        named = dict(inspect_info=inspect_info, step=step, t_layer=t_layer, head=head, mode=mode, x_layer=x_layer,
                     xt_row=xt_row, pyramid_plot=pyramid_plot, features_img=features_img, change_plot=change_plot,
                     features_note=features_note, picker=picker, matrix_plot=matrix_plot, offset_plot=offset_plot,
                     distance_plot=distance_plot, words_img=words_img, share_plot=share_plot, xt_img=xt_img,
                     film_img=film_img, shown_features=shown_features)
        all_out = [named[n] for n in InspectViews.names()]
        step_out = [named[n] for n in StepViews.names()]
        # Generate records nothing; opening Inspect records the session's clip (sampled again, same seed, hooks
        # attached: Studio.recording_of) and renders it, unless it is the clip already shown.
        studio.record_runner = gpu.gpu(guarded(studio.record), gpu.record_duration(studio))      # ZeroGPU: on the GPU
        inspect_tab.select(guarded(studio.open_inspect), [record, inspected], all_out + [inspected],
                           api_visibility="private", **{**inspect_common, "show_progress": "full"})
        for event in gen_events:
            event.success(studio.client_snippet, record, snippet, queue=False, api_visibility="private",
                          preprocess=False)
            event.success(lambda rec: gr.DownloadButton(visible=getattr(rec, "gif", None) is not None), record,
                          gif_btn, queue=False, api_visibility="private", preprocess=False)   # a new clip: no GIF yet
        gif_make.click(guarded(studio.make_gif), record, gif_btn, api_name="gif", preprocess=False,
                       concurrency_limit=1, concurrency_id="export").success(
            lambda: gr.DownloadButton(visible=True), None, gif_btn, queue=False, api_visibility="private")
        demo.unload(studio.release_session)
        wire_intervene(intervene_tab, intervene_controls, record, concurrency_limit=generate_concurrency)
        wire_edit_tab(edit_tab, edit_controls, record, concurrency_limit=generate_concurrency, generated=gen_events,
                      then=lambda e: e)       # Inspect renders the edited clip when it is opened
        if compare_tab is not None:
            wire_compare_tab(compare_tab, compare_controls, concurrency_limit=generate_concurrency)
        demo.load(guarded(studio.initial_pyramid), None, pyramid_plot, api_visibility="private",
                  **inspect_common)

        # inspect views: one public endpoint each, fired by their own controls
        gr.on([frames.release], guarded(studio.view_pyramid), frames, pyramid_plot, api_name="pyramid",
              **inspect_common)
        # One handler per trigger: Gradio 6.31 re-runs events forever when two "always_last" handlers share one.
        step_in = [record, step, t_layer, head, mode, pos_row, pos_col, hide_diag, x_layer, average, xt_row,
                   shown_features]
        gr.on([step.input], guarded(lambda *a: studio.view_step(*a).values()), step_in, step_out,
              api_visibility="private", **inspect_common)
        gr.on([head.input, mode.input, hide_diag.input, pos_row.submit, pos_col.submit],
              temporal_fn, t_in, t_out, api_name="temporal_attention", **inspect_common)
        gr.on([x_layer.input, average.input], words_fn, w_in, w_out, api_name="word_attention", **inspect_common)
        gr.on([xt_row.input], xt_fn, x_in, x_out, api_name="xt_slice", **inspect_common)
        api_only = gr.Button(visible=False)          # the features view has no control of its own but the step
        gr.on([api_only.click], features_fn, f_in, f_out, api_name="features", **inspect_common)
        picker.select(guarded(studio.pick), [record, t_layer], [pos_row, pos_col, mode], preprocess=False,
                      api_visibility="private", queue=False).then(
            temporal_fn, t_in, t_out, api_visibility="private", **inspect_common)
        t_layer.input(lambda rec, layer: studio.head_update(rec, layer), [record, t_layer], head, queue=False,
                      preprocess=False, api_visibility="private").then(
            temporal_fn, t_in, t_out, api_visibility="private", **inspect_common)
        npz_btn.click(guarded(studio.export_npz), record, npz_file, api_name="export_npz", preprocess=False,
                      concurrency_limit=1, concurrency_id="export")

    demo.queue(max_size=queue_max_size, default_concurrency_limit=L.INSPECT_CONCURRENCY)
    demo.studio = studio          # for tests and tools
    demo.edit_tab = edit_tab
    demo.compare_tab = compare_tab
    studio.attach(demo, janitor=janitor)
    now = pipeline is None and gpu.ZERO_GPU       # ZeroGPU: the models go to CUDA now, in this thread (demo.gpu)
    if now:
        _load_models(demo, cascade=True)
    if warm or pipeline is None:
        threading.Thread(target=_background, args=(demo, pipeline is None and not now),
                         name="stunet-background-load", daemon=True).start()
    return demo


def __getattr__(name):
    # ``demo`` is built on first access (its model loads in the background), so importing this module is cheap.
    if name == "demo":
        d = build_demo()
        globals()["demo"] = d
        return d
    raise AttributeError(name)
