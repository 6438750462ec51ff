"""The studio's model choice (the distilled fast model beside the full one): ``demo.models`` and ``Studio``."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny
from stunet.checkpoint import save_pretrained
from stunet.defaults import SamplingDefaults
from stunet.pipeline import Pipeline

PROMPT = "a red circle moving right"


def _student(tok, steps=3):
    from stunet.distill import student_from_teacher
    student = student_from_teacher(make_tiny())
    with torch.no_grad():
        student.guidance_mlp[-1].weight.normal_(0, 0.05)
    return student


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_model, tiny_tokenizer):
    root = tmp_path_factory.mktemp("models")
    full = save_pretrained(tiny_model, tiny_tokenizer, root / "full")
    fast = save_pretrained(_student(tiny_tokenizer), tiny_tokenizer, root / "fast",
                           sampling=SamplingDefaults(steps=3, sampler="ddim"))
    return full, fast


def test_available_offers_a_compatible_fast_model_default_first(checkpoints, tmp_path, tiny_tokenizer):
    from demo import models
    full, fast = checkpoints
    assert [c.key for c in models.available(full, fast)] == ["full", "fast"]
    choices = models.available(full, fast, default="fast")
    assert [c.key for c in choices] == ["fast", "full"]
    assert choices[0].label == "Fast (3 steps)" and choices[1].label == "Full (25 steps)"
    assert choices[0].defaults == SamplingDefaults(steps=3, sampler="ddim")
    assert [c.key for c in models.available(full, tmp_path / "nothing")] == ["full"]
    other = save_pretrained(make_tiny(channels=(8, 16), groups=4), tiny_tokenizer, tmp_path / "other")
    assert [c.key for c in models.available(full, other)] == ["full"]     # another architecture: not offered


@pytest.fixture(scope="module")
def studio(checkpoints):
    from demo import models
    from demo.studio import Studio
    full, fast = checkpoints
    choices = models.available(full, fast, default="fast")
    loads = []

    def load_full():
        loads.append("full")
        return Pipeline.from_pretrained(full, precision="fp32")

    s = Studio(Pipeline.from_pretrained(fast, precision="fp32"), examples=[[PROMPT, 0, 3, 3.0, 8]],
               choices=choices, loaders={"full": load_full})
    s.loads = loads
    s.preview_every_s = 0.0                     # a preview after every step but the last
    return s


def test_the_default_model_is_the_first_choice_and_others_load_on_first_use(studio):
    assert studio.default_model == "fast" and studio.loads == []
    assert studio.model_defaults("fast") == (3, 3.0, "ddim")
    assert studio.model_defaults("full") == (25, 3.0, "dpm++")
    assert studio.pipe_for(None) is studio.pipe and studio.pipe.distilled
    full = studio.pipe_for("full")
    assert studio.pipe_for("full") is full and studio.loads == ["full"] and not full.distilled


def test_generate_runs_on_the_model_asked_for_and_records_it(studio):
    from conftest import slow_model
    with slow_model(studio.pipe.model, 0) as fast_calls, slow_model(studio.pipe_for("full").model, 0) as full_calls:
        outs = list(studio.generate(PROMPT, 1, 3, 3.0, 8, "ddim", 1, 8, None, "fast"))
        assert len(fast_calls) == 3 and not full_calls               # one forward per step, no guided pair
        rec = outs[-1][-1]
        assert rec.model == "fast" and outs[-1][3]["model"] == "fast"
        views = studio.render_all(rec)                              # Inspect works on the fast model's clip:
        assert len(fast_calls) == 6 and not full_calls               # recorded on the model that made it
        assert views.step["maximum"] == 2 and views.step["value"] == 2 and rec.rerecorded_same
        assert rec.recording.steps("features") and max(rec.recording.steps("features")) == 2
        outs = list(studio.generate(PROMPT, 1, 2, 3.0, 8, "dpm++", 1, 8, None, "full"))
        assert len(full_calls) == 2 and len(fast_calls) == 6
    rec = outs[-1][-1]
    assert rec.model == "full" and "model='full'" in studio.client_snippet(rec)
    assert studio.replay(rec)[9] == "full" and studio.replay(rec)[10:] == ("None", 1.0, False)     # style, strength, upscale


def test_an_unknown_model_is_refused_before_sampling(studio):
    from conftest import slow_model
    from demo.limits import LimitError
    with slow_model(studio.pipe.model, 0) as calls, pytest.raises(LimitError, match="Model must be one of"):
        list(studio.generate(PROMPT, 1, 3, 3.0, 8, "ddim", 1, 8, None, "turbo"))
    assert not calls


def test_the_example_cache_is_per_model(studio):
    a = list(studio.generate(PROMPT, 0, 3, 3.0, 8, "ddim", 1, 8, None, "fast"))
    b = list(studio.generate(PROMPT, 0, 3, 3.0, 8, "ddim", 1, 8, None, "fast"))
    assert len(b) == 1 and "example cache" in b[0][5]                  # served from the cache
    c = list(studio.generate(PROMPT, 0, 3, 3.0, 8, "ddim", 1, 8, None, "full"))
    assert len(c) > 1 and c[-1][-1].model == "full"                    # the full model is not the cached example


@pytest.mark.integration
def test_the_api_takes_the_model_and_the_page_offers_it(checkpoints):
    from gradio_client import Client

    from conftest import launched_app
    from demo import models
    full, fast = checkpoints
    choices = models.available(full, fast)
    with launched_app(full, choices=choices, loaders={"fast": lambda: Pipeline.from_pretrained(fast)}) as (d, url):
        comps = {c.elem_id: c for c in d.blocks.values() if getattr(c, "elem_id", None)}
        assert comps["model"].visible and comps["model"].value == "full"
        assert [v for _, v in comps["model"].choices] == ["full", "fast"]
        client = Client(url, verbose=False)
        assert client.predict("fast", api_name="/model_defaults") == (3, 3.0, "ddim")
        out = client.predict(PROMPT, 2, 3, 3.0, 8, "ddim", 1, 8, None, "fast", api_name="/generate")
        settings = out[3]
        assert settings["model"] == "fast" and settings["steps"] == 3 and settings["sampler"] == "ddim"
        out = client.predict(PROMPT, 2, 2, 3.0, 8, api_name="/generate")     # model omitted: the default
        assert out[3]["model"] == "full"


def test_the_guidance_slider_says_what_a_models_guidance_schedule_does(tiny_model, tiny_tokenizer):
    from demo.app import build_demo
    from demo.generate_tab import guidance_note
    from demo.models import ModelChoice
    scheduled = SamplingDefaults(steps=2, guidance=5.0, guidance_interval=(600, 999), guidance_elsewhere=3.0)
    note = guidance_note([ModelChoice("full", None, scheduled), ModelChoice("fast", None, SamplingDefaults(steps=3))])
    assert note == ("Full model: this scale at diffusion timesteps 600-999 (the noisiest, where the motion is "
                    "decided), 3 at the others.")
    assert guidance_note([ModelChoice("full", None, SamplingDefaults())]) is None          # no schedule: no note
    demo = build_demo(Pipeline(tiny_model, tiny_tokenizer, "fp32", scheduled), warm=False, janitor=False)
    slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "guidance")
    assert slider.value == 5.0 and "600-999" in slider.info
