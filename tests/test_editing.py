"""Editing applications (stunet.editing) on the tiny model: shapes, exact paste-back, what the model is
given, SDEdit's start step, mask resizing, determinism, clear errors."""
import math

import numpy as np
import pytest
import torch

from stunet import editing
from stunet.editing import (as_mask, cinemagraph, inpaint, prepare_cinemagraph, prepare_inpaint, psnr, resize_mask,
                            sdedit_steps, video_to_video)
from stunet.pipeline import Pipeline

STEPS = 3
T, H, W = 8, 16, 16          # the tiny model's window and size


@pytest.fixture(scope="module")
def pipe(tiny_model, tiny_tokenizer):
    return Pipeline(tiny_model, tiny_tokenizer, "fp32")


def _clip(seed=0, t=T):
    return np.random.default_rng(seed).integers(0, 256, (t, H, W, 3), dtype=np.uint8)


def _box(t=None):
    m = np.zeros((H, W), bool)
    m[4:10, 5:12] = True
    return m if t is None else np.repeat(m[None], t, 0)


def test_inpaint_keeps_the_input_outside_the_mask_exactly_and_changes_inside(pipe):
    video = _clip()
    mask = np.zeros((T, H, W), bool)
    mask[2:6, 4:10, 5:12] = True                           # a box over some frames only
    e = inpaint(pipe, video, mask, "a red circle moving left", seed=1, steps=STEPS)
    assert e.video.shape == (T, H, W, 3) and e.video.dtype == np.uint8
    assert np.array_equal(e.video[~mask], video[~mask])    # exact outside the mask
    assert np.array_equal(e.video[mask], e.raw[mask])      # the model's pixels inside
    assert not np.array_equal(e.video[mask], video[mask])
    assert np.array_equal(e.given, ~mask)
    assert e.settings["steps_run"] == STEPS
    # before the paste the raw clip differs outside too (the tiny model is untrained), so the paste is real
    assert not np.array_equal(e.raw[~mask], video[~mask])
    p = e.psnr_given
    assert p == psnr(e.raw, video, ~mask) and math.isfinite(p)
    assert e.record()["psnr_given_before_paste_db"] == round(p, 2)


def test_inpaint_gives_the_model_the_masked_clip_and_the_mask(pipe):
    """What reaches the STUNet: cond = clip with the masked pixels zeroed, mask = 1 where given (all frames)."""
    video = _clip(1)
    seen = {}

    def hook(module, args):
        seen.setdefault("cond", args[4])
        seen.setdefault("mask", args[5])

    h = pipe.model.register_forward_pre_hook(hook)
    try:
        inpaint(pipe, video, _box(), "a red circle", steps=1, guidance=1.0)
    finally:
        h.remove()
    mask, cond = seen["mask"], seen["cond"]
    assert mask.shape == (1, 1, T, H, W) and cond.shape == (1, 3, T, H, W)
    want = torch.from_numpy((~_box(T)).astype(np.float32))[None, None]
    assert torch.equal(mask, want)
    x = torch.from_numpy(video).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.allclose(cond, x * want)


def test_an_h_w_mask_applies_to_every_frame_and_edits_are_deterministic(pipe):
    video = _clip(2)
    a = inpaint(pipe, video, _box(), "a blue square", seed=3, steps=STEPS)
    b = inpaint(pipe, video, _box(T), "a blue square", seed=3, steps=STEPS)
    c = inpaint(pipe, video, _box(), "a blue square", seed=4, steps=STEPS)
    assert np.array_equal(a.video, b.video)
    assert not np.array_equal(a.video, c.video)


def test_cinemagraph_first_frame_is_the_image_and_outside_the_region_never_moves(pipe):
    image = _clip(3)[0]
    region = _box()
    e = cinemagraph(pipe, image, region, "a green triangle bouncing", seed=0, steps=STEPS)
    assert e.video.shape == (T, H, W, 3)
    assert np.array_equal(e.video[0], image)
    diff = np.abs(e.video.astype(int) - image[None].astype(int)).max(-1)      # t h w
    assert (diff[:, ~region] == 0).all()                                       # every frame, outside the region
    assert diff[1:, region].max() > 0                                          # inside it moves
    assert e.given[0].all() and np.array_equal(e.given[1], ~region)


