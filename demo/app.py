"""The studio's Blocks: ``build_demo(pipeline=None)`` and a lazily built module-level ``demo``.

    from demo.app import demo, launch_options
    demo.launch(**launch_options())

The model is loaded once per process (``shared_pipeline``) and shared read-only by all
requests; ``build_demo`` never samples. Without a pipeline, ``build_demo`` builds the page from
the checkpoint's header (``checkpoint_header``: config, vocabulary, parameter count) and the
weights load in a background thread once the server is up, so the page is served first; the
plotting and diffusers imports are warmed there too. Public API endpoints (``gradio_client``):

    /generate            (prompt, seed, steps, guidance, frames[, sampler, stride, fps, first_frame, model,
                         style, style_strength])
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
with the same ``Client``. One module a tab holds its layout and events: Generate ``demo.generate_tab``,
Edit ``demo.editing``, Inspect ``demo.inspect_tab`` (with ``demo.intervene``), Compare ``demo.compare``.
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
from .editing import EditControls, EditTab, build_edit_tab, wire_edit_tab
from .errors import guarded
from .generate_tab import build_generate_tab, example_rows, wire_generate_results, wire_generate_tab
from .guard import guard_middleware
from .inspect_tab import INSPECT_EVENT, build_inspect_tab, wire_inspect_open, wire_inspect_views
from .intervene import wire_intervene
from .studio import Studio
from .style import CSS, HEAD, theme

log = logging.getLogger("stunet.studio")


def launch_options() -> dict:
    """Keyword arguments for ``demo.launch()`` (Gradio 6: theme and css go here, not to Blocks)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from stunet.checkpoint import default_model_dir
    return dict(theme=theme(), css=CSS, head=HEAD, show_error=False, max_file_size=L.MAX_UPLOAD_BYTES,
                blocked_paths=[str(default_model_dir().resolve()), str(models.fast_model_dir().resolve()),
                               str(models.cascade_model_dir().resolve()), str(models.styles_dir().resolve())],
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


def _page_models(pipeline, choices, loaders) -> tuple:
    """(config, tokenizer, parameter count, default ``ModelChoice``, ``Studio`` keyword arguments) of the page.

    With ``pipeline`` (tests): that model, plus ``choices`` / ``loaders`` where given. Without: the page is built
    from the checkpoints' headers and the weights load in the background (``demo.models.available``)."""
    if pipeline is not None:
        cfg, tokenizer = pipeline.config, pipeline.tokenizer
        params = sum(p.numel() for p in pipeline.model.parameters())
        studio_kw = dict(pipeline=pipeline, choices=choices, loaders=loaders)
        choice = (choices or [models.ModelChoice(models.FULL, None, pipeline.defaults)])[0]
        return cfg, tokenizer, params, choice, studio_kw
    from stunet.checkpoint import default_model_dir
    from stunet.device import resolve_device
    resolve_device()                # a bad $STUNET_DEVICE fails here, before anything is served
    choices = models.available(default_model_dir(), default=L.DEFAULT_MODEL)
    choice = choices[0]
    cfg, tokenizer, params = checkpoint_header(choice.directory)
    loaders = {c.key: (lambda d=c.directory: models.load(d)) for c in choices}
    studio_kw = dict(config=cfg, tokenizer=tokenizer, loader=loaders[choice.key], choices=choices, loaders=loaders)
    return cfg, tokenizer, params, choice, studio_kw


def _edit_tab(studio: Studio, first_prompt: str) -> tuple[EditTab, EditControls]:
    """The Edit tab (demo/editing.py), its sampling on the GPU (ZeroGPU: in a worker process); the inputs, masks
    included, are read before it, here, where the browser's drawn layers are."""
    with gr.Tab("Edit", id="edit", elem_id="edit-tab"):
        edit_tab = EditTab(studio)
        edit_tab._run = gpu.gpu(guarded(edit_tab._run), gpu.edit_duration(studio))
        return edit_tab, build_edit_tab(edit_tab, first_prompt)


def build_demo(pipeline=None, warm: bool = True, *, queue_max_size: int | None = None,
               generate_concurrency: int | None = None, delete_cache: tuple[int, int] | None = None,
               janitor: bool = True, choices=None, loaders=None, cascade=None, styles=None, ssr=None) -> gr.Blocks:
    """The studio's Blocks. The keyword arguments override the serving limits of ``demo.limits``
    (tests shrink the queue, or let several clips sample at once).

    Without ``pipeline``, the models offered are the full checkpoint and, when shipped, the fast one
    (``demo.models``), the default (``limits.DEFAULT_MODEL``) first. With ``pipeline`` (tests): that
    model, plus ``choices`` / ``loaders`` where given (``choices[0]`` describes ``pipeline``).
    ``cascade``: a loaded keyframe cascade for the Compare tab (tests); None: the shipped one if any
    (``demo.models.cascade_available``); False: no Compare tab. ``styles``: the styles folder, or {name: style
    directory} (tests); None: ``$STUNET_STYLES`` or ``assets/stunet-shapes-styles`` (``demo.models.available_styles``).
    ``ssr``: the SSR model directory of the Upscale choice; None: ``$STUNET_SSR`` or ``assets/stunet-ssr``
    (``demo.models.Upscaler``).

    One tab a module: Generate (``demo.generate_tab``), Edit (``demo.editing``), Inspect (``demo.inspect_tab``,
    with ``demo.intervene``'s instruments), Compare (``demo.compare``), About (``demo.about``)."""
    queue_max_size = L.QUEUE_MAX_SIZE if queue_max_size is None else queue_max_size
    generate_concurrency = L.GENERATE_CONCURRENCY if generate_concurrency is None else generate_concurrency
    cfg, tokenizer, params, choice, studio_kw = _page_models(pipeline, choices, loaders)
    examples = example_rows(tokenizer, choice.defaults, cfg.frames)
    if not isinstance(styles, dict):
        styles = models.available_styles(styles)
    studio = Studio(examples=examples, styles=styles, ssr=ssr, **studio_kw)
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
            with gr.Tab("Generate", id="generate"):
                generate = build_generate_tab(studio, cfg, choice, examples, first_prompt)
            edit_tab, edit_controls = _edit_tab(studio, first_prompt)
            inspect = build_inspect_tab(studio, cfg, choice.defaults.steps)
            compare_tab = compare_tab_for(studio, cascade)
            if compare_tab is not None:
                with gr.Tab("Compare", id="compare", elem_id="compare-tab"):
                    compare_controls = build_compare_tab(compare_tab, first_prompt)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT_TEXT)
                gr.HTML(about_html(cfg, params))

        # ==================================================================== events
        gen_events = wire_generate_tab(studio, generate, record, concurrency_limit=generate_concurrency)
        wire_inspect_open(studio, inspect, record, inspected, shown_features)
        wire_generate_results(studio, generate, record, gen_events)
        demo.unload(studio.release_session)
        wire_intervene(inspect.intervene_tab, inspect.intervene, record, concurrency_limit=generate_concurrency)
        wire_edit_tab(edit_tab, edit_controls, record, concurrency_limit=generate_concurrency, generated=gen_events,
                      then=lambda e: e)       # Inspect renders the edited clip when it is opened
        if compare_tab is not None:
            wire_compare_tab(compare_tab, compare_controls, concurrency_limit=generate_concurrency)
        demo.load(guarded(studio.initial_pyramid), None, inspect.pyramid_plot, api_visibility="private",
                  **INSPECT_EVENT)
        wire_inspect_views(studio, inspect, record, shown_features, generate.frames)

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
