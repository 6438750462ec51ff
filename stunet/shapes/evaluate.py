"""``stunet eval``: generate clips for a fixed prompt set and score them with analytic detectors.

For every prompt and seed the model makes a clip (in batches); ``stunet.shapes.metrics`` scores
its colour, shape, motion and coherence on the pixels. The same detectors run on the
world's own clips for the same prompts: that is the ceiling. The shipped model must reach
the targets (colour 95 %, shape 90 %, motion 90 %, coherence 95 % of clips) and stay
within 5 points of the ceiling on each.

    python -m stunet eval                                  # the shipped model, default prompts
    python -m stunet eval --model runs/shapes/final --seeds 2 --markdown eval.md --json eval.json
    python -m stunet eval --ceiling-only                   # world clips only (no model needed)

Reproducibility: a clip depends on (prompt set, seed, batch size, steps, guidance, sampler).
The initial noise of a batch comes from one ``torch.Generator`` seeded by (seed, batch start),
so the same command gives the same numbers; changing ``--batch`` regroups the noise.
``evaluate_model`` is the same evaluation as a function (training can call it mid-run).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..defaults import GUIDANCE, PRECISIONS, SAMPLER, SAMPLERS, STEPS, parse_interval
from . import world
from .metrics import ClipScore, evaluate_clip
from .periodic import KEYFRAME_STRIDE, NYQUIST, RATE_TOLERANCE, format_periodic_table, periodic_report
from .prompts import batch_generator, default_prompts, load_prompts, seed_list, seed_range, select_prompts, world_seed

METRICS = ("color", "shape", "motion", "coherence")
LABELS = {"color": "colour", "shape": "shape", "motion": "motion", "coherence": "coherence"}
FIELDS = {"color": "color_ok", "shape": "shape_ok", "motion": "motion_ok", "coherence": "coherent"}
TARGETS = {"color": 95.0, "shape": 90.0, "motion": 90.0, "coherence": 95.0}
MAX_GAP = 5.0                  # points below the ceiling a model may be
DEFAULT_SEEDS = 3


# ----------------------------------------------------------------------------- clips
def world_clips(prompts: Sequence[str], seeds, frames: int, size: int, stride: int = 1):
    """The world's own clips for the prompts: [(prompt, seed, video)]."""
    out = []
    for seed in seed_list(seeds):
        for i, p in enumerate(prompts):
            clip = world.make_clip(world.parse_caption(p), frames, size, stride, seed=world_seed(i, seed))
            out.append((p, seed, clip.video))
    return out


def model_clips(model, tokenizer, prompts: Sequence[str], seeds, *, steps: int = STEPS, guidance: float = GUIDANCE,
                sampler: str = SAMPLER, frames: int | None = None, stride: int = 1, batch_size: int = 8,
                precision=None, progress: Callable[[str], None] | None = None, guidance_interval=None,
                guidance_elsewhere: float = 1.0):
    """Generate one clip per (prompt, seed), ``batch_size`` prompts at a time: [(prompt, seed, video)].

    Through ``Pipeline.sample_batch``, the same batched path as everything else; each batch has its
    own generator seeded from its first clip's seed and position, so results do not depend on
    what else is evaluated. precision: as ``Pipeline`` (None: $STUNET_PRECISION or auto).
    """
    from ..pipeline import Pipeline
    frames = frames or model.config.frames
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    pipe = Pipeline(model, tokenizer, precision)                        # eval mode, no grads: restored below
    out = []
    jobs = [(p, s) for s in seed_list(seeds) for p in prompts]
    t0 = time.perf_counter()
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            gen = batch_generator(chunk[0][1], start)
            videos = pipe.sample_batch([p for p, _ in chunk], generator=gen, steps=steps, guidance=guidance,
                                       sampler=sampler, frames=frames, stride=stride,
                                       guidance_interval=guidance_interval, guidance_elsewhere=guidance_elsewhere)
            for (p, s), video in zip(chunk, videos):
                out.append((p, s, video))
            if progress:
                progress(f"generated {len(out)}/{len(jobs)} clips ({time.perf_counter() - t0:.0f} s)")
    finally:
        model.train(was_training)
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return out


# ----------------------------------------------------------------------------- scores
def score_clips(clips, stride: int = 1) -> list[tuple[str, int, ClipScore]]:
    return [(p, s, evaluate_clip(v, world.parse_caption(p), stride)) for p, s, v in clips]


def _periodic(clips, stride: int) -> dict:
    """``periodic_report`` of [(prompt, seed, video)] (spin, orbit and bounce prompts; the rest skipped)."""
    return periodic_report([v for _, _, v in clips], [p for p, _, _ in clips], stride)


