"""``stunet compare``: STUNet (the whole clip at once) against a keyframe cascade (issue 18).

Lumiere's central claim: a model that generates all frames at once keeps fast periodic motion that
a keyframe cascade (keyframes every ``periodic.KEYFRAME_STRIDE`` frames, then temporal
super-resolution between them) aliases. This module measures it on the shapes world:

* the prompt set (``compare_prompts``): slow / normal / quick spinning (squares and triangles: a
  circle's spin has no orientation to follow), orbiting and bouncing for every shape, plus the four
  linear motions for the sanity bar; ``quick=True`` a smaller set;
* three sources of clips per (prompt, seed), each sampled in batches from its own seeded generator:
  ``stunet`` (a ``Pipeline``), ``cascade`` (``sample_batch``), and the **oracle** control, the
  cascade's TSR stage alone (``fill``) on the world's TRUE keyframes (frames 0, 4, ..., 28 of the
  clip the prompt describes, rendered by the world with the clip's seed): what the cascade loses
  with keyframes that are exactly right is interpolation error, the rest is keyframe aliasing. The
  world's own clips (``world``, the ceiling) come free with the oracle's keyframes. Optionally a
  ``reference`` STUNet (another budget, e.g. the shipped model) on the same generators as ``stunet``:
  reported beside the others, never part of the verdict (which compares the equal-budget pair);
* every clip is scored by the four detectors (``metrics.evaluate_clip``: colour, shape, motion,
  coherence) and, for periodic prompts, the periodic detectors (``periodic.evaluate_periodic``);
* ``aggregate``: per model x motion x speed (x shape for spins, whose period depends on the shape):
  share right, mean relative rate error, reversals (apart), the motion's cycles per keyframe
  interval (from the world's true parameters); and the sanity bar, colour / shape / linear motion
  >= ``SANITY_BAR`` % for the cascade (else the comparison is unfair);
* ``write_outputs``: ``results.json`` (per-clip rows + aggregates), ``table.md`` (which model is
  better per motion and speed, by how much, whether the sanity bar holds) and ``rate_error.png``
  (mean relative rate error against cycles per keyframe interval, the keyframes' Nyquist limit
  marked).

The studio's Compare tab uses ``measure`` (one clip's rate, period and sense) and the picture
helpers ``side_by_side`` / ``xt_pair``.

Layout: ``compare_scores`` (run, score, aggregate), ``compare_report`` (the table and the verdict in
words), ``compare_figures`` (the plot and the studio's pictures); this module is the command (loading,
``write_outputs``, ``main``) and re-exports the three, so ``from stunet.shapes import compare`` is all a caller
needs.

Reproducibility: a clip depends on (prompt set, seeds, batch size, steps, guidance, sampler); each
batch's generator is seeded from its first clip's seed and its position, as in ``stunet eval``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .compare_figures import (KEYFRAME_RGB, MOTION_MARKERS, PLOT_CAPTION, mark_keyframes, object_row,
                              plot_rate_error, rate_error_figure, side_by_side, xt_pair)
from .compare_report import better_text, claim_text, format_table, paired_text, sanity_text
from .compare_scores import (CLIP_FRAMES, DEFAULT_SEEDS, LABELS, MODELS, SANITY_BAR, SANITY_METRICS, SHORT,
                             aggregate, keyframe_indices, measure, paired, run, score, true_clip)
from .periodic import NYQUIST
from .prompts import ORACLE_OFFSET, SEED_BASE, WORLD_SEED, compare_prompts, load_prompts, world_seed
from .stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, SIGNIFICANCE, mcnemar_p

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CLIP_FRAMES", "DEFAULT_SEEDS", "EQUAL_BUDGET_STUNET",
           "KEYFRAME_RGB", "LABELS", "MODELS", "MOTION_MARKERS", "NYQUIST", "ORACLE_OFFSET", "PLOT_CAPTION",
           "SANITY_BAR", "SANITY_METRICS", "SEED_BASE", "SHORT", "SIGNIFICANCE", "WORLD_SEED", "aggregate",
           "better_text", "claim_text", "compare_prompts", "equal_budget_stunet", "format_table",
           "keyframe_indices", "load_cascade", "load_stunet", "main", "mark_keyframes", "mcnemar_p", "measure",
           "object_row", "paired", "paired_text", "plot_rate_error", "rate_error_figure", "run", "sanity_text",
           "score", "side_by_side", "true_clip", "world_seed", "write_outputs", "xt_pair"]

EQUAL_BUDGET_STUNET = "equal-budget-stunet"   # a cascade folder's STUNet trained on the same budget (the fair pair)


def write_outputs(result: dict, out: str | Path) -> dict[str, Path]:
    """results.json, table.md and rate_error.png in ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "videos"}
    paths = {"json": out / "results.json", "table": out / "table.md", "plot": out / "rate_error.png"}
    paths["json"].write_text(json.dumps(data, indent=1))
    paths["table"].write_text(format_table(result) + "\n")
    plot_rate_error(result, paths["plot"])
    return paths


