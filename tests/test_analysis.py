"""Model-free maths over recordings (stunet.analysis): PCA colours, frame change, attention by frame offset, word
maps (DAAM), x-t slices and image helpers, numpy against torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stunet import analysis as V


def test_pca_rgb_shape_range_and_determinism():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, 5, 6, generator=g).half()
    a, b = V.pca_rgb(x), V.pca_rgb(x.clone())
    assert a.shape == (4, 5, 6, 3) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    # one basis for all frames: a feature that is constant over time gives identical frames
    const = torch.randn(8, 1, 4, 4, generator=g).repeat(1, 3, 1, 1)
    rgb = V.pca_rgb(const)
    np.testing.assert_allclose(rgb[0], rgb[2])


def test_pca_rgb_few_channels_and_constant():
    assert V.pca_rgb(np.zeros((2, 2, 3, 3))).shape == (2, 3, 3, 3)
    one = V.pca_rgb(np.random.default_rng(0).normal(size=(1, 2, 3, 3)))
    assert np.all(one[..., 1:] == 0)
    with pytest.raises(ValueError):
        V.pca_rgb(np.zeros((2, 3, 3)))


def test_frame_change():
    x = np.zeros((3, 4, 2, 2), dtype=np.float32)
    x[:, 2:] = 1.0                                  # a jump between frames 1 and 2
    ch = V.frame_change(x + 1)
    assert ch.shape == (3,)
    assert ch[0] == 0 and ch[2] == 0 and ch[1] > 0
    assert V.frame_change(np.zeros((3, 1, 2, 2))).size == 0
    assert np.all(V.frame_change(np.zeros((3, 4, 2, 2))) == 0)


def test_frame_spans():
    assert V.frame_spans(4, 16) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    with pytest.raises(ValueError):
        V.frame_spans(3, 16)


def _probs(t=4, h=2, w=3, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, w, heads, t, t, generator=g).softmax(-1)


def test_attention_matrix_rows_sum_to_one_and_select():
    p = _probs()
    m = V.attention_matrix(p)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(V.attention_matrix(p, head=1, position=(1, 2)), p[1, 2, 1].numpy(), atol=1e-6)
    with pytest.raises(ValueError):
        V.attention_matrix(p, head=2)
    with pytest.raises(ValueError):
        V.attention_matrix(p, position=(2, 0))


def test_by_offset_and_distance():
    eye = np.eye(3, dtype=np.float32)
    offsets, m = V.by_offset(eye)
    assert list(offsets) == [-2, -1, 0, 1, 2]
    np.testing.assert_array_equal(m[:, 2], [1, 1, 1])             # the diagonal is offset 0
    assert np.isnan(m[0, 0]) and np.isnan(m[2, 4])
    _, mean = V.mean_by_offset(eye)
    assert mean[2] == 1 and mean[0] == 0
    assert V.attention_distance(eye) == 0
    nxt = np.roll(eye, 1, axis=1)                                  # every frame attends to the next one
    assert V.attention_distance(nxt) == pytest.approx((1 + 1 + 2) / 3)
    # a matrix that is its own offset view: the row q of the offset view is row q of A shifted by q
    a = np.arange(9, dtype=np.float32).reshape(3, 3)
    _, m = V.by_offset(a)
    for q in range(3):
        for k in range(3):
            assert m[q, k - q + 2] == a[q, k]


def test_word_maps_upsamples_and_reduces():
    a = torch.zeros(3, 2, 2, 2)
    a[1, 0] = 1.0                      # token 1 takes everything in the first layer frame
    a[2, 1] = 1.0
    out = V.word_maps([a], [1, 2], (4, 4, 4))
    assert out.shape == (2, 4, 4, 4)
    assert np.allclose(out[0, :2], 1) and np.allclose(out[0, 2:], 0)   # nearest in time: frames 0-1 <- layer frame 0
    both = V.word_maps([a, a], [1], (4, 4, 4))
    mean = V.word_maps([a, a], [1], (4, 4, 4), reduce="mean")
    np.testing.assert_allclose(both, 2 * mean)
    with pytest.raises(ValueError):
        V.word_maps([a], [5], (4, 4, 4))
    with pytest.raises(ValueError):
        V.word_maps([a], [1], (3, 4, 4))


def test_image_helpers():
    v = np.arange(4 * 3 * 5 * 3, dtype=np.uint8).reshape(4, 3, 5, 3)
    xt = V.xt_slice(v, 1)
    assert xt.shape == (4, 5, 3)
    np.testing.assert_array_equal(xt[2], v[2, 1])
    with pytest.raises(ValueError):
        V.xt_slice(v, 3)
    grid = V.tile([np.full((2, 2, 3), i, np.uint8) for i in range(5)], cols=3, pad=1)
    assert grid.shape == (2 * 2 + 1, 3 * 2 + 2, 3)
    c = V.colorize(np.array([0.0, 0.5, 1.0, np.nan]))
    assert c.shape == (4, 3) and c.dtype == np.uint8
    assert tuple(c[0]) == (0, 0, 4) and tuple(c[3]) == (0, 0, 4)
    o = V.overlay(np.full((2, 2, 3), 200, np.uint8), np.array([[0, 1], [0.5, 0]]))
    assert o.shape == (2, 2, 3) and o.dtype == np.uint8


def test_top_eigenvectors_matches_eigh():
    rng = np.random.default_rng(3)
    for c in (3, 24, 64, 128):
        a = rng.normal(size=(2000, c)) * np.linspace(4, 0.2, c)
        cov = a.T @ a / len(a)
        v = V.top_eigenvectors(cov, 3)
        w, ref = np.linalg.eigh(cov)
        ref = ref[:, ::-1][:, :3]
        np.testing.assert_allclose(np.abs((v * ref).sum(0)), 1, atol=1e-4)


def test_numpy_resampling_matches_torch():
    import torch.nn.functional as F
    from stunet.video import to_uint8
    g = torch.Generator().manual_seed(2)
    a = torch.rand(4, 2, 8, 8, generator=g)
    got = V.word_maps([a], [1, 3], (4, 16, 24))
    ref = F.interpolate(a[[1, 3]].repeat_interleave(2, dim=1), size=(16, 24), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
    clip = (torch.rand(3, 4, 5, 6, generator=g) * 2.4 - 1.2).half()
    np.testing.assert_array_equal(V.clip_uint8(clip), to_uint8(clip))
    np.testing.assert_array_equal(V.clip_uint8(clip[None]), to_uint8(clip[None]))
