"""The analytic detectors: right on the world's own clips, and they catch wrong answers."""
from __future__ import annotations

import numpy as np
import pytest

from stunet.shapes import metrics as M
from stunet.shapes import world
from stunet.shapes.world import ClipSpec

SPECS = world.all_specs()


def clip(caption: str, frames: int = 32, size: int = 32, stride: int = 1, seed: int = 0) -> np.ndarray:
    return world.make_clip(world.parse_caption(caption), frames, size, stride, seed=seed).video


def verdicts(s: M.ClipScore) -> tuple[bool, bool, bool, bool]:
    return s.color_ok, s.shape_ok, s.motion_ok, s.coherent


# ----------------------------------------------------------------------------- components
def test_label_components_matches_a_reference_flood_fill():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 12, 13)) < np.array([0.2, 0.35, 0.45, 0.55, 0.7, 0.9])[:, None, None]
    labels = M.label_components(masks)
    for m, lab in zip(masks, labels):
        # reference: breadth-first flood fill, 8-connectivity
        ref = np.zeros(m.shape, int)
        n = 0
        for sy, sx in zip(*np.nonzero(m)):
            if ref[sy, sx]:
                continue
            n += 1
            ref[sy, sx] = n
            todo = [(sy, sx)]
            while todo:
                y, x = todo.pop()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < m.shape[0] and 0 <= xx < m.shape[1] and m[yy, xx] and not ref[yy, xx]:
                            ref[yy, xx] = n
                            todo.append((yy, xx))
        assert (lab > 0).sum() == m.sum() and ((lab > 0) == m).all()
        # same partition: a bijection between labels
        pairs = set(zip(lab[m].tolist(), ref[m].tolist()))
        assert len(pairs) == n == len(set(lab[m].tolist()))


def test_label_components_diagonal_and_separate():
    m = np.zeros((1, 5, 5), bool)
    m[0, 0, 0] = m[0, 1, 1] = True          # diagonal neighbours: one component
    m[0, 4, 4] = True                       # far away: another
    lab = M.label_components(m)[0]
    assert lab[0, 0] == lab[1, 1] != lab[4, 4]
    assert len(np.unique(lab[lab > 0])) == 2


