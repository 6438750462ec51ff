"""The studio's maths and handlers without a server: stunet.analysis, demo.figures, demo.limits, demo.studio."""
from __future__ import annotations

import html
import time

import numpy as np
import pytest
import torch

from stunet import analysis as V


# ----------------------------------------------------------------------------- stunet.analysis
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


# ----------------------------------------------------------------------------- demo.limits
def test_limits_checks():
    from demo import limits as L
    assert L.check_int("Steps", 20.0, 1, 50) == 20
    for bad in (0, 51, 2.5, "20", None, True, float("nan"), float("inf"), [3]):
        with pytest.raises(L.LimitError, match="Steps must be a whole number from 1 to 50"):
            L.check_int("Steps", bad, 1, 50)
    assert L.check_float("Guidance", 3, 1, 10) == 3.0
    for bad in (0.5, 10.5, "3", None, float("nan")):
        with pytest.raises(L.LimitError, match="from 1 to 10"):
            L.check_float("Guidance", bad, 1, 10)
    assert L.check_frames(32, 4, 32) == 32 and L.check_frames(128, 4, 32) == 128
    for bad in (0, 2, 30, 132, 256, "32"):
        with pytest.raises(L.LimitError, match="multiple of 4 from 4 to 128"):
            L.check_frames(bad, 4, 32)
    assert L.check_prompt("  a red   circle ") == "a red circle"
    for bad, msg in (("", "empty"), ("   ", "empty"), (None, "text"), ("x" * 201, "200 characters"),
                     ("a\x00b", "control"), ("a\u202eb", "control"), (12, "text")):
        with pytest.raises(L.LimitError, match=msg):
            L.check_prompt(bad)
    with pytest.raises(L.LimitError):
        L.check_choice("Sampler", "euler", ["dpm++", "ddim"])
    with pytest.raises(L.LimitError):
        L.check_bool("Flag", "yes")
    assert L.MAX_SEED == 2**31 - 1 and L.MAX_STEPS == 50
    assert ("steps", "1 to 50") in L.limits_table()


def test_guarded_escapes_and_hides_internals():
    import gradio as gr
    from demo.errors import guarded
    from demo.limits import LimitError

    @guarded
    def bad_input():
        raise LimitError("<script>alert(1)</script> is too long")

    @guarded
    def broken():
        raise RuntimeError("secret /home/user/model.safetensors")

    @guarded
    def gen():
        yield 1
        raise KeyError("/etc/passwd")

    with pytest.raises(gr.Error) as e:
        bad_input()
    assert "<script>" not in e.value.message and html.escape("<script>") in e.value.message
    with pytest.raises(gr.Error) as e:
        broken()
    assert "secret" not in e.value.message and "/home" not in e.value.message and "ref" in e.value.message
    it = gen()
    assert next(it) == 1
    with pytest.raises(gr.Error) as e:
        next(it)
    assert "passwd" not in e.value.message


# ----------------------------------------------------------------------------- demo.views + demo.studio
@pytest.fixture(scope="module")
def studio(tiny_model, tiny_tokenizer):
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    studio = Studio(Pipeline(tiny_model, tiny_tokenizer),
                    examples=[["a red circle moving right", 0, 3, 3.0, 8]])
    studio.preview_every_s = 0.0                       # a preview after every step but the last
    return studio


@pytest.fixture(scope="module")
def record(studio):
    outs = list(studio.generate("a red circle moving right quickly zzz", 1, 3, 3.0, 8))
    assert len(outs) == 3                              # previews after steps 1 and 2, then the result
    final = outs[-1]
    rec = final[-1]
    assert final[0].endswith(".mp4") and final[2] is None    # the GIF: on request
    assert rec.recording is None and rec.rerun        # Generate records nothing; Inspect records on demand
    return rec


def test_generate_records_nothing_and_inspect_records_the_same_clip(studio):
    """The recording is made when a view asks for it: the same settings sampled again with hooks give the
    same clip, and the registry counts it; a released recording is made again on the next view."""
    rec = list(studio.generate("a blue square spinning", 5, 3, 3.0, 8))[-1][-1]
    before = len(studio.records)
    assert rec.recording is None and rec.rerecorded_same is None
    r = studio.recording_of(rec, session="s1")
    assert rec.rerecorded_same is True and r.feature_steps() and r.temporal_layers()
    assert studio.recording_of(rec) is r                            # recorded once
    assert len(studio.records) == before + 1 and rec.session == "s1"
    assert studio.records.release_session("s1") == 1 and rec.recording is None and rec.released
    studio.render_all(rec)                                          # a view asks again: recorded again
    assert rec.recording is not None and rec.rerecorded_same is True


