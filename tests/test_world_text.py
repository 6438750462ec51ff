"""The shapes world (determinism, captions agree with metadata) and the tokenizer."""
import numpy as np
import pytest

from stunet.shapes import world
from stunet.text import Tokenizer


def test_world_is_deterministic_by_seed():
    spec = world.ClipSpec("red", "square", "bouncing", "quickly")
    a, b = world.make_clip(spec, seed=7), world.make_clip(spec, seed=7)
    c = world.make_clip(spec, seed=8)
    assert np.array_equal(a.video, b.video) and not np.array_equal(a.video, c.video)
    s1 = [c.caption for c, _ in zip(world.stream(seed=3), range(5))]
    s2 = [c.caption for c, _ in zip(world.stream(seed=3), range(5))]
    assert s1 == s2


def test_the_sampled_specs_cover_every_motion():
    """test_caption_and_metadata_agree checks each motion in its own branch: every branch must run."""
    assert {s.motion for s in world.all_specs()[::7]} == set(world.MOTIONS)


@pytest.mark.parametrize("spec", world.all_specs()[::7])
def test_caption_and_metadata_agree(spec):
    clip = world.make_clip(spec, frames=32, size=32, seed=hash(spec.caption) % 1000)
    assert world.parse_caption(clip.caption) == spec
    md = clip.metadata()
    assert (md["color"], md["shape"], md["motion"], md["speed"]) == (spec.color, spec.shape, spec.motion, spec.speed)
    x, y = clip.x, clip.y
    r = clip.radius
    # the object stays inside the frame for the whole clip
    assert (x - r >= -0.5).all() and (x + r <= 32.5).all() and (y - r >= -0.5).all() and (y + r <= 32.5).all()
    # the drawn pixels carry the caption's colour
    fg = clip.video.reshape(-1, 3)[clip.video.reshape(-1, 3).max(1) > 170]
    assert len(fg) > 0
    mean = fg.mean(0)
    nearest = min(world.COLORS, key=lambda c: np.sum((np.array(world.COLORS[c]) - mean) ** 2))
    assert nearest == spec.color
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    if spec.motion in world.LINEAR:
        ux, uy = world.LINEAR[spec.motion]
        assert dx * ux + dy * uy > 4 and abs(dx * uy) + abs(dy * ux) < 1e-6       # moves the right way, only that way
    if spec.motion == "growing":
        assert np.all(np.diff(r) > 0)
    if spec.motion == "shrinking":
        assert np.all(np.diff(r) < 0)
    if spec.motion in ("standing still",) or (spec.motion == "spinning"):
        assert np.ptp(x) == 0 and np.ptp(y) == 0
    if spec.motion == "spinning":
        assert np.all(np.diff(clip.angle) > 0)
    if spec.motion == "bouncing":
        assert np.ptp(y) > 8 and np.ptp(x) == 0
    if spec.motion == "orbiting":
        d = np.hypot(x - 16, y - 16)
        assert np.ptp(d) < 1e-6 and d[0] > 4


def test_strides_sample_the_same_motion_sparser():
    spec = world.ClipSpec("blue", "triangle", "spinning", "quickly")
    dense = world.make_clip(spec, frames=32, stride=1, seed=1)
    sparse = world.make_clip(spec, frames=8, stride=4, seed=1)
    np.testing.assert_allclose(sparse.angle, dense.angle[::4])
    # quickly spinning: 60 degrees between keyframes, more than half the square's / triangle's symmetry period
    assert world.SPIN_SPEED["quickly"] * 4 >= world.symmetry_degrees("square") / 2


def test_shapes_are_big_enough_to_tell_apart():
    for shape in world.SHAPES:
        clip = world.make_clip(world.ClipSpec("white", shape, "standing still"), seed=0)
        assert (clip.video[0].max(-1) > 128).sum() >= 40


def test_bad_specs_rejected():
    with pytest.raises(ValueError):
        world.ClipSpec("pink", "circle", "bouncing")
    with pytest.raises(ValueError):
        world.parse_caption("hello world")


def test_tokenizer_reports_unknown_words_and_pads():
    tok = Tokenizer(world.VOCABULARY, max_words=6)
    e = tok.encode("A RED circle, zooming über left!")
    assert e.words == ["a", "red", "circle", "left"]
    assert e.unknown == ["zooming", "über"]
    assert e.ids[0] == tok.index["<cls>"] and len(e.ids) == 5
    ids, encs = tok.batch(["a red circle", ""])
    assert ids.shape == (2, 7) and ids[1, 0] == tok.index["<cls>"] and ids[1, 1:].eq(0).all()
    long = tok.encode(" ".join(["red"] * 9))
    assert len(long.words) == 6 and long.truncated == ["red"] * 3
    with pytest.raises(TypeError):
        tok.encode(None)


def test_tokenizer_round_trip(tmp_path):
    tok = Tokenizer(world.VOCABULARY, max_words=16)
    tok.save(tmp_path / "vocab.json")
    tok2 = Tokenizer.load(tmp_path / "vocab.json")
    assert tok2.vocab == tok.vocab and tok2.max_words == 16
    (tmp_path / "bad.json").write_text('{"words": [1, 2]}')
    with pytest.raises(ValueError):
        Tokenizer.load(tmp_path / "bad.json")


def test_world_clips_become_model_tensors_and_back():
    from stunet.shapes.data import to_tensor
    from stunet.video import to_uint8
    clips = np.stack([world.make_clip(world.ClipSpec("red", "circle", "growing"), 8, 16, 1, seed=s).video
                      for s in (0, 1)])                                     # b t h w 3 uint8
    x = to_tensor(clips)
    assert x.shape == (2, 3, 8, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert all(np.array_equal(to_uint8(x[i]), clips[i]) for i in range(2))
