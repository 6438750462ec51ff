"""Issue 18: STUNet against the keyframes + TSR cascade, from one image stage, same clips, same FLOPs.

    python scripts/cascade_experiment.py --out runs/issue18 --budget-clips 48000 --device cuda --batch 8

1. one image stage (the ``shapes`` recipe: 700 steps of 64 frames) -> ``RUN/image`` (its image U-Net:
   ``RUN/image/image_unet``);
2. the STUNet arm from it -> ``RUN/stunet`` (``stunet train --init``, the preset's STUNet, N clips);
3. the cascade arm from the same weights -> ``RUN/cascade`` (``stunet train-cascade --init``, N clips,
   FLOPs per clip matched to the STUNet's: see ``stunet.cascade.train``);
4. ``RUN/budget.json``: parameters, clips, FLOPs, CPU and wall (device) seconds of every arm, and where each
   stretch of it ran (``segments``: device, precision, threads, steps), since a resumed arm may change machines.

Every stage runs with ``--resume``: run the same command again after an interruption and it goes on
where it stopped (a finished stage is a no-op). ``--parallel`` trains the two arms at once, each in its
own process on half of ``--threads`` (on a 2-core AVX512 CPU at bf16: 1 thread each, 6.9 clips per second
in all against 5.9 for one arm after the other on 2 threads); the FLOPs, clips and CPU seconds each arm logs are
its own either way. It runs unattended end to end, on CPU too (``--preset
tiny`` with a tiny budget is the test's). On a GPU the world's clips, drawn in Python, are the
bottleneck of both arms: ``--workers N`` draws them in N DataLoader processes (as ``stunet train``).
Evaluating the two arms is ``stunet compare``'s job.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def last_counters(log_path: Path, stage: str) -> dict:
    """The last step record of ``stage`` in a train.log (its cumulative counters), {} when there is none."""
    rec = {}
    if log_path.is_file():
        for line in log_path.read_text().splitlines():
            r = json.loads(line)
            if r.get("stage") == stage and "loss" in r:
                rec = r
    keys = ("step", "clips", "images", "keyframes", "windows", "flops", "cpu_seconds", "wall_seconds")
    return {k: rec[k] for k in keys if k in rec}


def segments(log_path: Path, stage: str) -> list[dict]:
    """Where a resumable run trained ``stage``: one entry per process (``start`` event) that took steps,
    with its device, precision, threads and CPU capability, the steps it kept (``from_step`` to ``to_step``;
    steps logged after the last checkpoint of a killed process end where the next process resumed) and its
    wall seconds (start event to its last record). A run moved between machines says so here."""
    if not log_path.is_file():
        return []
    segs = []
    for line in log_path.read_text().splitlines():
        r = json.loads(line)
        if r.get("event") == "start":
            a = r.get("args", {})
            segs.append({"device": a.get("device"), "precision": a.get("precision"), "threads": a.get("threads"),
                         "workers": a.get("workers"), "from_step": r.get("step", 0) if r.get("stage") == stage else 0,
                         "to_step": None, "t0": r["time"], "t1": r["time"]})
        elif segs and r.get("event") == "precision":
            segs[-1]["cpu_capability"] = r.get("cpu_capability")
        elif segs and r.get("stage") == stage and ("loss" in r or r.get("event") in ("stopped", "done")):
            segs[-1]["to_step"], segs[-1]["t1"] = r["step"], r["time"]
    out = []
    for i, seg in enumerate(segs):
        nxt = next((s for s in segs[i + 1:] if s["to_step"] is not None), None)
        if seg["to_step"] is None:
            continue
        if nxt is not None:
            seg["to_step"] = min(seg["to_step"], nxt["from_step"])
        seg["steps"] = seg["to_step"] - seg["from_step"]
        seg["wall_seconds"] = round(seg.pop("t1") - seg.pop("t0"), 1)
        if seg["steps"] > 0:
            out.append(seg)
    return out


def budget(run: Path, preset_name: str, device: str) -> dict:
    from stunet.cascade.config import net_preset
    from stunet.checkpoint import estimate_parameters
    from stunet.config import preset
    stages = {"image": "image", "stunet": "video", "cascade": "video"}        # arm (its folder) -> its stage
    arms = {name: last_counters(run / name / "train.log", stage) for name, stage in stages.items()}
    params = {"image": estimate_parameters(preset(preset_name).image()),
              "stunet": estimate_parameters(preset(preset_name)),
              "cascade": estimate_parameters(net_preset(preset_name))}
    for name, arm in arms.items():
        arm["parameters"] = params[name]
        arm["segments"] = segs = segments(run / name / "train.log", stages[name])
        used = sorted({s["device"] for s in segs}) or [device]
        arm["device"] = ", ".join(used)
        gpu = [s["wall_seconds"] for s in segs if str(s["device"]).startswith("cuda")]
        arm["device_seconds"] = round(sum(gpu), 1) if gpu else None
        if arm.get("clips"):
            arm["flops_per_clip"] = arm["flops"] / arm["clips"]
    s, c = arms["stunet"], arms["cascade"]
    ratios = {}
    if s.get("flops") and c.get("flops"):
        ratios = {"cascade_over_stunet_flops": c["flops"] / s["flops"],
                  "cascade_over_stunet_parameters": c["parameters"] / s["parameters"]}
    return {"preset": preset_name, "arms": arms, **ratios, "written": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_in_parallel(arms: dict[str, list[str]], threads: int, run: Path) -> None:
    """``stunet <command> <argv>`` for every arm at once, each a subprocess on ``threads // 2`` threads (at least
    1), its output in ``RUN/<command>.out``; raises if any fails."""
    import os
    import subprocess
    each = str(max(1, threads // 2))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    procs = {}
    for command, argv in arms.items():
        argv = list(argv)
        argv[argv.index("--threads") + 1] = each
        with open(run / f"{command}.out", "ab") as out:
            procs[command] = subprocess.Popen([sys.executable, "-m", "stunet", command, *argv], env=env,
                                              stdout=out, stderr=subprocess.STDOUT)
    failed = {c: rc for c, rc in ((c, p.wait()) for c, p in procs.items()) if rc != 0}
    if failed:
        raise SystemExit(f"arms failed: {failed} (see {', '.join(str(run / f'{c}.out') for c in failed)})")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder: image/, stunet/, cascade/, budget.json")
    p.add_argument("--budget-clips", type=int, required=True, help="world clips each arm trains on (N)")
    p.add_argument("--batch", type=int, default=8, help="clips per step (both arms)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--preset", default="shapes", help="shapes (the experiment) or tiny (a test)")
    p.add_argument("--image-steps", type=int, default=700)
    p.add_argument("--image-batch", type=int, default=64)
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes drawing clips (both arms)")
    p.add_argument("--parallel", action="store_true",
                   help="train the two arms at once, in two processes on half of --threads each")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.budget_clips < 1 or args.batch < 1:
        p.error("--budget-clips and --batch must be >= 1")
    import torch

    from stunet.cascade.train import main as train_cascade
    from stunet.train import main as train
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    steps = math.ceil(args.budget_clips / args.batch)
    common = ["--preset", args.preset, "--batch", str(args.batch), "--device", device, "--precision", args.precision,
              "--threads", str(args.threads), "--seed", str(args.seed), "--log-every", str(args.log_every),
              "--ckpt-every", str(args.ckpt_every), "--workers", str(args.workers), "--resume"] + (["--quiet"] if args.quiet else [])
    image = run / "image" / "image_unet"
    train(common + ["--out", str(run / "image"), "--image-steps", str(args.image_steps),
                    "--image-batch", str(args.image_batch), "--video-steps", "0"])
    arms = {"train": common + ["--out", str(run / "stunet"), "--init", str(image), "--video-steps", str(steps)],
            "train-cascade": common + ["--out", str(run / "cascade"), "--init", str(image), "--video-steps", str(steps)]}
    if args.parallel:
        run_in_parallel(arms, args.threads or torch.get_num_threads(), run)
    else:
        train(arms["train"])
        train_cascade(arms["train-cascade"])
    result = budget(run, args.preset, device)
    (run / "budget.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.quiet:
        print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
