"""Measured checks of Lumiere's editing applications (``stunet.editing``) on a model (issue 20, item 5).

    python scripts/measure_edits.py --seeds 3 --out docs/edits.md

Three checks, every figure from the analytic detectors of ``stunet.shapes.metrics`` (no learned judge):

* inpainting: a world clip with the object's path masked out over frames 8-23 (the pixels the
  object covers in any of those frames, grown by 2 px, in each of those frames) and the clip's own
  caption: is there one object in every frame, does its centroid stay within 2 px of the world's
  true path inside the mask, is the clip equal to the input outside the mask (after the paste), and
  how close the model itself kept the given pixels (PSNR before the paste);
* cinemagraph: the first frame of a "standing still" clip, a region around the object (a disc 3 px
  wider than its circumradius), a spinning prompt: the largest |difference| from the image outside
  the region over every frame (0 expected, exactly), and the motion the detector reads;
* video-to-video: "a red circle moving left" edited to "a blue circle moving left" at strengths
  0.2 ... 1.0 (``--strengths``): the colour the detector reads and the largest distance of the
  object's centroid from the input's true path.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without `pip install -e .`

from stunet import editing                                          # noqa: E402
from stunet.pipeline import Pipeline                                 # noqa: E402
from stunet.shapes import metrics, world                             # noqa: E402
from stunet.shapes.world import ClipSpec                             # noqa: E402

INPAINT_CLIPS = [(ClipSpec("red", "circle", "moving right"), 0), (ClipSpec("green", "square", "moving down"), 1)]
INPAINT_FRAMES = (8, 24)                 # frames 8..23 masked
CINEMAGRAPH = [(ClipSpec("yellow", "square", "standing still"), 2, "a yellow square spinning"),
               (ClipSpec("white", "triangle", "standing still"), 3, "a white triangle spinning")]
V2V_CLIP = (ClipSpec("red", "circle", "moving left"), 4)
V2V_PROMPT = "a blue circle moving left"
STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
PATH_TOL_PX = 2.0


def path_mask(clip: world.Clip, frames: tuple[int, int], grow: int = 2) -> np.ndarray:
    """t h w bool: in frames [a, b), every pixel the object covers in any of them, grown by ``grow`` px."""
    a, b = frames
    fg = clip.video[a:b].max(-1) >= metrics.FG_THRESHOLD
    union = fg.any(0)
    for _ in range(grow):
        union = metrics._dilate(union)
    m = np.zeros(clip.video.shape[:3], bool)
    m[a:b] = union
    return m


def centroid_error(video: np.ndarray, x: np.ndarray, y: np.ndarray, frames=None) -> float:
    """Largest distance (px) of the largest object's centroid from (x, y) over ``frames`` (inf if missing)."""
    fm = metrics.measure_frames(video)
    idx = np.arange(len(video)) if frames is None else np.arange(*frames)
    d = np.hypot(fm.x[idx] - x[idx], fm.y[idx] - y[idx])
    return float("inf") if not np.isfinite(d).all() else float(d.max())


def _f(v, nd=2) -> str:
    return "n/a" if v is None else ("inf" if not math.isfinite(v) else f"{v:.{nd}f}")


def check_inpaint(pipe, seeds, steps) -> tuple[list[str], dict]:
    rows = ["| clip | seed | one object, frames 8-23 | max centroid error in the mask (px) | within 2 px "
            "| max abs diff outside | PSNR before paste (dB) |", "|---|---|---|---|---|---|---|"]
    ok = total = 0
    for spec, clip_seed in INPAINT_CLIPS:
        clip = world.make_clip(spec, frames=pipe.config.frames, size=pipe.config.height, seed=clip_seed)
        mask = path_mask(clip, INPAINT_FRAMES)
        for seed in seeds:
            e = editing.inpaint(pipe, clip.video, mask, spec.caption, seed=seed, steps=steps)
            fm = metrics.measure_frames(e.video)
            a, b = INPAINT_FRAMES
            one = bool(((fm.objects[a:b] == 1) & fm.plausible[a:b]).all())
            err = centroid_error(e.video, clip.x, clip.y, INPAINT_FRAMES)
            outside = int(np.abs(e.video.astype(int) - clip.video.astype(int))[~mask].max())
            good = one and err <= PATH_TOL_PX and outside == 0
            ok += good
            total += 1
            rows.append(f"| {spec.caption} | {seed} | {'yes' if one else 'no'} | {_f(err)} | "
                        f"{'yes' if err <= PATH_TOL_PX else 'no'} | {outside} | {_f(e.psnr_given, 1)} |")
    return rows, {"inpaint_ok": f"{ok}/{total}"}


def region_around(clip: world.Clip, pad: float = 3.0) -> np.ndarray:
    h, w = clip.video.shape[1:3]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return np.hypot(xs - clip.x[0], ys - clip.y[0]) <= clip.radius[0] + pad


