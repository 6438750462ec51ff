"""Guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024): identities, row counts,
settings and validation, on the tiny model."""
import json

import pytest
import torch

from stunet.defaults import SamplingDefaults, parse_interval
from stunet.conditioning import Conditioning
from stunet.denoiser import Denoiser
from stunet.pipeline import Pipeline, Settings
from stunet.sampling import iter_sample, sample

STEPS = 4
PROMPT = "a red circle moving left"


def _enc(model, tok, prompts=(PROMPT,)):
    ids, _ = tok.batch(list(prompts))
    with torch.no_grad():
        return model.encode_text(ids), model.encode_text(tok.batch([""] * len(prompts))[0])


def _run(model, tok, seed=0, **kw):
    text, uncond = _enc(model, tok)
    return sample(model, text, uncond, generator=torch.Generator().manual_seed(seed), steps=STEPS, **kw)


def _timesteps(model, tok):
    text, uncond = _enc(model, tok)
    return [o.timestep for o in iter_sample(model, text, uncond, generator=torch.Generator().manual_seed(0),
                                            steps=STEPS)]


def test_an_interval_covering_every_step_is_plain_guidance_bit_for_bit(tiny_model, tiny_tokenizer):
    assert torch.equal(_run(tiny_model, tiny_tokenizer, guidance=3.0),
                       _run(tiny_model, tiny_tokenizer, guidance=3.0, guidance_interval=(0, 999)))


def test_an_interval_covering_no_step_is_the_conditional_model_bit_for_bit(tiny_model, tiny_tokenizer):
    ts = _timesteps(tiny_model, tiny_tokenizer)
    below = (0, min(ts) - 1)                        # every sampled timestep lies above the interval
    assert torch.equal(_run(tiny_model, tiny_tokenizer, guidance=1.0),
                       _run(tiny_model, tiny_tokenizer, guidance=3.0, guidance_interval=below))


def test_a_partial_interval_changes_the_clip_and_costs_one_row_outside_it(tiny_model, tiny_tokenizer):
    ts = _timesteps(tiny_model, tiny_tokenizer)
    inside = (ts[2], ts[1])                         # steps 1 and 2 guided, 0 and 3 not
    text, uncond = _enc(tiny_model, tiny_tokenizer)
    den = Denoiser(tiny_model, Conditioning(text, uncond), frames=tiny_model.config.frames, guidance=3.0, interval=inside)
    assert [den.guides_at(t) for t in ts] == [False, True, True, False]
    calls = []
    handle = tiny_model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        clip = _run(tiny_model, tiny_tokenizer, guidance=3.0, guidance_interval=inside)
    finally:
        handle.remove()
    assert calls == [1, 2, 2, 1]                    # rows per model call: b = 1, two rows only when guided
    for other in (_run(tiny_model, tiny_tokenizer, guidance=3.0), _run(tiny_model, tiny_tokenizer, guidance=1.0)):
        assert not torch.equal(clip, other)


def test_denoiser_counts_rows(tiny_model, tiny_tokenizer):
    text, uncond = _enc(tiny_model, tiny_tokenizer)
    den = Denoiser(tiny_model, Conditioning(text, uncond), frames=tiny_model.config.frames, guidance=3.0, interval=(500, 999))
    x = torch.randn(den.shape, generator=torch.Generator().manual_seed(0))
    den(x, 900), den(x, 100)
    assert den.rows_run == 2 + 1


def test_pipeline_settings_and_sampling_defaults_carry_the_interval(tiny_model, tiny_tokenizer):
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=STEPS, guidance_interval=[200, 800]))
    assert pipe.defaults.guidance_interval == (200, 800)
    s = pipe.complete(Settings(PROMPT))
    assert s.guidance_interval == (200, 800)
    assert pipe.complete(Settings(PROMPT, guidance_interval="all")).guidance_interval == (0, 999)
    assert Settings(PROMPT, guidance_interval=[1, 2]) == Settings(PROMPT, guidance_interval=(1, 2))
    own = pipe(Settings(PROMPT, seed=1)).video
    explicit = pipe(Settings(PROMPT, seed=1, guidance_interval=(200, 800))).video
    assert (own == explicit).all()
    assert json.loads(json.dumps(pipe.defaults.to_dict()))["guidance_interval"] == [200, 800]
    assert "guidance_interval" not in SamplingDefaults().to_dict()       # unset: the file stays as it was


@pytest.mark.parametrize("bad", ["5", "1,2,3", "a,b", "10,5", "-1,5", "0,1000", (3,), object()])
def test_bad_intervals_are_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match="guidance interval"):
        parse_interval(bad)
    with pytest.raises(ValueError, match="guidance interval"):
        Settings(PROMPT, guidance_interval=bad)


def test_parse_interval_forms():
    assert parse_interval(None) is None and parse_interval("") is None
    assert parse_interval("all") == (0, 999)
    assert parse_interval(" 100 , 700 ") == (100, 700)
    assert parse_interval((0, 0)) == (0, 0)


def test_cli_refuses_a_bad_interval_before_loading(capsys):
    from stunet.cli import main
    assert main(["generate", PROMPT, "--guidance-interval", "9,1", "--out", "x.npy"]) == 2
    assert "--guidance-interval" in capsys.readouterr().err