def summarize(scores: Sequence[ClipScore]) -> dict:
    """Percent of clips right per metric, per motion, and all four at once."""
    n = len(scores)
    pct = lambda xs: 100.0 * sum(bool(x) for x in xs) / len(xs) if xs else float("nan")
    out = {m: pct([getattr(s, FIELDS[m]) for s in scores]) for m in METRICS}
    out["all"] = pct([s.ok for s in scores])
    out["direction"] = pct([s.direction_ok for s in scores])
    out["n"] = n
    per = {}
    for motion in world.MOTIONS:
        sel = [s for s in scores if world.parse_caption(s.caption).motion == motion]
        if sel:
            per[motion] = {"motion": pct([s.motion_ok for s in sel]), "n": len(sel)}
    out["per_motion"] = per
    return out


def _verdicts(model: dict | None, ceiling: dict | None) -> dict:
    out = {}
    for m in METRICS:
        if model is None:
            out[m] = None
            continue
        ok = model[m] >= TARGETS[m]
        if ceiling is not None:
            ok = ok and ceiling[m] - model[m] <= MAX_GAP
        out[m] = bool(ok)
    return out


def evaluate_model(model=None, tokenizer=None, prompts: Sequence[str] | None = None, seeds=DEFAULT_SEEDS,
                   steps: int = STEPS, guidance: float = GUIDANCE, sampler: str = SAMPLER, *, frames: int | None = None,
                   size: int | None = None, stride: int = 1, batch_size: int = 8, ceiling: bool = True,
                   keep_clips: bool = False, precision=None, progress: Callable[[str], None] | None = None,
                   guidance_interval: tuple[int, int] | None = None, guidance_elsewhere: float = 1.0) -> dict:
    """Evaluate a model (a ``STUNet`` with its tokenizer, or a ``Pipeline``) and/or the world ceiling.

    ``model=None`` scores only the world's clips (``frames`` and ``size`` then default to 32).
    Returns a JSON-able dict: settings, ``model`` and ``ceiling`` summaries (percent of clips),
    per-metric ``pass`` verdicts (target met and within ``MAX_GAP`` of the ceiling), ``passed``,
    per-clip scores under ``clips``, and under ``periodic`` the periodic-motion report
    (``stunet.shapes.periodic``: rate and sense of spins, orbits and bounces; informational, no
    verdict) of the model and the ceiling; with ``keep_clips`` also the videos (not JSON-able).
    """
    if model is not None and hasattr(model, "model") and hasattr(model, "tokenizer"):   # a Pipeline
        model, tokenizer, precision = model.model, tokenizer or model.tokenizer, precision or model.precision
    if model is not None and tokenizer is None:
        raise ValueError("a model needs its tokenizer")
    prompts = list(prompts) if prompts is not None else default_prompts()
    for p in prompts:
        world.parse_caption(p)
    seeds = seed_list(seeds)
    if model is not None:
        frames = frames or model.config.frames
        size = model.config.height
    frames, size = frames or 32, size or 32
    result = {"settings": {"prompts": len(prompts), "seeds": seeds, "steps": steps, "guidance": guidance,
                           "sampler": sampler, "frames": frames, "size": size, "stride": stride,
                           "batch_size": batch_size},
              "prompts": prompts, "targets": dict(TARGETS), "max_gap": MAX_GAP,
              "model": None, "ceiling": None, "clips": {}, "periodic": {}, "seconds": {}}
    if guidance_interval is not None:                   # recorded only when set: older runs stay pairable
        result["settings"]["guidance_interval"] = list(guidance_interval)
    if guidance_elsewhere != 1.0:                       # likewise
        result["settings"]["guidance_elsewhere"] = guidance_elsewhere
    videos = {}
    if model is not None:
        t0 = time.perf_counter()
        from ..precision import Precision, resolve
        prec = precision if isinstance(precision, Precision) else resolve(precision)
        result["settings"].update(prec.to_dict())
        clips = model_clips(model, tokenizer, prompts, seeds, steps=steps, guidance=guidance, sampler=sampler,
                            frames=frames, stride=stride, batch_size=batch_size, precision=prec, progress=progress,
                            guidance_interval=guidance_interval, guidance_elsewhere=guidance_elsewhere)
        result["seconds"]["generate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored = score_clips(clips, stride)
        result["seconds"]["score"] = time.perf_counter() - t0
        result["model"] = summarize([s for _, _, s in scored])
        result["clips"]["model"] = [{"prompt": p, "seed": sd, **s.to_dict()} for p, sd, s in scored]
        result["periodic"]["model"] = _periodic(clips, stride)
        videos["model"] = clips
    if ceiling:
        t0 = time.perf_counter()
        clips = world_clips(prompts, seeds, frames, size, stride)
        scored = score_clips(clips, stride)
        result["seconds"]["ceiling"] = time.perf_counter() - t0
        result["ceiling"] = summarize([s for _, _, s in scored])
        result["clips"]["ceiling"] = [{"prompt": p, "seed": sd, **s.to_dict()} for p, sd, s in scored]
        result["periodic"]["ceiling"] = _periodic(clips, stride)
        videos["ceiling"] = clips
    result["pass"] = _verdicts(result["model"], result["ceiling"])
    result["passed"] = None if result["model"] is None else all(result["pass"].values())
    if keep_clips:
        result["videos"] = videos
    return result


# ----------------------------------------------------------------------------- report
def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1f}"