def check_cinemagraph(pipe, seeds, steps) -> tuple[list[str], dict]:
    rows = ["| image | prompt | seed | max abs diff outside the region (all frames) | frame 0 = image "
            "| motion read | motion as prompted | spin period, frames (expected) | speed as prompted "
            "| PSNR before paste (dB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    ok = total = 0
    for spec, clip_seed, prompt in CINEMAGRAPH:
        clip = world.make_clip(spec, frames=1, size=pipe.config.height, seed=clip_seed)
        image = clip.video[0]
        region = region_around(clip)
        for seed in seeds:
            e = editing.cinemagraph(pipe, image, region, prompt, seed=seed, steps=steps)
            diff = np.abs(e.video.astype(int) - image[None].astype(int)).max(-1)
            outside = int(diff[:, ~region].max())
            first = bool(np.array_equal(e.video[0], image))
            score = metrics.evaluate_clip(e.video, prompt)
            good = outside == 0 and first and score.direction_ok
            ok += good
            total += 1
            rows.append(f"| {spec.caption} | {prompt} | {seed} | {outside} | {'yes' if first else 'no'} | "
                        f"{score.motion} | {'yes' if score.direction_ok else 'no'} | {_f(score.measured, 1)} "
                        f"({_f(score.expected, 1)}) | {'yes' if score.rate_ok else 'no'} | {_f(e.psnr_given, 1)} |")
    return rows, {"cinemagraph_ok": f"{ok}/{total}"}


def check_v2v(pipe, seeds, steps, strengths=STRENGTHS) -> tuple[list[str], dict]:
    spec, clip_seed = V2V_CLIP
    clip = world.make_clip(spec, frames=pipe.config.frames, size=pipe.config.height, seed=clip_seed)
    rows = ["| strength | steps run | colour read (per seed) | blue | max centroid error vs the input's path (px, "
            "per seed) | within 2 px | PSNR vs input (dB, mean) |", "|---|---|---|---|---|---|---|"]
    for s in strengths:
        colours, errs, ps, run = [], [], [], None
        for seed in seeds:
            e = editing.video_to_video(pipe, clip.video, V2V_PROMPT, s, seed=seed, steps=steps)
            run = e.settings["steps_run"]
            colours.append(metrics.evaluate_clip(e.video, V2V_PROMPT).color or "none")
            errs.append(centroid_error(e.video, clip.x, clip.y))
            ps.append(editing.psnr(e.video, clip.video))
        n = len(seeds)
        rows.append(f"| {s:g} | {run} | {', '.join(colours)} | {colours.count('blue')}/{n} | "
                    f"{', '.join(_f(x, 1) for x in errs)} | {sum(x <= PATH_TOL_PX for x in errs)}/{n} | "
                    f"{np.mean([p for p in ps if math.isfinite(p)]):.1f} |")
    return rows, {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds 0..N-1 per case")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    p.add_argument("--only", choices=("inpaint", "cinemagraph", "v2v"), action="append",
                   help="run only these checks (repeatable)")
    p.add_argument("--strengths", default=",".join(f"{s:g}" for s in STRENGTHS),
                   help="video-to-video strengths, comma-separated (default %(default)s)")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = Pipeline.from_pretrained(args.model, precision=args.precision)
    seeds = list(range(args.seeds))
    only = set(args.only or ("inpaint", "cinemagraph", "v2v"))
    t0 = time.perf_counter()
    lines = [f"Model: `{args.model or 'assets/stunet-shapes'}` · precision {pipe.precision.name} · "
             f"CPU capability {torch.backends.cpu.get_cpu_capability()} · torch threads {torch.get_num_threads()} · "
             f"seeds {seeds} · steps {args.steps or 'default'}", ""]
    summary = {}
    for name, title, fn in (("inpaint", "Inpainting (object path masked over frames 8-23)", check_inpaint),
                            ("cinemagraph", "Cinemagraph (region around a still object, spinning prompt)",
                             check_cinemagraph),
                            ("v2v", f"Video-to-video ('{V2V_CLIP[0].caption}' -> '{V2V_PROMPT}')", check_v2v)):
        if name not in only:
            continue
        t1 = time.perf_counter()
        extra = {"strengths": [float(x) for x in args.strengths.split(",")]} if name == "v2v" else {}
        rows, s = fn(pipe, seeds, args.steps, **extra)
        summary.update(s)
        lines += [f"### {title}", "", *rows, "", f"({time.perf_counter() - t1:.0f} s)", ""]
        print("\n".join(lines[-len(rows) - 5:]), flush=True)
    lines.append(f"Summary: {summary} · total {time.perf_counter() - t0:.0f} s")
    print(lines[-1])
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
