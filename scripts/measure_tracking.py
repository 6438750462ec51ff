"""Follow a point on the shipped model: per level and denoising step, how well the feature track of a
point clicked on the object in frame 0 follows the object's measured centroid (issue 30).

    python scripts/measure_tracking.py --prompt "a red circle moving right" --seeds 0 1 2 --json runs/track.json

The click is the pixel holding the measured centroid in frame 0; features are recorded at every step.
Prints, per (level, step), the share of frames within 2 px and the median error, averaged over seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunet import tracking  # noqa: E402
from stunet.inspection import Inspector  # noqa: E402
from stunet.model import level_path  # noqa: E402
from stunet.pipeline import Pipeline, Settings  # noqa: E402


def measure(pipe, prompt: str, seed: int, frame: int = 0, offset=(0, 0)) -> list[dict]:
    s = pipe.complete(Settings(prompt, seed=seed))
    with Inspector(pipe.model, attention=False, x0_steps=[], max_bytes=1 << 30) as ins:
        gen = pipe(s, inspector=ins)
    x, y = tracking.centroid_pixel(gen.video, frame)
    x, y = x + offset[0], y + offset[1]                         # still on the object for small offsets
    shape = gen.video.shape[:3]
    tracks = tracking.follow_recording(ins.recording, frame, x, y, shape)
    rows = tracking.score(tracks, gen.video, frame, x, y)
    for r in rows:
        r.update(seed=seed, click=(x, y))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt", default="a red circle moving right")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--offset", type=int, nargs=2, default=(0, 0), metavar=("DX", "DY"),
                   help="click this many pixels right / down of the centroid pixel")
    p.add_argument("--json", help="write every row here")
    args = p.parse_args(argv)
    pipe = Pipeline.from_pretrained(args.model, precision=args.precision)
    rows = [r for seed in args.seeds for r in measure(pipe, args.prompt, seed, offset=args.offset)]
    levels = [name for name, _ in level_path(pipe.config.levels)]           # forward order
    steps = sorted({r["step"] for r in rows})
    agg = {}
    for lv in levels:
        for st in steps:
            sel = [r for r in rows if r["level"] == lv and r["step"] == st]
            agg[(lv, st)] = (np.mean([r["within"] for r in sel]), np.median([r["median_px"] for r in sel]))
    shown = [st for st in steps if st % 4 == 0 or st == steps[-1]]
    print(f"{args.prompt!r}, seeds {args.seeds}, click offset {tuple(args.offset)}, {pipe.precision.name}: "
          "% of frames within 2 px (median px), "
          "per level (rows) and denoising step (columns)")
    print("| level | " + " | ".join(f"step {st}" for st in shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for lv in levels:
        print(f"| {lv} | " + " | ".join(f"{agg[(lv, st)][0]:.0f} ({agg[(lv, st)][1]:.1f})" for st in shown) + " |")
    best = max(agg, key=lambda k: (agg[k][0], -agg[k][1]))
    print(f"best: {best[0]} at step {best[1]}: {agg[best][0]:.1f} % of frames within 2 px, "
          f"median {agg[best][1]:.2f} px")
    per_seed = [r for r in rows if r["level"] == best[0] and r["step"] == best[1]]
    print("per seed at the best: " + ", ".join(f"seed {r['seed']} {r['within']:.0f} %" for r in per_seed))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
