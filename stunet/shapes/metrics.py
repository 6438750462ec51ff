"""Analytic detectors for shapes-world clips: colour, shape, motion, coherence (no learned judge).

Everything works on the pixels of a uint8 clip (t h w 3, black background) and knows only
the world's *rules* (palette, shapes, motion laws and speeds from ``stunet.shapes.world``), never
a clip's hidden ground truth. Lengths are measured in pixels of the clip and converted to
"world pixels" (of a 32-pixel frame) where they are compared with the world's constants,
so any frame size works. Times are in *base frames*: frame i of a clip drawn at stride s is
base frame i * s.

Per frame
    foreground   max channel >= ``FG_THRESHOLD`` (the darkest palette colour peaks at 220)
    objects      8-connected components of the foreground (numpy label propagation);
                 components under ``SPECK_PIXELS`` pixels are specks and ignored
    colour       mean colour of the largest component's core (pixels at >= 75 % of its
                 brightest), nearest palette colour by chromaticity (robust to a dim object)
    coverage     per pixel, the projection of its colour on that colour (anti-aliased
                 edges are fractional), over the component grown by one pixel
    area, centre coverage-weighted
    harmonics    m_n = sum w z^n / sum w |z|^n with z = (x - cx) + i (y - cy): rotation
                 invariant in magnitude; a square has only n = 4k, a triangle only n = 3k
                 and a circle neither. arg(m_n) / n is the orientation (clockwise on screen,
                 modulo the shape's symmetry), which is what spinning is measured with.

Per clip
    colour, shape  majority vote over frames
    motion         a classifier (``classify_motion``) says which motion the track shows,
                   independent of the prompt; the motion is right when it is the prompt's
                   and its rate matches the prompt's speed within ``RATE_TOLERANCE``
                   (linear: px per frame; bouncing / spinning / orbiting: period;
                   growing / shrinking: radius per frame)
    coherence      exactly one object in every frame and, unless the prompt grows or
                   shrinks, a stable size (max/min area <= ``SIZE_RATIO_MAX``)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import world
from .world import ClipSpec

FG_THRESHOLD = 64            # max channel (0..255) of a foreground pixel
SPECK_PIXELS = 3.0           # components smaller than this (pixels, at 32 px; scaled by area) are specks
CORE_FRACTION = 0.75         # colour from pixels at least this bright relative to the component's peak
COVERAGE_FLOOR = 0.06        # coverage below this counts as background
SHAPE_TRIANGLE = 0.30        # |m3| at or above this: triangle (world: 0.57-0.67; circles < 0.05)
SHAPE_SQUARE = 0.20          # |m4| at or above this (and not a triangle): square (world: 0.34-0.48)
STILL_WANDER = 0.75          # world px: rms distance of the centre from its mean below which it has not moved
SPIN_MIN_DEGREES = 12.0      # total rotation below which a shape is not spinning
GROW_MIN_RATE = 0.04         # world px of radius per base frame for growing / shrinking (slowest: 0.08)
MONOTONE_MIN = 0.9           # |correlation| of size with time for growing / shrinking
SIZE_RATIO_MAX = 1.35        # max/min area over frames for a stable size
RATE_TOLERANCE = 1.25        # measured / expected rate (speed or period) within [1/tol, tol]
LINEAR_PERP_MAX = 0.35       # linear motion: perpendicular speed / speed along the axis
BOUNCE_X_MAX = 0.3           # bouncing: horizontal range / vertical range
FIT_RMS_MAX = 0.15           # track fits: rms residual / track extent
MAX_CHROMA_SPREAD = 0.25     # an object is one colour: rms spread of its core's chromaticity
MAX_OBJECT_FRACTION = 0.45   # an object covers at most this much of the frame (world: <= 0.31)


# ----------------------------------------------------------------------------- components
def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean (..., h, w) mask, per 2-D slice.

    Returns int labels (0 = background; a component's label is 1 + the flat index of one of
    its pixels, unique across the whole array). Pure numpy: min-label propagation with
    pointer jumping, a few dozen vectorised passes for shapes-world frames.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape[-2:]
    big = np.iinfo(np.int64).max
    idx = np.arange(1, mask.size + 1, dtype=np.int64).reshape(mask.shape)
    lab = np.where(mask, idx, big)
    flat_index = np.flatnonzero(mask.ravel())
    pad = [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]
    while True:
        p = np.pad(lab, pad, constant_values=big)
        m = lab
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                m = np.minimum(m, p[..., dy:dy + h, dx:dx + w])
        m = np.where(mask, m, big)
        # pointer jumping: a label is a pixel of the same component; take that pixel's label
        flat = m.ravel()
        vals = flat[flat_index]
        for _ in range(4):
            nxt = flat[vals - 1]
            if np.array_equal(nxt, vals):
                break
            vals = nxt
        flat = flat.copy()
        flat[flat_index] = vals
        m = flat.reshape(mask.shape)
        if np.array_equal(m, lab):
            break
        lab = m
    return np.where(mask, lab, 0)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """One-pixel 8-neighbourhood dilation of (..., h, w)."""
    h, w = mask.shape[-2:]
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    out = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[..., dy:dy + h, dx:dx + w]
    return out


PALETTE_NAMES = tuple(world.COLORS)
PALETTE = np.array([world.COLORS[c] for c in PALETTE_NAMES], dtype=np.float64)
PALETTE_CHROMA = PALETTE / PALETTE.max(1, keepdims=True)


def nearest_color(rgb) -> str:
    """Nearest palette colour by chromaticity (colour / its max channel), so a dim object keeps its hue."""
    rgb = np.asarray(rgb, dtype=np.float64)
    c = rgb / max(float(rgb.max()), 1.0)
    d = ((PALETTE_CHROMA - c[None]) ** 2).sum(1)
    return PALETTE_NAMES[int(np.argmin(d))]


# ----------------------------------------------------------------------------- per frame
@dataclass
class FrameMeasures:
    """Per-frame measurements (arrays of length t; NaN where a frame has no object)."""
    objects: np.ndarray          # components at or above the speck size
    specks: np.ndarray           # components below it
    area: np.ndarray             # coverage-weighted area of the largest object (pixels)
    x: np.ndarray                # its centre
    y: np.ndarray
    rgb: np.ndarray              # t 3, mean core colour
    m3: np.ndarray               # complex harmonics
    m4: np.ndarray
    spread: np.ndarray           # rms spread of the core's chromaticity (colour / its max channel)
    frame_pixels: int = 1024

    @property
    def present(self) -> np.ndarray:
        return self.objects >= 1

    @property
    def plausible(self) -> np.ndarray:
        """Frames whose largest object looks like a world object: one solid colour, not the whole frame."""
        with np.errstate(invalid="ignore"):
            return self.present & (self.spread <= MAX_CHROMA_SPREAD) & \
                (self.area <= MAX_OBJECT_FRACTION * self.frame_pixels)


def measure_frames(video: np.ndarray) -> FrameMeasures:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be t h w 3, got {video.shape}")
    t, h, w, _ = video.shape
    v = video.astype(np.float64)
    bright = v.max(-1)
    fg = bright >= FG_THRESHOLD
    labels = label_components(fg)
    speck = max(1.0, SPECK_PIXELS * h * w / 1024.0)

    # components of the whole stack at once: size, brightness, frame
    on = labels > 0
    ids, inv, counts = np.unique(labels[on], return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=bright[on], minlength=len(ids))
    frame_of = (ids - 1) // (h * w)
    obj = counts >= speck
    objects = np.bincount(frame_of[obj], minlength=t)[:t]
    specks = np.bincount(frame_of[~obj], minlength=t)[:t]
    # largest object of each frame (by total brightness)
    main = np.zeros(t, dtype=np.int64)
    best = np.full(t, -1.0)
    for j in np.flatnonzero(obj):
        f = frame_of[j]
        if sums[j] > best[f]:
            best[f], main[f] = sums[j], ids[j]
    present = objects >= 1

    nan = np.full(t, np.nan)
    out = FrameMeasures(objects.astype(int), specks.astype(int), nan.copy(), nan.copy(), nan.copy(),
                        np.full((t, 3), np.nan), np.full(t, np.nan, complex), np.full(t, np.nan, complex),
                        nan.copy(), h * w)
    if not present.any():
        return out
    sel = np.flatnonzero(present)
    lab = labels[sel]
    b = bright[sel]
    vv = v[sel]
    mask = lab == main[sel][:, None, None]
    peak = np.where(mask, b, 0).max((1, 2))
    core = mask & (b >= CORE_FRACTION * peak[:, None, None])
    rgb = (vv * core[..., None]).sum((1, 2)) / core.sum((1, 2))[:, None]
    chroma = vv / np.maximum(b, 1.0)[..., None]
    cmean = (chroma * core[..., None]).sum((1, 2)) / core.sum((1, 2))[:, None]
    dev = ((chroma - cmean[:, None, None]) ** 2).sum(-1)
    out.spread[sel] = np.sqrt((dev * core).sum((1, 2)) / core.sum((1, 2)))
    # coverage: projection of each pixel on the object's colour, over the grown component
    region = _dilate(mask) & ~((lab > 0) & ~mask)
    cov = np.clip(np.einsum("thwc,tc->thw", vv, rgb) / np.maximum((rgb * rgb).sum(1), 1e-6)[:, None, None],
                  0.0, 1.0)
    cov = np.where(region & (cov >= COVERAGE_FLOOR), cov, 0.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5     # pixel centres
    a = cov.sum((1, 2))
    cx = (cov * xs).sum((1, 2)) / a
    cy = (cov * ys).sum((1, 2)) / a
    z = (xs[None] - cx[:, None, None]) + 1j * (ys[None] - cy[:, None, None])
    r = np.abs(z)
    out.area[sel], out.x[sel], out.y[sel], out.rgb[sel] = a, cx, cy, rgb
    out.m3[sel] = (cov * z ** 3).sum((1, 2)) / np.maximum((cov * r ** 3).sum((1, 2)), 1e-9)
    out.m4[sel] = (cov * z ** 4).sum((1, 2)) / np.maximum((cov * r ** 4).sum((1, 2)), 1e-9)
    return out


def classify_shape_frame(m3: complex, m4: complex) -> str:
    if abs(m3) >= SHAPE_TRIANGLE:
        return "triangle"
    if abs(m4) >= SHAPE_SQUARE:
        return "square"
    return "circle"


def _majority(values) -> str | None:
    """Most common value (None, for a frame without a readable object, counts as a value)."""
    if not values:
        return None
    keys = ["" if v is None else v for v in values]
    names, counts = np.unique(keys, return_counts=True)
    best = str(names[int(np.argmax(counts))])
    return best or None


# ----------------------------------------------------------------------------- track fits
def _linfit(u, y):
    """Slope, intercept and residuals of a least-squares line."""
    A = np.stack([u, np.ones_like(u)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return coef[0], coef[1], y - A @ coef


def fit_circle(x, y):
    """Algebraic (Kasa) circle fit: centre, radius, rms radial residual (inf if degenerate)."""
    A = np.stack([x, y, np.ones_like(x)], 1)
    b = -(x * x + y * y)
    if np.linalg.matrix_rank(A) < 3:
        return (np.nan, np.nan), np.inf, np.inf
    (D, E, F), *_ = np.linalg.lstsq(A, b, rcond=None)
    cx, cy = -D / 2, -E / 2
    r2 = cx * cx + cy * cy - F
    if not r2 > 0:
        return (cx, cy), np.inf, np.inf
    R = math.sqrt(r2)
    res = np.hypot(x - cx, y - cy) - R
    return (cx, cy), R, float(np.sqrt(np.mean(res ** 2)))


def _bounce_template(f):
    return 4.0 * f * (1.0 - f)


def fit_bounce(u, y, min_period: float, max_period: float):
    """Best parabolic-bounce fit y = floor - height * 4 f (1 - f), f = frac(u / P + phase).

    Grid search over period (1.2 % steps) and phase (40 steps), floor and height by least squares.
    Returns (period, height, rms residual) with height > 0 meaning arches going up on screen.
    """
    if max_period <= min_period:
        return np.nan, 0.0, np.inf
    periods = np.exp(np.arange(math.log(min_period), math.log(max_period), 0.012))
    phases = np.arange(40) / 40.0
    f = np.mod(u[None, None, :] / periods[:, None, None] + phases[None, :, None], 1.0)
    g = _bounce_template(f)                                    # P phase t
    gm = g.mean(-1, keepdims=True)
    ym = y.mean()
    gc = g - gm
    var = (gc ** 2).sum(-1)
    cov = (gc * (y - ym)[None, None]).sum(-1)
    slope = np.where(var > 1e-9, cov / np.maximum(var, 1e-9), 0.0)      # y = a + slope * g
    sse = ((y - ym) ** 2).sum() - slope * cov
    sse = np.where(slope < 0, sse, np.inf)                     # arches go up: y decreases with g
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    if not np.isfinite(sse[i, j]):
        return np.nan, 0.0, np.inf
    rms = math.sqrt(max(float(sse[i, j]), 0.0) / len(y))
    return float(periods[i]), float(-slope[i, j]), rms


@dataclass
class MotionReading:
    motion: str | None                  # classified motion (world.MOTIONS), None if no track
    rate: float | None = None           # px / base frame (linear), radius px / base frame (grow/shrink)
    period: float | None = None         # base frames (bouncing, orbiting, spinning)
    extent: float = 0.0                 # world px the centre travels over (max of x/y ranges)
    details: dict = field(default_factory=dict)


def _shape_symmetry(shape: str | None) -> tuple[int, float] | None:
    if shape == "square":
        return 4, 90.0
    if shape == "triangle":
        return 3, 120.0
    return None


def classify_motion(fm: FrameMeasures, stride: int = 1, shape: str | None = None,
                    size: int = 32) -> MotionReading:
    """Which motion the clip shows, and its rate / period, from the track of its largest object."""
    ok = fm.plausible & np.isfinite(fm.x)
    if ok.sum() < 3:
        return MotionReading(None)
    k = size / 32.0                                           # clip px per world px
    u = np.flatnonzero(ok).astype(np.float64) * stride        # base frames
    x, y, area = fm.x[ok], fm.y[ok], fm.area[ok]
    span = u[-1] - u[0]
    extent = float(max(np.ptp(x), np.ptp(y)) / k)
    wander = float(np.sqrt(np.mean((x - x.mean()) ** 2 + (y - y.mean()) ** 2)) / k)
    # not moving: under STILL_WANDER, and under half the wander of the slowest linear motion over this span
    still = min(STILL_WANDER, 0.5 * world.LINEAR_SPEED["slowly"] * span / math.sqrt(12.0))
    det: dict = {"extent_px": extent, "wander_px": wander, "still_below_px": still}

    # 1. size trend: growing / shrinking (circumradius from the area, in world px per base frame)
    kshape = {"square": 2.0, "triangle": 0.75 * math.sqrt(3)}.get(shape, math.pi)     # area / radius^2
    r = np.sqrt(area / kshape) / k
    r_slope, _, _ = _linfit(u, r)
    corr = float(np.corrcoef(u, r)[0, 1]) if np.ptp(r) > 1e-9 else 0.0
    det.update(radius_slope=float(r_slope), size_corr=corr, size_ratio=float(area.max() / area.min()))
    if abs(r_slope) >= GROW_MIN_RATE and abs(corr) >= MONOTONE_MIN and wander < 2 * still:
        return MotionReading("growing" if r_slope > 0 else "shrinking", rate=abs(float(r_slope)),
                             extent=extent, details=det)

    # 2. no translation: standing still or spinning
    if wander < still:
        sym = _shape_symmetry(shape)
        if sym is None:        # no shape given (or a circle): use a harmonic that is clearly there
            h3, h4 = np.median(np.abs(fm.m3[ok])), np.median(np.abs(fm.m4[ok]))
            if h3 >= SHAPE_TRIANGLE / 2 and h3 / SHAPE_TRIANGLE >= h4 / SHAPE_SQUARE:
                sym = _shape_symmetry("triangle")
            elif h4 >= SHAPE_SQUARE / 2:
                sym = _shape_symmetry("square")
        if sym is not None:
            n, deg = sym
            m = fm.m4[ok] if n == 4 else fm.m3[ok]
            phase = np.unwrap(np.angle(m))                       # radians of the n-th harmonic
            p_slope, _, _ = _linfit(u, phase)
            rate = math.degrees(p_slope) / n                      # degrees of rotation per base frame
            total = abs(rate) * span
            det.update(spin_deg_per_frame=rate, spin_total_deg=total)
            if total >= SPIN_MIN_DEGREES:
                period = deg / abs(rate)
                return MotionReading("spinning", period=float(period), extent=extent,
                                     details={**det, "clockwise": rate > 0})
        return MotionReading("standing still", extent=extent, details=det)

    # 3. translation: linear, bouncing or orbiting, by the best-fitting track model
    scale = max(np.ptp(x), np.ptp(y))
    fits = {}
    vx, _, rx = _linfit(u, x)
    vy, _, ry = _linfit(u, y)
    fits["linear"] = float(np.sqrt(np.mean(rx ** 2 + ry ** 2)))
    (ccx, ccy), R, c_rms = fit_circle(x, y)
    ang = None
    if np.isfinite(R) and R < 1.5 * size:
        ang = np.unwrap(np.arctan2(-(y - ccy), x - ccx))        # y up: increasing = counter-clockwise
        sweep = float(np.ptp(ang))
        det.update(orbit_radius=R / k, orbit_sweep_deg=math.degrees(sweep))
        if sweep >= math.radians(60):
            fits["orbiting"] = c_rms
    P = hgt = None
    if np.ptp(x) <= BOUNCE_X_MAX * np.ptp(y):
        P, hgt, b_rms = fit_bounce(u, y, max(4.0, 2.5 * stride), 1.25 * max(span, 1.0))
        if np.isfinite(b_rms):
            fits["bouncing"] = float(np.sqrt(b_rms ** 2 + np.var(x)))
    det.update(fit_rms={kk: vv / k for kk, vv in fits.items()})
    best = min(fits, key=fits.get)
    if fits[best] > FIT_RMS_MAX * scale:
        det["poor_fit"] = True
    if best == "linear":
        if abs(vx) >= abs(vy):
            motion = "moving right" if vx > 0 else "moving left"
            along, perp = abs(vx), abs(vy)
        else:
            motion = "moving down" if vy > 0 else "moving up"
            along, perp = abs(vy), abs(vx)
        det.update(velocity=(float(vx / k), float(vy / k)), perp_ratio=float(perp / max(along, 1e-9)))
        return MotionReading(motion, rate=float(along / k), extent=extent, details=det)
    if best == "orbiting":
        a_slope, _, _ = _linfit(u, ang)
        period = 2 * math.pi / abs(a_slope) if a_slope != 0 else np.inf
        det.update(counter_clockwise=bool(a_slope > 0))
        return MotionReading("orbiting", period=float(period), extent=extent, details=det)
    det.update(bounce_height=hgt / k)
    return MotionReading("bouncing", period=P, extent=extent, details=det)


def expected_rate(spec: ClipSpec) -> tuple[str, float] | None:
    """('speed' | 'period' | 'grow', value) the prompt implies, in world px and base frames."""
    m, sp = spec.motion, spec.speed
    if m in world.LINEAR:
        return "speed", world.LINEAR_SPEED[sp]
    if m in ("growing", "shrinking"):
        return "grow", world.GROW_RATE[sp]
    if m in ("bouncing", "orbiting", "spinning") and not (m == "spinning" and spec.shape == "circle"):
        return "period", float(spec.period)
    return None


def _within(measured, expected, tol=RATE_TOLERANCE) -> bool:
    if measured is None or expected is None or not np.isfinite(measured) or measured <= 0:
        return False
    r = measured / expected
    return 1.0 / tol <= r <= tol


# ----------------------------------------------------------------------------- per clip
@dataclass
class ClipScore:
    """One clip's verdicts (``*_ok``, ``coherent``) and what they were decided on."""
    caption: str
    stride: int
    frames: int
    # colour
    color: str | None
    color_rgb: tuple | None
    color_ok: bool
    # shape
    shape: str | None
    shape_harmonics: tuple               # median |m3|, |m4|
    shape_ok: bool
    # motion
    motion: str | None                   # what the classifier saw
    measured: float | None               # speed / period / growth rate, per ``measured_kind``
    expected: float | None
    measured_kind: str | None
    direction_ok: bool                   # right motion class (and sense), ignoring the rate
    rate_ok: bool
    motion_ok: bool
    # coherence
    frames_one_object: int               # frames with exactly one object, and a plausible one
    max_objects: int
    size_ratio: float                    # max / min area over frames with an object
    coherent: bool
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.color_ok and self.shape_ok and self.motion_ok and self.coherent

    def to_dict(self) -> dict:
        d = asdict(self)
        return _jsonable(d)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def evaluate_clip(video: np.ndarray, spec: ClipSpec | str, stride: int = 1) -> ClipScore:
    """Score one uint8 clip (t h w 3) against the prompt it was made for."""
    if isinstance(spec, str):
        spec = world.parse_caption(spec)
    video = np.asarray(video)
    if video.dtype != np.uint8:
        raise ValueError("video must be uint8")
    t, h, w, _ = video.shape
    size = min(h, w)
    fm = measure_frames(video)
    present, good = fm.present, fm.plausible

    # colour and shape: majority over frames with an object (an implausible object votes None)
    colors = [nearest_color(fm.rgb[i]) if good[i] else None for i in range(t) if present[i]]
    color = _majority(colors)
    rgb = tuple(float(c) for c in fm.rgb[good].mean(0)) if good.any() else None
    shapes = [classify_shape_frame(fm.m3[i], fm.m4[i]) if good[i] else None for i in range(t) if present[i]]
    shape = _majority(shapes)
    harm = (float(np.median(np.abs(fm.m3[good]))), float(np.median(np.abs(fm.m4[good])))) \
        if good.any() else (float("nan"), float("nan"))

    # motion: classify, then check the rate against the prompt's speed
    reading = classify_motion(fm, stride, shape, size)
    exp = expected_rate(spec)
    measured = kind = expected = None
    if exp is not None:
        kind, expected = exp
        measured = reading.period if kind == "period" else reading.rate
    direction_ok = reading.motion == spec.motion
    if spec.motion == "spinning" and spec.shape == "circle":
        direction_ok = reading.motion in ("spinning", "standing still")    # a spinning circle looks still
    d = reading.details
    if direction_ok and spec.motion in world.LINEAR:
        direction_ok = d.get("perp_ratio", 1.0) <= LINEAR_PERP_MAX
    if direction_ok and spec.motion == "spinning" and spec.shape != "circle":
        direction_ok = bool(d.get("clockwise", False))
    if direction_ok and spec.motion == "orbiting":
        direction_ok = bool(d.get("counter_clockwise", False))
    if direction_ok and d.get("poor_fit"):
        direction_ok = False
    rate_ok = True if exp is None else _within(measured, expected)
    motion_ok = direction_ok and rate_ok

    # coherence: one object per frame; stable size unless the prompt changes it
    one = int(((fm.objects == 1) & good).sum())
    areas = fm.area[present]
    ratio = float(areas.max() / max(areas.min(), 1e-9)) if len(areas) else float("inf")
    stable_needed = spec.motion not in ("growing", "shrinking")
    coherent = t > 0 and one == t and (not stable_needed or ratio <= SIZE_RATIO_MAX)

    return ClipScore(
        caption=spec.caption, stride=stride, frames=t,
        color=color, color_rgb=rgb, color_ok=color == spec.color,
        shape=shape, shape_harmonics=harm, shape_ok=shape == spec.shape,
        motion=reading.motion, measured=measured, expected=expected, measured_kind=kind,
        direction_ok=bool(direction_ok), rate_ok=bool(rate_ok), motion_ok=bool(motion_ok),
        frames_one_object=one, max_objects=int(fm.objects.max()) if t else 0, size_ratio=ratio,
        coherent=bool(coherent), details=_jsonable(reading.details))
