"""Periodic-motion detectors: spin rate and sense, orbit period and sense, bounce period.

Like ``stunet.shapes.metrics`` these read only a clip's pixels (uint8, t h w 3, black
background) and the world's *rules*, never its hidden ground truth. They build on
``metrics.measure_frames`` (per frame: objects, coverage-weighted centroid, angular
harmonics). Times are in base frames (frame i of a clip drawn at stride s is base frame
i * s); lengths are in world pixels (of a 32-pixel frame).

Spin
    orientation  the n-fold angular harmonic of the object's coverage w about its centroid,
                 m_n = sum w z^n / sum w |z|^n with z = (x - cx) + i (y - cy), gives
                 theta = arg(m_n) / n (clockwise on screen, since screen y points down),
                 defined modulo 2 pi / n; n = 4 for a square, 3 for a triangle. A circle has
                 no orientation: not measurable.
    unwrapping   the change between consecutive used frames is taken modulo 2 pi / n into
                 (-pi / n, pi / n]: d_k = arg(m_n[k+1] conj(m_n[k])) / n. A sampler sees any
                 rotation faster than half a symmetry period per sample as its alias.
    rate         least-squares slope of the unwrapped theta against base frames (degrees per
                 base frame); its sign is the sense (positive: clockwise, the world's spin).
Orbit
    centre       the circle fitted through the centroids (``metrics.fit_circle``) when it fits,
                 else the frame centre (the world's orbit centre); or given.
    angle        phi = atan2(-(y - cy), x - cx) (y up: increasing phi is counter-clockwise on
                 screen, the world's orbit), steps wrapped into (-pi, pi], unwrapped, slope.
Bounce
    model        the world's law along its bounce axis (vertical, floor at the bottom):
                 y(u) = a + b g(frac(u / P + phase)), g(f) = 4 f (1 - f) (an arch per period).
                 Least squares in a and b for every (P, phase) on a grid, then two finer grids
                 around the best, once with b < 0 (arches rising from a floor: "up", the
                 world's bounce) and once with b > 0 (hanging from a ceiling: "down"); the
                 better fit gives the period, and the sense when it fits clearly better
                 (``BOUNCE_SENSE_MARGIN``). The fit uses every sample at once, so a partial
                 period (the world's slow bounce shows 1.3 of them in 32 frames) still fixes P. Periods from 2
                 samples (the Nyquist limit of the sampling) to ``BOUNCE_MAX_SPANS`` spans.

Every detector returns a ``PeriodicReading``; ``compare`` turns one into a
``PeriodicVerdict`` against the prompt (right / wrong, relative rate error, sense reversed);
``periodic_report`` aggregates verdicts per motion and rate. Clips with no object, several
objects in too many frames or too few frames give ``measurable=False`` with a reason, never
an exception.

How issue 18's comparison uses this
    The cascade's base model makes keyframes every ``KEYFRAME_STRIDE`` base frames. A motion of
    period P base frames advances ``KEYFRAME_STRIDE / P`` cycles per keyframe interval
    (``cycles_per_keyframe``); keyframes can only represent up to 0.5 cycles per interval (their
    Nyquist limit) and show anything faster as its alias (``apparent_frequency``): the quick
    square spin (P = 6: 0.67 cycles per interval) looks like a counter-clockwise spin at half
    the rate, the quick triangle spin (P = 8) sits exactly on the limit (sense undecidable), the
    quick bounce (P = 10, 0.4) and quick orbit (P = 12, 0.33) are just below it. The comparison
    plots each model's mean relative rate error (and reversals) against cycles per keyframe
    interval with 0.5 marked; the oracle control (TSR from the world's true keyframes) separates
    what keyframe aliasing costs from what interpolation costs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from . import metrics, world
from .metrics import FrameMeasures, classify_shape_frame, fit_circle, measure_frames
from .world import ClipSpec

PERIODIC_MOTIONS = ("spinning", "orbiting", "bouncing")
HARMONIC_ORDER = {"square": 4, "triangle": 3}        # n-fold symmetry: orientation defined modulo 360 / n
MIN_HARMONIC = {4: 0.10, 3: 0.15}   # median |m_n| below which there is no n-fold orientation
                                    # (world squares |m4| 0.34-0.48, triangles |m3| 0.57-0.67, circles < 0.05)
MIN_FRAMES = 4                      # frames with exactly one plausible object a reading needs
MIN_ONE_OBJECT_SHARE = 0.75         # ... and at least this share of the clip's frames
MIN_TURN_DEGREES = metrics.SPIN_MIN_DEGREES     # total rotation below which a spin has no sense
MIN_ORBIT_RADIUS = 1.5              # world px: mean distance from the orbit centre below which angles are noise
ORBIT_FIT_RMS_MAX = 0.25            # fitted circle used as the centre when rms radial residual <= this x radius
MIN_SWEEP_DEGREES = 30.0            # total angle about the centre below which an orbit has no sense
MIN_BOUNCE_RANGE = 1.5              # world px: vertical range below which there is no bounce to time
BOUNCE_MAX_SPANS = 1.5              # longest bounce period searched, in clip spans
BOUNCE_PERIOD_STEP = 0.012          # coarse grid: log-period step (1.2 %)
BOUNCE_PHASES = 40                  # coarse grid: phases per period
BOUNCE_REFINE = ((0.015, 1 / 40), (0.001, 1 / 400))      # finer grids: (log-period, phase) half-widths
BOUNCE_REFINE_POINTS = 41           # points per axis of a finer grid
BOUNCE_SENSE_MARGIN = 0.02          # R^2 by which one orientation (floor / ceiling) must beat the other
                                    # (world clips: >= 0.098 apart, except 4 samples a period at some phases)
SEARCH_EDGE = 1.01                  # a period within 1 % of the searched range's ends is flagged (no true optimum)
RATE_TOLERANCE = metrics.RATE_TOLERANCE         # right: measured / expected rate within [1/tol, tol]
KEYFRAME_STRIDE = 4                 # the cascade's keyframe interval (issue 18)
NYQUIST = 0.5                       # cycles per sample a sampler can represent
MIN_STEADY = 0.5                    # fit quality (spin / orbit: residual mean resultant length; bounce: R^2)
                                    # below which the sense is undecided (direction None): e.g. at Nyquist
DEGENERATE_VARIANCE = 1e-9          # per sample: a (P, phase) whose arch values hardly vary is not a fit
STILL_CYCLES = 1e-6                 # cycles over the whole clip below which the motion has no period (inf)

# The sense each motion has in the world (every caption implies it; the vocabulary has no other).
# Spin: ``world.SPIN_SPEED`` > 0 adds to the angle, which is clockwise on screen.
# Orbit: y = c - R sin(th) with th increasing: counter-clockwise on screen.
# Bounce: y = floor - height 4 f (1 - f): arches rising from a floor at the bottom.
EXPECTED_DIRECTION = {"spinning": "clockwise", "orbiting": "counter-clockwise", "bouncing": "up"}
OPPOSITE = {"clockwise": "counter-clockwise", "counter-clockwise": "clockwise", "up": "down", "down": "up"}
SPEED_NAMES = {"slowly": "slow", None: "normal", "quickly": "quick"}


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PeriodicReading:
    """What one detector measured on one clip (NaN / None where not measurable).

    rate: unsigned, in the motion's own unit: spin degrees of rotation per base frame, orbit
    degrees about the centre per base frame, bounce bounces per base frame. period: base frames
    per cycle (spin: one symmetry period, 360 / n degrees, as ``ClipSpec.period``; orbit: one turn;
    bounce: one bounce). direction: spin / orbit "clockwise" | "counter-clockwise" (None when it
    hardly turned or its rate is not steady, ``MIN_STEADY``), bounce "up" (arches from a floor) |
    "down" (hanging from a ceiling) (None when the law fits poorly).
    confidence in [0, 1]: share of frames used x fit quality (spin / orbit: mean resultant length
    of the angle residuals; bounce: R^2). cycles_per_sample: at the clip's stride (0.5 = Nyquist).
    cycles_seen: cycles the clip spans (under 1: a partial period).
    """
    motion: str
    measurable: bool
    reason: str = ""
    rate: float = math.nan
    period: float = math.nan
    direction: str | None = None
    confidence: float = 0.0
    cycles_per_sample: float = math.nan
    cycles_seen: float = math.nan
    frames_used: int = 0
    stride: int = 1
    details: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return metrics._jsonable(asdict(self))


@dataclass(frozen=True)
class PeriodicVerdict:
    """A reading against the prompt: right = measurable, sense as prompted, rate within tolerance.

    A bounce whose sense is undecided (``direction`` None: its samples fit floor and ceiling
    arches alike, as 4 samples a period can) is right on its rate alone; a spin or orbit needs
    its sense.

    rate_error = |measured rate / expected rate - 1| (= |expected period / measured period - 1|),
    NaN when not measurable. reversed: the opposite sense was measured (counted apart from rate).
    """
    caption: str
    motion: str
    speed: str | None
    shape: str
    stride: int
    measurable: bool
    expected_period: float
    measured_period: float
    rate_error: float
    expected_direction: str
    measured_direction: str | None
    reversed: bool
    rate_ok: bool
    right: bool
    reading: PeriodicReading

    def to_dict(self) -> dict:
        return metrics._jsonable(asdict(self))


# ----------------------------------------------------------------------------- helpers
def _measures(clip) -> FrameMeasures:
    """A uint8 clip (t h w 3) measured, or measures given."""
    return clip if isinstance(clip, FrameMeasures) else measure_frames(np.asarray(clip))


def _usable(fm: FrameMeasures, motion: str, stride: int) -> tuple[np.ndarray, PeriodicReading | None]:
    """Frames with exactly one plausible object (bool, t), or a not-measurable reading saying why."""
    t = len(fm.objects)
    ok = (fm.objects == 1) & fm.plausible & np.isfinite(fm.x)
    reason = ""
    if t < MIN_FRAMES:
        reason = f"{t} frames: a reading needs at least {MIN_FRAMES}"
    elif not fm.present.any():
        reason = "no object"
    elif ok.sum() < MIN_FRAMES or ok.sum() < MIN_ONE_OBJECT_SHARE * t:
        several = int((fm.objects >= 2).sum())
        reason = (f"several objects in {several} of {t} frames" if several
                  else f"one plausible object in only {int(ok.sum())} of {t} frames")
    if reason:
        return ok, PeriodicReading(motion, False, reason, frames_used=int(ok.sum()), stride=stride)
    return ok, None


def _period(cycles_per_frame: float, span: float) -> float:
    """Base frames per cycle; inf when the clip turns less than ``STILL_CYCLES`` in all."""
    return 1.0 / cycles_per_frame if cycles_per_frame * span > STILL_CYCLES else math.inf


def _base_frames(ok: np.ndarray, stride: int) -> np.ndarray:
    """Base-frame times (k,) of the used frames."""
    return np.flatnonzero(ok).astype(np.float64) * stride


def _unwrap_steps(phasor: np.ndarray) -> np.ndarray:
    """Unwrapped angle (k,) of complex numbers (k,), each step arg(p[i+1] conj(p[i])) in (-pi, pi]."""
    steps = np.angle(phasor[1:] * np.conj(phasor[:-1]))
    return np.angle(phasor[0]) + np.concatenate([[0.0], np.cumsum(steps)])


def _slope_fit(u: np.ndarray, a: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares slope of a (k,) against u (k,), and the residuals."""
    slope, _, res = metrics._linfit(u, a)
    return float(slope), res


