"""The studio's Compare tab (demo.compare), in process on the tiny model and a random tiny cascade
(``stunet.cascade.testing``): offered only with a cascade, the handler's outputs, its input checks and job limit."""
from __future__ import annotations

import numpy as np
import pytest
from compare_fakes import KEYFRAMES

from demo.limits import LimitError
from stunet.defaults import SamplingDefaults
from stunet.shapes import compare as C
from stunet.video import read_video_frames

PROMPT = "a blue square quickly spinning"


@pytest.fixture(scope="module")
def pipe(tiny_model, tiny_tokenizer):
    from stunet.pipeline import Pipeline
    return Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=2, sampler="ddim"))


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from stunet.cascade import CascadePipeline, load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    c = load_pipeline(save_tiny_cascade(tmp_path_factory.mktemp("tiny-cascade"), seed=0, steps=2), precision="fp32")
    assert isinstance(c, CascadePipeline)
    return c


@pytest.fixture(scope="module")
def tab(pipe, cascade):
    from demo.compare import CompareTab
    from demo.studio import Studio
    return CompareTab(Studio(pipe), lambda: cascade)


def test_no_cascade_no_tab(pipe, cascade, monkeypatch, tmp_path):
    from demo import models
    from demo.app import build_demo
    monkeypatch.setenv(models.CASCADE_MODEL_ENV, str(tmp_path / "none"))
    assert models.cascade_available() is None
    d = build_demo(pipe, warm=False, janitor=False)
    try:
        assert d.compare_tab is None
        assert not any(f.api_name == "compare" for f in d.fns.values())
    finally:
        d.close()
    d = build_demo(pipe, warm=False, janitor=False, cascade=cascade)
    try:
        assert d.compare_tab is not None
        fn = next(f for f in d.fns.values() if f.api_name == "compare")
        assert fn.concurrency_id == next(f for f in d.fns.values() if f.api_name == "generate").concurrency_id
    finally:
        d.close()


def test_compare_outputs(tab):
    video, xt, st_md, cas_md, info, status = tab.compare(PROMPT, 3)
    frames = read_video_frames(video)
    assert len(frames) == 32 and frames.shape[2] > frames.shape[1] * 1.5          # one animation, two clips wide
    from PIL import Image
    with Image.open(xt) as im:
        assert im.size[1] == 32 * 8 and im.size[0] > 2 * 16 * 8
    assert st_md.startswith("**STUNet (the studio's model)**") and cas_md.startswith("**Cascade**")
    assert info["stunet_model"] == "studio"
    assert info["keyframes"] == list(KEYFRAMES) and info["frames"] == 32 and info["seed"] == 3
    assert info["stunet"]["scorable"] and info["cascade"]["scorable"] and "text" in info["stunet"]
    assert "**Done**" in status and "seed 3" in status
    again = tab.compare(PROMPT, 3)
    np.testing.assert_array_equal(read_video_frames(again[0]), frames)                 # same seed, same clips


def test_compare_checks_its_inputs(tab):
    with pytest.raises(LimitError):
        tab.compare("", 0)
    with pytest.raises(LimitError, match="known"):
        tab.compare("zzz qqq", 0)
    with pytest.raises(LimitError, match="Seed"):
        tab.compare(PROMPT, -1)


def test_measure_md_and_shipped_report(tmp_path):
    from demo.compare import CompareTab, shipped_report
    clip = C.true_clip(PROMPT, 0, 0, 32)
    assert CompareTab.measure_md("STUNet", C.measure(clip, PROMPT)).startswith("**STUNet**: ✅ right")
    assert "not periodic" in CompareTab.measure_md("STUNet", C.measure(clip, "a red circle moving left"))
    image, caption = shipped_report(tmp_path)
    assert image is None and "stunet compare" in caption
    from compare_fakes import WorldCascade, WorldModel
    C.write_outputs(C.run(WorldModel(), WorldCascade(), ["a red square quickly spinning", "a red circle moving left"],
                          1), tmp_path)
    image, caption = shipped_report(tmp_path)
    assert image.ndim == 3 and caption.startswith(C.PLOT_CAPTION) and "Sanity bar" in caption
    assert "Lumiere's claim" in caption and "1 paired periodic clips" in caption
    assert "Paired over" not in caption                                  # the verdict once, not again in other words


def test_compare_stops_past_the_job_deadline(tiny_model, tiny_tokenizer, cascade, monkeypatch):
    from demo import limits as L
    from demo.compare import CompareTab
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=3, sampler="ddim"))
    calls = []
    monkeypatch.setattr(L, "job_deadline_s", lambda first, steps: calls.append(steps) or 0.0)   # any pace is over it
    with pytest.raises(LimitError, match="over this server's limit"):
        CompareTab(Studio(pipe), lambda: cascade).compare(PROMPT, 1)
    assert calls == [3 * 2]                 # stopped in the first run, the cascade's: K's steps, then T's two runs


def test_the_cascade_folders_equal_budget_stunet_is_the_left_clip(pipe, cascade, tiny_checkpoint, tmp_path, monkeypatch):
    """A cascade folder that ships ``equal-budget-stunet/`` pairs the cascade with it, not with the studio's model."""
    import shutil

    from demo import models
    from demo.compare import compare_tab_for
    from demo.studio import Studio
    from stunet.cascade.testing import save_tiny_cascade
    d = save_tiny_cascade(tmp_path / "cascade", seed=0, steps=2)
    monkeypatch.setenv(models.CASCADE_MODEL_ENV, str(d))
    studio = Studio(pipe)
    assert C.equal_budget_stunet(d) is None and not compare_tab_for(studio).equal_budget
    shutil.copytree(tiny_checkpoint, d / C.EQUAL_BUDGET_STUNET)
    assert C.equal_budget_stunet(d) == d / C.EQUAL_BUDGET_STUNET
    tab = compare_tab_for(studio)
    assert tab.equal_budget and tab.directory == d and tab._stunet is None          # loaded on first use
    loaded = []
    tab._stunet_loader = lambda: loaded.append(1) or pipe
    _, _, st_md, _, info, _ = tab.compare(PROMPT, 1)
    tab.compare(PROMPT, 2)
    assert loaded == [1] and info["stunet_model"] == "equal budget"
    assert st_md.startswith("**STUNet, same training budget**")
