"""Inspector: what it records, bounded memory, hook removal (also on error), thread isolation."""
import threading

import numpy as np
import pytest
import torch

from stunet.inspection import Inspector
from stunet.pipeline import Pipeline, Settings
from stunet.video import from_uint8


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def pipe(tiny_model, tiny_tokenizer):
    return Pipeline(tiny_model, tiny_tokenizer)


def test_records_features_attention_and_x0(pipe):
    m = pipe.model
    with Inspector(m, feature_steps=[0, 3]) as ins:
        assert _hooks(m) > 0
        gen = pipe(Settings("a red circle moving left", steps=4, frames=8), inspector=ins)
    assert _hooks(m) == 0
    rec = ins.recording
    assert rec.level_names == ["enc0", "mid", "dec0"]
    assert rec.steps("features") == [0, 3]
    assert rec.features[(3, "enc0")].shape == (16, 8, 16, 16)         # c t h w at full resolution
    assert rec.features[(3, "mid")].shape == (32, 4, 8, 8)            # time halved at the coarsest level
    assert rec.steps("temporal_attention") == [0, 1, 2, 3]
    ta = rec.temporal_attention[(2, "mid.0.0")]                       # h w heads t t
    assert ta.shape == (8, 8, 2, 4, 4)
    torch.testing.assert_close(ta.float().sum(-1), torch.ones(8, 8, 2, 4), atol=1e-2, rtol=0)
    xa = rec.cross_attention[(2, "mid.0")]                            # l t h w
    assert xa.shape == (1 + pipe.config.max_words, 4, 8, 8)
    torch.testing.assert_close(xa.float().sum(0), torch.ones(4, 8, 8), atol=1e-2, rtol=0)
    assert xa[6:].float().abs().max() == 0                            # padding gets no attention
    assert sorted(rec.x0) == [0, 1, 2, 3] and rec.x0[3].shape == (3, 8, 16, 16)
    assert set(rec.timesteps) == {0, 1, 2, 3}
    # x0 recorded at the last step is the clip
    final = from_uint8(gen.video)[0]
    assert (rec.x0[3].float().clamp(-1, 1) - final).abs().max() < 0.02
    npz = np.load(__import__("io").BytesIO(rec.to_npz()))
    assert "features/003/enc0" in npz.files and "x0/000" in npz.files


def test_inspection_does_not_change_the_clip(pipe):
    s = Settings("a green triangle bouncing", seed=3, steps=3, frames=8)
    plain = pipe(s).video
    with Inspector(pipe.model) as ins:
        inspected = pipe(s, inspector=ins).video
    assert np.array_equal(plain, inspected)


def test_memory_is_bounded(pipe):
    with Inspector(pipe.model, max_bytes=200_000) as ins:
        pipe(Settings("a red circle", steps=4, frames=8), inspector=ins)
    assert ins.recording.nbytes <= 200_000
    assert ins.recording.dropped > 0


def test_hooks_removed_on_error(pipe):
    with pytest.raises(ValueError):
        with Inspector(pipe.model) as ins:
            pipe(Settings("a red circle", steps=2, frames=7), inspector=ins)   # bad frame count
    assert _hooks(pipe.model) == 0


def test_uninspected_calls_are_not_recorded(pipe):
    with Inspector(pipe.model) as ins:
        pipe(Settings("a red circle", steps=2, frames=8))                    # no inspector= given
    assert ins.recording.nbytes == 0


def test_parallel_inspected_runs_do_not_mix(pipe):
    prompts = ["a red circle moving left", "a blue square spinning", "a white triangle growing"]
    solo = {}
    for p in prompts:
        with Inspector(pipe.model, feature_steps=[2]) as ins:
            pipe(Settings(p, seed=1, steps=3, frames=8), inspector=ins)
        solo[p] = ins.recording
    results, errors = {}, []

    def work(p):
        try:
            with Inspector(pipe.model, feature_steps=[2]) as ins:
                pipe(Settings(p, seed=1, steps=3, frames=8), inspector=ins)
            results[p] = ins.recording
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for p in prompts:
        assert set(results[p].features) == set(solo[p].features)
        for k, v in solo[p].features.items():
            torch.testing.assert_close(results[p].features[k], v, atol=2e-2, rtol=0)
        assert len(results[p].temporal_attention) == len(solo[p].temporal_attention)
    assert _hooks(pipe.model) == 0


def test_modules_called_with_keywords_are_recorded(tiny_model):
    """Hooks see keyword arguments (``with_kwargs=True``): a keyword call must not silently stop recording."""
    from stunet.inspection import hooked_modules, layer_names, step_scope
    kinds = {}
    for kind, name, module in hooked_modules(tiny_model):
        kinds.setdefault(kind, (name, module))
    tname, tattn = kinds["temporal"]
    t, c = 4, tattn.proj.in_features
    x = torch.randn(2 * t, c, 4, 4)                                      # (b t) c h w
    with Inspector(tiny_model, features=False) as ins:
        with step_scope(ins, 0, 999):
            tattn(x=x, t=t)
    assert ins.recording.temporal_attention[(0, tname)].shape[-2:] == (t, t)
    names = [n for k, n, _ in hooked_modules(tiny_model) if k == "temporal"]
    assert names == [n for n, _ in layer_names(tiny_model)[0]] == [n for n, _ in layer_names(tiny_model.config)[0]]
    assert [n for k, n, _ in hooked_modules(tiny_model) if k == "cross"] == layer_names(tiny_model)[1]


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