# ----------------------------------------------------------------------------- loading
def equal_budget_stunet(cascade_dir: str | Path) -> Path | None:
    """The STUNet a cascade folder ships as its equal-budget counterpart (``DIR/equal-budget-stunet``), or None."""
    d = Path(cascade_dir) / EQUAL_BUDGET_STUNET
    return d if (d / "config.json").is_file() else None


def _model_type(directory: str | Path) -> str:
    try:
        return str(json.loads((Path(directory) / "config.json").read_text()).get("model_type") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _check_dir(flag: str, directory) -> Path:
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{flag}: no such directory: {d}")
    if not (d / "config.json").is_file():
        raise ValueError(f"{flag}: {d} is not a checkpoint (it has no config.json)")
    return d


def load_cascade(directory: str | Path, precision=None, device=None):
    """A keyframe cascade checkpoint (``stunet.cascade.load_pipeline``; ``device`` None: the CPU); ValueError
    if it is not one."""
    d = _check_dir("--cascade", directory)
    try:
        from ..cascade import CascadePipeline, load_pipeline
    except ImportError:
        raise ValueError("this stunet has no keyframe cascade (stunet.cascade is missing), so --cascade "
                         "cannot be loaded") from None
    pipe = load_pipeline(d, precision=precision, device=device)
    if not isinstance(pipe, CascadePipeline):
        raise ValueError(f"--cascade: {d} is not a keyframe cascade (its config.json says model_type "
                         f"{_model_type(d) or 'none'!r}); pass the folder `stunet train-cascade` wrote")
    return pipe


def load_stunet(directory: str | Path, precision=None, flag: str = "--stunet"):
    """A STUNet checkpoint as a ``Pipeline``; ValueError for a missing folder or a cascade."""
    from ..pipeline import Pipeline
    d = _check_dir(flag, directory)
    if "cascade" in _model_type(d).lower():
        raise ValueError(f"{flag}: {d} is a keyframe cascade; pass a STUNet checkpoint (e.g. assets/stunet-shapes)")
    return Pipeline.from_pretrained(d, precision=precision)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    import argparse

    from ..defaults import PRECISIONS
    p = argparse.ArgumentParser(prog="stunet compare", description="STUNet against a keyframe cascade on periodic "
                                "motion (issue 18): writes results.json, table.md and rate_error.png.")
    p.add_argument("--stunet", required=True, help="STUNet checkpoint directory")
    p.add_argument("--cascade", required=True, help="keyframe cascade checkpoint directory")
    p.add_argument("--reference", help="a second STUNet checkpoint reported beside them, outside the verdict "
                   "(e.g. the shipped model, trained on a larger budget)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per prompt (default {DEFAULT_SEEDS})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="compute precision (default: $STUNET_PRECISION, else auto)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompts", help="file with one shapes-world caption per line (default: the fixed set)")
    g.add_argument("--quick", action="store_true", help="the smaller prompt set (14 prompts)")
    p.add_argument("--batch", type=int, default=8, help="clips per sampling batch")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: each model's own)")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle control (TSR on true keyframes)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import sys
    args = parse_args(argv)
    try:
        if args.prompts:
            prompts = load_prompts(args.prompts)
        else:
            prompts = compare_prompts(quick=args.quick)
        if args.seeds < 1 or args.batch < 1 or (args.steps is not None and args.steps < 1):
            raise ValueError("--seeds, --batch and --steps must be >= 1")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a folder")
        _check_dir("--stunet", args.stunet)
        _check_dir("--cascade", args.cascade)
        cascade = load_cascade(args.cascade, args.precision)
        stunet = load_stunet(args.stunet, args.precision)
        reference = load_stunet(args.reference, args.precision, flag="--reference") if args.reference else None
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        result = run(stunet, cascade, prompts, args.seeds, batch_size=args.batch, steps=args.steps,
                     oracle=not args.no_oracle, reference=reference, progress=log)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["settings"].update(stunet_dir=str(args.stunet), cascade_dir=str(args.cascade),
                              reference_dir=str(args.reference) if args.reference else None)
    paths = write_outputs(result, args.out)
    print(format_table(result))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
