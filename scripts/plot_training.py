"""Plot a training log (OUT/train.log, JSON lines) to a PNG: loss per stage over steps, and the
evaluation curve (OUT/eval_curve.jsonl from scripts/eval_curve.py) when there is one.

    python scripts/plot_training.py runs/shapes/train.log assets/stunet-shapes/training.png [CURVE.jsonl]
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = (("color", "colour"), ("shape", "shape"), ("motion", "motion"), ("coherence", "coherence"))


def _device(args: dict) -> str:
    return "GPU" if str(args.get("device", "cpu")).startswith("cuda") else "CPU"


def main(log_path: str, out_path: str, curve_path: str | None = None) -> None:
    rows = [json.loads(line) for line in open(log_path) if line.strip()]
    curve_file = Path(curve_path) if curve_path else Path(log_path).with_name("eval_curve.jsonl")
    curve = [json.loads(line) for line in open(curve_file) if line.strip()] if curve_file.is_file() else []
    fig, axes = plt.subplots(1, 3 if curve else 2, figsize=(13.5 if curve else 9, 3.2))
    summary = {}
    events = [r for r in rows if r.get("event") in ("noise_shift", "frame_embedding")]
    starts = [r for r in rows if r.get("event") == "start"]
    for prev, cur in zip(starts, starts[1:]):      # recipe switched at a resume
        a, b = prev["args"], cur["args"]
        changes = []
        if b.get("high_noise_frac") and not a.get("high_noise_frac"):
            changes.append("high-noise steps")
        if b.get("motion_weights") and b.get("motion_weights") != a.get("motion_weights"):
            changes.append("motion weights " + ",".join(f"{k[:5]}={v:g}" for k, v in b["motion_weights"].items()))
        if (b.get("batch"), _device(b)) != (a.get("batch"), _device(a)):
            changes.append(f"batch {b.get('batch')} on {_device(b)}")
        if changes:
            events.append({**cur, "event": "; ".join(changes)})
    for ax, stage in zip(axes, ("image", "video")):
        pts = {}
        for r in rows:
            if r.get("stage") == stage and "loss" in r:
                pts[r["step"]] = r["loss"]          # a resumed run overwrites the steps it redid
        steps = sorted(pts)
        ax.plot(steps, [pts[s] for s in steps], lw=1.2)
        ax.set_title(f"{stage} stage (v-prediction MSE, EMA-smoothed)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if steps:
            summary[stage] = (steps[-1], pts[steps[-1]])
    if events and len(axes) > 1:
        # mark recipe changes on resume (the loss is not comparable across a schedule change)
        video_rows = [r for r in rows if r.get("stage") == "video" and "step" in r]
        for ev in events:
            before = [r["step"] for r in video_rows if r["time"] <= ev["time"]]
            if before:
                axes[1].axvline(max(before), color="grey", ls="--", lw=0.8)
                axes[1].text(max(before), axes[1].get_ylim()[1], ev["event"], fontsize=7, rotation=90,
                             va="top", ha="right", color="grey")
    if curve:
        ax = axes[2]
        curve = sorted(curve, key=lambda r: r["step"])
        for key, label in METRICS:
            ax.plot([r["step"] for r in curve], [r[key] for r in curve], marker="o", ms=3, lw=1.2, label=label)
        ax.set_title("evaluation during training (% of clips, 30 prompts)", fontsize=9)
        ax.set_xlabel("video step")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        summary["eval"] = curve[-1]
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:4])