def _concentration(residual: np.ndarray) -> float:
    """Mean resultant length |mean e^{i r}| of angle residuals (radians): 1 = a perfectly steady rate."""
    return float(np.abs(np.mean(np.exp(1j * residual))))


def _sampling(period: float, stride: int, span: float) -> tuple[float, float]:
    """(cycles per sample, cycles the clip spans) for a period in base frames."""
    if not (np.isfinite(period) and period > 0):
        return 0.0, 0.0
    return stride / period, span / period


def _world_px(fm: FrameMeasures) -> float:
    """Clip pixels per world pixel (32-pixel frame)."""
    return math.sqrt(fm.frame_pixels) / 32.0


# ----------------------------------------------------------------------------- spin
def shape_order(fm: FrameMeasures, ok: np.ndarray, shape: str | None) -> tuple[int | None, str]:
    """The harmonic order n for the shape (given, else the frames' majority shape), or (None, why not)."""
    if shape is None:
        votes = [classify_shape_frame(fm.m3[i], fm.m4[i]) for i in np.flatnonzero(ok)]
        shape = metrics._majority(votes)
    n = HARMONIC_ORDER.get(shape)
    if n is None:
        return None, f"a {shape} has no orientation"
    m = fm.m4 if n == 4 else fm.m3
    strength = float(np.median(np.abs(m[ok])))
    if strength < MIN_HARMONIC[n]:
        return None, f"no {n}-fold structure (median |m{n}| = {strength:.2f})"
    return n, ""


