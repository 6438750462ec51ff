"""The periodic-motion detectors: the world's own rates and senses, aliasing, noise, unmeasurable clips."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stunet.shapes import periodic as P
from stunet.shapes import world
from stunet.shapes.world import ClipSpec

STRIDES = (1, 2, 4)               # the strides the model knows (``config.strides``); a clip spans 32 base frames
SPEEDS = ("slowly", None, "quickly")
TIGHT = 0.01                      # relative period error on clean world clips (measured max: 0.55 %)
NOISY = 0.015                     # ... on blurred, dimmed, noisy ones (measured max: 0.55 % at sigma 12)


def clip(caption: str, frames: int = 32, stride: int = 1, seed: int = 0, size: int = 32) -> np.ndarray:
    return world.make_clip(world.parse_caption(caption), frames, size, stride, seed=seed).video


def shapes_for(motion: str):
    return ("square", "triangle") if motion == "spinning" else world.SHAPES


def seen(spec: ClipSpec, stride: int) -> tuple[float, str]:
    """(period, sense) a sampler at ``stride`` shows of the world's motion: its principal alias."""
    f = P.apparent_frequency(1.0 / spec.period, stride)
    sense = P.EXPECTED_DIRECTION[spec.motion]
    if f < 0 and spec.motion != "bouncing":          # past Nyquist: a spin / orbit turns the other way
        sense = P.OPPOSITE[sense]
    return 1.0 / abs(f), sense


