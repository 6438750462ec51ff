"""Evaluate a training run's current checkpoint and append the result to its evaluation curve.

Run it while training goes (it copies the checkpoint first, so the trainer can keep writing):

    python scripts/eval_curve.py runs/shapes2 --seeds 1            # appends to runs/shapes2/eval_curve.jsonl

Each line: the video step the checkpoint was saved at, and the model's colour / shape / motion /
coherence / all-four / motion-ignoring-speed percentages on the fixed prompt set
(``stunet.shapes.evaluate``; same settings as ``python -m stunet eval`` apart from the seeds).
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without `pip install -e .`

from stunet.checkpoint import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME, load_pretrained
from stunet.defaults import GUIDANCE as DEFAULT_GUIDANCE
from stunet.shapes.evaluate import evaluate_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="training output folder (holds config.json + model.safetensors)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="curve file (default: RUN/eval_curve.jsonl)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME):
            shutil.copy2(run / name, Path(tmp) / name)
        with safe_open(str(Path(tmp) / WEIGHTS_NAME), "pt") as f:
            meta = f.metadata() or {}
        model, tok = load_pretrained(tmp)
    t0 = time.time()
    res = evaluate_model(model, tok, seeds=args.seeds, steps=args.steps, guidance=args.guidance,
                         ceiling=False)
    row = {"time": round(time.time(), 1), "stage": meta.get("stage"), "step": int(meta.get("step", -1)),
           "seeds": args.seeds, "steps": args.steps, "guidance": args.guidance, "seconds": round(time.time() - t0, 1),
           **{k: round(float(v), 2) for k, v in res["model"].items() if isinstance(v, (int, float))}}
    out = Path(args.out) if args.out else run / "eval_curve.jsonl"
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