# ---------------------------------------------------------------- another scale outside the interval
def _batch(pipe, seed=0, **kw):
    return pipe.sample_batch([PROMPT], generator=torch.Generator().manual_seed(seed), steps=STEPS, **kw)


def test_a_scale_outside_the_interval_makes_a_two_level_schedule(tiny_model, tiny_tokenizer):
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32")
    ts = _timesteps(tiny_model, tiny_tokenizer)
    high = (ts[1], 999)                                                   # steps 0 and 1: the noisiest
    text, uncond = _enc(tiny_model, tiny_tokenizer)
    den = Denoiser(tiny_model, Conditioning(text, uncond), frames=tiny_model.config.frames, guidance=5.0,
                   interval=high, elsewhere=3.0)
    assert [den.scale_at(t) for t in ts] == [5.0, 5.0, 3.0, 3.0]
    assert all(den.guides_at(t) for t in ts)
    x = torch.randn(den.shape, generator=torch.Generator().manual_seed(0))
    den(x, ts[0]), den(x, ts[3])
    assert den.rows_run == 2 + 2                                          # guided at both levels: two rows
    # the same scale on both sides is plain guidance, bit for bit; 1 outside is the interval as before
    assert (_batch(pipe, guidance=3.0, guidance_interval=high, guidance_elsewhere=3.0)
            == _batch(pipe, guidance=3.0)).all()
    assert (_batch(pipe, guidance=5.0, guidance_interval=high, guidance_elsewhere=1.0)
            == _batch(pipe, guidance=5.0, guidance_interval=high)).all()
    two = _batch(pipe, guidance=5.0, guidance_interval=high, guidance_elsewhere=3.0)
    for other in (_batch(pipe, guidance=3.0), _batch(pipe, guidance=5.0)):
        assert not (two == other).all()


def test_a_scale_outside_the_interval_is_validated_and_carried_by_sampling_defaults(tiny_model, tiny_tokenizer):
    from stunet.defaults import parse_elsewhere
    for bad, match in ((2.0, "needs a guidance interval"), (-1, r"in \[0, 30\]"), ("x", "must be a number")):
        with pytest.raises(ValueError, match=match):
            parse_elsewhere(bad, None if bad == 2.0 else (500, 999))
    with pytest.raises(ValueError, match="needs a guidance interval"):
        SamplingDefaults(guidance_elsewhere=3.0)
    text, uncond = _enc(tiny_model, tiny_tokenizer)
    with pytest.raises(ValueError, match="one guidance scale, not one per clip"):
        Denoiser(tiny_model, Conditioning(text, uncond), frames=tiny_model.config.frames,
                 guidance=torch.tensor([3.0]), interval=(500, 999), elsewhere=2.0)
    d = SamplingDefaults(guidance=5.0, guidance_interval=(600, 999), guidance_elsewhere=3.0)
    assert SamplingDefaults.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert "guidance_elsewhere" not in SamplingDefaults(guidance_interval=(600, 999)).to_dict()
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32", d)               # the model's own schedule by default
    assert (_batch(pipe) == _batch(Pipeline(tiny_model, tiny_tokenizer, "fp32"), guidance=5.0,
                                   guidance_interval=(600, 999), guidance_elsewhere=3.0)).all()


def test_settings_complete_the_scale_outside_the_interval_from_the_model_only_with_its_interval(tiny_model,
                                                                                               tiny_tokenizer):
    own = SamplingDefaults(steps=STEPS, guidance=5.0, guidance_interval=(600, 999), guidance_elsewhere=3.0)
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32", own)
    s = pipe.complete(Settings(PROMPT))
    assert (s.guidance, s.guidance_interval, s.guidance_elsewhere) == (5.0, (600, 999), 3.0)
    assert pipe.complete(Settings(PROMPT, guidance_interval=(700, 999))).guidance_elsewhere == 1.0   # yours: unguided
    assert pipe.complete(Settings(PROMPT, guidance_interval=(700, 999), guidance_elsewhere=2.0)).guidance_elsewhere == 2.0
    assert Pipeline(tiny_model, tiny_tokenizer, "fp32").complete(Settings(PROMPT)).guidance_elsewhere is None
    assert s.to_dict()["guidance_elsewhere"] == 3.0 and "guidance_elsewhere" not in Settings(PROMPT).to_dict()
    assert Settings(**{**s.to_dict(), "guidance_interval": tuple(s.to_dict()["guidance_interval"])}) == s   # replays
    # the model's schedule is what a plain request gets, and what the same settings given explicitly get
    plain = pipe(Settings(PROMPT, seed=2)).video
    explicit = Pipeline(tiny_model, tiny_tokenizer, "fp32", SamplingDefaults(steps=STEPS))(
        Settings(PROMPT, seed=2, guidance=5.0, guidance_interval=(600, 999), guidance_elsewhere=3.0)).video
    assert (plain == explicit).all()
    with pytest.raises(ValueError, match="needs a guidance interval"):
        Settings(PROMPT, guidance_elsewhere=3.0)


def test_cli_refuses_a_scale_elsewhere_without_an_interval_before_loading(capsys):
    from stunet.cli import main
    assert main(["generate", PROMPT, "--guidance-elsewhere", "3", "--out", "x.npy"]) == 2
    assert "--guidance-elsewhere" in capsys.readouterr().err
