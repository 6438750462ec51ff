"""The studio's Compare tab: one prompt and seed through STUNet and the keyframe cascade, side by side (issue 18).

Offered only where a cascade checkpoint is shipped (``demo.models.cascade_available``: ``$STUNET_CASCADE_MODEL``,
default ``assets/stunet-cascade``); without one the studio has no Compare tab and no ``/compare`` endpoint.

* the two clips as ONE animation (STUNet left, cascade right, the cascade's keyframes bordered in amber), so
  they always play in sync. The STUNet is the one trained on the cascade's budget when the cascade folder ships it
  (``stunet.shapes.compare.equal_budget_stunet``: the fair pair of ``stunet compare``), else the studio's own;
* their X-T slices (``stunet.analysis.xt_slice``) through each clip's object row, the cascade's keyframe rows
  ticked;
* under each clip, what the periodic detectors measure (``stunet.shapes.compare.measure``: rate, period, sense,
  right / reversed against the prompt);
* the precomputed ``rate_error.png`` (and ``results.json``'s verdict) of ``stunet compare`` when the cascade
  folder ships them.

API endpoint (``gradio_client``): ``/compare (prompt, seed) -> video, xt, stunet, cascade, measurements, status``.
Guards as the other tabs: prompt and seed checked (``demo.limits``), the sampling queue shared with Generate (one
run at a time), errors through ``demo.errors.guarded``; each model's run is stopped past the job deadline
(``limits.job_deadline_s``), as Generate's.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from stunet.pipeline import Settings
from stunet.shapes import compare as C
from stunet.video import write_video

from . import limits as L
from . import models
from .errors import guarded
from .gpu import compare_duration, gpu
from .job_clock import JobClock
from .studio import Studio, md_escape, slug

log = logging.getLogger("stunet.studio")

DEFAULT_PROMPT = "a blue square quickly spinning"
INTRO = ("Lumiere's central claim, measured: **STUNet** makes all 32 frames at once, while a **keyframe cascade** "
         "makes a keyframe every 4th frame and fills the frames between (temporal super-resolution). Motion faster "
         "than half a cycle per keyframe interval cannot survive keyframes: a square turning 60° per keyframe reads "
         "as −30°, turning the wrong way. Same prompt, same seed, both models; the cascade's keyframes are marked "
         "in amber.")


@dataclass
class CompareControls:
    prompt: Any
    seed: Any
    run_btn: Any
    video: Any
    xt: Any
    stunet_md: Any
    cascade_md: Any
    measurements: Any
    status: Any


def shipped_report(directory: Path | None) -> tuple[np.ndarray | None, str]:
    """(``rate_error.png`` as pixels or None, its caption) from a cascade folder's precomputed ``stunet compare``."""
    if directory is None or not (Path(directory) / "rate_error.png").is_file():
        return None, ("No precomputed comparison ships with this cascade: `python -m stunet compare --stunet DIR "
                      "--cascade DIR --out FOLDER` writes `rate_error.png` and `results.json`; put them in the cascade "
                      "folder to show them here.")
    from PIL import Image
    d = Path(directory)
    with Image.open(d / "rate_error.png") as im:
        image = np.asarray(im.convert("RGB"))
    caption = C.PLOT_CAPTION
    try:
        result = json.loads((d / "results.json").read_text())
        caption += " " + C.claim_text(result) + " " + C.sanity_text(result)   # the table's verdict, said once
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return image, caption