def test_records_bound_releases_oldest(studio):
    from demo.sessions import Records
    recs = [list(studio.generate("a red circle moving left", s, 3, 3.0, 8))[-1][-1] for s in (11, 12, 13)]
    for r in recs:
        studio.recording_of(r)
    one = recs[0].nbytes
    reg = Records(max_bytes=int(2.5 * one))
    for r in recs:
        reg.add(r)
    assert recs[0].recording is None and recs[1].recording is not None and recs[2].recording is not None
    assert len(reg) == 2 and reg.nbytes <= 2.5 * one


def test_gif_on_request(studio, record):
    path = studio.make_gif(record)
    assert path.endswith(".gif") and record.gif == path and studio.make_gif(record) == path
    from stunet.video import read_video_frames
    assert read_video_frames(path).shape[0] == record.video.shape[0]


def test_generate_validates(studio):
    from demo.limits import LimitError
    bad = [("", 0, 3, 3.0, 8), ("zzz qqq", 0, 3, 3.0, 8), ("a red circle", -1, 3, 3.0, 8),
           ("a red circle", 0, 51, 3.0, 8), ("a red circle", 0, 3, 11.0, 8), ("a red circle", 0, 3, 3.0, 7),
           ("a red circle", 0, 3, 3.0, 34), ("a red circle", 2**31, 3, 3.0, 8), ("a red circle", "x", 3, 3.0, 8)]
    for args in bad:
        with pytest.raises(LimitError):
            next(studio.generate(*args))
    with pytest.raises(LimitError, match="Sampler"):
        next(studio.generate("a red circle", 0, 3, 3.0, 8, sampler="euler"))
    with pytest.raises(LimitError, match="Stride"):
        next(studio.generate("a red circle", 0, 3, 3.0, 8, stride=3))
    with pytest.raises(LimitError, match="Frame rate"):
        next(studio.generate("a red circle", 0, 3, 3.0, 8, fps=0))


def test_record_and_views(studio, record):
    from demo import figures as views
    rec = record
    assert rec.video.shape == (8, 16, 16, 3) and rec.video.dtype == np.uint8
    assert rec.words == ["a", "red", "circle", "moving", "right", "quickly"] and rec.unknown == ["zzz"]
    out = studio.render_all(rec)
    assert rec.settings.seed == 1 and rec.recorded_frames == 8 and rec.rerecorded_same
    assert len(out) == 20
    step_out = studio.view_step(rec, 2, "mid.0.0", "mean", "average over all positions", 0, 0, False, "all", False, 8,
                                out[-1])
    assert len(step_out) == 12 and step_out[-1] == (rec.id, 2)
    img, fig, note = studio.view_features(rec, 1)
    assert img.ndim == 3 and img.shape[2] == 3 and len(fig.data) == len(rec.recording.level_names)
    assert "step **1**" in note or "step **2**" in note or "step **0**" in note
    picker, mat, off, dist = studio.view_temporal(rec, 2, "mid.0.0", "mean", "average over all positions", 0, 0, False)
    z = np.array(mat.data[0].z, dtype=float)
    t = rec.recording.temporal_attention[(2, "mid.0.0")].shape[-1]
    assert z.shape == (t, t) and np.allclose(z.sum(1), 1, atol=1e-3)
    _, mat2, _, _ = studio.view_temporal(rec, 1, "mid.0.0", "0", "at the picked position", 1, 2, True)
    assert np.isnan(np.array(mat2.data[0].z, dtype=float)[0, 0])
    words_img, share = studio.view_words(rec, 2, "all", False)
    assert words_img.shape[0] > 6 * 64 and len(share.data) == 6
    studio.view_words(rec, 2, "mid.0", True)
    xt, film = studio.view_xt(rec, 3, 2)
    assert xt.ndim == 3 and film.ndim == 3
    assert views.pyramid_figure(studio.cfg, 32).layout.title.text.endswith("(MultiDiffusion)")


