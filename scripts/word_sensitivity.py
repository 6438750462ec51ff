"""How much does each kind of word change the network's prediction? (a training diagnostic)

    python scripts/word_sensitivity.py [--model DIR]

For a world clip ("a red circle moving left"), noised at several diffusion steps n, prints the
RMS change of the network output when the caption's motion, colour or shape word is swapped, or
the caption is dropped. A model that has learned motion from text changes its prediction at high
noise when "left" becomes "right"; one that copies motion from the noisy input does not.

With ``--trajectories`` it also samples clips (25 DPM-Solver++ steps, guidance 3) for a few
linear-motion prompts and seeds and prints, at several denoising steps, how far the predicted
clean clip's centre of brightness moves from its first to its last frame (dx > 0: right,
dy > 0: down): when the direction appears, and whether it follows the words or the seed.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without `pip install -e .`

from stunet.checkpoint import default_model_dir, load_pretrained
from stunet.diffusion import add_noise, alphas_cumprod
from stunet.shapes.data import to_tensor
from stunet.shapes.world import ClipSpec, make_clip

SWAPS = {"motion (left -> right)": "a red circle moving right", "motion (left -> still)": "a red circle standing still",
         "colour (red -> blue)": "a blue circle moving left", "shape (circle -> square)": "a red square moving left",
         "no caption": ""}


def sensitivity(model, tok, steps=(500, 800, 950, 999), seed=0) -> dict:
    cfg = model.config
    ac = alphas_cumprod(cfg)
    x0 = to_tensor(make_clip(ClipSpec("red", "circle", "moving left"), cfg.frames, cfg.height, 1, seed=3).video[None])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def out(caption, n):
        ids, _ = tok.batch([caption])
        nt = torch.tensor([n])
        with torch.no_grad():
            return model(add_noise(ac, x0, noise, nt), nt, model.encode_text(ids), 1)

    table = {}
    for n in steps:
        ref = out("a red circle moving left", n)
        table[n] = {k: round(float((out(c, n) - ref).pow(2).mean().sqrt()), 4) for k, c in SWAPS.items()}
    return table


def centroid_drift(video: torch.Tensor) -> tuple[float, float]:
    """video: t h w 3 in [-1, 1] -> (dx, dy) of the brightness centroid, last frame minus first."""
    m = ((video.float() + 1) / 2).clamp(0, 1).amax(-1)
    m = (m - 0.15).clamp_min(0)
    xs = torch.arange(video.shape[2], dtype=torch.float32)
    ys = torch.arange(video.shape[1], dtype=torch.float32)
    tot = m.sum((1, 2)).clamp_min(1e-3)
    cx, cy = (m.sum(1) * xs).sum(-1) / tot, (m.sum(2) * ys).sum(-1) / tot
    return float(cx[-1] - cx[0]), float(cy[-1] - cy[0])


def trajectories(model, tok, prompts=("a red circle moving left", "a red circle moving right",
                                      "a red circle moving up", "a red circle moving down"),
                 seeds=(0, 1), at=(0, 2, 4, 8, 24)):
    from stunet.pipeline import Pipeline, Settings
    pipe = Pipeline(model, tok)
    for prompt in prompts:
        for seed in seeds:
            outs = list(pipe.iter(Settings(prompt, seed=seed, steps=25)))
            cells = []
            for k in at:
                dx, dy = centroid_drift(outs[k].x0[0].permute(1, 2, 3, 0))
                cells.append(f"step {k}: dx {dx:+.1f} dy {dy:+.1f}")
            print(f"{prompt} (seed {seed}): " + " | ".join(cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trajectories", action="store_true", help="also sample clips and print x0-hat drift")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = load_pretrained(args.model or default_model_dir())
    table = sensitivity(model, tok)
    print("| n | " + " | ".join(SWAPS) + " |")
    print("|---:|" + "---:|" * len(SWAPS))
    for n, row in table.items():
        print(f"| {n} | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")
    print(json.dumps(table))
    if args.trajectories:
        trajectories(model, tok)


if __name__ == "__main__":
    main()