def test_cinemagraph_frames_argument(pipe):
    req = prepare_cinemagraph(pipe, _clip()[0], _box(), "a red circle", frames=4)
    assert req.source.shape == (4, H, W, 3) and req.given.shape == (4, H, W)


@pytest.mark.parametrize("strength,expected", [(0.2, 1), (0.5, 2), (1.0, 4), (0.01, 1)])
def test_sdedit_strength_sets_the_steps_run(pipe, strength, expected):
    assert sdedit_steps(4, strength) == expected
    req = editing.prepare_video_to_video(pipe, _clip(), "a blue circle", strength, steps=4)
    outs = list(req.iter(pipe))
    assert len(outs) == expected and outs[-1].num_steps == expected


def test_video_to_video_low_strength_stays_near_the_input_full_strength_ignores_it(pipe):
    video = _clip(5)
    low = video_to_video(pipe, video, "a blue circle moving left", 0.05, seed=0, steps=20)
    full_a = video_to_video(pipe, video, "a blue circle moving left", 1.0, seed=0, steps=STEPS)
    full_b = video_to_video(pipe, _clip(6), "a blue circle moving left", 1.0, seed=0, steps=STEPS)
    assert low.settings["steps_run"] == 1 and low.settings["strength"] == 0.05
    assert psnr(low.video, video) > 20                       # strength near 0: (nearly) the input
    assert np.array_equal(full_a.video, full_b.video)         # strength 1: the input is not used at all
    assert low.given is None and low.psnr_given is None


def test_resize_mask_nearest_neighbour():
    big = np.zeros((64, 64), bool)
    big[16:32, 8:40] = True
    small = resize_mask(big, (16, 16))
    want = np.zeros((16, 16), bool)
    want[4:8, 2:10] = True
    assert np.array_equal(small, want)
    assert resize_mask(small, (64, 64)).sum() == 16 * 32     # upscaling too, by sampling pixel centres
    assert resize_mask(np.ones((3, 7, 5), bool), (4, 4)).shape == (3, 4, 4)


@pytest.mark.parametrize("call,match", [
    (lambda p: inpaint(p, _clip()[:, :8], _box(), "a red circle"), "16x16"),
    (lambda p: inpaint(p, _clip().astype(np.float32), _box(), "a red circle"), "uint8"),
    (lambda p: inpaint(p, _clip(t=3), _box(), "a red circle"), "frames"),
    (lambda p: inpaint(p, _clip(), np.zeros((H, W), bool), "a red circle"), "mask is empty"),
    (lambda p: inpaint(p, _clip(), np.ones((5, H, W), bool), "a red circle"), "shape"),
    (lambda p: inpaint(p, _clip(), np.full((H, W), 0.5), "a red circle"), "boolean"),
    (lambda p: inpaint(p, _clip(), _box(), "   "), "prompt"),
    (lambda p: cinemagraph(p, _clip()[0], np.zeros((H, W), bool), "a red circle"), "region is empty"),
    (lambda p: cinemagraph(p, _clip(), _box(), "a red circle"), "image"),
    (lambda p: video_to_video(p, _clip(), "a red circle", 0.0), "strength"),
    (lambda p: video_to_video(p, _clip(), "a red circle", 1.5), "strength"),
    (lambda p: video_to_video(p, _clip(), "a red circle", float("nan")), "strength"),
])
def test_bad_input_is_a_clear_error(pipe, call, match):
    with pytest.raises(ValueError, match=match):
        call(pipe)


def test_bad_input_fails_before_sampling(pipe):
    calls = []
    h = pipe.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError):
            inpaint(pipe, _clip(), np.zeros((H, W), bool), "a red circle")
    finally:
        h.remove()
    assert calls == []


def test_as_mask_accepts_0_1_integers():
    m = as_mask(_box().astype(np.uint8), 2, H, W)
    assert m.dtype == bool and m.shape == (2, H, W) and np.array_equal(m[1], _box())


def test_prepare_inpaint_does_not_touch_its_input(pipe):
    video = _clip()
    keep = video.copy()
    req = prepare_inpaint(pipe, video, _box(), "a red circle", steps=1)
    req.run(pipe)
    assert np.array_equal(video, keep)
