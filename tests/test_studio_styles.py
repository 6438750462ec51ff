"""The studio's Style choice (issue 33) on the tiny model: styles found in a folder ($STUNET_STYLES), Generate in a
style at a strength (strength 0 and "None" are the model itself, bit for bit; strength 1 differs), the styled model
made once and kept, Inspect's re-recording and Intervene on the styled weights, a style of another architecture
refused with a clear message; and ``/generate``'s ``style`` / ``style_strength`` through gradio_client
(integration)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import launched_app, make_tiny
from safetensors.torch import save_file

from stunet import style_weights as SW

PROMPT = "a red circle moving right"


def make_style(base, out, name: str, scale: float = 0.2, seed: int = 0):
    """A style directory for ``base`` without training: its spatial tensors, perturbed (what ``stunet stylize``
    writes: config.json, style.safetensors, style.json)."""
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tensors = {k: (v.detach().float() + torch.randn(v.shape, generator=g) * scale).contiguous()
               for k, v in base.state_dict().items() if SW.param_group(k) == SW.SPATIAL}
    save_file(tensors, str(out / SW.STYLE_WEIGHTS))
    (out / SW.CONFIG_NAME).write_text(base.config.to_json())
    info = {"format": SW.STYLE_FORMAT, "version": SW.STYLE_VERSION, "style": name, "groups": [SW.SPATIAL],
            "config_hash": SW.config_hash(base.config), "base_hash": SW.weights_hash(base), "base_model": "test"}
    (out / SW.STYLE_JSON).write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def style_root(tmp_path_factory, tiny_model):
    """outline and stripes (for the tiny model), wide (another architecture), broken (not a style)."""
    root = tmp_path_factory.mktemp("styles")
    make_style(tiny_model, root / "outline", "outline")
    make_style(tiny_model, root / "stripes", "stripes", seed=1)
    make_style(make_tiny(text_layers=2), root / "wide", "outline")
    (root / "broken").mkdir()
    (root / "broken" / SW.STYLE_JSON).write_text("{not json")
    (root / "notes.txt").write_text("not a folder")
    return root


@pytest.fixture(scope="module")
def studio(tiny_model, tiny_tokenizer, style_root):
    from demo.models import available_styles
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    return Studio(Pipeline(tiny_model, tiny_tokenizer), styles=available_styles(style_root))


def clip(studio, *args, **kw):
    return list(studio.generate(PROMPT, 3, 2, 3.0, 8, *args, **kw))[-1][-1]


def test_styles_are_found_in_the_folder_or_stunet_styles(style_root, tmp_path, monkeypatch):
    from demo import models
    assert models.available_styles(style_root) == {n: style_root / n for n in ("outline", "stripes", "wide")}
    monkeypatch.setenv(models.STYLES_ENV, str(style_root))
    assert models.styles_dir() == style_root and list(models.available_styles()) == ["outline", "stripes", "wide"]
    monkeypatch.setenv(models.STYLES_ENV, str(tmp_path / "nowhere"))
    assert models.available_styles() == {}                               # no folder: no styles, nothing fails
    monkeypatch.delenv(models.STYLES_ENV)
    assert models.styles_dir() == models.DEFAULT_STYLES


def test_no_style_and_strength_zero_are_the_model_itself(studio):
    plain = clip(studio)
    assert plain.style is None and "style" not in plain.settings_dict()
    assert studio.pipe_of("full", "outline", 0.0) is studio.pipe and studio.pipe_of("full", None, 1.0) is studio.pipe
    zero = clip(studio, style="outline", style_strength=0)
    np.testing.assert_array_equal(zero.video, plain.video)
    named = clip(studio, "dpm++", 1, 8, None, "full", "None", 0.5)       # positionally, "None" as the page sends it
    np.testing.assert_array_equal(named.video, plain.video)
    assert named.style is None


def test_a_style_changes_the_clip_and_its_record_carries_it(studio):
    plain = clip(studio)
    styled = clip(studio, style="outline", style_strength=1.0)
    assert not np.array_equal(styled.video, plain.video)
    d = styled.settings_dict()
    assert (d["style"], d["style_strength"]) == ("outline", 1.0) and d["model"] == "full"
    assert "style outline at 1" in studio.status_md(styled)
    assert "style='outline', style_strength=1" in studio.client_snippet(styled)
    assert studio.replay(styled)[-4:] == ("full", "outline", 1.0, False)
    half = clip(studio, style="outline", style_strength=0.5)
    assert not np.array_equal(half.video, styled.video) and not np.array_equal(half.video, plain.video)
    other = clip(studio, style="stripes", style_strength=1.0)
    assert not np.array_equal(other.video, styled.video)


def test_the_styled_model_is_made_once_and_kept(studio, monkeypatch):
    from demo import models
    built = []
    real = SW.styled_pipeline
    monkeypatch.setattr(SW, "styled_pipeline", lambda *a: built.append(a[2]) or real(*a))
    studio.styles._cache.clear()
    a = studio.pipe_of("full", "outline", 0.75)
    assert studio.pipe_of("full", "outline", 0.75) is a and built == [0.75]
    assert a is not studio.pipe and a.model is not studio.pipe.model
    for s in (0.1, 0.2, 0.3):                                              # kept: the last few only
        studio.pipe_of("full", "stripes", s)
    assert len(studio.styles) == studio.styles.cache_size and studio.pipe_of("full", "outline", 0.75) is not a
    assert isinstance(studio.styles, models.Styles)
    temporal = [k for k in a.model.state_dict() if SW.param_group(k) != SW.SPATIAL]
    assert temporal and all(torch.equal(a.model.state_dict()[k], studio.pipe.model.state_dict()[k]) for k in temporal)


def test_inspect_records_and_intervene_reruns_the_styled_clip(studio):
    """Inspect's recording is a re-run of the clip: with the style's weights, it is the same clip."""
    from demo.intervene import InterveneTab
    styled = clip(studio, style="outline", style_strength=0.8)
    studio.recording_of(styled)
    assert styled.rerecorded_same is True
    assert "style outline at 0.8" in studio.inspect_controls(styled)[0]
    pipe, s, _ = InterveneTab(studio).clip(styled)
    assert pipe is studio.pipe_of("full", "outline", 0.8)
    np.testing.assert_array_equal(pipe(s).video, styled.video)


def test_bad_styles_are_clear_errors_before_sampling(studio, style_root):
    from conftest import slow_model
    from demo.limits import LimitError
    with slow_model(studio.pipe.model, 0) as calls:
        with pytest.raises(LimitError, match=r"Style 'wide' cannot be used with the Full model: .*another "
                                             r"architecture.*text_layers") as e:
            clip(studio, style="wide")
        assert str(style_root) not in str(e.value)                     # no server path in the message
        with pytest.raises(LimitError, match="Style must be one of: None, outline, stripes, wide"):
            clip(studio, style="../outline")
        for bad in (1.5, -0.1, "x", True, float("nan")):
            with pytest.raises(LimitError, match="Style strength must be a number from 0 to 1"):
                clip(studio, style="outline", style_strength=bad)
    assert calls == []


def test_the_page_offers_none_alone_without_styles(tiny_model, tiny_tokenizer, tmp_path, style_root):
    from demo.app import build_demo
    from stunet.pipeline import Pipeline
    pipe = Pipeline(tiny_model, tiny_tokenizer)

    def choices(d):
        c = next(b for b in d.blocks.values() if getattr(b, "elem_id", None) == "style")
        return [v for _, v in c.choices], c.value
    d = build_demo(pipe, warm=False, janitor=False, styles=tmp_path / "none-here")
    assert choices(d) == (["None"], "None") and d.studio.styles.names == []
    d = build_demo(pipe, warm=False, janitor=False, styles=style_root)
    assert choices(d) == (["None", "outline", "stripes", "wide"], "None")


# ------------------------------------------------------------------------------ through the server
@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting")
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_generate_api_style_parameters(tiny_checkpoint, style_root):
    import imageio.v3 as iio
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    with launched_app(tiny_checkpoint, styles=style_root) as (d, url):
        c = Client(url, verbose=False)
        plain = c.predict(PROMPT, 4, 2, 3.0, 8, api_name="/generate")               # unchanged: no style
        assert "style" not in plain[3]
        zero = c.predict(PROMPT, 4, 2, 3.0, 8, style="outline", style_strength=0, api_name="/generate")
        styled = c.predict(PROMPT, 4, 2, 3.0, 8, "dpm++", 1, 8, None, "full", "outline", 1.0, api_name="/generate")
        assert (zero[3]["style"], zero[3]["style_strength"]) == ("outline", 0)
        assert (styled[3]["style"], styled[3]["style_strength"]) == ("outline", 1.0)
        assert "style outline at 1" in styled[5]
        video = [np.asarray(iio.imread(r[0], index=None)) for r in (plain, zero, styled)]
        assert np.array_equal(video[0], video[1]) and not np.array_equal(video[0], video[2])
        _, _, note = c.predict(1, api_name="/features")                           # Inspect records the styled clip
        assert "step **1**" in note
        recorded = [r for r in d.studio.records._alive() if r.style == "outline"]
        assert recorded and all(r.rerecorded_same for r in recorded)
        with pytest.raises(AppError, match="another architecture"):
            c.predict(PROMPT, 4, 2, 3.0, 8, style="wide", api_name="/generate")
        with pytest.raises(AppError, match="Style must be one of"):
            c.predict(PROMPT, 4, 2, 3.0, 8, style="nope", api_name="/generate")
