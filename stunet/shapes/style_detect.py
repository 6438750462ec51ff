"""Which rendering style a frame shows: ``flat``, ``outline``, ``gradient`` or ``stripes`` (``world.STYLES``).

An analytic detector like ``metrics`` (no learned judge), on one uint8 frame (h w 3, black background)
of any size. The frame's object is its largest foreground component (max channel >= ``FG_THRESHOLD``, by
total brightness); its *filled* region is the component with the holes it encloses (the background not
4-connected to the frame's border), and its *interior* is that region eroded by one pixel (so
anti-aliased edges do not count). Brightness is relative to the object's own peak (the 95th percentile of
its pixels), so colour and overall brightness do not matter. Three readings:

    hole        share of the interior darker than ``DARK`` of the peak: an outline's hole
    slope       least-squares slope of brightness against (distance from the centre / the largest
                distance)^2 over the lit interior: a gradient falls toward the outline (about -0.5 in
                the world), a flat object is level (0)
    residual    rms of the brightness around that fit: stripes alternate (about 0.2 in the world),
                a gradient and a flat object fit the line (under 0.07)

Decision, in this order: ``outline`` when the hole is at least ``HOLE_MIN``; ``stripes`` when the
residual is at least ``RESIDUAL_MIN``; ``gradient`` when the slope is at most ``SLOPE_MAX``; else
``flat`` (also for an object with fewer than ``MIN_INTERIOR`` interior pixels, too small to tell). No
object: None. The thresholds sit about halfway between the styles' readings on world frames
(``tests/test_style_world.py`` checks the accuracy on frames of every style, colour and shape).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import label_components

FG_THRESHOLD = 40            # max channel of a foreground pixel (dark stripes and rims stay above it)
PEAK_PERCENTILE = 95         # the object's peak brightness: this percentile of its pixels
DARK = 0.25                  # relative brightness under which an interior pixel is dark (a hole)
HOLE_MIN = 0.10              # outline: dark share of the interior (world outlines 0.16-0.35, other styles 0)
RESIDUAL_MIN = 0.11          # stripes: rms around the radial fit (world stripes >= 0.16, others <= 0.07)
SLOPE_MAX = -0.25            # gradient: radial slope (world gradients <= -0.45, flat >= -0.04)
MIN_INTERIOR = 3             # fewer interior pixels than this: too small to tell (read as flat)


@dataclass(frozen=True)
class StyleReading:
    """One frame's reading: the style (None without an object) and what it was decided on."""
    style: str | None
    hole: float = 0.0
    slope: float = 0.0
    residual: float = 0.0
    interior: int = 0

    def to_dict(self) -> dict:
        return {"style": self.style, "hole": round(self.hole, 4), "slope": round(self.slope, 4),
                "residual": round(self.residual, 4), "interior": self.interior}


def _outside(obj: np.ndarray) -> np.ndarray:
    """Pixels not in ``obj`` that are 4-connected to the frame's border through pixels not in ``obj``."""
    free = ~obj
    reach = np.zeros_like(obj)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = free[0], free[-1], free[:, 0], free[:, -1]
    while True:
        p = np.pad(reach, 1)
        grown = (reach | p[1:-1, :-2] | p[1:-1, 2:] | p[:-2, 1:-1] | p[2:, 1:-1]) & free
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbourhood erosion (outside the frame counts as outside the mask)."""
    p = np.pad(mask, 1)
    return mask & p[1:-1, :-2] & p[1:-1, 2:] & p[:-2, 1:-1] & p[2:, 1:-1]


def read_frame(frame: np.ndarray) -> StyleReading:
    """The style of one uint8 frame (h w 3) and its readings."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"a frame must be h w 3, got {frame.shape}")
    b = frame.max(-1).astype(np.float64)
    fg = b >= FG_THRESHOLD
    if not fg.any():
        return StyleReading(None)
    labels = label_components(fg)
    ids, inv = np.unique(labels[fg], return_inverse=True)
    main = labels == ids[int(np.argmax(np.bincount(inv, weights=b[fg])))]
    filled = ~_outside(main)
    interior = _erode(filled)
    n_int = int(interior.sum())
    if n_int < MIN_INTERIOR:
        return StyleReading("flat", interior=n_int)
    rel = b / max(float(np.percentile(b[main], PEAK_PERCENTILE)), 1.0)
    hole = float((interior & (rel < DARK)).sum() / n_int)
    lit = interior & (rel >= DARK)
    slope = residual = 0.0
    if lit.sum() >= MIN_INTERIOR:
        ys, xs = np.mgrid[0:b.shape[0], 0:b.shape[1]] + 0.5
        area = filled.sum()
        cx, cy = (xs * filled).sum() / area, (ys * filled).sum() / area
        d = np.hypot(xs - cx, ys - cy)
        rho2 = (d[lit] / max(float(d[filled].max()), 1e-6)) ** 2
        A = np.stack([np.ones_like(rho2), rho2], 1)
        coef, *_ = np.linalg.lstsq(A, rel[lit], rcond=None)
        slope = float(coef[1])
        residual = float(np.sqrt(np.mean((rel[lit] - A @ coef) ** 2)))
    if hole >= HOLE_MIN:
        style = "outline"
    elif residual >= RESIDUAL_MIN:
        style = "stripes"
    elif slope <= SLOPE_MAX:
        style = "gradient"
    else:
        style = "flat"
    return StyleReading(style, hole, slope, residual, n_int)


def detect_style(frame: np.ndarray) -> str | None:
    """``flat``, ``outline``, ``gradient``, ``stripes``, or None for a frame without an object."""
    return read_frame(frame).style


def detect_styles(video: np.ndarray) -> list[str | None]:
    """The style of every frame of a uint8 clip (t h w 3)."""
    video = np.asarray(video)
    if video.ndim != 4:
        raise ValueError(f"a clip must be t h w 3, got {video.shape}")
    return [detect_style(f) for f in video]


def style_share(video: np.ndarray, style: str) -> float:
    """Share of a clip's frames (0..1) the detector reads as ``style`` (a frame without an object counts
    as not in it)."""
    styles = detect_styles(video)
    return sum(s == style for s in styles) / max(len(styles), 1)


def majority_style(video: np.ndarray) -> str | None:
    """The style most of a clip's frames are read as (None when most frames have no object)."""
    styles = detect_styles(video)
    keys = ["" if s is None else s for s in styles]
    names, counts = np.unique(keys, return_counts=True)
    return str(names[int(np.argmax(counts))]) or None
