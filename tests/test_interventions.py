"""Interventions on the tiny model: hooks removed, the plain run untouched, every part changes the clip,
identity interventions give the same clip bit for bit, bad input refused before any sampling."""
import threading

import numpy as np
import pytest
import torch
from conftest import slow_model

from stunet import interventions as I
from stunet.pipeline import Pipeline, Settings

PROMPT = "a red square quickly spinning"


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs)
               + len(m._forward_pre_hooks_with_kwargs) for m in model.modules())


@pytest.fixture(scope="module")
def pipe(tiny_model, tiny_tokenizer):
    return Pipeline(tiny_model, tiny_tokenizer, "fp32")


@pytest.fixture(scope="module")
def settings():
    return Settings(PROMPT, seed=0, steps=3, frames=8)


@pytest.fixture(scope="module")
def plain(pipe, settings):
    return pipe(settings).video


def test_parse_and_names(tiny_model):
    assert I.parse_part("tattn:mid.0.0") == I.Part("tattn", "mid.0.0", "identity")
    assert I.parse_part("tattn:all=uniform").name == "tattn:all=uniform"
    assert I.parse_part("patch-attn:mid.0.0=a blue circle").mode == "a blue circle"
    assert I.parse_part("word:red+square").words == ("red", "square")
    assert I.parse_part("none") == I.Part("none")
    names = [n for n, _ in I.list_parts(tiny_model.config)]
    assert "tattn:mid.0.0=uniform" in names and "tconv:enc0" in names and "tconv:dec0" in names
    assert "stride:4" in names and "tconv:mid" not in names


def test_parts_list_every_part_changes_the_clip(pipe, settings, plain):
    m = pipe.model
    parts = [n for n, _ in I.list_parts(m.config) if ":" in n and not n.endswith(("WORD", "PROMPT"))
             and n != f"stride:{settings.stride}"]
    parts += ["word:red", "word:spinning", "patch-attn:mid.0.0=a blue circle moving left",
              "patch-features:mid=a blue circle moving left"]
    for name in parts:
        out = I.run(pipe, settings, [name]).video
        assert _hooks(m) == 0, name
        assert not np.array_equal(out, plain), f"{name} did not change the clip"
    assert np.array_equal(pipe(settings).video, plain)        # the plain run, bit for bit, after all of them


def test_identities_give_the_same_clip(pipe, settings, plain):
    assert np.array_equal(I.run(pipe, settings, []).video, plain)
    assert np.array_equal(I.run(pipe, settings, ["none"]).video, plain)
    assert np.array_equal(I.run(pipe, settings, [f"stride:{settings.stride}"]).video, plain)
    # the same prompt's own level output patched in
    assert np.array_equal(I.run(pipe, settings, [f"patch-features:mid={PROMPT}"]).video, plain)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_attention_over_one_frame_is_the_identity(tiny_model, tiny_tokenizer, precision):
    """A 2-frame clip: the coarsest level has one frame, so uniform and identity attention are the attention."""
    pipe = Pipeline(tiny_model, tiny_tokenizer, precision)
    short = Settings(PROMPT, seed=1, steps=2, frames=2)
    base = pipe(short).video
    for mode in ("uniform", "identity"):
        assert np.array_equal(I.run(pipe, short, [f"tattn:all={mode}"]).video, base), mode


def test_hooks_removed_on_error(pipe, settings):
    m = pipe.model

    def boom(module, args):
        raise RuntimeError("boom")

    h = m.conv_in.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            I.run(pipe, settings, ["tattn:all=uniform", "tconv:all", "word:red", "stride:2"])
    finally:
        h.remove()
    assert _hooks(m) == 0


@pytest.mark.parametrize("part, message", [
    ("tattn:mid.9.9", "not a temporal-attention layer"),
    ("tconv:mid", "not a level with temporal convolutions"),
    ("stride:3", "stride must be one of"),
    ("word:blue", "no such word in the prompt"),
    ("word:zebra", "not in the model's vocabulary"),
    ("tattn:all=sideways", "mode must be one of"),
    ("frobnicate:mid", "unknown part"),
    ("patch-features:mid.0=a blue circle", "not a level"),
    ("patch-attn:mid.0.0", "needs a source prompt"),
])
def test_bad_parts_refused_before_sampling(pipe, settings, part, message):
    with slow_model(pipe.model, 0.0) as calls:
        with pytest.raises(ValueError, match=message) as e:
            I.run(pipe, settings, [part])
    assert not calls                                           # nothing was sampled
    assert part.split("=")[0].split(":")[0] in str(e.value) or "part" in str(e.value)


def test_patch_between_clips_of_different_lengths(pipe, settings):
    part = I.parse_part("patch-attn:mid.0.0=a blue circle moving left")
    with slow_model(pipe.model, 0.0) as calls:
        with pytest.raises(ValueError, match="source clip has frames 4, this clip 8.*same length"):
            I.run(pipe, settings, [part], source_settings={part.name: Settings(part.mode, frames=4, steps=3)})
    assert not calls


def test_concurrent_plain_run_is_untouched(pipe, settings, plain):
    """Hooks act only inside their own step scope: a plain run in another thread is not ablated."""
    results = {}
    started = threading.Event()

    def other():
        started.wait()
        results["plain"] = pipe(settings).video

    th = threading.Thread(target=other)
    th.start()
    with slow_model(pipe.model, 0.01):
        ids, _ = pipe.tokenizer.batch([settings.prompt])
        with I.Intervention(pipe.model, [I.parse_part("tconv:all")], ids, pipe.tokenizer) as iv:
            started.set()
            ablated = pipe(settings, inspector=iv).video
    th.join()
    assert np.array_equal(results["plain"], plain)
    assert not np.array_equal(ablated, plain)


def test_batch_matches_one_by_one(pipe):
    prompts = ["a red circle moving left", "a blue square growing"]
    kw = dict(steps=2, frames=8)
    parts = [I.Part("word", "red+blue", label="word:colour")]
    batch = I.sample_batch(pipe, prompts, parts, generator=torch.Generator().manual_seed(5), **kw)
    plain = pipe.sample_batch(prompts, generator=torch.Generator().manual_seed(5), **kw)
    assert batch.shape == plain.shape and not np.array_equal(batch[0], plain[0])
    assert not np.array_equal(batch[1], plain[1])
    with pytest.raises(ValueError, match="word:colour.*no such word"):
        I.sample_batch(pipe, prompts + ["a green circle"], parts, generator=torch.Generator(), **kw)


def test_patch_source_memory_is_bounded(pipe, settings, monkeypatch):
    part = I.parse_part("patch-features:enc0=a blue circle moving left")
    need = I.patch_bytes(pipe.config, part, pipe.complete(settings))
    assert need == 4 * 3 * 2 * 16 * 8 * 16 * 16                       # fp32 x steps x (cond, uncond) x c t h w
    monkeypatch.setattr(I, "MAX_PATCH_BYTES", need - 1)
    with slow_model(pipe.model, 0.0) as calls:
        with pytest.raises(ValueError, match="patch-features:enc0.*would take"):
            I.run(pipe, settings, [part])
    assert not calls