def test_inspect_validation(studio, record):
    from demo.limits import LimitError
    with pytest.raises(LimitError, match="generate one first"):
        studio.view_features(None, 0)
    with pytest.raises(LimitError, match="Step"):
        studio.view_features(record, 3)
    with pytest.raises(LimitError, match="Layer"):
        studio.view_temporal(record, 0, "nope", "mean", "average over all positions", 0, 0, False)
    with pytest.raises(LimitError, match="Head"):
        studio.view_temporal(record, 0, "mid.0.0", "9", "average over all positions", 0, 0, False)
    with pytest.raises(LimitError, match="Position row"):
        studio.view_temporal(record, 0, "mid.0.0", "mean", "at the picked position", 99, 0, False)
    with pytest.raises(LimitError, match="Row"):
        studio.view_xt(record, 16, 0)
    with pytest.raises(LimitError):
        studio.view_words(record, 0, "all", "yes")


def test_export_npz(studio, record):
    path = studio.export_npz(record)
    with np.load(path) as z:
        keys = set(z.files)
        assert "video" in keys and "timesteps" in keys and "settings" in keys
        assert any(k.startswith("features/") for k in keys)
        assert any(k.startswith("temporal_attention/") for k in keys)
        assert any(k.startswith("cross_attention/") for k in keys)
        assert {f"x0/{s:03d}" for s in range(3)} <= keys
        assert z["video"].shape == (8, 16, 16, 3)


def test_example_cache_and_cleanup(studio, monkeypatch, tmp_path):
    import os
    import time
    from demo import limits as L
    first = list(studio.generate("a red circle moving right", 0, 3, 3.0, 8))
    again = list(studio.generate("a red circle moving right", 0, 3, 3.0, 8))
    assert len(first) == 3 and len(again) == 1                       # the second comes from the cache
    assert again[0][-1] is first[-1][-1] and "example cache" in again[0][5]
    # old request folders are removed, the example folder is kept
    old = studio.out_dir / "old-request"
    old.mkdir()
    os.utime(old, (time.time() - L.OUTPUT_TTL_S - 10,) * 2)
    studio._cleanup()
    assert not old.exists() and studio.example_dir.exists()
    monkeypatch.setattr(L, "MAX_OUTPUT_DIRS", 1)
    for i in range(3):
        (studio.out_dir / f"r{i}").mkdir()
    studio._cleanup()
    assert len([p for p in studio.out_dir.iterdir() if p != studio.example_dir]) == 1


def test_deadline(studio, monkeypatch):
    """A clip whose steps slow down past its first step's pace is stopped between steps."""
    from demo import limits as L
    monkeypatch.setattr(L, "JOB_DEADLINE_FLOOR_S", 0)
    monkeypatch.setattr(L, "JOB_DEADLINE_MARGIN", 0.5)      # deadline: 0.5 x 4 steps at the first step's pace
    calls = []

    def pre(module, args):                                  # the first step at the machine's pace, then 2 s each
        calls.append(1)
        if len(calls) > 1:
            time.sleep(2.0)

    h = studio.pipe.model.register_forward_pre_hook(pre)
    try:
        with pytest.raises(L.LimitError, match="limit per clip"):
            list(studio.generate("a blue square", 5, 4, 3.0, 8))
    finally:
        h.remove()
    # after step 2 the projection is e1 + 2 + 2 x 2 s, past 2 x e1 for any first step e1 under 6 s
    assert len(calls) == 2                                  # stopped after the second of four steps


def test_deadline_scales_with_the_first_step():
    """The job limit is counted in steps at the pace of the first one: a 3x slower machine gets 3x the time."""
    from demo import limits as L
    fast, slow = L.job_deadline_s(2.0, 50), L.job_deadline_s(6.0, 50)
    assert slow == 3 * fast == 3 * L.JOB_DEADLINE_MARGIN * 50 * 2.0
    assert L.job_deadline_s(0.001, 1) == L.JOB_DEADLINE_FLOOR_S


def test_prompt_html_flags_unknown_words(studio):
    out = studio.prompt_html("a red <b>circle</b> zzz")
    assert "<b>" not in out and "chip unknown" in out and "chip known" in out
    assert "unknown word" in out
    assert "Type a prompt" in studio.prompt_html("")


def test_pyramid_rows_match_recording(studio, record):
    from stunet.model import describe_pyramid
    rows = describe_pyramid(studio.cfg, 8, path=True)
    assert [r.name for r in rows] == record.recording.level_names
    for r in rows:
        c, t, h, w = record.recording.features[(2, r.name)].shape
        assert (r.channels, r.frames, r.height, r.width) == (c, t, h, w)