def format_table(result: dict) -> str:
    """Markdown table: metric, model %, ceiling %, gap, target, pass; then the per-motion breakdown."""
    m, c = result["model"], result["ceiling"]
    lines = ["| metric | model % | ceiling % | gap | target | result |", "|---|---:|---:|---:|---:|---|"]
    for k in METRICS:
        mv = m[k] if m else None
        cv = c[k] if c else None
        gap = cv - mv if (mv is not None and cv is not None) else None
        verdict = result["pass"].get(k)
        v = "-" if verdict is None else ("pass" if verdict else "FAIL")
        lines.append(f"| {LABELS[k]} | {_f(mv)} | {_f(cv)} | {_f(gap)} | >= {TARGETS[k]:.0f} | {v} |")
    for k, label in (("all", "all four"), ("direction", "motion, ignoring speed")):
        mv, cv = (m[k] if m else None), (c[k] if c else None)
        gap = cv - mv if (mv is not None and cv is not None) else None
        lines.append(f"| {label} | {_f(mv)} | {_f(cv)} | {_f(gap)} | | |")
    lines.append("")
    lines.append("| motion | clips | model % | ceiling % | gap |")
    lines.append("|---|---:|---:|---:|---:|")
    src = c or m
    for motion in src["per_motion"]:
        mv = m["per_motion"][motion]["motion"] if m else None
        cv = c["per_motion"][motion]["motion"] if c else None
        gap = cv - mv if (mv is not None and cv is not None) else None
        lines.append(f"| {motion} | {src['per_motion'][motion]['n']} | {_f(mv)} | {_f(cv)} | {_f(gap)} |")
    s = result["settings"]
    lines.append("")
    lines.append(f"{s['prompts']} prompts x {len(s['seeds'])} seeds, {s['frames']} frames of {s['size']}x{s['size']} "
                 f"at stride {s['stride']}; {s['sampler']}, {s['steps']} steps, guidance {s['guidance']}"
                 f"{' at timesteps {}-{}'.format(*s['guidance_interval']) if s.get('guidance_interval') else ''}"
                 f"{' and {:g} elsewhere'.format(s['guidance_elsewhere']) if s.get('guidance_elsewhere') else ''}"
                 f"{', ' + s['precision'] if s.get('precision') else ''}. "
                 f"Pass: at least the target and within {MAX_GAP:.0f} points of the ceiling (the world's own "
                 f"clips for the same prompts).")
    if result["passed"] is not None:
        lines.append(f"Overall: {'PASS' if result['passed'] else 'FAIL'}.")
    periodic = {k: v for k, v in (result.get("periodic") or {}).items() if v and v["rows"]}
    if periodic:
        lines += ["", format_periodic_table(periodic), "",
                  f"Periodic motions (informational, no target): right = the prompt's sense and a period within "
                  f"x{RATE_TOLERANCE:g} of the world's; rate error = |measured / prompted rate - 1| over the "
                  f"measurable clips; reversed = the opposite sense, counted apart. Cycles / keyframe: the motion's "
                  f"cycles per {KEYFRAME_STRIDE} base frames (a keyframe cascade's interval; above {NYQUIST:g} "
                  f"keyframes alias it)."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="stunet eval", description="Score a model with analytic detectors "
                                "(colour, shape, motion, coherence) against the world's own clips.")
    p.add_argument("--model", help="checkpoint directory (default: the shipped model)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="seeds per prompt")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds are FIRST..FIRST+SEEDS-1 (default 0; use others to tune settings on held-out seeds)")
    p.add_argument("--steps", type=int, default=None, help=f"default: the model's own ({STEPS} for the full model)")
    p.add_argument("--guidance", type=float, default=None, help=f"default: the model's own ({GUIDANCE:g})")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help=f"default: the model's own ({SAMPLER})")
    p.add_argument("--guidance-interval", metavar="LO,HI", default=None,
                   help="guide only at diffusion timesteps LO..HI, other steps one row (default: the model's own; "
                        "'all': every step)")
    p.add_argument("--guidance-elsewhere", type=float, default=None, metavar="W",
                   help="guidance scale outside --guidance-interval (default: the model's own; 1: unguided)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="compute precision (default: $STUNET_PRECISION, else auto: bf16 only where measured faster)")
    p.add_argument("--prompts", help="file with one caption per line (default: the fixed prompt set)")
    p.add_argument("--limit", type=int, help="only the first N prompts (quick runs)")
    p.add_argument("--batch", type=int, default=8, help="clips per sampling batch")
    p.add_argument("--stride", type=int, default=1, help="frame stride (the model's frame-rate conditioning)")
    p.add_argument("--frames", type=int, help="clip length (default: the model's window)")
    p.add_argument("--ceiling-only", action="store_true", help="score only the world's clips (no model)")
    p.add_argument("--json", help="write the full result (per-clip scores included) here")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--against", metavar="REFERENCE.json",
                   help="also compare clip by clip with another run's --json (same prompts and seeds): paired "
                        "differences, intervals, McNemar p, and the non-inferiority verdict (stunet.shapes.paired)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a metric fails its target (or, with --against, the verdict is FAIL)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        prompts = select_prompts(args.prompts, args.limit)
        from ..checkpoint import read_sampling
        d_sampling = read_sampling(args.model)          # a distilled model's own steps / guidance / solver
        args.steps = d_sampling.steps if args.steps is None else args.steps
        args.guidance = d_sampling.guidance if args.guidance is None else args.guidance
        args.sampler = d_sampling.sampler if args.sampler is None else args.sampler
        args.guidance_interval = (d_sampling.guidance_interval if args.guidance_interval is None
                                  else parse_interval(args.guidance_interval))
        if args.guidance_elsewhere is None:
            args.guidance_elsewhere = d_sampling.guidance_elsewhere if args.guidance_interval == d_sampling.guidance_interval else 1.0
        if args.guidance_interval == (0, 999):
            args.guidance_interval = None                       # every step: the plain guided run
            args.guidance_elsewhere = 1.0                       # (there is no elsewhere)
        from ..defaults import parse_elsewhere
        args.guidance_elsewhere = parse_elsewhere(args.guidance_elsewhere, args.guidance_interval)
        if args.seeds < 1 or args.steps < 1 or args.batch < 1:
            raise ValueError("--seeds, --steps and --batch must be >= 1")
        if args.first_seed < 0:
            raise ValueError("--first-seed must be >= 0")
        seeds = seed_range(args.first_seed, args.seeds)
        reference = None
        if args.against:
            if args.ceiling_only:
                raise ValueError("--against compares a model's clips; it cannot go with --ceiling-only")
            from .paired import check_pairable, load_reference
            reference = load_reference(args.against)            # before generating: a bad file fails fast
            check_pairable(prompts, seeds, reference)
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        model = tokenizer = None
        frames, size = args.frames, None
        if not args.ceiling_only:
            from ..checkpoint import default_model_dir, load_pretrained
            d = Path(args.model) if args.model else default_model_dir()
            if not d.is_dir():
                raise ValueError(f"no model at {d} (train one, pass --model DIR, or use --ceiling-only)")
            model, tokenizer = load_pretrained(d)
            if args.stride not in model.config.strides:
                raise ValueError(f"stride must be one of {model.config.strides}")
        elif args.model:
            from ..checkpoint import read_config
            cfg = read_config(args.model)
            frames, size = frames or cfg.frames, cfg.height
        result = evaluate_model(model, tokenizer, prompts, seeds, args.steps, args.guidance, args.sampler,
                                frames=frames, size=size, stride=args.stride, batch_size=args.batch,
                                precision=args.precision, progress=log, guidance_interval=args.guidance_interval,
                                guidance_elsewhere=args.guidance_elsewhere)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.model or not args.ceiling_only:
        from ..checkpoint import default_model_dir
        result["settings"]["model"] = str(args.model or default_model_dir())
    table = format_table(result)
    if reference is not None:
        from .paired import format_paired, paired_scores
        try:
            result["paired"] = paired_scores(result, reference)
        except ValueError as e:
            print(f"error: --against {args.against}: {e}", file=sys.stderr)
            return 1
        table += "\n\n" + format_paired(result["paired"])
    print(table)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.strict and (result["passed"] is False or (reference is not None and not result["paired"]["holds"])):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
