"""Resume a video-stage run for a fixed wall-clock budget, with the learning-rate cosine ending at it.

``stunet train`` anneals over ``--video-steps``; on a machine whose speed is not known ahead (a GPU
lent for a few minutes, say) this script first times ``--probe-steps`` steps on a throwaway copy of
the run, then resumes the run itself with ``--video-steps`` = current step + the steps that fit in
what is left of ``--minutes``, and ``--minutes`` as a hard stop as well.

    python scripts/train_for.py runs/shapes5 --minutes 8 -- --preset shapes --image-steps 700 \
        --batch 32 --workers 13 --device cuda --motion-weights 'bouncing=2,orbiting=2,spinning=3'

Everything after ``--`` goes to ``stunet train`` unchanged (not --out, --video-steps, --minutes or
--resume, which this script sets).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stunet.train import main as train


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train.log").read_text().splitlines() if line.strip()]


def steps_per_second(records: list[dict]) -> float:
    """Step rate of the last run segment in a log, from its step records (start-up excluded)."""
    start = max(i for i, r in enumerate(records) if r.get("event") == "start")
    steps = [r for r in records[start:] if "loss" in r]
    if len(steps) < 2 or steps[-1]["seconds"] <= steps[0]["seconds"]:
        raise RuntimeError("probe too short to time: raise --probe-steps")
    return (steps[-1]["step"] - steps[0]["step"]) / (steps[-1]["seconds"] - steps[0]["seconds"])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="run directory with train_state/ in the video stage")
    p.add_argument("--minutes", type=float, required=True, help="budget for probe and run together")
    p.add_argument("--probe-steps", type=int, default=150)
    p.add_argument("--reserve", type=float, default=0.5, help="minutes kept for start-up and the last save")
    args = p.parse_args(own)
    t_start = time.time()
    state = json.loads((args.run / "train_state" / "state.json").read_text())
    if state["stage"] != "video":
        p.error(f"{args.run} is in the {state['stage']} stage; this script resumes video-stage runs")
    step = state["step"]
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        shutil.copytree(args.run, probe, ignore=shutil.ignore_patterns("image_unet"))
        train(extra + ["--out", str(probe), "--resume", "--video-steps", str(step + args.probe_steps),
                       "--log-every", "25", "--ckpt-every", str(10**9), "--quiet"])
        rate = steps_per_second(log_records(probe))
    left = args.minutes - (time.time() - t_start) / 60 - args.reserve
    if left <= 0:
        raise SystemExit(f"no time left after the probe ({rate:.2f} steps/s)")
    total = step + int(rate * left * 60)
    print(json.dumps({"probe_steps_per_s": round(rate, 3), "from_step": step, "video_steps": total,
                      "minutes": round(left, 2)}), flush=True)
    train(extra + ["--out", str(args.run), "--resume", "--video-steps", str(total), "--minutes", f"{left:.3f}"])


if __name__ == "__main__":
    main()