def test_layer_names_match_inspector(studio, record):
    from stunet.inspection import layer_names
    temporal, cross = layer_names(studio.pipe.model)
    assert [n for n, _ in temporal] == record.recording.layers("temporal_attention")
    assert cross == record.recording.layers("cross_attention")
    assert [h for _, h in temporal] == [record.recording.heads(n) for n, _ in temporal]


@pytest.mark.parametrize("name", ["tiny", "shapes", "vdm"])
def test_layer_names_from_config_match_the_modules(name):
    """The studio lists layers from the config (before the weights load): the same as the built model's."""
    from stunet.config import preset
    from stunet.inspection import layer_names, named_levels
    from stunet.model import STUNet
    model = STUNet(preset(name))
    temporal, cross = [], []
    for level, module in named_levels(model):
        for bi, blk in enumerate(module.blocks):
            temporal += [(f"{level}.{bi}.{ai}", attn.heads) for ai, attn in enumerate(blk.temporal_attn)]
            cross += [f"{level}.{bi}"] if blk.cross is not None else []
    assert layer_names(model.config) == layer_names(model) == (temporal, cross)


def test_recording_queries(record):
    r = record.recording
    assert r.feature_steps() == r.steps("features") and r.temporal_layers() == ["mid.0.0"]
    assert r.cross_layers() == r.layers("cross_attention") and r.heads("mid.0.0") == 2 and r.heads("nope") == 0
    assert r.grid("mid.0.0") == (4, 8, 8) and r.recorded_frames(99) == 8
    maps = r.word_attention(len(record.words), 8, (16, 16))
    assert maps.shape == (6, 8, 16, 16) and np.all(maps >= 0)
    assert r.word_attention(0, 8, (16, 16)).shape == (0, 8, 16, 16)


def test_about_svg(studio):
    from demo.about import about_html, architecture_svg
    svg = architecture_svg(studio.cfg)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "temporal attention" in svg
    assert "2401.12945" in about_html(studio.cfg, 1000)


def test_top_eigenvectors_matches_eigh():
    rng = np.random.default_rng(3)
    for c in (3, 24, 64, 128):
        a = rng.normal(size=(2000, c)) * np.linspace(4, 0.2, c)
        cov = a.T @ a / len(a)
        v = V.top_eigenvectors(cov, 3)
        w, ref = np.linalg.eigh(cov)
        ref = ref[:, ::-1][:, :3]
        np.testing.assert_allclose(np.abs((v * ref).sum(0)), 1, atol=1e-4)


def test_long_clip_multidiffusion(studio, monkeypatch):
    """Longer than the window: the recording covers the first window, x-t and x0-hat the whole clip."""
    from demo import limits as L
    monkeypatch.setattr(L, "X0_MAX_BYTES", 2 * 3 * 24 * 16 * 16 * 2)      # room for two steps of x0-hat
    rec = list(studio.generate("a white square moving up", 3, 3, 3.0, 24))[-1][-1]
    out = studio.render_all(rec)                        # recorded now (on demand)
    assert rec.video.shape[0] == 24 and rec.recorded_frames == 8 and rec.rerecorded_same
    assert sorted(rec.recording.x0) == [0, 2]
    assert "first MultiDiffusion window" in out[0] and "x0-hat at 2 steps" in out[0]
    xt, film = studio.view_xt(rec, 5, 1)
    assert xt.shape[0] > 24
    words, _ = studio.view_words(rec, 1, "all", True)
    assert words.ndim == 3


def test_records_are_bounded(studio, monkeypatch):
    """Past the registry's bound the oldest recordings are released; a released generated clip is recorded
    again when a view asks (same seed: the same clip), a released edit asks for the edit again."""
    from demo import limits as L
    a = list(studio.generate("a red square", 11, 2, 3.0, 8))[-1][-1]
    studio.recording_of(a)
    monkeypatch.setattr(studio.records, "max_bytes", a.recording.nbytes + 1)
    b = list(studio.generate("a red square", 12, 2, 3.0, 8))[-1][-1]
    studio.recording_of(b)
    assert a.released and a.recording is None and not b.released
    studio.view_features(a, 0)                          # recorded again
    assert a.recording is not None and a.rerecorded_same
    assert b.released                                   # ... and b, now the oldest, gave way
    b.rerun = False                                     # as an edit's record: its inputs are not kept
    with pytest.raises(L.LimitError, match="run the edit again"):
        studio.view_features(b, 0)


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
