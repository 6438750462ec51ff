"""Styles of the shapes world (issue 33): the flat default is the world as it was, bit for bit; the other
styles change the drawing only; the style detector tells them apart on world frames; the world's own
detectors read a styled clip's motion as they read a flat one's."""
import hashlib

import numpy as np
import pytest

from stunet.shapes import style_detect, world
from stunet.shapes.metrics import evaluate_clip
from stunet.shapes.periodic import evaluate_periodic
from stunet.shapes.prompts import default_prompts, world_seed
from stunet.text import Tokenizer

# sha256 of the clips below drawn by the world before styles existed (git HEAD 0cdbe46's world.py)
FLAT_SHA256 = "31c4076c1567a257986085c570aea2b4bfabe6f2e4965cc4609ef9b5cadbe3e7"


def test_the_default_style_is_the_world_as_it_was():
    h = hashlib.sha256()
    for i, s in enumerate(world.all_specs()[::5]):
        stride = 1 + i % 3
        video = world.make_clip(s, 8, 32, stride, seed=i).video
        assert np.array_equal(video, world.make_clip(s, 8, 32, stride, seed=i, style="flat").video)
        h.update(video.tobytes())
    assert h.hexdigest() == FLAT_SHA256


def test_a_style_changes_the_drawing_only():
    spec = world.ClipSpec("green", "triangle", "orbiting", "quickly")
    flat = world.make_clip(spec, 16, 32, 2, seed=5)
    for style in world.STYLES[1:]:
        c = world.make_clip(spec, 16, 32, 2, seed=5, style=style)
        for k in ("x", "y", "radius", "angle"):
            assert np.array_equal(getattr(c, k), getattr(flat, k))
        assert c.caption == flat.caption and c.style == style and c.metadata()["style"] == style
        assert not np.array_equal(c.video, flat.video)
        assert ((c.video > 0) <= (flat.video > 0)).all()            # drawn only where the flat object is
    with pytest.raises(ValueError, match="unknown style"):
        world.make_clip(spec, style="plaid")


def test_style_words_name_the_style_but_are_not_prompt_words():
    assert world.styled_caption("a red circle moving left", "outline") == "a red outlined circle moving left"
    assert world.styled_caption("a red circle moving left", "flat") == "a red circle moving left"
    assert world.make_clip(world.ClipSpec("red", "circle", "growing"), 4, style="stripes").styled_caption \
        == "a red striped circle growing"
    assert set(world.STYLE_WORDS) == set(world.STYLES)
    # the style lives in the weights: the vocabulary (and so the shipped tokenizer) gains no word
    assert not set(world.STYLE_WORDS.values()) & set(world.VOCABULARY)
    assert len(Tokenizer(world.VOCABULARY)) == 31


def _frames(style: str, per_kind: int = 2, step: int = 5):
    """Frames of every colour x shape, at several moments of clips of every motion (cycled), in ``style``."""
    out = []
    motions = world.MOTIONS
    n = 0
    for color in world.COLORS:
        for shape in world.SHAPES:
            for k in range(per_kind):
                motion = motions[n % len(motions)]
                n += 1
                if motion == "spinning" and shape == "circle":
                    motion = "orbiting"
                clip = world.make_clip(world.ClipSpec(color, shape, motion), 32, 32, 1, seed=100 * n + k, style=style)
                out += [(color, shape, clip.video[i], clip.radius[i]) for i in range(k, 32, step)]
    return out


@pytest.mark.parametrize("style", world.STYLES)
def test_the_detector_tells_the_styles_apart_on_world_frames(style):
    frames = _frames(style)
    read = [style_detect.detect_style(f) for _, _, f, _ in frames]
    assert np.mean([r == style for r in read]) >= 0.98, style
    for color in world.COLORS:                                   # every colour and every shape on its own
        sel = [r for (c, _, _, _), r in zip(frames, read) if c == color]
        assert np.mean([r == style for r in sel]) >= 0.9, (style, color)
    for shape in world.SHAPES:
        sel = [r for (_, s, _, rad), r in zip(frames, read) if s == shape and rad >= 4.5]
        assert np.mean([r == style for r in sel]) == 1.0, (style, shape)


def test_detector_readings_and_clip_shares():
    clip = world.make_clip(world.ClipSpec("blue", "square", "spinning"), 8, 32, 1, seed=3, style="gradient")
    r = style_detect.read_frame(clip.video[0])
    assert r.style == "gradient" and r.slope < style_detect.SLOPE_MAX and r.to_dict()["interior"] > 10
    assert style_detect.style_share(clip.video, "gradient") == 1.0
    assert style_detect.style_share(clip.video, "flat") == 0.0
    assert style_detect.majority_style(clip.video) == "gradient"
    empty = np.zeros((2, 32, 32, 3), np.uint8)
    assert style_detect.detect_styles(empty) == [None, None] and style_detect.style_share(empty, "flat") == 0.0
    with pytest.raises(ValueError):
        style_detect.read_frame(np.zeros((32, 32), np.uint8))


@pytest.mark.parametrize("style", world.STYLES[1:])
def test_the_worlds_detectors_read_styled_clips_as_flat_ones(style):
    """The motion, periodic and coherence verdicts the measurement pairs are about motion, not appearance."""
    prompts = default_prompts()
    verdicts = []
    for i, p in enumerate(prompts):
        video = world.make_clip(world.parse_caption(p), 32, 32, 1, seed=world_seed(i, 0), style=style).video
        s = evaluate_clip(video, p)
        per = evaluate_periodic(video, p)
        verdicts.append((s.color_ok, s.shape_ok, s.motion_ok, s.coherent, True if per is None else per.right))
    assert np.mean(verdicts, axis=0).tolist() == [1.0] * 5, style
