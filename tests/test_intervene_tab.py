"""The Inspect tab's Intervene, Follow a point and Attention summary handlers (demo.intervene), in process on the
tiny model: they re-run the session's clip from its settings, so the original equals the generated clip."""
from types import SimpleNamespace

import numpy as np
import pytest

from demo.limits import LimitError

STEPS = 2
PROMPT = "a red square quickly spinning"


@pytest.fixture(scope="module")
def tab(tiny_model, tiny_tokenizer):
    from demo.intervene import InterveneTab
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    return InterveneTab(Studio(Pipeline(tiny_model, tiny_tokenizer, "fp32")))


@pytest.fixture(scope="module")
def rec(tab):
    return list(tab.studio.generate(PROMPT, 3, STEPS, 3.0, 8))[-1][-1]


def _decode(path):
    import imageio.v3 as iio
    return np.asarray(iio.imread(path, index=None))


def test_intervene_plays_both_and_reads_them(tab, rec):
    a, b, readings, xt, record, status = tab.intervene(rec, "tattn:all", "uniform", "")
    assert _decode(a).shape[0] == _decode(b).shape[0] == 8
    assert record["part"] == "tattn:all=uniform" and not record["identical"]
    assert "| colour |" in readings and "with tattn:all=uniform" in readings
    assert xt.ndim == 3 and "tattn:all=uniform" in status
    _, _, _, _, record, status = tab.intervene(rec, "none", "identity", "")
    assert record["identical"] and "bit-identical" in status
    _, _, _, _, record, _ = tab.intervene(rec, "patch-attn:mid.0.0", "identity", "a blue circle moving left")
    assert record["part"] == "patch-attn:mid.0.0=a blue circle moving left" and not record["identical"]


@pytest.mark.parametrize("part, mode, source, message", [
    ("tattn:mid.7.7", "identity", "", "not a temporal-attention layer"),
    ("word:blue", "identity", "", "no such word in the prompt"),
    ("bogus:1", "identity", "", "Unknown part .bogus:1."),
    ("tattn:all", "sideways", "", "Mode must be one of"),
    ("patch-attn:mid.0.0", "identity", "", "needs a source prompt"),
])
def test_bad_intervention_refused_before_sampling(tab, rec, part, mode, source, message):
    from conftest import slow_model
    with slow_model(tab.studio.pipe.model, 0.0) as calls:
        with pytest.raises(LimitError, match=message):
            tab.intervene(rec, part, mode, source)
    assert not calls


def test_no_clip_or_an_edit_is_refused(tab, rec):
    with pytest.raises(LimitError, match="generate one first"):
        tab.intervene(None, "none", "identity", "")
    import dataclasses
    edited = dataclasses.replace(rec, edit={"mode": "inpaint"})
    with pytest.raises(LimitError, match="is an edit"):
        tab.track(edited, 0, 3, 3, -1)


def test_track_and_picker(tab, rec):
    image, plot, table, scores = tab.track(rec, 0, 5, 6, -1)
    assert image.ndim == 3 and scores["step"] == STEPS - 1
    assert set(scores["tracks"]) == {"enc0", "mid", "dec0"}
    assert scores["tracks"]["enc0"][0] == [5.5, 6.5]                 # frame 0 finds the clicked pixel itself
    assert tab.picker(rec, 2, 5, 6).shape[:2] == (256, 256)
    x, y = tab.pick(rec, 0, SimpleNamespace(index=(100, 40)))
    assert (x, y) == (6, 2)


@pytest.mark.parametrize("point, message", [((0, 16, 3), "outside the clip"), ((0, 3, -2), "outside the clip"),
                                            ((9, 3, 3), "frame must be in"), ((0, 3.5, 3), "whole number"),
                                            ((0, 3, 3, 5), "Step")])
def test_bad_point_refused(tab, rec, point, message):
    frame, x, y, *step = point
    with pytest.raises(LimitError, match=message):
        tab.track(rec, frame, x, y, step[0] if step else -1)


def test_summary(tab, rec):
    plot, note, values = tab.summary(rec, False)
    (layers,) = values.values()
    assert [v["layer"] for v in layers] == ["mid.0.0"] and len(layers[0]["steps"]) == STEPS
    assert "entropy" in note