def degrade(video: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """What a model's clip looks like (as in test_metrics): blurred, dimmed by 10 %, Gaussian noise."""
    k = np.array([0.25, 0.5, 0.25])
    v = video.astype(float)
    v = np.apply_along_axis(lambda a: np.convolve(a, k, "same"), 1, v)
    v = np.apply_along_axis(lambda a: np.convolve(a, k, "same"), 2, v)
    return np.clip(v * 0.9 + rng.normal(0, sigma, v.shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the world's rates
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("motion", P.PERIODIC_MOTIONS)
def test_world_rates_and_senses(motion, stride):
    """Every shape at every speed, two seeds: the period the samples show, within 1 %, and the sense exactly."""
    checked = 0
    for shape in shapes_for(motion):
        for speed in SPEEDS:
            spec = ClipSpec("green", shape, motion, speed)
            period, sense = seen(spec, stride)
            if abs(stride / spec.period - round(stride / spec.period) - P.NYQUIST) < 1e-9:
                continue                              # exactly on the Nyquist limit: test_nyquist_limit
            for seed in (0, 1):
                r = P.detect(clip(spec.caption, 32 // stride, stride, seed), spec, stride)
                assert r.measurable and r.frames_used == 32 // stride, (spec.caption, stride, r)
                assert abs(r.period / period - 1) < TIGHT, (spec.caption, stride, r.period, period)
                if motion == "bouncing" and stride / period == pytest.approx(0.25) and r.direction is None:
                    pass                                # 4 samples a period: at some phases no telling floor
                else:                                   # from ceiling (test_bounce_sense_undecided_...)
                    assert r.direction == sense, (spec.caption, stride, r.direction)
                assert r.confidence > 0.95, (spec.caption, stride, r.confidence)
                assert r.cycles_per_sample == pytest.approx(stride / period, rel=TIGHT)
                v = P.compare(r, spec)
                if period == pytest.approx(spec.period):      # below Nyquist: the true rate, right
                    assert v.right and v.rate_error < TIGHT and not v.reversed, v
                checked += 1
    assert checked >= 4 * len(shapes_for(motion))


def test_pinned_values():
    r = P.detect_spin(clip("a red square quickly spinning"), "square")
    assert r.rate == pytest.approx(15.0, rel=0.005) and r.period == pytest.approx(6.0, rel=0.005)
    assert r.direction == "clockwise" and r.details["n"] == 4
    r = P.detect_spin(clip("a red triangle slowly spinning", 16, stride=2), "triangle", stride=2)
    assert r.rate == pytest.approx(3.0, rel=0.01) and r.period == pytest.approx(40.0, rel=0.01)
    assert r.details["n"] == 3 and r.cycles_seen == pytest.approx(30 / 40, rel=0.01)
    r = P.detect_spin(clip("a red triangle slowly spinning"))          # shape read from the frames
    assert r.details["n"] == 3 and r.rate == pytest.approx(3.0, rel=0.01)
    r = P.detect_orbit(clip("a blue circle quickly orbiting"))
    assert r.period == pytest.approx(12.0, rel=0.005) and r.rate == pytest.approx(30.0, rel=0.005)
    assert r.direction == "counter-clockwise" and r.details["centre_from"] == "fit"
    assert r.details["centre"] == pytest.approx((16.0, 16.0), abs=0.1)
    given = P.detect_orbit(clip("a blue circle quickly orbiting"), centre=(16.0, 16.0))
    assert given.period == pytest.approx(12.0, rel=0.005) and given.details["centre_from"] == "given"
    r = P.detect_bounce(clip("a white square slowly bouncing", seed=3))
    assert r.period == pytest.approx(24.0, rel=0.005) and r.direction == "up"
    assert r.cycles_seen == pytest.approx(31 / 24, rel=0.01)            # a partial second period
    assert r.rate == pytest.approx(1 / 24, rel=0.005) and r.details["r2"] > 0.999


def test_orbit_centre_is_estimated():
    """An orbit about another point than the frame centre (a model's may drift): the fitted centre times it."""
    u = np.arange(32.0)
    th = 0.4 + 2 * np.pi * u / 20.0
    x, y = 12.0 + 5.0 * np.cos(th), 18.0 - 5.0 * np.sin(th)                  # counter-clockwise, period 20
    v = world.render("square", world.COLORS["green"], x, y, np.full(32, 5.0), np.zeros(32), 32, 32)
    r = P.detect_orbit(v)
    assert r.details["centre_from"] == "fit" and r.details["centre"] == pytest.approx((12.0, 18.0), abs=0.1)
    assert r.period == pytest.approx(20.0, rel=TIGHT) and r.direction == "counter-clockwise"
    assert r.details["radius_px"] == pytest.approx(5.0, rel=0.05)


@pytest.mark.parametrize("size", [16, 48])
def test_other_frame_sizes(size):
    for cap, period in (("a cyan triangle quickly spinning", 8.0), ("a purple square slowly orbiting", 40.0),
                        ("a green circle bouncing", 16.0)):
        v = P.evaluate_periodic(clip(cap, size=size, seed=2), cap)
        assert v.right and v.measured_period == pytest.approx(period, rel=0.02), (cap, size, v)


# ----------------------------------------------------------------------------- aliasing
def test_apparent_frequency():
    assert P.apparent_frequency(1 / 6, 4) == pytest.approx(-1 / 12)      # 60 deg per keyframe of a 90-deg period
    assert P.apparent_frequency(1 / 10, 4) == pytest.approx(1 / 10)      # 0.4 cycles per keyframe: below Nyquist
    assert P.apparent_frequency(1 / 8, 4) == pytest.approx(1 / 8)        # exactly on it: kept positive
    assert P.apparent_frequency(-1 / 6, 4) == pytest.approx(1 / 12)
    assert P.apparent_frequency(1 / 12, 8) == pytest.approx(-1 / 24)
    assert P.cycles_per_keyframe(world.parse_caption("a red square quickly spinning")) == pytest.approx(4 / 6)
    assert P.cycles_per_keyframe(world.parse_caption("a red circle quickly bouncing")) == pytest.approx(0.4)


def test_keyframe_aliasing_of_a_quick_spin():
    """Every 4th frame of a quick square spin (60 deg per keyframe) shows -30 deg: reversed, half the rate."""
    full = clip("a yellow square quickly spinning", seed=4)
    assert P.evaluate_periodic(full, "a yellow square quickly spinning").right
    keyframes = full[::4]                                             # t/4 h w 3
    v = P.evaluate_periodic(keyframes, "a yellow square quickly spinning", stride=4)
    assert v.measurable and v.reversed and not v.right and not v.rate_ok
    assert v.measured_direction == "counter-clockwise"
    assert v.reading.rate == pytest.approx(7.5, rel=0.005) and v.measured_period == pytest.approx(12.0, rel=0.005)
    assert v.rate_error == pytest.approx(0.5, abs=0.005)
    assert v.reading.confidence > 0.99                                  # a clean, steady, wrong spin
    # the world's own stride-4 clip (what a keyframe model learns from) shows the same
    w = P.evaluate_periodic(clip("a yellow square quickly spinning", 8, stride=4, seed=4),
                            "a yellow square quickly spinning", stride=4)
    assert w.reversed and w.measured_period == pytest.approx(12.0, rel=0.005)


def test_nyquist_limit():
    """A quick triangle spin at stride 4 turns 60 deg per sample, half its 120-deg period: no sense, no steady rate."""
    for seed in range(3):
        r = P.detect_spin(clip("a red triangle quickly spinning", 8, stride=4, seed=seed), "triangle", stride=4)
        assert r.measurable and r.confidence < 0.3, r                 # measured 0.075-0.086
        assert r.direction is None                                     # not a reversal: undecided
        assert r.period > 50                                           # hardly any net turn (true: 8)
        fine = P.detect_spin(clip("a red triangle quickly spinning", 16, stride=2, seed=seed), "triangle", 2)
        assert fine.confidence > 0.99 and fine.period == pytest.approx(8.0, rel=TIGHT)


def test_bounce_sense_undecided_at_four_samples_a_period():
    """The normal bounce (16 frames) at stride 4 at some phases shows two levels: floor or ceiling, no telling."""
    spec = world.parse_caption("a red square bouncing")
    v = P.evaluate_periodic(clip(spec.caption, 8, stride=4, seed=104), spec, stride=4)
    r = v.reading
    assert r.direction is None and r.details["r2"] > 0.999 and r.details["r2_other_sense"] > 0.999
    assert v.right and not v.reversed and v.measured_period == pytest.approx(16.0, rel=TIGHT)
    decided = P.detect_bounce(clip(spec.caption, 8, stride=4, seed=0), stride=4)
    assert decided.direction == "up" and decided.details["r2"] - decided.details["r2_other_sense"] > 0.02


def test_aliasing_of_orbit_and_bounce_at_a_coarser_stride():
    # quick orbit (12 frames) every 8th frame: 0.67 turns per sample look like 0.33 turns the other way
    r = P.detect_orbit(clip("a red circle quickly orbiting", 8, stride=8, seed=1), stride=8)
    assert r.direction == "clockwise" and r.period == pytest.approx(24.0, rel=TIGHT)
    # quick bounce (10 frames) every 8th frame: 0.8 bounces per sample look like 0.2
    r = P.detect_bounce(clip("a red circle quickly bouncing", 8, stride=8, seed=1), stride=8)
    assert r.direction == "up" and r.period == pytest.approx(40.0, rel=TIGHT)
    # ... but 2.5 keyframes per bounce (stride 4) is still below Nyquist: the true period
    r = P.detect_bounce(clip("a red circle quickly bouncing", 8, stride=4, seed=1), stride=4)
    assert r.period == pytest.approx(10.0, rel=TIGHT) and r.cycles_per_sample == pytest.approx(0.4, rel=TIGHT)


def test_bounce_law_need_not_be_the_worlds():
    """A model's bounce need not be a parabola: |sin| arches within 2 %; a smooth sine within 10 %, no sense."""
    u = np.arange(32.0)
    for name, arch, tol, sense in (("|sin| arches", lambda f: np.abs(np.sin(np.pi * f)), 0.02, "up"),
                                   ("sine", lambda f: 0.5 - 0.5 * np.cos(2 * np.pi * f), 0.10, None)):
        for period in (10.0, 16.0, 24.0):
            y = 26.0 - 14.0 * arch(np.mod(u / period + 0.3, 1.0))
            v = world.render("circle", world.COLORS["red"], np.full(32, 12.0), y, np.full(32, 6.0), np.zeros(32),
                             32, 32)
            r = P.detect_bounce(v)
            assert r.direction == sense and abs(r.period / period - 1) < tol, (name, period, r.period)
            assert not r.details["at_search_edge"]
    # a fall with no contact: the fit runs to the longest period searched, and says so
    r = P.detect_bounce(clip("a red square moving down"))
    assert r.details["at_search_edge"] and r.period == pytest.approx(1.5 * 31, rel=0.01)


# ----------------------------------------------------------------------------- noise and wrong clips
@pytest.mark.parametrize("sigma", [6.0, 12.0])
def test_robust_to_the_noise_of_generated_clips(sigma):
    rng = np.random.default_rng(7)
    worst = 0.0
    for motion in P.PERIODIC_MOTIONS:
        for shape in shapes_for(motion):
            for speed in SPEEDS:
                spec = ClipSpec("orange", shape, motion, speed)
                for stride in (1, 2):
                    v = P.evaluate_periodic(degrade(clip(spec.caption, 32 // stride, stride, seed=5), rng, sigma),
                                            spec, stride)
                    assert v.right, (spec.caption, stride, sigma, v)
                    worst = max(worst, v.rate_error)
    assert worst < NOISY


def test_circle_spin_is_not_measurable():
    v = clip("a red circle spinning")
    for shape in ("circle", None):
        r = P.detect_spin(v, shape)
        assert not r.measurable and "circle" in r.reason and math.isnan(r.period) and r.direction is None
    r = P.detect_spin(v, "square")                                     # the prompt says square, the clip is round
    assert not r.measurable and "4-fold" in r.reason
    verdict = P.compare(r, "a red square spinning")
    assert not verdict.measurable and not verdict.right and not verdict.reversed and math.isnan(verdict.rate_error)
    assert not P.scorable(world.parse_caption("a red circle spinning"))
    assert P.evaluate_periodic(v, "a red circle spinning") is None


def test_no_object_several_objects_too_few_frames():
    empty = np.zeros((32, 32, 32, 3), np.uint8)
    for detector in (P.detect_spin, P.detect_orbit, P.detect_bounce):
        r = detector(empty)
        assert not r.measurable and r.reason == "no object" and r.frames_used == 0
    c = world.make_clip(world.parse_caption("a red square orbiting"), 32, 32, seed=0)
    other = world.render("circle", world.COLORS["blue"], 32 - c.x, 32 - c.y, c.radius * 0.7, c.angle, 32, 32)
    two = np.maximum(c.video, other)                                   # a second object in every frame
    for detector in (P.detect_spin, P.detect_orbit, P.detect_bounce):
        r = detector(two)
        assert not r.measurable and r.reason == "several objects in 32 of 32 frames"
    # a second object in a few frames: those frames are left out, the rest still times the orbit
    some = c.video.copy()
    some[[3, 11, 20]] = two[[3, 11, 20]]
    r = P.detect_orbit(some)
    assert r.measurable and r.frames_used == 29 and r.period == pytest.approx(24.0, rel=TIGHT)
    r = P.detect_spin(clip("a red square spinning")[:3], "square")
    assert not r.measurable and "needs at least" in r.reason
    # noise, specks everywhere, a full frame: not measurable, with a reason, and never an exception
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    sparse = np.where(rng.random((32, 32, 32, 1)) < 0.1, noise, 0).astype(np.uint8)
    full = np.full((32, 32, 32, 3), 200, np.uint8)
    for video in (noise, sparse, full):
        for cap in ("a red square spinning", "a red circle orbiting", "a red circle bouncing"):
            v = P.evaluate_periodic(video, cap)
            assert not v.measurable and not v.right and not v.reversed and v.reading.reason


def test_reversed_clips_count_as_reversals():
    for cap in ("a cyan square spinning", "a cyan triangle slowly orbiting"):
        v = P.evaluate_periodic(clip(cap, seed=6)[::-1], cap)
        assert v.reversed and v.rate_ok and not v.right and v.rate_error < TIGHT, v
    cap = "a cyan circle bouncing"
    upside_down = P.evaluate_periodic(clip(cap, seed=6)[:, ::-1], cap)     # hanging from a ceiling
    assert upside_down.measured_direction == "down" and upside_down.reversed and not upside_down.right
    backwards = P.evaluate_periodic(clip(cap, seed=6)[::-1], cap)          # a bounce is time-symmetric
    assert backwards.right


def test_wrong_rate_and_no_motion():
    v = P.evaluate_periodic(clip("a red square quickly spinning"), "a red square slowly spinning")
    assert not v.right and not v.rate_ok and not v.reversed and v.rate_error == pytest.approx(4.0, rel=0.01)
    v = P.evaluate_periodic(clip("a red circle slowly orbiting"), "a red circle quickly orbiting")
    assert not v.right and v.rate_error == pytest.approx(1 - 12 / 40, abs=0.01)
    still = P.evaluate_periodic(clip("a red square standing still"), "a red square spinning")
    assert still.measurable and still.measured_period == math.inf and still.rate_error == pytest.approx(1.0)
    assert still.measured_direction is None and not still.reversed and not still.right
    flat = P.evaluate_periodic(clip("a red square moving right"), "a red square bouncing")
    assert not flat.measurable and "no vertical motion" in flat.reading.reason
    with pytest.raises(ValueError):
        P.detect(clip("a red square moving right"), world.parse_caption("a red square moving right"))
    with pytest.raises(ValueError):
        P.compare(P.detect_orbit(clip("a red circle orbiting")), "a red circle bouncing")


# ----------------------------------------------------------------------------- the report
def test_periodic_report():
    specs = [ClipSpec("white", shape, motion, speed) for motion in P.PERIODIC_MOTIONS
             for shape in world.SHAPES for speed in SPEEDS]                  # 27, 3 of them spinning circles (skipped)
    specs.append(ClipSpec("white", "square", "moving left"))
    clips = [clip(s.caption, seed=i) for i, s in enumerate(specs)]
    rep = P.periodic_report(clips, specs)
    json.dumps(rep)
    assert rep["skipped"] == 4 and rep["overall"]["n"] == 24 and rep["overall"]["right_pct"] == 100.0
    assert rep["overall"]["reversed"] == 0 and rep["overall"]["max_rate_error"] < TIGHT
    assert [(r["motion"], r["speed"], r["shape"]) for r in rep["rows"]][:3] == \
        [("spinning", "slow", "square"), ("spinning", "slow", "triangle"), ("spinning", "normal", "square")]
    quick_square = next(r for r in rep["rows"] if r["speed"] == "quick" and r["shape"] == "square")
    assert quick_square["cycles_per_keyframe"] == pytest.approx(4 / 6) and quick_square["n"] == 1
    assert {m: rep["per_motion"][m]["n"] for m in P.PERIODIC_MOTIONS} == {"spinning": 6, "orbiting": 9,
                                                                         "bouncing": 9}
    # the same prompts as keyframes (every 4th frame), captions as strings, one stride for all
    keyed = P.periodic_report([c[::4] for c in clips], [s.caption for s in specs], stride=4)
    assert keyed["per_motion"]["spinning"]["reversed"] == 1            # the quick square (the triangle: on Nyquist)
    assert keyed["per_motion"]["orbiting"]["right_pct"] == 100.0
    assert keyed["per_motion"]["bouncing"]["right_pct"] == 100.0
    table = P.format_periodic_table(keyed)
    assert "| periodic | speed | shape | period | cycles / keyframe | clips | right % | rate err % |" in table
    assert "| spinning | quick | square | 6.0 | 0.67 | 1 | 0.0 | 50.0 | 1 | 0 |" in table
    both = P.format_periodic_table({"frames": rep, "keyframes": keyed})
    assert "| frames right % |" in both and "| keyframes reversed |" in both
    assert "| spinning | quick | square | 6.0 | 0.67 | 1 | 100.0 | 0.0 | 0 | 0 | 0.0 | 50.0 | 1 | 0 |" in both
    with pytest.raises(ValueError):
        P.periodic_report(clips[:2], specs)
    with pytest.raises(ValueError):
        P.periodic_report(clips[:2], specs[:2], stride=[1, 2, 4])