# ----------------------------------------------------------------------------- the ceiling
# Deterministic samples of every clip kind the world draws: every (motion, speed) pair with a few
# seeded (colour, shape) picks, at stride 1 (32 frames) and stride 2 (16 frames: the same 32 base frames).
def _cases(stride: int, per_kind: int, seed: int):
    rng = np.random.default_rng(seed)
    kinds = sorted({(sp.motion, sp.speed or "") for sp in SPECS})
    out = []
    for motion, speed in kinds:
        group = [sp for sp in SPECS if sp.motion == motion and (sp.speed or "") == speed]
        for j in rng.choice(len(group), size=per_kind, replace=False):
            out.append((group[int(j)], stride, 32 // stride, int(rng.integers(1 << 30))))
    return out


CASES = _cases(1, 3, seed=1) + _cases(2, 2, seed=2)


def test_samples_cover_the_vocabulary():
    for stride in (1, 2):
        sel = [sp for sp, s, _, _ in CASES if s == stride]
        assert {sp.motion for sp in sel} == set(world.MOTIONS)
        assert {sp.color for sp in sel} == set(world.COLORS)
        assert {sp.shape for sp in sel} == set(world.SHAPES)
        assert {(sp.motion, sp.speed) for sp in sel} >= {(m, s) for m in world.MOTIONS if m != "standing still"
                                                         for s in world.SPEEDS}


@pytest.mark.parametrize("stride", [1, 2])
def test_world_clips_pass_every_detector(stride):
    bad = []
    for spec, s, frames, seed in CASES:
        if s != stride:
            continue
        c = world.make_clip(spec, frames, 32, stride, seed=seed)
        score = M.evaluate_clip(c.video, spec, stride)
        if not score.ok:
            bad.append((spec.caption, verdicts(score), score.motion, score.measured, score.expected))
            continue
        assert score.color == spec.color and score.shape == spec.shape and score.motion == spec.motion
        if score.expected is not None:      # the world's rate, measured on the pixels, within 3 %
            assert abs(score.measured / score.expected - 1) < 0.03, (spec.caption, score.measured, score.expected)
        assert score.frames_one_object == frames and score.max_objects == 1
    assert not bad, bad


@pytest.mark.parametrize("size", [16, 48])
def test_other_frame_sizes(size):
    for i, cap in enumerate(["a cyan triangle quickly spinning", "a purple square slowly orbiting",
                             "a green circle bouncing", "a white square slowly growing", "a red triangle moving up"]):
        score = M.evaluate_clip(clip(cap, 32, size, seed=i), world.parse_caption(cap))
        assert score.ok, (cap, size, score)


def test_measured_values():
    s = M.evaluate_clip(clip("a blue square quickly bouncing"), "a blue square quickly bouncing")
    assert s.measured_kind == "period" and s.measured == pytest.approx(10.0, rel=0.03)
    s = M.evaluate_clip(clip("a red triangle slowly spinning", 16, stride=2), "a red triangle slowly spinning", 2)
    assert s.measured == pytest.approx(40.0, rel=0.03) and s.details["clockwise"]
    s = M.evaluate_clip(clip("a red circle orbiting"), "a red circle orbiting")
    assert s.measured == pytest.approx(24.0, rel=0.03) and s.details["counter_clockwise"]
    s = M.evaluate_clip(clip("a red circle quickly moving left"), "a red circle quickly moving left")
    assert s.measured_kind == "speed" and s.measured == pytest.approx(0.5, rel=0.03)
    s = M.evaluate_clip(clip("a red circle growing"), "a red circle growing")
    assert s.measured_kind == "grow" and s.measured == pytest.approx(0.14, rel=0.03)
    d = s.to_dict()
    import json
    json.dumps(d)                           # JSON-able, numpy-free
    assert d["caption"] == "a red circle growing"


# ----------------------------------------------------------------------------- wrong answers
def test_wrong_colour_fails_colour_only():
    v = clip("a red square moving right")
    s = M.evaluate_clip(v, "a blue square moving right")
    assert verdicts(s) == (False, True, True, True) and s.color == "red"
    # every palette colour is told apart from every other
    for name in world.COLORS:
        s = M.evaluate_clip(clip(f"a {name} triangle standing still"), f"a {name} triangle standing still")
        assert s.color == name
    # a dim object keeps its hue (model outputs are often darker)
    dim = (clip("a yellow circle standing still").astype(float) * 0.75).astype(np.uint8)
    assert M.evaluate_clip(dim, "a yellow circle standing still").color == "yellow"


def test_wrong_shape_fails_shape_only():
    for true, claimed in (("circle", "square"), ("square", "triangle"), ("triangle", "circle")):
        v = clip(f"a green {true} orbiting", seed=3)
        s = M.evaluate_clip(v, f"a green {claimed} orbiting")
        assert verdicts(s) == (True, False, True, True) and s.shape == true


def test_backwards_linear_motion_fails():
    v = clip("a white circle moving right")
    assert M.evaluate_clip(v, "a white circle moving right").motion_ok
    s = M.evaluate_clip(v[::-1], "a white circle moving right")
    assert s.motion == "moving left" and not s.motion_ok and not s.direction_ok
    assert s.color_ok and s.shape_ok and s.coherent
    up = clip("a white circle moving up")
    assert M.evaluate_clip(up[::-1], "a white circle moving up").motion == "moving down"


@pytest.mark.parametrize("caption,reversed_motion", [
    ("a orange square spinning", "spinning"),          # counter-clockwise: wrong sense
    ("a orange triangle orbiting", "orbiting"),        # clockwise: wrong sense
    ("a orange circle growing", "shrinking"),
    ("a orange square shrinking", "growing"),
])
def test_backwards_motion_fails(caption, reversed_motion):
    v = clip(caption, seed=5)
    assert M.evaluate_clip(v, caption).motion_ok
    s = M.evaluate_clip(v[::-1], caption)
    assert s.motion == reversed_motion and not s.motion_ok


def test_wrong_motion_is_classified_as_what_it_is():
    v = clip("a purple square bouncing", seed=2)
    s = M.evaluate_clip(v, "a purple square spinning")
    assert s.motion == "bouncing" and not s.motion_ok and s.color_ok and s.shape_ok
    s = M.evaluate_clip(clip("a purple square spinning"), "a purple square standing still")
    assert s.motion == "spinning" and not s.motion_ok
    s = M.evaluate_clip(clip("a purple square standing still"), "a purple square slowly spinning")
    assert s.motion == "standing still" and not s.motion_ok
    s = M.evaluate_clip(clip("a purple circle orbiting"), "a purple circle moving up")
    assert s.motion == "orbiting" and not s.motion_ok


def test_wrong_speed_fails_rate_but_not_direction():
    for fast, slow in (("a red circle quickly moving left", "a red circle slowly moving left"),
                       ("a red circle quickly bouncing", "a red circle slowly bouncing"),
                       ("a red square quickly spinning", "a red square slowly spinning"),
                       ("a red circle quickly orbiting", "a red circle slowly orbiting"),
                       ("a red circle quickly growing", "a red circle slowly growing")):
        s = M.evaluate_clip(clip(fast, seed=1), slow)
        assert s.direction_ok and not s.rate_ok and not s.motion_ok, fast


def test_empty_clip_fails_everything():
    s = M.evaluate_clip(np.zeros((32, 32, 32, 3), np.uint8), "a red circle standing still")
    assert verdicts(s) == (False, False, False, False)
    assert s.color is None and s.shape is None and s.motion is None and s.frames_one_object == 0


def test_two_objects_fail_coherence():
    c = world.make_clip(world.parse_caption("a red circle moving right"), 32, 32, seed=0)
    other = world.render("square", world.COLORS["red"], 32 - c.x, 32 - c.y, c.radius * 0.8, c.angle, 32, 32)
    two = np.maximum(c.video, other)                 # a second object, mirrored through the centre
    assert M.measure_frames(two).objects.min() == 2
    s = M.evaluate_clip(two, "a red circle moving right")
    assert not s.coherent and s.max_objects == 2


def test_vanishing_object_and_jumping_size_fail_coherence():
    v = clip("a blue triangle moving down").copy()
    v[17] = 0
    s = M.evaluate_clip(v, "a blue triangle moving down")
    assert not s.coherent and s.frames_one_object == 31
    # a size that jumps between frames (the prompt implies a stable size)
    small = clip("a blue circle standing still", seed=1)
    c = world.make_clip(world.parse_caption("a blue circle standing still"), 32, 32, seed=1)
    big = world.render("circle", world.COLORS["blue"], c.x, c.y, c.radius * 1.4, c.angle, 32, 32)
    v = np.where((np.arange(32) % 2 == 0)[:, None, None, None], small, big)
    s = M.evaluate_clip(v, "a blue circle standing still")
    assert not s.coherent and s.size_ratio > 1.5
    # ... but growing is allowed to change size
    assert M.evaluate_clip(clip("a blue circle quickly growing"), "a blue circle quickly growing").coherent


def test_tiny_specks_are_ignored():
    v = clip("a green square moving left").copy()
    v[5, 0, 0] = (255, 255, 255)                     # one stray pixel
    s = M.evaluate_clip(v, "a green square moving left")
    assert s.ok and s.frames_one_object == 32


def test_noise_fails():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    s = M.evaluate_clip(noise, "a white circle standing still")
    assert not s.coherent and not s.color_ok and not s.shape_ok and not s.motion_ok
    sparse = np.where(rng.random((32, 32, 32, 1)) < 0.1, noise, 0).astype(np.uint8)
    s = M.evaluate_clip(sparse, "a white circle standing still")
    assert not s.coherent
    # one colour over the whole frame is not an object
    full = np.broadcast_to(np.array(world.COLORS["red"], np.uint8), (32, 32, 32, 3)).copy()
    s = M.evaluate_clip(full, "a red square standing still")
    assert not s.coherent and not s.shape_ok and not s.color_ok
    # an object-sized blob of random colours is not one object of one colour
    blob = clip("a white circle standing still").astype(float)
    blob = (blob * rng.uniform(0.05, 1.0, blob.shape)).astype(np.uint8)
    s = M.evaluate_clip(blob, "a white circle standing still")
    assert not s.coherent and not s.color_ok


def test_degraded_but_right_clips_still_pass():
    """A model's clips are blurrier, dimmer and noisier than the world's: the detectors tolerate that."""
    rng = np.random.default_rng(1)
    k = np.array([0.25, 0.5, 0.25])
    for i, sp in enumerate(SPECS[3::41]):
        v = world.make_clip(sp, 32, 32, seed=i).video.astype(float)
        v = (np.apply_along_axis(lambda a: np.convolve(a, k, "same"), 1, v))
        v = (np.apply_along_axis(lambda a: np.convolve(a, k, "same"), 2, v))
        v = np.clip(v * 0.9 + rng.normal(0, 6, v.shape), 0, 255).astype(np.uint8)
        s = M.evaluate_clip(v, sp)
        assert s.ok, (sp.caption, verdicts(s), s.motion, s.measured, s.expected)


def test_position_jitter_is_not_motion():
    rng = np.random.default_rng(2)
    for cap in ("a red square standing still", "a red triangle slowly spinning"):
        c = world.make_clip(world.parse_caption(cap), 32, 32, seed=4)
        v = world.render(c.spec.shape, world.COLORS["red"], c.x + rng.normal(0, 0.3, 32),
                         c.y + rng.normal(0, 0.3, 32), c.radius, c.angle + rng.normal(0, 2, 32), 32, 32)
        s = M.evaluate_clip(v, cap)
        assert s.motion == c.spec.motion and s.ok, (cap, s.motion, s.details)


def test_input_checks():
    with pytest.raises(ValueError):
        M.evaluate_clip(np.zeros((4, 8, 8, 3), np.float32), "a red circle standing still")
    with pytest.raises(ValueError):
        M.evaluate_clip(np.zeros((4, 8, 8), np.uint8), "a red circle standing still")
    with pytest.raises(ValueError):
        M.evaluate_clip(np.zeros((4, 8, 8, 3), np.uint8), "a red blob standing still")
    assert M.evaluate_clip(clip("a red circle standing still"), ClipSpec("red", "circle", "standing still")).ok