def detect_spin(clip, shape: str | None = None, stride: int = 1) -> PeriodicReading:
    """Spin rate (degrees per base frame) and sense from the n-fold harmonic's phase.

    clip: uint8 t h w 3 or its ``FrameMeasures``. shape: the prompt's ("square" | "triangle";
    a circle is not measurable); None reads it from the frames.
    """
    fm = _measures(clip)
    ok, bad = _usable(fm, "spinning", stride)
    if bad:
        return bad
    n, why = shape_order(fm, ok, shape)
    if n is None:
        return PeriodicReading("spinning", False, why, frames_used=int(ok.sum()), stride=stride)
    u = _base_frames(ok, stride)                             # k
    m = (fm.m4 if n == 4 else fm.m3)[ok]                     # k complex
    theta = _unwrap_steps(m) / n                             # k, radians, clockwise on screen
    slope, res = _slope_fit(u, theta)                        # radians per base frame
    rate = math.degrees(slope)
    span = float(u[-1] - u[0])
    symmetry = 360.0 / n
    period = _period(abs(rate) / symmetry, span)
    steady = _concentration(n * res)
    direction = None
    if abs(rate) * span >= MIN_TURN_DEGREES and steady >= MIN_STEADY:
        direction = "clockwise" if rate > 0 else "counter-clockwise"
    per_sample, seen = _sampling(period, stride, span)
    conf = float(ok.mean()) * steady
    return PeriodicReading("spinning", True, "", abs(rate), period, direction, conf, per_sample, seen,
                           int(ok.sum()), stride, {"n": n, "degrees_per_frame_signed": rate})


