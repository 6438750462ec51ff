"""When is periodic motion decided, and how do the failures fail? (issue 35, diagnosis).

For the periodic prompts of ``stunet eval`` (bouncing, spinning, orbiting) and a few seeds, every
clip is sampled once with a per-step callback that keeps x0-hat (the predicted clean clip), and the
periodic detectors (``stunet.shapes.periodic``) read x0-hat at every step and the final clip. Per
step: the share of clips whose x0-hat is already right, and the share whose verdict already equals
the final clip's and keeps it to the end ("decided"). Per final clip: how it fails (not measurable,
too slow, too fast, reversed, right). Writes OUT/decided.md and OUT/decided.json.

    python scripts/periodic_decided.py --out runs/decided --seeds 4 --precision fp32
    python scripts/periodic_decided.py --out runs/decided --seeds 4 --guidance 5   # a guidance sweep point

Clips are made one at a time (batch 1, ``batch_generator(seed, index)``), so they are those of
``stunet eval --batch 1 --prompts FILE`` for the same prompt file.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunet.defaults import PRECISIONS  # noqa: E402
from stunet.pipeline import Pipeline  # noqa: E402
from stunet.shapes import periodic, world  # noqa: E402
from stunet.shapes.prompts import batch_generator, default_prompts, seed_range  # noqa: E402
from stunet.video import to_uint8  # noqa: E402


def periodic_prompts(prompts=None) -> list[str]:
    return [p for p in (prompts or default_prompts()) if periodic.scorable(world.parse_caption(p))]


def failure(v: periodic.PeriodicVerdict) -> str:
    """How a verdict fails: right, not measurable, reversed, too slow (period over the tolerance), too fast."""
    if v.right:
        return "right"
    if not v.measurable:
        return "not measurable"
    if v.reversed:
        return "reversed"
    if not v.rate_ok:
        return "too slow" if v.measured_period > v.expected_period else "too fast"
    return "sense undecided"


def run_clip(pipe: Pipeline, prompt: str, seed: int, index: int, *, guidance=None, steps=None) -> dict:
    """One clip: the verdict of x0-hat at every step and of the final clip."""
    spec = world.parse_caption(prompt)
    gen = batch_generator(seed, index)
    per_step, last = [], None
    for out in pipe.iter_batch([prompt], generator=gen, guidance=guidance, steps=steps):
        per_step.append(periodic.evaluate_periodic(to_uint8(out.x0[0].cpu()), spec))
        last = out
    final = periodic.evaluate_periodic(to_uint8(last.sample[0].clamp(-1, 1).cpu()), spec)
    same = [failure(v) == failure(final) for v in per_step]
    decided = next((k for k in range(len(same)) if all(same[k:])), len(same))
    return {"prompt": prompt, "seed": seed, "motion": spec.motion, "final": failure(final),
            "expected_period": final.expected_period, "measured_period": final.measured_period,
            "steps_right": [bool(v.right) for v in per_step], "decided_at": decided}


def summarise(rows: list[dict]) -> dict:
    n_steps = len(rows[0]["steps_right"])
    by_motion = {}
    for r in rows:
        by_motion.setdefault(r["motion"], []).append(r)
    out = {"clips": len(rows), "per_motion": {}, "per_step_right_pct": [
        round(100 * np.mean([r["steps_right"][k] for r in rows]), 1) for k in range(n_steps)],
        "per_step_decided_pct": [round(100 * np.mean([r["decided_at"] <= k for r in rows]), 1)
                                 for k in range(n_steps)]}
    for m, rs in by_motion.items():
        kinds = {}
        for r in rs:
            kinds[r["final"]] = kinds.get(r["final"], 0) + 1
        ratio = [r["measured_period"] / r["expected_period"] for r in rs
                 if r["measured_period"] == r["measured_period"] and r["expected_period"] > 0]
        out["per_motion"][m] = {"clips": len(rs), "outcomes": kinds,
                                "median_decided_at": float(np.median([r["decided_at"] for r in rs])),
                                "median_period_ratio": round(float(np.median(ratio)), 2) if ratio else math.nan}
    return out


def format_md(summary: dict, settings: dict) -> str:
    lines = [f"Periodic prompts of `stunet eval`, {settings['seeds']} seeds, guidance {settings['guidance']}, "
             f"{settings['steps']} steps, {settings['precision']}; {summary['clips']} clips.", "",
             "| motion | clips | right | too slow | too fast | reversed | not measurable | median measured / "
             "expected period | median step decided |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, d in summary["per_motion"].items():
        o = d["outcomes"]
        lines.append(f"| {m} | {d['clips']} | {o.get('right', 0)} | {o.get('too slow', 0)} | {o.get('too fast', 0)} "
                     f"| {o.get('reversed', 0)} | {o.get('not measurable', 0)} | {d['median_period_ratio']} "
                     f"| {d['median_decided_at']:.0f} |")
    lines += ["", "| step | x0-hat right % | verdict decided % |", "|---:|---:|---:|"]
    for k, (a, b) in enumerate(zip(summary["per_step_right_pct"], summary["per_step_decided_pct"])):
        lines.append(f"| {k} | {a} | {b} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="checkpoint directory (default: the shipped model)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--limit", type=int, help="only the first N periodic prompts")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    args = p.parse_args(argv)
    if args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    pipe = Pipeline.from_pretrained(args.model, precision=args.precision)
    prompts = periodic_prompts()[:args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    jobs = [(pr, s) for s in seed_range(args.first_seed, args.seeds) for pr in prompts]
    for i, (pr, s) in enumerate(jobs):
        rows.append(run_clip(pipe, pr, s, i, guidance=args.guidance, steps=args.steps))
        print(f"{i + 1}/{len(jobs)} clips ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    settings = {"seeds": args.seeds, "guidance": args.guidance or pipe.defaults.guidance,
                "steps": args.steps or pipe.defaults.steps, "precision": pipe.precision.name}
    summary = summarise(rows)
    (out / "decided.json").write_text(json.dumps({"settings": settings, "summary": summary, "clips": rows},
                                                 indent=1, default=float))
    md = format_md(summary, settings)
    (out / "decided.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
