"""The studio's Generate tab: the prompt form, the clip and its downloads (layout and events).

``build_generate_tab`` lays the tab out (call inside ``gr.Tab``) and returns its ``GenerateControls``;
``wire_generate_tab`` adds its events: the public ``/generate``, ``/model_defaults`` and ``/gif`` endpoints and
the page-only helpers (Stop, prompt colouring, Randomize, replay, the client snippet). The handlers are
``demo.studio.Studio``'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import gpu
from . import limits as L
from .errors import guarded
from .models import LABELS, NO_STYLE
from .studio import SAMPLER_LABELS, Studio

EXAMPLE_PROMPTS = [
    "a red circle moving right",
    "a blue square quickly spinning",
    "a green triangle bouncing",
    "a yellow circle slowly orbiting",
    "a purple square growing",
    "a white triangle moving up",
]


@dataclass
class GenerateControls:
    """The Generate tab's components (built by ``build_generate_tab``)."""
    prompt: Any
    words_html: Any
    model_choice: Any
    generate_btn: Any
    stop_btn: Any
    first_frame: Any
    seed: Any
    dice: Any
    steps: Any
    guidance: Any
    sampler: Any
    frames: Any
    stride: Any
    fps: Any
    style: Any                    # the Style choice: "None" or a style's name (demo.models.Styles)
    style_strength: Any
    upscale: Any                  # the Upscale choice (issue 34): the SSR stage after the clip
    examples: Any                 # gr.Examples, or None where the model knows none of EXAMPLE_PROMPTS
    video: Any
    status: Any
    preview: Any
    mp4_btn: Any
    gif_make: Any
    gif_btn: Any
    settings_json: Any
    replay_btn: Any
    snippet: Any

    @property
    def inputs(self) -> list:
        """``/generate``'s inputs, in its API order (also what ``replay`` and the examples fill)."""
        return [self.prompt, self.seed, self.steps, self.guidance, self.frames, self.sampler, self.stride, self.fps,
                self.first_frame, self.model_choice, self.style, self.style_strength, self.upscale]


def example_rows(tokenizer, defaults, window: int) -> list[list]:
    """(prompt, seed, steps, guidance, frames) of each example prompt the model's vocabulary knows."""
    return [[p, i, defaults.steps, defaults.guidance, window] for i, p in enumerate(EXAMPLE_PROMPTS)
            if not tokenizer.encode(p).unknown]


def guidance_note(choices) -> str | None:
    """The Guidance slider's note where a model guides on a schedule (its sampling.json's interval and its scale
    outside it, ``stunet.denoiser``): what the slider sets, and what the other steps get."""
    parts = []
    for m in choices:
        d = m.defaults
        if d.guidance_interval is not None:
            lo, hi = d.guidance_interval
            rest = f"{d.guidance_elsewhere:g}" if d.guidance_elsewhere != 1 else "1 (unguided)"
            noisiest = " (the noisiest, where the motion is decided)" if hi == 999 else ""
            parts.append(f"{LABELS.get(m.key, m.key)} model: this scale at diffusion timesteps {lo}-{hi}{noisiest}, "
                         f"{rest} at the others")
    return "; ".join(parts) + "." if parts else None