# ----------------------------------------------------------------------------- orbit
def orbit_centre(x: np.ndarray, y: np.ndarray, size: float) -> tuple[tuple[float, float], str]:
    """Centre of the centroids' circle when it fits (``ORBIT_FIT_RMS_MAX``), else the frame centre."""
    (cx, cy), r, rms = fit_circle(x, y)
    if np.isfinite(r) and r <= size and rms <= ORBIT_FIT_RMS_MAX * r:
        return (float(cx), float(cy)), "fit"
    return (size / 2.0, size / 2.0), "frame"


def detect_orbit(clip, stride: int = 1, centre: tuple[float, float] | None = None) -> PeriodicReading:
    """Orbit period (base frames per turn) and sense from the centroid's angle about the centre.

    centre: (x, y) in clip pixels; None fits it (falling back to the frame centre).
    """
    fm = _measures(clip)
    ok, bad = _usable(fm, "orbiting", stride)
    if bad:
        return bad
    k = _world_px(fm)
    x, y = fm.x[ok], fm.y[ok]                                # k, clip px
    source = "given"
    if centre is None:
        centre, source = orbit_centre(x, y, math.sqrt(fm.frame_pixels))
    cx, cy = centre
    radius = float(np.mean(np.hypot(x - cx, y - cy))) / k
    if radius < MIN_ORBIT_RADIUS:
        return PeriodicReading("orbiting", False, f"the object does not go round (mean radius {radius:.2f} px)",
                               frames_used=int(ok.sum()), stride=stride)
    u = _base_frames(ok, stride)
    phi = _unwrap_steps((x - cx) - 1j * (y - cy))            # k, radians, y up: + is counter-clockwise
    slope, res = _slope_fit(u, phi)
    rate = math.degrees(slope)
    span = float(u[-1] - u[0])
    period = _period(abs(rate) / 360.0, span)
    steady = _concentration(res)
    direction = None
    if abs(rate) * span >= MIN_SWEEP_DEGREES and steady >= MIN_STEADY:
        direction = "counter-clockwise" if rate > 0 else "clockwise"
    per_sample, seen = _sampling(period, stride, span)
    conf = float(ok.mean()) * steady
    return PeriodicReading("orbiting", True, "", abs(rate), period, direction, conf, per_sample, seen,
                           int(ok.sum()), stride, {"centre": (float(cx), float(cy)), "centre_from": source,
                                                   "radius_px": radius, "degrees_per_frame_signed": rate})


