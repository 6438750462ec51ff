"""What the image stage buys: two training runs with the same wall-clock budget, compared on a
fixed validation set of video clips.

    python scripts/ablate_image_stage.py --minutes 8 --out runs/ablation

Run A spends half its budget on the image stage (single frames), inflates, then trains on video;
run B trains the STUNet on video from scratch for the whole budget. Both use the `shapes`
preset, the same seed and settings; the score is the v-prediction MSE of each run's EMA
weights on 16 fixed batches of clips (same clips, noise, timesteps and conditioning tasks for
both), plus the processes' CPU seconds. Writes OUT/ablation.json.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without `pip install -e .`

from stunet.checkpoint import load_pretrained
from stunet.diffusion import alphas_cumprod
from stunet.shapes.data import tokenizer_for, video_batch
from stunet.train import loss_fn, main as train


def validation_loss(model, batches: int = 16, batch: int = 8) -> float:
    cfg = model.config
    tok, ac = tokenizer_for(cfg), alphas_cumprod(cfg)
    losses = []
    for i in range(batches):
        rng = np.random.default_rng([12345, i])
        b = video_batch(rng, tok, cfg, batch)
        with torch.no_grad():
            losses.append(loss_fn(model, cfg, ac, b, rng, torch.Generator().manual_seed(i)).item())
    return float(np.mean(losses))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of each run")
    p.add_argument("--image-share", type=float, default=0.5, help="part of run A's budget for the image stage")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/ablation")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    common = ["--preset", "shapes", "--video-steps", "100000", "--warmup", "20", "--ckpt-every", "100000",
              "--log-every", "10", "--threads", str(args.threads), "--quiet"]
    result = {"minutes": args.minutes, "image_share": args.image_share, "threads": args.threads, "runs": {}}
    for name, image_minutes in (("A_image_then_video", args.minutes * args.image_share), ("B_video_only", 0.0)):
        run = out / name
        t0, c0 = time.time(), cpu_seconds()
        if image_minutes > 0:   # image stage bounded by time: find its step count with --minutes, then inflate
            train(common + ["--out", str(run), "--image-steps", "100000", "--minutes", str(image_minutes)])
            state = json.loads((run / "train_state" / "state.json").read_text())
            train(common + ["--out", str(run), "--image-steps", str(state["step"]), "--resume",
                            "--minutes", str(args.minutes - (time.time() - t0) / 60)])
        else:
            train(common + ["--out", str(run), "--image-steps", "0", "--minutes", str(args.minutes)])
        log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
        steps = {s: max([r["step"] for r in log if r.get("stage") == s and "step" in r] or [0])
                 for s in ("image", "video")}
        model, _ = load_pretrained(run)
        result["runs"][name] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu_seconds() - c0, 1),
                                "image_steps": steps["image"], "video_steps": steps["video"],
                                "validation_loss": round(validation_loss(model), 5)}
        print(name, result["runs"][name], flush=True)
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
