"""Sampler: determinism per generator, guidance, callbacks/generator form, MultiDiffusion, SDEdit."""
import pytest
import torch

from stunet.sampling import StepOutput, iter_sample, sample, temporal_windows

STEPS = 4


def _enc(model, tok, prompts):
    ids, _ = tok.batch(prompts)
    with torch.no_grad():
        return model.encode_text(ids), model.encode_text(tok.batch([""] * len(prompts))[0])


def _run(model, tok, seed=0, prompt="a red circle moving left", **kw):
    text, uncond = _enc(model, tok, [prompt])
    kw.setdefault("steps", STEPS)
    return sample(model, text, uncond, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_same_seed_same_clip_bit_for_bit_and_other_seed_differs(tiny_model, tiny_tokenizer, sampler, precision):
    a = _run(tiny_model, tiny_tokenizer, 1, sampler=sampler, precision=precision)
    b = _run(tiny_model, tiny_tokenizer, 1, sampler=sampler, precision=precision)
    c = _run(tiny_model, tiny_tokenizer, 2, sampler=sampler, precision=precision)
    assert a.shape == (1, 3, 8, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_does_not_touch_the_global_rng(tiny_model, tiny_tokenizer):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    _run(tiny_model, tiny_tokenizer, 5)
    assert torch.equal(before, torch.get_rng_state())


def test_guidance_changes_the_clip_and_one_means_conditional_only(tiny_model, tiny_tokenizer):
    g1 = _run(tiny_model, tiny_tokenizer, 0, guidance=1.0)
    g4 = _run(tiny_model, tiny_tokenizer, 0, guidance=4.0)
    assert not torch.equal(g1, g4)
    text, _ = _enc(tiny_model, tiny_tokenizer, ["a red circle moving left"])
    no_uncond = sample(tiny_model, text, None, generator=torch.Generator().manual_seed(0), steps=STEPS, guidance=1.0)
    assert torch.equal(g1, no_uncond)
    with pytest.raises(ValueError, match="unconditional"):
        sample(tiny_model, text, None, generator=torch.Generator().manual_seed(0), steps=STEPS, guidance=3.0)


def test_callback_and_generator_form_agree(tiny_model, tiny_tokenizer):
    seen = []
    final = _run(tiny_model, tiny_tokenizer, 3, callback=seen.append)
    assert [s.step for s in seen] == list(range(STEPS))
    assert all(isinstance(s, StepOutput) and s.num_steps == STEPS for s in seen)
    ts = [s.timestep for s in seen]
    assert ts == sorted(ts, reverse=True) and ts[0] > ts[-1]
    assert all(s.x0.shape == s.sample.shape == final.shape for s in seen)
    text, uncond = _enc(tiny_model, tiny_tokenizer, ["a red circle moving left"])
    it = iter_sample(tiny_model, text, uncond, generator=torch.Generator().manual_seed(3), steps=STEPS)
    outs = list(it)
    assert torch.equal(outs[-1].sample.clamp(-1, 1), final)
    for a, b in zip(outs, seen):
        assert torch.equal(a.x0, b.x0)


def test_generator_can_stop_between_steps(tiny_model, tiny_tokenizer):
    text, uncond = _enc(tiny_model, tiny_tokenizer, ["a blue square spinning"])
    calls = []
    h = tiny_model.conv_in.register_forward_hook(lambda *a: calls.append(1))
    try:
        it = iter_sample(tiny_model, text, uncond, generator=torch.Generator().manual_seed(0), steps=10)
        next(it), next(it)
        it.close()
    finally:
        h.remove()
    assert len(calls) == 2


def test_x0_hat_converges_to_the_final_clip(tiny_model, tiny_tokenizer):
    seen = []
    final = _run(tiny_model, tiny_tokenizer, 0, steps=8, callback=seen.append, sampler="ddim")
    assert (seen[-1].x0.clamp(-1, 1) - final).abs().max() < 1e-3


def test_temporal_windows_cover_the_clip():
    assert temporal_windows(8, 8, 4) == [(0, 8)]
    assert temporal_windows(20, 8, 4) == [(0, 8), (4, 12), (8, 16), (12, 20)]
    w = temporal_windows(21, 8, 4)
    assert w[-1] == (13, 21) and all(e - s == 8 for s, e in w)
    covered = set()
    for s, e in temporal_windows(50, 16, 6):
        covered |= set(range(s, e))
    assert covered == set(range(50))


def test_multidiffusion_with_one_window_equals_plain_sampling(tiny_model, tiny_tokenizer):
    plain = _run(tiny_model, tiny_tokenizer, 4)
    one_window = _run(tiny_model, tiny_tokenizer, 4, window=8, overlap=2)
    assert torch.equal(plain, one_window)


def test_multidiffusion_makes_longer_clips_and_averages_overlaps(tiny_model, tiny_tokenizer):
    long = _run(tiny_model, tiny_tokenizer, 0, frames=20, overlap=4)
    assert long.shape == (1, 3, 20, 16, 16)
    assert torch.isfinite(long).all()
    assert torch.equal(long, _run(tiny_model, tiny_tokenizer, 0, frames=20, overlap=4))
    # different overlaps give different (but valid) clips: the windows really are combined
    assert not torch.equal(long, _run(tiny_model, tiny_tokenizer, 0, frames=20, overlap=2))


def test_conditioned_sampling_and_sdedit(tiny_model, tiny_tokenizer):
    cond = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 8, 16, 16)
    mask[:, :, 0] = 1
    a = _run(tiny_model, tiny_tokenizer, 0)
    b = _run(tiny_model, tiny_tokenizer, 0, cond=cond, mask=mask)
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="cond and mask"):
        _run(tiny_model, tiny_tokenizer, 0, cond=cond)
    init = torch.zeros(1, 3, 8, 16, 16)
    seen = []
    weak = _run(tiny_model, tiny_tokenizer, 0, init=init, strength=0.25, steps=8, callback=seen.append)
    assert len(seen) == 2                         # only the last quarter of the schedule runs
    strong = _run(tiny_model, tiny_tokenizer, 0, init=init, strength=1.0, steps=8)
    assert (weak - init).abs().mean() < (strong - init).abs().mean()


