"""Plot a training log (OUT/train.log, JSON lines) to a PNG: loss per stage over steps.

    python scripts/plot_training.py runs/shapes/train.log assets/stunet-shapes/training.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(log_path: str, out_path: str) -> None:
    rows = [json.loads(l) for l in open(log_path) if l.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    summary = {}
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
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:3])