# ----------------------------------------------------------------------------- bounce
def _arch(f: np.ndarray) -> np.ndarray:
    """The world's bounce profile: 0 at a floor contact, 1 at the top of the arch."""
    return 4.0 * f * (1.0 - f)


def _bounce_grid(u: np.ndarray, y: np.ndarray, periods: np.ndarray, phases: np.ndarray):
    """SSE and slope b of y = a + b g(frac(u / P + phase)) for every (P, phase): arrays P x Phi.

    u, y: (k,) base frames and positions; periods (P,), phases (Phi,). For each pair, a and b by
    least squares: b = cov(g, y) / var(g), SSE = sum (y - mean y)^2 - b cov(g, y).
    """
    g = _arch(np.mod(u[None, None, :] / periods[:, None, None] + phases[None, :, None], 1.0))  # P Phi k
    gc = g - g.mean(-1, keepdims=True)
    yc = y - y.mean()
    var = (gc * gc).sum(-1)
    cov = (gc * yc).sum(-1)
    degenerate = var <= DEGENERATE_VARIANCE * len(y)
    b = np.where(degenerate, 0.0, cov / np.where(degenerate, 1.0, var))
    sse = np.where(degenerate, np.inf, (yc * yc).sum() - b * cov)
    return sse, b


def _signed(sse: np.ndarray, b: np.ndarray, sign: int) -> np.ndarray:
    """SSE with the fits of the other orientation (sign of b) ruled out."""
    return sse if sign == 0 else np.where(np.sign(b) == sign, sse, np.inf)


def fit_bounce_period(u: np.ndarray, y: np.ndarray, min_period: float, max_period: float, sign: int = 0):
    """Best (period, phase, b, sse) of the bounce law on a coarse grid refined twice.

    sign: -1 only arches rising from a floor (b < 0), +1 only hanging ones, 0 either.
    """
    periods = np.exp(np.arange(math.log(min_period), math.log(max_period), BOUNCE_PERIOD_STEP))
    phases = np.arange(BOUNCE_PHASES) / BOUNCE_PHASES
    sse, b = _bounce_grid(u, y, periods, phases)
    sse = _signed(sse, b, sign)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    best = (float(periods[i]), float(phases[j]), float(b[i, j]), float(sse[i, j]))
    for dlog, dphase in BOUNCE_REFINE:
        p0, f0 = best[0], best[1]
        grid = np.linspace(-1.0, 1.0, BOUNCE_REFINE_POINTS)
        periods = np.clip(p0 * np.exp(dlog * grid), min_period, max_period)
        phases = np.mod(f0 + dphase * grid, 1.0)
        sse, b = _bounce_grid(u, y, periods, phases)
        sse = _signed(sse, b, sign)
        i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
        if sse[i, j] <= best[3]:
            best = (float(periods[i]), float(phases[j]), float(b[i, j]), float(sse[i, j]))
    return best


