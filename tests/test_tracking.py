"""Follow a point and the attention summaries: maths on known inputs, then on the tiny model's recording."""
import numpy as np
import pytest
import torch

from stunet import tracking
from stunet.attention_summary import summarize, summarize_probs
from stunet.inspection import Inspector
from stunet.pipeline import Pipeline, Settings
from stunet.shapes import world


def _moving_features(t=8, h=16, w=16, c=6):
    """Features that are a one-hot 'object' channel pattern moving one pixel right per frame."""
    f = torch.zeros(c, t, h, w)
    f[1:] = 0.01 * torch.randn(c - 1, t, h, w, generator=torch.Generator().manual_seed(0))
    for k in range(t):
        f[0, k, 5, 3 + k] = 1.0
    return f


def test_follow_finds_the_moving_point():
    f = _moving_features()
    tr = tracking.follow(f, 0, 3, 5, (8, 16, 16), level="enc0", step=2)
    np.testing.assert_allclose(tr.points, [[3.5 + k, 5.5] for k in range(8)])
    assert tr.similarity.shape == (8, 16, 16) and tr.best.max() <= 1.0 + 1e-5


def test_coarse_levels_are_upsampled_to_the_clip():
    f = torch.randn(4, 2, 4, 4)
    up = tracking.upsample(f, (8, 16, 16))
    assert up.shape == (4, 8, 16, 16)
    assert torch.equal(up[:, 0], up[:, 3]) and not torch.equal(up[:, 3], up[:, 4])
    with pytest.raises(ValueError, match="does not divide"):
        tracking.upsample(torch.randn(4, 3, 4, 4), (8, 16, 16))


@pytest.mark.parametrize("point, name", [((0, 16, 3), "x"), ((0, 3, -1), "y"), ((8, 3, 3), "frame"),
                                         ((0, 2.5, 3), "whole number")])
def test_point_outside_the_frame_is_refused(point, name):
    with pytest.raises(ValueError, match=name):
        tracking.check_point(*point, (8, 16, 16))


def test_scored_against_the_measured_centroid():
    clip = world.make_clip(world.parse_caption("a red circle moving right"), 16, 32, 1, seed=0)
    x, y = tracking.centroid_pixel(clip.video, 0)
    path = tracking.object_path(clip.video)
    exp = tracking.expected_path(path, 0, x, y)
    perfect = tracking.Track("x", 0, exp.copy(), np.zeros((16, 32, 32)), np.ones(16))
    rows = tracking.score({(0, "perfect"): perfect}, clip.video, 0, x, y)
    assert rows[0]["within"] == 100.0 and rows[0]["median_px"] == 0.0
    off = tracking.Track("x", 0, exp + 3.0, np.zeros((16, 32, 32)), np.ones(16))
    assert tracking.score({(0, "off"): off}, clip.video, 0, x, y)[0]["within"] == 0.0


def test_on_the_tiny_model(tiny_model, tiny_tokenizer):
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32")
    with Inspector(pipe.model, feature_steps=[1], x0_steps=[]) as ins:
        gen = pipe(Settings("a red circle moving right", steps=2, frames=8), inspector=ins)
    tracks = tracking.follow_recording(ins.recording, 0, 4, 7, gen.video.shape[:3])
    assert sorted(tracks) == [(1, "dec0"), (1, "enc0"), (1, "mid")]
    for tr in tracks.values():
        assert tr.points.shape == (8, 2) and tr.points[0].tolist() == [4.5, 7.5]   # frame 0 finds itself
    summ = summarize(ins.recording)
    assert [s.layer for s in summ] == ["mid.0.0"] and summ[0].entropy.shape == (2, 2)
    assert ((summ[0].entropy >= 0) & (summ[0].entropy <= 1 + 1e-5)).all()


def test_summary_of_known_attention():
    t = 4
    eye = torch.eye(t).expand(2, 2, 3, t, t)
    ent, off = summarize_probs(eye)
    np.testing.assert_allclose(ent, 0, atol=1e-6)
    np.testing.assert_allclose(off, 0, atol=1e-6)
    uni = torch.full((2, 2, 3, t, t), 1 / t)
    ent, off = summarize_probs(uni)
    np.testing.assert_allclose(ent, 1, atol=1e-5)
    np.testing.assert_allclose(off, 1 - 1 / t, atol=1e-6)
    ent, off = summarize_probs(torch.ones(1, 1, 2, 1, 1))            # one frame: nothing to spread over
    assert ent.tolist() == [0, 0] and off.tolist() == [0, 0]
