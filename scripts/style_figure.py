"""A figure of stylized generation (issue 33, Lumiere section 4.1): one prompt and seed, every style at
several strengths, a few frames of each clip side by side, so that the style is seen to change the look
while the motion (the object's place and pose in each frame) stays.

    python scripts/style_figure.py --styles assets/stunet-shapes-styles/outline assets/stunet-shapes-styles/gradient \
        assets/stunet-shapes-styles/stripes --out assets/stunet-shapes-styles/styles.png

Rows: the model's own weights (strength 0), then each style at each ``--strengths`` value; columns: frames
``--frames`` of the clip. Every clip starts from the same noise (one generator per clip, the same seed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunet.defaults import PRECISIONS  # noqa: E402
from stunet.pipeline import Pipeline, Settings  # noqa: E402
from stunet.style_weights import read_style_info, styled_pipeline  # noqa: E402


def clip_rows(pipe: Pipeline, styles: list[str], strengths: list[float], settings: Settings):
    """[(label, uint8 clip t h w 3)]: the model's own clip, then every style at every strength."""
    rows = [("no style", pipe(settings).video)]
    for d in styles:
        name = read_style_info(d)["style"]
        for a in strengths:
            rows.append((f"{name} {a:g}", styled_pipeline(pipe, d, a)(settings).video))
    return rows


def grid(rows, frames: list[int], cell: int = 64, gap: int = 2) -> np.ndarray:
    """The rows' chosen frames as one uint8 image (nearest-neighbour enlarged to ``cell`` pixels)."""
    h = len(rows) * (cell + gap) - gap
    w = len(frames) * (cell + gap) - gap
    out = np.full((h, w, 3), 255, np.uint8)
    for i, (_, clip) in enumerate(rows):
        for j, f in enumerate(frames):
            k = cell // clip.shape[1]
            img = np.kron(clip[f], np.ones((k, k, 1), np.uint8))
            out[i * (cell + gap):i * (cell + gap) + img.shape[0], j * (cell + gap):j * (cell + gap) + img.shape[1]] = img
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", nargs="+", required=True, help="style directories (stunet stylize)")
    p.add_argument("--out", required=True, help="a .png")
    p.add_argument("--model", default=None, help="base checkpoint (default: the shipped model)")
    p.add_argument("--prompt", default="a red square spinning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strengths", default="0.5,1")
    p.add_argument("--frames", default="0,4,8,12,16,20,24,28")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    a = p.parse_args(argv)
    from PIL import Image
    pipe = Pipeline.from_pretrained(a.model, precision=a.precision)
    rows = clip_rows(pipe, a.styles, [float(s) for s in a.strengths.split(",")], Settings(a.prompt, seed=a.seed))
    Image.fromarray(grid(rows, [int(f) for f in a.frames.split(",")])).save(a.out)
    print(a.out + ": rows " + "; ".join(label for label, _ in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
