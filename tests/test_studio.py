"""The studio's handlers without a server (demo.studio, demo.inspect_views, demo.about), on the tiny model:
Generate (validation, previews, the example cache, the job deadline, long clips), records and their bound,
Inspect's views recorded on demand, the GIF and the .npz on request."""
from __future__ import annotations

import time

import numpy as np
import pytest


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


def test_deadline(studio):
    """A clip whose steps slow down past its first step's pace is stopped between steps (a scripted clock:
    step 1 in 1 s, then 100 s a step, past the default deadline after step 2; no sleeping)."""
    from demo import limits as L
    from test_job_clock import scripted
    calls = []
    h = studio.pipe.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    studio.now = scripted(0.0, 1.0, 101.0, 201.0, 301.0)
    try:
        with pytest.raises(L.LimitError, match="limit per clip"):
            list(studio.generate("a blue square", 5, 4, 3.0, 8))
    finally:
        h.remove()
        studio.now = time.perf_counter
    assert len(calls) == 2                                  # stopped after the second of four steps


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