class CompareTab:
    """The Compare tab's handler, on a ``Studio`` (its STUNet pipeline, output files, limits) and a cascade."""

    def __init__(self, studio: Studio, loader: Callable[[], Any], directory: Path | None = None,
                 stunet_loader: Callable[[], Any] | None = None):
        self.studio = studio
        self._loader = loader
        self._cascade = None
        self.directory = directory
        self._stunet_loader = stunet_loader       # None: the studio's pipeline
        self._stunet = None
        self.now = time.perf_counter              # the job clock's time source (demo.job_clock; tests: a fake one)

    @property
    def equal_budget(self) -> bool:
        """Whether the left clip comes from the STUNet trained on the cascade's budget (else the studio's model)."""
        return self._stunet_loader is not None

    @property
    def stunet_label(self) -> str:
        return "STUNet, same training budget" if self.equal_budget else "STUNet (the studio's model)"

    @property
    def stunet(self):
        if self._stunet_loader is None:
            return self.studio.pipe
        if self._stunet is None:
            self._stunet = self._stunet_loader()
        return self._stunet

    @property
    def cascade(self):
        if self._cascade is None:
            self._cascade = self._loader()
        return self._cascade

    def check(self, prompt, seed) -> tuple[str, int]:
        prompt = L.check_prompt(prompt)
        L.check_words(self.studio.tok, prompt)
        return prompt, L.check_int("Seed", seed, L.MIN_SEED, L.MAX_SEED)

    def compare(self, prompt, seed, progress=gr.Progress()):
        """Both models on (prompt, seed): the combined clip, the X-T slices, the measurements and a status line."""
        prompt, seed = self.check(prompt, seed)
        studio = self.studio
        studio._cleanup()
        progress(0, desc="Loading the cascade" if self._cascade is None else "Keyframes, then the frames between")
        cascade = self.cascade
        kf = C.keyframe_indices(cascade)
        frames = kf[-1] + (kf[1] - kf[0])
        t0 = time.perf_counter()
        cas = cascade(Settings(prompt, seed=seed), callback=self._stepper("Cascade", 0.0, 0.5, progress))
        t1 = time.perf_counter()
        progress(0.5, desc="STUNet: the whole clip at once")
        st = self.stunet(Settings(prompt, seed=seed, frames=frames),
                         callback=self._stepper("STUNet", 0.5, 1.0, progress))
        t2 = time.perf_counter()
        a, b = np.asarray(st.video), np.asarray(cas.video)
        if len(a) != len(b):
            raise RuntimeError(f"STUNet made {len(a)} frames, the cascade {len(b)}")
        progress(1.0, desc="Measuring and encoding")
        both = C.side_by_side(a, C.mark_keyframes(b, kf))
        d = studio.files.request_dir()
        name = f"stunet-compare-{slug(prompt)}-seed{seed}"
        scale = max(1, L.VIDEO_SIDE // both.shape[2])
        video = write_video(d / f"{name}.mp4", both, fps=L.DEFAULT_FPS, scale=scale)
        xt, rows = C.xt_pair(a, b, kf, scale=max(1, 256 // max(len(a), a.shape[2])))
        xt_path = d / f"{name}-xt.png"
        from PIL import Image
        Image.fromarray(xt).save(xt_path)
        ms = {"stunet": C.measure(a, prompt), "cascade": C.measure(b, prompt)}
        info = {"prompt": prompt, "seed": seed, "frames": len(a), "keyframes": kf, "xt_rows": list(rows),
                "stunet_model": "equal budget" if self.equal_budget else "studio",
                "seconds": {"stunet": round(t2 - t1, 2), "cascade": round(t1 - t0, 2)}, **ms}
        studio.prune_cache()
        status = (f"**Done**: **{md_escape(prompt)}**, seed {seed}: STUNet {t2 - t1:.1f} s, cascade {t1 - t0:.1f} s · "
                  f"{len(a)} frames, keyframes every {kf[1] - kf[0]}.")
        return (str(video), str(xt_path), self.measure_md(self.stunet_label, ms["stunet"]),
                self.measure_md("Cascade", ms["cascade"]), info, status)

    def _stepper(self, who: str, lo: float, hi: float, progress):
        """A sampling callback: progress from ``lo`` to ``hi``, and the Generate tab's job limit (stopped once past,
        or projected past, ``limits.job_deadline_s`` of its first step's pace: ``demo.job_clock``), counted from
        now."""
        clock = JobClock(lambda projected, deadline: (
            f"This comparison would take about {projected / 60:.1f} minutes, over this server's limit "
            f"({deadline / 60:.1f} minutes here): try again when the server is less busy."), now=self.now)

        def step(out):
            k, n = out.step + 1, out.num_steps
            clock.step(k, n)
            progress(lo + (hi - lo) * k / n, desc=f"{who}: step {k}/{n}")
        return step

    @staticmethod
    def measure_md(who: str, m: dict) -> str:
        if not m.get("scorable") or not m.get("measurable"):
            return f"**{who}**: {md_escape(m['text'])}"
        verdict = "✅ right" if m["right"] else ("↩️ reversed" if m["reversed"] else "❌ wrong")
        rate = f"{m['rate']:.3f}" if m["motion"] == "bouncing" else f"{m['rate']:.2f}"
        return (f"**{who}**: {verdict} · rate {rate} {m['unit']} · period {m['period']:.1f} frames "
                f"(prompt {m['expected_period']:.1f}) · sense {m['direction'] or 'undecided'} "
                f"(prompt {m['expected_direction']}) · rate error {100 * m['rate_error']:.0f} %")


def compare_tab_for(studio: Studio, cascade=None) -> CompareTab | None:
    """The tab on ``cascade`` (a loaded cascade: tests, tools), else on the shipped one; None (no tab) without one
    or with ``cascade=False``."""
    if cascade is False:
        return None
    if cascade is not None:
        return CompareTab(studio, lambda: cascade)
    d = models.cascade_available()
    if d is None:
        return None
    same = C.equal_budget_stunet(d)
    return CompareTab(studio, lambda: models.load_cascade(d), d,
                      stunet_loader=(lambda: models.load(same)) if same is not None else None)


def build_compare_tab(tab: CompareTab, prompt_value: str = "") -> CompareControls:
    """The Compare tab's layout (call inside ``gr.Tab``)."""
    if not tab.studio.tok.encode(DEFAULT_PROMPT).unknown:
        prompt_value = DEFAULT_PROMPT
    gr.Markdown(INTRO, elem_classes="section-note")
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value=prompt_value, max_length=L.MAX_PROMPT_CHARS, lines=1, max_lines=2,
                            elem_id="compare-prompt", scale=5,
                            info="Enter runs. Spinning, orbiting and bouncing prompts are measured.")
        seed = gr.Number(label="Seed", value=L.DEFAULT_SEED, precision=0, minimum=L.MIN_SEED, maximum=L.MAX_SEED,
                         elem_id="compare-seed", scale=1)
        run_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=1)
    status = gr.Markdown("Press **Compare** to run the prompt through both models.", elem_id="compare-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            video = gr.Video(label=f"Left: {tab.stunet_label} (all frames at once) · right: keyframe cascade "
                             "(keyframes in amber)",
                             autoplay=True, loop=True, interactive=False, height=300, elem_id="compare-video",
                             buttons=["download"])
            with gr.Row():
                stunet_md = gr.Markdown(elem_id="compare-stunet")
                cascade_md = gr.Markdown(elem_id="compare-cascade")
        with gr.Column(scale=2):
            xt = gr.Image(label="X-T slices through each object's row (time runs down; amber ticks: keyframes)",
                          format="png", interactive=False, elem_classes="pixelated", elem_id="compare-xt",
                          buttons=["download", "fullscreen"])
    with gr.Accordion("Measurements", open=False):
        measurements = gr.JSON(label="Measurements", elem_id="compare-measurements")
    image, caption = shipped_report(tab.directory)
    with gr.Accordion("Over many prompts and seeds (stunet compare)", open=True):
        if image is not None:
            gr.Image(image, label="Mean relative rate error against cycles per keyframe interval", format="png",
                     interactive=False, elem_id="compare-plot", buttons=["download", "fullscreen"])
        gr.Markdown(caption, elem_classes="section-note", elem_id="compare-plot-caption")
    return CompareControls(prompt, seed, run_btn, video, xt, stunet_md, cascade_md, measurements, status)


def wire_compare_tab(tab: CompareTab, c: CompareControls, *, concurrency_limit: int):
    """The tab's one public endpoint, ``/compare``, in the sampling queue (one run at a time with Generate)."""
    run = gpu(guarded(tab.compare), compare_duration(tab.studio))          # ZeroGPU: on the GPU (demo.gpu)
    return gr.on([c.run_btn.click, c.prompt.submit], run, [c.prompt, c.seed],
                 [c.video, c.xt, c.stunet_md, c.cascade_md, c.measurements, c.status], api_name="compare",
                 api_description="Compare STUNet with the keyframe cascade: (prompt, seed) -> video (STUNet left, "
                 "cascade right), x-t slices, STUNet measurement, cascade measurement, measurements, status.",
                 preprocess=False, concurrency_limit=concurrency_limit, concurrency_id="generate",
                 show_progress="minimal", show_progress_on=[c.video])
