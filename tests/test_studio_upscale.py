"""The studio's Upscale choice (issue 34) on the tiny model and a tiny SSR model: on by default where offered; on, the clip is
lifted by the SSR stage (the same clip as ``stunet.ssr.sampling.upscale_clip`` of the base clip and its seed),
shown, downloaded and replayed as such while Inspect keeps the base clip; not offered (a clear error) where the
server has no SSR model or one for other clips; and ``/generate``'s ``upscale`` through gradio_client
(integration)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import launched_app, make_ssr

from demo.limits import GIF_SIDE, VIDEO_SIDE

PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def ssr_dir(tmp_path_factory):
    from stunet.ssr.checkpoint import save_ssr
    root = tmp_path_factory.mktemp("ssr")
    save_ssr(make_ssr(base_size=16, scale=2), root / "ssr16")         # for the tiny STUNet's 16x16 clips
    save_ssr(make_ssr(), root / "ssr8")                                # for 8x8 clips
    return root


@pytest.fixture(scope="module")
def studio(tiny_model, tiny_tokenizer, ssr_dir):
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    return Studio(Pipeline(tiny_model, tiny_tokenizer), ssr=ssr_dir / "ssr16")


def clip(studio, *args, **kw):
    return list(studio.generate(PROMPT, 3, 2, 3.0, 8, *args, **kw))[-1][-1]


def test_upscale_lifts_the_clip_and_inspect_keeps_the_base(studio):
    import imageio.v3 as iio

    from stunet.ssr.sampling import upscale_clip
    plain = clip(studio, upscale=False)
    assert plain.upscaled is None and "upscale" not in plain.settings_dict()
    up = clip(studio, upscale=True)
    np.testing.assert_array_equal(up.video, plain.video)                 # the base clip: what Inspect reads
    assert up.video.shape == (8, 16, 16, 3) and up.upscaled.shape == (8, 32, 32, 3)
    want = upscale_clip(studio.upscaler.model, plain.video, seed=3, precision=studio.pipe.precision)
    np.testing.assert_array_equal(up.upscaled, want)
    assert up.settings_dict()["upscale"] is True and "upscaled to 32×32" in studio.status_md(up)
    assert "upscale=True" in studio.client_snippet(up) and studio.replay(up)[-1] is True
    assert studio.replay(plain)[-1] is False
    shown = np.asarray(iio.imread(up.mp4, index=None))
    assert shown.shape[0] == 8 and shown.shape[1] == 32 * studio.scale_of(up.upscaled, VIDEO_SIDE)
    gif = np.asarray(iio.imread(studio.make_gif(up), index=None))
    assert gif.shape[1] == 32 * studio.scale_of(up.upscaled, GIF_SIDE)
    named = clip(studio, "dpm++", 1, 8, None, "full", "None", 1.0, True)  # positionally, as the page sends it
    np.testing.assert_array_equal(named.upscaled, up.upscaled)
    studio.recording_of(up)
    assert up.rerecorded_same is True                                    # Inspect's re-run is the base clip


def test_an_example_is_cached_upscaled_and_not_apart(tiny_model, tiny_tokenizer, ssr_dir):
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    studio = Studio(Pipeline(tiny_model, tiny_tokenizer), ssr=ssr_dir / "ssr16", examples=[[PROMPT, 3, 2, 3.0, 8]])
    plain, up = clip(studio, upscale=False), clip(studio)                    # the default: upscaled, where offered
    assert plain.upscaled is None and up.upscaled is not None                # two entries, not one served twice
    outs = list(studio.generate(PROMPT, 3, 2, 3.0, 8, upscale=True))
    assert len(outs) == 1 and outs[0][-1] is up and "example cache" in outs[0][5]
    assert list(studio.generate(PROMPT, 3, 2, 3.0, 8, upscale=False))[-1][-1] is plain


def test_upscale_is_refused_where_not_offered(studio, tiny_model, tiny_tokenizer, ssr_dir, tmp_path):
    from conftest import slow_model
    from demo.gpu import SSR_S, generate_duration
    from demo.limits import LimitError
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    pipe = Pipeline(tiny_model, tiny_tokenizer)
    for where in (tmp_path / "none", ssr_dir / "ssr8"):                  # no model; a model for 8x8 clips
        other = Studio(pipe, ssr=where)
        assert other.upscaler.available is False
        with slow_model(pipe.model, 0) as calls:
            with pytest.raises(LimitError, match="Upscale is not offered here: this server has no SSR model"):
                clip(other, upscale=True)
        assert calls == []                                               # refused before any sampling
        assert clip(other, upscale=False).upscaled is None
        assert clip(other).upscaled is None                              # the default where not offered: off
    for bad in ("yes", 1, 0.5):
        with pytest.raises(LimitError, match="Upscale must be true or false"):
            clip(studio, upscale=bad)
    duration = generate_duration(studio)
    args = (PROMPT, 3, 2, 3.0, 8, "dpm++", 1, 8, None, "full", "None", 1.0)
    assert duration(*args, True) >= duration(*args, False) + int(SSR_S) - 1
    assert duration(*args) == duration(*args, None) == duration(*args, True)      # the default: on, where offered
    assert duration(*args, "maybe") == duration(*args, False)                     # refused at once: no SSR time


def test_the_page_offers_upscale_only_with_a_model(tiny_model, tiny_tokenizer, ssr_dir, tmp_path):
    from demo.app import build_demo
    from stunet.pipeline import Pipeline
    pipe = Pipeline(tiny_model, tiny_tokenizer)

    def box(d):
        return next(b for b in d.blocks.values() if getattr(b, "elem_id", None) == "upscale")
    off = box(build_demo(pipe, warm=False, janitor=False, ssr=tmp_path / "none"))
    assert off.value is False and off.interactive is False and "Not offered here" in off.info
    on = box(build_demo(pipe, warm=False, janitor=False, ssr=ssr_dir / "ssr16"))
    assert on.value is True and on.interactive is True and "MultiDiffusion" in on.info and "32×32" in on.label


# ------------------------------------------------------------------------------ through the server
@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting")
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_generate_api_upscale_parameter(tiny_checkpoint, ssr_dir):
    import imageio.v3 as iio
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    with launched_app(tiny_checkpoint, ssr=ssr_dir / "ssr16") as (d, url):
        c = Client(url, verbose=False)
        plain = c.predict(PROMPT, 4, 2, 3.0, 8, upscale=False, api_name="/generate")
        up = c.predict(PROMPT, 4, 2, 3.0, 8, api_name="/generate")                  # the default: upscaled
        assert "upscale" not in plain[3] and up[3]["upscale"] is True and "upscaled to 32×32" in up[5]
        small, large = (np.asarray(iio.imread(r[0], index=None)) for r in (plain, up))
        assert small.shape[1:3] == large.shape[1:3] == (VIDEO_SIDE, VIDEO_SIDE)   # both shown about VIDEO_SIDE px
        assert not np.array_equal(small, large)
        _, _, note = c.predict(1, api_name="/features")                            # Inspect: the base clip
        assert "step **1**" in note
        with pytest.raises(AppError, match="Upscale must be true or false"):
            c.predict(PROMPT, 4, 2, 3.0, 8, upscale="maybe", api_name="/generate")
