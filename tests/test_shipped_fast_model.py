"""The shipped distilled model (assets/stunet-shapes-fast): loads strictly with its own defaults,
one forward per step, and its default clip passes the detectors on pinned (prompt, seed) pairs.

Its quality and speed against the full model are in its model card (``stunet eval --seeds 6``,
``benchmarks.models_ab``); what it does reliably is checked here.
"""
import numpy as np
import pytest

from stunet.checkpoint import DEFAULT_MODEL, load_pretrained, read_sampling
from stunet.defaults import SamplingDefaults
from stunet.pipeline import Pipeline, Settings
from stunet.shapes.metrics import evaluate_clip

FAST = DEFAULT_MODEL.parent / "stunet-shapes-fast"


@pytest.fixture(scope="module")
def fast():
    return Pipeline.from_pretrained(FAST)


def test_fast_model_loads_strictly_with_its_defaults(fast):
    model, _ = load_pretrained(FAST)                            # strict: every tensor named and shaped
    assert model.config.guidance_embedding
    assert model.config.replace(guidance_embedding=False) == load_pretrained(DEFAULT_MODEL)[0].config
    assert read_sampling(FAST) == SamplingDefaults(steps=8, guidance=3.0, sampler="ddim")
    s = fast.complete(Settings("a red circle moving left"))
    assert (s.steps, s.guidance, s.sampler) == (8, 3.0, "ddim")


@pytest.mark.slow
@pytest.mark.parametrize("prompt,seed", [("a red circle moving left", 0), ("a blue square moving up", 1),
                                         ("a yellow circle shrinking", 2)])
def test_fast_model_default_clip_one_forward_per_step(fast, prompt, seed):
    rows = []
    hook = fast.model.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    try:
        gen = fast(Settings(prompt, seed=seed))
    finally:
        hook.remove()
    assert rows == [1] * 8
    assert gen.video.shape == (32, 32, 32, 3) and gen.video.dtype == np.uint8
    score = evaluate_clip(gen.video, prompt)
    assert score.color_ok and score.shape_ok and score.motion_ok, score