def detect_bounce(clip, stride: int = 1) -> PeriodicReading:
    """Bounce period (base frames) from the centroid's vertical track, fitted with the world's law."""
    fm = _measures(clip)
    ok, bad = _usable(fm, "bouncing", stride)
    if bad:
        return bad
    k = _world_px(fm)
    u, y = _base_frames(ok, stride), fm.y[ok]                # k, k (clip px, down)
    extent = float(np.ptp(y)) / k
    if extent < MIN_BOUNCE_RANGE:
        return PeriodicReading("bouncing", False, f"no vertical motion ({extent:.2f} px)",
                               frames_used=int(ok.sum()), stride=stride)
    span = float(u[-1] - u[0])
    lo, hi = stride / NYQUIST, BOUNCE_MAX_SPANS * max(span, 1.0)          # Nyquist .. a partial period
    syy = float(((y - y.mean()) ** 2).sum())
    fits = {sense: fit_bounce_period(u, y, lo, hi, sign) for sense, sign in (("up", -1), ("down", 1))}
    r2 = {sense: max(0.0, 1.0 - f[3] / syy) if np.isfinite(f[3]) else 0.0 for sense, f in fits.items()}
    best = max(r2, key=r2.get)
    if not np.isfinite(fits[best][3]):
        return PeriodicReading("bouncing", False, "no bounce fits", frames_used=int(ok.sum()), stride=stride)
    period, phase, b, _ = fits[best]
    other = r2[OPPOSITE[best]]
    # a sense only when the law fits and the other orientation fits clearly worse (4 samples a period
    # at some phases show two levels, which arches and hanging arches fit equally well)
    direction = best if r2[best] >= MIN_STEADY and r2[best] - other >= BOUNCE_SENSE_MARGIN else None
    per_sample, seen = _sampling(period, stride, span)
    return PeriodicReading("bouncing", True, "", 1.0 / period, period, direction,
                           float(ok.mean()) * r2[best], per_sample, seen, int(ok.sum()), stride,
                           {"height_px": abs(b) / k, "phase": phase, "r2": r2[best], "r2_other_sense": other,
                            "at_search_edge": bool(period <= lo * SEARCH_EDGE or period >= hi / SEARCH_EDGE)})


# ----------------------------------------------------------------------------- against the prompt
def scorable(spec: ClipSpec) -> bool:
    """A periodic prompt the detectors can time (a spinning circle has no orientation to follow)."""
    return spec.motion in PERIODIC_MOTIONS and not (spec.motion == "spinning" and spec.shape == "circle")


def detect(clip, spec: ClipSpec, stride: int = 1) -> PeriodicReading:
    """The detector for the prompt's motion (``spec.motion`` must be periodic)."""
    if spec.motion == "spinning":
        return detect_spin(clip, spec.shape, stride)
    if spec.motion == "orbiting":
        return detect_orbit(clip, stride)
    if spec.motion == "bouncing":
        return detect_bounce(clip, stride)
    raise ValueError(f"not a periodic motion: {spec.motion!r} (periodic: {', '.join(PERIODIC_MOTIONS)})")


