"""Noise schedule: the log-SNR shift (config.noise_shift) and its use by training and sampling."""
import json

import numpy as np
import pytest
import torch

from stunet.config import STUNetConfig, preset
from stunet.diffusion import alphas_cumprod, make_scheduler
from stunet.train import main


def _log_snr(cfg):
    ac = alphas_cumprod(cfg).double()
    return (ac / (1 - ac)).log()


@pytest.mark.parametrize("shift", [0.5, 2.0, 4.0])
def test_shift_moves_log_snr_by_exactly_minus_two_log_s(shift):
    base = _log_snr(preset("tiny"))
    shifted = _log_snr(preset("tiny", noise_shift=shift))
    n = torch.arange(5, 990)          # the ends are clipped (beta <= 0.999), as in diffusers
    assert torch.allclose(shifted[n] - base[n], torch.full_like(base[n], -2 * np.log(shift)), atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_samplers_use_the_shifted_schedule(sampler):
    cfg = preset("tiny", noise_shift=4.0)
    sched = make_scheduler(cfg, sampler)
    assert torch.allclose(sched.alphas_cumprod.float(), alphas_cumprod(cfg))
    assert not torch.allclose(sched.alphas_cumprod.float(), alphas_cumprod(preset("tiny", noise_shift=1.0)))


def test_shapes_preset_is_shifted_and_old_configs_are_not():
    assert preset("shapes").noise_shift == 4.0 and preset("vdm").noise_shift == 4.0
    d = preset("shapes").to_dict()
    del d["noise_shift"]              # a config.json written before the field existed
    assert STUNetConfig.from_dict(d).noise_shift == 1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, 100.0, True, "4", float("nan")])
def test_bad_noise_shift_is_refused(bad):
    with pytest.raises(ValueError, match="noise_shift"):
        preset("tiny", noise_shift=bad)


@pytest.mark.slow
def test_resume_with_a_new_noise_shift_fine_tunes_under_it(tmp_path):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--out", str(out), "--image-steps", "2", "--video-steps", "3", "--batch", "2",
            "--image-batch", "4", "--warmup", "1", "--quiet"]
    main(args)
    assert json.loads((out / "config.json").read_text())["noise_shift"] == 1.0
    main(args[:6] + ["--video-steps", "5"] + args[8:] + ["--resume", "--noise-shift", "3"])
    assert json.loads((out / "config.json").read_text())["noise_shift"] == 3.0
    assert json.loads((out / "train_state" / "config.json").read_text())["noise_shift"] == 3.0
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert {"event": "noise_shift", "value": 3.0}.items() <= next(
        r for r in log if r.get("event") == "noise_shift").items()
    assert log[-1]["event"] == "done" and log[-1]["step"] == 5


def test_high_noise_timestep_sampling():
    from stunet.train import sample_timesteps
    cfg = preset("tiny")
    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(cfg, 20000, g)
    assert 0 <= int(uniform.min()) and int(uniform.max()) <= 999
    assert abs(float((uniform >= 940).float().mean()) - 0.06) < 0.01
    mixed = sample_timesteps(cfg, 20000, g, (0.25, 0.94))
    # 25 % from [940, 1000) plus the uniform share that lands there anyway
    assert abs(float((mixed >= 940).float().mean()) - (0.25 + 0.75 * 0.06)) < 0.015
    assert int(mixed.min()) < 100 and int(mixed.max()) == 999
    a = sample_timesteps(cfg, 64, torch.Generator().manual_seed(3), (0.25, 0.94))
    assert torch.equal(a, sample_timesteps(cfg, 64, torch.Generator().manual_seed(3), (0.25, 0.94)))


@pytest.mark.integration
def test_schedulers_can_be_made_from_many_threads_at_once_in_a_fresh_process():
    """diffusers' lazy top-level names broke when two threads resolved them at once (the studio's
    warm-up thread and a Generate request: "cannot import name 'DDIMScheduler'"); a fresh
    interpreter, where diffusers is not imported yet, is the only place this can show."""
    import subprocess
    import sys
    code = """
import threading
from stunet.config import preset
from stunet.diffusion import make_scheduler
cfg = preset("tiny")
gate, errors = threading.Barrier(8), []
def go(i):
    gate.wait()
    try:
        make_scheduler(cfg, ("ddim", "dpm++")[i % 2])
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
assert not errors, errors
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