def _form(studio: Studio, cfg, choice, first_prompt: str) -> dict:
    """The prompt, the model picker, Generate / Stop, the first frame and the Advanced settings."""
    d0, window, factor = choice.defaults, cfg.frames, cfg.temporal_factor
    f_lo, f_hi = L.frames_range(factor, window)
    c = {}
    c["prompt"] = gr.Textbox(label="Prompt", value=first_prompt, max_length=L.MAX_PROMPT_CHARS,
                             placeholder="a red circle moving right", lines=1, max_lines=2,
                             elem_id="prompt", info="Enter runs. Colour, shape, motion, speed.")
    c["words_html"] = gr.HTML(studio.prompt_html(first_prompt), elem_id="prompt-words")
    c["model_choice"] = gr.Radio([(m.label, m.key) for m in studio.choices], value=choice.key,
                                 label="Model", elem_id="model", visible=len(studio.choices) > 1,
                                 info="Fast: the distilled few-step model, one network pass per "
                                      "step. Full: the 25-step model it was distilled from.")
    _upscale(studio, c)
    with gr.Row():
        c["generate_btn"] = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
        c["stop_btn"] = gr.Button("Stop", variant="secondary", elem_id="stop-btn", scale=1)
    with gr.Accordion("Start from an image (optional)", open=False, elem_id="first-frame-box"):
        c["first_frame"] = gr.Image(label="First frame", type="filepath", sources=["upload", "clipboard"],
                                    image_mode="RGB", height=180, elem_id="first-frame", buttons=[])
        gr.Markdown(f"Image-to-video: the clip starts from this picture, scaled to "
                    f"{cfg.width}×{cfg.height} (PNG, JPEG, GIF, WebP or BMP, up to "
                    f"{L.MAX_UPLOAD_BYTES // 2**20} MB and {L.MAX_IMAGE_SIDE} px a side).",
                    elem_classes="section-note")
    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
        with gr.Row(equal_height=False):
            c["seed"] = gr.Number(label="Seed", value=L.DEFAULT_SEED, precision=0, minimum=L.MIN_SEED,
                                  maximum=L.MAX_SEED, scale=3, elem_id="seed")
            c["dice"] = gr.Button("Randomize", size="sm", scale=1, min_width=100, elem_id="randomize")
        c["steps"] = gr.Slider(L.MIN_STEPS, L.MAX_STEPS, value=d0.steps, step=1,
                               label="Denoising steps", elem_id="steps")
        c["guidance"] = gr.Slider(L.MIN_GUIDANCE, L.MAX_GUIDANCE, value=d0.guidance, step=0.5,
                                  label="Guidance (classifier-free)", info=guidance_note(studio.choices),
                                  elem_id="guidance")
        c["sampler"] = gr.Dropdown([(SAMPLER_LABELS.get(s, s), s) for s in L.SAMPLERS],
                                   value=d0.sampler, label="Sampler", elem_id="sampler")
        c["frames"] = gr.Slider(f_lo, f_hi, value=window, step=factor, label="Frames",
                                info=f"Multiples of {factor} (time is halved "
                                     f"{factor.bit_length() - 1}×). Over {window} frames, "
                                     f"overlapping {window}-frame windows are averaged "
                                     "(MultiDiffusion).", elem_id="frames")
        c["stride"] = gr.Dropdown([(f"{s}" + (" (every frame)" if s == 1 else " (faster motion)"), s)
                                   for s in cfg.strides], value=L.DEFAULT_STRIDE,
                                  label="Motion stride (frame-rate conditioning)", elem_id="stride",
                                  info="The model is told the clip's frames are this many "
                                       "source frames apart.")
        c["fps"] = gr.Slider(L.MIN_FPS, L.MAX_FPS, value=L.DEFAULT_FPS, step=1,
                             label="Playback frame rate (fps)", elem_id="fps")
        _style(studio, c)
    return c


def _upscale(studio: Studio, c: dict) -> None:
    """The Upscale choice (issue 34; into ``c``): on where the server has an SSR model for the clips
    (``limits.DEFAULT_UPSCALE``); off, and not offered, where it has none."""
    up = studio.upscaler
    if up.available:
        note = (f"Lumiere's SSR stage: the clip lifted to {up.size}×{up.size} by a second diffusion model, on "
                "overlapping 8-frame windows reconciled at every step (MultiDiffusion). Inspect shows the base clip.")
    else:
        note = "Not offered here: no SSR model (read from $STUNET_SSR or assets/stunet-ssr)."
    c["upscale"] = gr.Checkbox(value=L.DEFAULT_UPSCALE and up.available, interactive=up.available,
                               label=f"Upscale to {up.size or 128}×{up.size or 128}", info=note, elem_id="upscale")


def _style(studio: Studio, c: dict) -> None:
    """The Style choice and its strength (issue 33; into ``c``): "None" alone where no style is shipped."""
    names = studio.styles.names
    note = ("A style fine-tuned into the spatial (image) weights; the temporal layers, and so the motion, "
            "are the model's own. Strength mixes the weights: 0 is the model itself, 1 the style."
            if names else "No styles here (they are read from $STUNET_STYLES or assets/stunet-shapes-styles).")
    c["style"] = gr.Dropdown([NO_STYLE, *names], value=NO_STYLE, label="Style", elem_id="style", info=note)
    c["style_strength"] = gr.Slider(L.MIN_STYLE_STRENGTH, L.MAX_STYLE_STRENGTH, value=L.DEFAULT_STYLE_STRENGTH,
                                    step=L.STYLE_STRENGTH_STEP, label="Style strength", elem_id="style-strength")


def _result(c: dict) -> None:
    """The clip, the status, the x0-hat preview, the downloads and the settings used (into ``c``)."""
    c["video"] = gr.Video(label="Clip", autoplay=True, loop=True, interactive=False, height=360,
                          elem_id="clip", buttons=[])
    c["status"] = gr.Markdown("Press **Generate**: the x0-hat preview below sharpens step by step.",
                              label="status message", elem_id="status")
    gr.Markdown("**x0-hat**, the clip the network predicts at each step (frames left to "
                "right, top to bottom):", elem_classes="section-note")
    c["preview"] = gr.Image(label="x0-hat preview", show_label=False, format="png",
                            interactive=False, elem_classes="pixelated", elem_id="preview", buttons=[])
    with gr.Row():
        c["mp4_btn"] = gr.DownloadButton("Download MP4", size="sm", elem_id="dl-mp4")
        c["gif_make"] = gr.Button("Make a GIF", size="sm", elem_id="make-gif")
        c["gif_btn"] = gr.DownloadButton("Download GIF", size="sm", elem_id="dl-gif", visible=False)
    with gr.Accordion("Settings used (replayable)", open=False):
        c["settings_json"] = gr.JSON(label="Settings", elem_id="settings")
        c["replay_btn"] = gr.Button("Put these settings back in the form", size="sm")
        c["snippet"] = gr.Markdown()


