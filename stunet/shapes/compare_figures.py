"""``stunet compare``, the pictures: the rate-error figure of the report, and the studio's side-by-side
clips and X-T slices with the keyframes marked."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..analysis import xt_slice
from . import metrics
from .compare_scores import LABELS
from .periodic import KEYFRAME_STRIDE, NYQUIST


PLOT_CAPTION = ("Mean relative rate error of spins, orbits and bounces against how fast the motion is per keyframe "
                "interval. Past the dashed Nyquist line (0.5 cycles per interval) keyframes every 4th frame cannot "
                "represent the motion on their own; Lumiere's claim predicts the cascade's error rising there and "
                "STUNet's, which makes every frame at once, not. What was measured:")


MOTION_MARKERS = {"spinning": "o", "orbiting": "s", "bouncing": "^"}


def rate_error_figure(result: dict):
    """The matplotlib figure of ``plot_rate_error`` (Agg): mean relative rate error (%) against cycles per
    keyframe interval, the keyframes' Nyquist limit (``NYQUIST``) a vertical dashed line. One colour per model
    and, where the result has ``by_motion_cycles``, one line per model and periodic motion (its marker: the
    motions differ in difficulty, so one line through all of them would zig-zag between motions, not rates);
    else one line per model through ``by_cycles``."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    style = {"stunet": dict(color="#1f77b4"), "cascade": dict(color="#d62728"),
             "oracle": dict(color="#ff7f0e", linestyle="--"), "reference": dict(color="#6baed6", linestyle="-."),
             "world": dict(color="#7f7f7f", linestyle=":")}
    fig = Figure(figsize=(8.8, 4.4), dpi=100)
    ax = fig.subplots()
    top, right = 0.0, 0.0
    by_motion = result.get("by_motion_cycles")
    motions_seen = []
    for m in result["models"]:
        lines = by_motion.get(m, {}) if by_motion else {None: result["by_cycles"].get(m, [])}
        drawn = False
        for motion, pts in lines.items():
            pts = [(c, e) for c, e, *_ in pts if e is not None]
            if not pts:
                continue
            x, y = zip(*pts)
            y = [100 * v for v in y]
            top, right = max(top, max(y)), max(right, max(x))
            ax.plot(x, y, marker=MOTION_MARKERS.get(motion, "o"), label="_" + str(motion), **style.get(m, {}))
            drawn = True
            if motion and motion not in motions_seen:
                motions_seen.append(motion)
        if drawn:
            ax.plot([], [], label=LABELS.get(m, m), **style.get(m, {}))              # the model's legend entry
    for motion in motions_seen:
        ax.plot([], [], color="black", linestyle="none", marker=MOTION_MARKERS[motion], label=motion)
    ax.axvline(NYQUIST, color="black", linestyle="--", linewidth=1.2,
               label=f"keyframe Nyquist limit ({NYQUIST:g} cycles / interval)")
    ax.set_xlabel(f"motion rate, cycles per keyframe interval ({result.get('keyframe_interval', KEYFRAME_STRIDE)} "
                  "frames)")
    ax.set_ylabel("mean relative rate error (%)")
    ax.set_xlim(0, max(0.75, right + 0.05))
    ax.set_ylim(0, max(10.0, top * 1.1))
    ax.set_title("STUNet vs keyframe cascade: periodic motion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def plot_rate_error(result: dict, path: str | Path) -> Path:
    """``rate_error.png`` (see ``rate_error_figure``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate_error_figure(result).savefig(path)
    return path


KEYFRAME_RGB = (255, 170, 0)         # keyframe marks: an amber border / tick


def mark_keyframes(video: np.ndarray, keyframes: Sequence[int], width: int = 1, rgb=KEYFRAME_RGB) -> np.ndarray:
    """A copy of the clip (t h w 3) with a coloured border on the keyframes."""
    v = np.array(video, copy=True)
    for k in keyframes:
        if 0 <= k < len(v):
            v[k, :width], v[k, -width:], v[k, :, :width], v[k, :, -width:] = rgb, rgb, rgb, rgb
    return v


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2, fill: int = 64) -> np.ndarray:
    """Two clips of the same length as one (t h (w1 + gap + w2) 3): played together, always in sync."""
    if len(left) != len(right):
        raise ValueError(f"clips of {len(left)} and {len(right)} frames")
    h = max(left.shape[1], right.shape[1])
    t = len(left)
    out = np.full((t, h, left.shape[2] + gap + right.shape[2], 3), fill, np.uint8)
    out[:, :left.shape[1], :left.shape[2]] = left
    out[:, :right.shape[1], left.shape[2] + gap:] = right
    return out


def object_row(video: np.ndarray) -> int:
    """The image row through the object: the median of its centre's row over the frames (the middle row if none)."""
    fm = metrics.measure_frames(np.asarray(video))
    y = fm.y[np.isfinite(fm.y)]
    h = video.shape[1]
    return int(np.clip(round(float(np.median(y))), 0, h - 1)) if len(y) else h // 2


def xt_pair(left: np.ndarray, right: np.ndarray, keyframes: Sequence[int], rows: tuple[int, int] | None = None,
            scale: int = 8, gap: int = 12, tick: int = 6) -> tuple[np.ndarray, tuple[int, int]]:
    """X-T slices (time runs down) of two clips through each one's object row, side by side, upscaled; the right
    one's keyframe rows get ticks (``KEYFRAME_RGB``) in the margins either side. Returns (image, rows used)."""
    rows = rows or (object_row(left), object_row(right))
    a = xt_slice(left, rows[0]).repeat(scale, 0).repeat(scale, 1)
    b = xt_slice(right, rows[1]).repeat(scale, 0).repeat(scale, 1)
    h = max(len(a), len(b))
    out = np.full((h, a.shape[1] + gap + tick + b.shape[1] + tick, 3), 32, np.uint8)
    out[:len(a), :a.shape[1]] = a
    x0 = a.shape[1] + gap + tick
    out[:len(b), x0:x0 + b.shape[1]] = b
    for k in keyframes:
        if 0 <= k < len(right):
            y0, y1 = k * scale, (k + 1) * scale
            out[y0:y1, x0 - tick:x0] = KEYFRAME_RGB
            out[y0:y1, x0 + b.shape[1]:x0 + b.shape[1] + tick] = KEYFRAME_RGB
    return out, rows