def compare(reading: PeriodicReading, spec: ClipSpec | str, stride: int | None = None) -> PeriodicVerdict:
    """A reading against what the prompt says (period from ``ClipSpec.period``, sense from the world)."""
    if isinstance(spec, str):
        spec = world.parse_caption(spec)
    if spec.motion != reading.motion:
        raise ValueError(f"a {reading.motion} reading compared with a {spec.motion} prompt")
    expected = float(spec.period)
    exp_dir = EXPECTED_DIRECTION[spec.motion]
    measurable = bool(reading.measurable and reading.period > 0)
    frequency = 1.0 / reading.period if measurable else math.nan          # cycles per base frame (0: no motion)
    err = abs(frequency * expected - 1.0) if measurable else math.nan
    rate_ok = bool(measurable and metrics._within(reading.period, expected, RATE_TOLERANCE))
    reversed_ = bool(measurable and reading.direction == OPPOSITE[exp_dir])
    sense_ok = reading.direction == exp_dir or (spec.motion == "bouncing" and reading.direction is None)
    right = bool(rate_ok and sense_ok)
    return PeriodicVerdict(spec.caption, spec.motion, spec.speed, spec.shape,
                           reading.stride if stride is None else stride, bool(measurable), expected,
                           float(reading.period) if measurable else math.nan, err, exp_dir, reading.direction,
                           reversed_, rate_ok, right, reading)


def evaluate_periodic(clip, spec: ClipSpec | str, stride: int = 1) -> PeriodicVerdict | None:
    """Detect and compare in one call; None for a prompt that is not ``scorable``."""
    if isinstance(spec, str):
        spec = world.parse_caption(spec)
    if not scorable(spec):
        return None
    return compare(detect(clip, spec, stride), spec, stride)


# ----------------------------------------------------------------------------- aliasing
def apparent_frequency(frequency: float, stride: int) -> float:
    """What samples every ``stride`` base frames show of a signed frequency (cycles per base frame).

    The principal alias f - round(f s) / s, in (-1 / 2s, 1 / 2s]: a spin or orbit past the Nyquist
    limit turns the other way, more slowly. (A bounce is time-symmetric: its apparent period is
    1 / |apparent frequency|.)
    """
    cps = frequency * stride                                   # cycles per sample
    alias = cps - math.floor(cps + NYQUIST)                    # into [-0.5, 0.5)
    if alias == -NYQUIST:
        alias = NYQUIST
    return alias / stride


def cycles_per_keyframe(spec: ClipSpec, interval: int = KEYFRAME_STRIDE) -> float:
    """Cycles the prompt's motion advances per keyframe interval (0.5 = the keyframes' Nyquist limit)."""
    return interval / float(spec.period)


# ----------------------------------------------------------------------------- report
def _row_key(spec: ClipSpec) -> tuple[str, str, str]:
    """Rows: motion x speed (x shape for spins, whose period depends on the shape's symmetry)."""
    return spec.motion, SPEED_NAMES[spec.speed], spec.shape if spec.motion == "spinning" else "any"


def _aggregate(verdicts: Sequence[PeriodicVerdict]) -> dict:
    n = len(verdicts)
    meas = [v for v in verdicts if v.measurable]
    errs = [v.rate_error for v in meas]
    return {"n": n, "measurable": len(meas),
            "right_pct": 100.0 * sum(v.right for v in verdicts) / n if n else math.nan,
            "mean_rate_error": float(np.mean(errs)) if errs else math.nan,
            "max_rate_error": float(np.max(errs)) if errs else math.nan,
            "reversed": sum(v.reversed for v in verdicts)}