def build_generate_tab(studio: Studio, cfg, choice, examples: list[list], first_prompt: str) -> GenerateControls:
    """The Generate tab's layout (call inside ``gr.Tab``): the form left, the clip right. ``choice``: the
    default ``demo.models.ModelChoice``; ``examples``: ``example_rows``."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            c = _form(studio, cfg, choice, first_prompt)
            c["examples"] = None
            if examples:      # a model with another vocabulary may know none of these prompts
                c["examples"] = gr.Examples(
                    [row + [choice.defaults.sampler, L.DEFAULT_STRIDE, L.DEFAULT_FPS, None, choice.key]
                     for row in examples],
                    inputs=[c[n] for n in ("prompt", "seed", "steps", "guidance", "frames", "sampler", "stride",
                                           "fps", "first_frame", "model_choice")],
                    visible_columns=[0], label="Examples: click to generate (cached after the first run)",
                    examples_per_page=12)
            with gr.Accordion("Vocabulary", open=False):
                gr.Markdown(studio.vocabulary_md())
        with gr.Column(scale=6):
            _result(c)
    return GenerateControls(**c)


def wire_generate_tab(studio: Studio, c: GenerateControls, record, *, concurrency_limit: int) -> list:
    """The Generate tab's events; returns the events that make a clip (the button / Enter, an example), which
    the Edit tab follows."""
    gen_inputs = c.inputs
    gen_outputs = [c.video, c.mp4_btn, c.gif_btn, c.settings_json, c.preview, c.status, record]
    generate_fn = gpu.gpu(guarded(studio.generate), gpu.generate_duration(studio))    # ZeroGPU: on the GPU
    common = dict(preprocess=False, concurrency_limit=concurrency_limit, concurrency_id="generate",
                  show_progress="minimal", show_progress_on=[c.preview])

    gen_event = gr.on([c.generate_btn.click, c.prompt.submit], generate_fn, gen_inputs, gen_outputs,
                      api_name="generate", api_description="Generate a clip: (prompt, seed, steps, guidance, "
                      "frames[, sampler, stride, fps, first_frame, model, style, style_strength, upscale]) -> video, mp4, gif, "
                      "settings, preview, status (gif: None, made on request by /gif). model: 'full', 'one-pass' or "
                      "'fast' where offered (steps, guidance and sampler are taken as given: pass the model's own, "
                      "see /model_defaults). style: 'None' (the default) or a style offered, its spatial weights "
                      "mixed in at style_strength (0 to 1, default 1). upscale: lift the clip to 128x128 with the SSR "
                      "model (default true where the server has one; the video, MP4 and GIF are then the large "
                      "clip; false keeps the model's own size).",
                      **common)
    gen_events = [gen_event]
    if c.examples is not None:
        gen_events.append(c.examples.load_input_event.then(generate_fn, gen_inputs, gen_outputs,
                                                           api_visibility="private", **common))
    c.stop_btn.click(lambda: "**Stopped.** Press Generate to start again.", None, c.status,
                     cancels=gen_events, api_visibility="private", queue=False)

    c.prompt.change(guarded(studio.prompt_html), c.prompt, c.words_html, queue=False, show_progress="hidden",
                    preprocess=False, api_visibility="private", trigger_mode="always_last")
    c.dice.click(studio.random_seed, None, c.seed, queue=False, api_visibility="private")
    c.model_choice.input(guarded(studio.model_defaults), c.model_choice, [c.steps, c.guidance, c.sampler],
                         queue=False, preprocess=False, api_name="model_defaults")
    c.replay_btn.click(guarded(studio.replay), record, gen_inputs, queue=False, preprocess=False,
                       api_visibility="private")
    return gen_events


def wire_generate_results(studio: Studio, c: GenerateControls, record, generated: list) -> None:
    """After each of the ``generated`` events: the client snippet, the GIF download hidden (a new clip has no
    GIF yet); *Make a GIF*, the public ``/gif``."""
    for event in generated:
        event.success(studio.client_snippet, record, c.snippet, queue=False, api_visibility="private",
                      preprocess=False)
        event.success(lambda rec: gr.DownloadButton(visible=getattr(rec, "gif", None) is not None), record,
                      c.gif_btn, queue=False, api_visibility="private", preprocess=False)
    c.gif_make.click(guarded(studio.make_gif), record, c.gif_btn, api_name="gif", preprocess=False,
                     concurrency_limit=1, concurrency_id="export").success(
        lambda: gr.DownloadButton(visible=True), None, c.gif_btn, queue=False, api_visibility="private")