@pytest.mark.parametrize("kw,msg", [(dict(frames=7), "temporal factor"), (dict(steps=0), "steps"),
                                     (dict(sampler="euler"), "unknown sampler"), (dict(strength=0), "strength")])
def test_bad_sampling_arguments(tiny_model, tiny_tokenizer, kw, msg):
    with pytest.raises(ValueError, match=msg):
        _run(tiny_model, tiny_tokenizer, 0, **kw)


def test_batched_sampling_matches_prompts(tiny_model, tiny_tokenizer):
    text, uncond = _enc(tiny_model, tiny_tokenizer, ["a red circle moving left", "a blue square spinning"])
    out = sample(tiny_model, text, uncond, generator=torch.Generator().manual_seed(0), steps=STEPS)
    assert out.shape[0] == 2 and not torch.equal(out[0], out[1])


def test_precisions_give_close_but_distinct_clips(tiny_model, tiny_tokenizer):
    a = _run(tiny_model, tiny_tokenizer, 4, precision="fp32")
    b = _run(tiny_model, tiny_tokenizer, 4, precision="bf16")
    assert not torch.equal(a, b)                       # bf16 really ran
    assert (a - b).abs().mean() < 0.1                  # and computes the same function


def test_one_guided_step_is_one_batched_model_call(tiny_model, tiny_tokenizer):
    calls = []
    h = tiny_model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        _run(tiny_model, tiny_tokenizer, 0, guidance=3.0)
    finally:
        h.remove()
    assert calls == [2] * STEPS                        # conditional + unconditional rows together


def test_sample_loop_is_a_plain_loop_over_any_denoiser(tiny_model):
    """The loop steps the solver over whatever denoiser it is given and reports every step."""
    from stunet.diffusion import make_scheduler
    from stunet.sampling import sample_loop
    cfg = tiny_model.config
    sched = make_scheduler(cfg, "ddim")
    sched.set_timesteps(3)
    seen, reported = [], []

    def zero_v(x, timestep, step):                     # v = 0: x0-hat = sqrt(alpha_bar) x
        seen.append((step, timestep))
        return torch.zeros_like(x)

    x = torch.randn(1, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    outs = list(sample_loop(zero_v, x, sched, sched.timesteps, config=cfg, callback=reported.append))
    assert [s for s, _ in seen] == [0, 1, 2] and [t for _, t in seen] == [int(t) for t in sched.timesteps]
    assert [o.step for o in reported] == [0, 1, 2] and outs == reported
    ac = sched.alphas_cumprod[int(sched.timesteps[0])]
    assert torch.allclose(outs[0].x0, ac.sqrt() * x, atol=1e-6)


@pytest.mark.parametrize("sampler", ["dpm++3m", "unipc"])
def test_every_sampler_runs_and_is_deterministic(tiny_model, tiny_tokenizer, sampler):
    # 8 steps: at 4, DPM-Solver++ 3M lowers its order at the ends and equals 2M
    a = _run(tiny_model, tiny_tokenizer, 1, sampler=sampler, precision="fp32", steps=8)
    b = _run(tiny_model, tiny_tokenizer, 1, sampler=sampler, precision="fp32", steps=8)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert not torch.equal(a, _run(tiny_model, tiny_tokenizer, 1, sampler="dpm++", precision="fp32", steps=8))