def periodic_report(clips: Sequence, specs: Sequence[ClipSpec | str], stride: int | Sequence[int] = 1,
                    interval: int = KEYFRAME_STRIDE) -> dict:
    """Per-prompt periodic metrics over clips: share right, mean relative rate error, reversals.

    clips: uint8 videos (t h w 3) or their ``FrameMeasures``, one per spec; stride: one for all or
    one per clip. Prompts that are not ``scorable`` are skipped (counted). Returns a JSON-able dict:
    ``rows`` (per motion, speed and, for spins, shape; with its period and cycles per keyframe
    interval), ``per_motion``, ``overall`` and per-clip ``clips`` (verdicts). A clip that is not
    measurable counts as wrong in ``right_pct`` and is left out of the rate error.
    """
    specs = [world.parse_caption(s) if isinstance(s, str) else s for s in specs]
    if len(clips) != len(specs):
        raise ValueError(f"{len(clips)} clips for {len(specs)} prompts")
    strides = [int(stride)] * len(specs) if np.ndim(stride) == 0 else [int(s) for s in stride]
    if len(strides) != len(specs):
        raise ValueError(f"{len(strides)} strides for {len(specs)} prompts")
    verdicts, skipped = [], 0
    for c, sp, st in zip(clips, specs, strides):
        v = evaluate_periodic(c, sp, st)
        if v is None:
            skipped += 1
        else:
            verdicts.append((sp, v))
    rows = {}
    for sp, v in verdicts:
        rows.setdefault(_row_key(sp), (sp, []))[1].append(v)
    order = {m: i for i, m in enumerate(PERIODIC_MOTIONS)}
    speed_order = {"slow": 0, "normal": 1, "quick": 2}
    out_rows = []
    for key in sorted(rows, key=lambda k: (order[k[0]], speed_order[k[1]], k[2])):
        sp, vs = rows[key]
        out_rows.append({"motion": key[0], "speed": key[1], "shape": key[2], "period": float(sp.period),
                         "cycles_per_keyframe": cycles_per_keyframe(sp, interval), **_aggregate(vs)})
    per_motion = {m: _aggregate([v for _, v in verdicts if v.motion == m])
                  for m in PERIODIC_MOTIONS if any(v.motion == m for _, v in verdicts)}
    return metrics._jsonable({"rows": out_rows, "per_motion": per_motion,
                              "overall": _aggregate([v for _, v in verdicts]), "skipped": skipped,
                              "keyframe_interval": interval, "nyquist_cycles": NYQUIST,
                              "rate_tolerance": RATE_TOLERANCE,
                              "clips": [v.to_dict() for _, v in verdicts]})


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _pct(v):
    return None if v is None else 100.0 * v


def format_periodic_table(reports: dict) -> str:
    """Markdown table of one ``periodic_report`` or of several side by side ({label: report}).

    Per motion and rate (and shape, for spins): its period, cycles per keyframe interval (0.5 is
    the keyframes' Nyquist limit), clips; per report: share right, mean relative rate error over
    the measurable clips, reversals, clips not measurable.
    """
    if "rows" in reports:
        reports = {"": reports}
    labels = list(reports)
    tag = lambda lb, col: f"{lb} {col}" if lb else col
    head = ["periodic", "speed", "shape", "period", "cycles / keyframe", "clips"]
    for lb in labels:
        head += [tag(lb, "right %"), tag(lb, "rate err %"), tag(lb, "reversed"), tag(lb, "not measurable")]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    key = lambda r: (r["motion"], r["speed"], r["shape"])
    first = reports[labels[0]]
    by_label = {lb: {key(r): r for r in rep["rows"]} for lb, rep in reports.items()}

    def cells(r: dict | None) -> list[str]:
        if r is None:
            return ["-"] * 4
        return [_fmt(r["right_pct"]), _fmt(_pct(r["mean_rate_error"])), str(r["reversed"]),
                str(r["n"] - r["measurable"])]

    for r in first["rows"]:
        row = [r["motion"], r["speed"], r["shape"], _fmt(r["period"]), _fmt(r["cycles_per_keyframe"], ".2f"),
               str(r["n"])]
        for lb in labels:
            row += cells(by_label[lb].get(key(r)))
        lines.append("| " + " | ".join(row) + " |")
    row = ["all", "", "", "", "", str(first["overall"]["n"])]
    for lb in labels:
        row += cells(reports[lb]["overall"])
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
