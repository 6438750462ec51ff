"""``stunet.ssr`` on the tiny SSR config: shapes, windows that cover every frame, MultiDiffusion with one window
equal to a single pass, window modes that agree for a model without temporal mixing and differ with it,
determinism per seed, training pairs true to the world, strict checkpoints and a resumable training run."""
import json

import numpy as np
import pytest
import torch
from conftest import make_ssr
from safetensors.torch import load_file, save_file

from stunet.checkpoint import CheckpointError
from stunet.cli import main as cli
from stunet.diffusion import add_noise, make_scheduler
from stunet.precision import Precision
from stunet.sampling import sample_loop
from stunet.shapes import world
from stunet.ssr import SSRConfig, SSRNet, ssr_preset
from stunet.ssr.checkpoint import load_ssr, save_ssr
from stunet.ssr.data import crop_origin, pair, ssr_batch
from stunet.ssr.sampling import WindowedSSR, ssr_windows, upsample, upscale

FP32 = Precision("fp32", "test")


def base_clip(frames=8, seed=0, size=8):
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_config_is_validated_and_round_trips():
    cfg = ssr_preset("ssr")
    assert cfg.size == 128 and SSRConfig.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in ({"unshuffle": 3}, {"channels": 60, "groups": 8}, {"cond_noise_step": 200}, {"window": 0},
                {"prediction_type": "x0"}):
        with pytest.raises(ValueError, match="invalid SSRConfig"):
            SSRConfig(**bad)
    old = {k: v for k, v in json.loads(cfg.to_json()).items() if k != "residual"}
    assert SSRConfig.from_dict({**old, "prediction_type": "v_prediction"}).residual is False   # an earlier run's file
    with pytest.raises(ValueError, match="unknown SSRConfig fields"):
        SSRConfig.from_dict({"model_type": "ssr", "colour": 1})
    with pytest.raises(ValueError, match="not an SSR config"):
        SSRConfig.from_dict({"model_type": "stunet"})


def test_network_shapes_and_zero_init():
    cfg = ssr_preset("tiny")
    x = torch.randn(2, 3, 5, cfg.size, cfg.size)
    out = SSRNet(cfg)(x, torch.tensor([3, 50]), x, torch.tensor([0, 5]))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0                       # untrained: every residual branch and the output at zero
    assert make_ssr()(x, torch.tensor([3, 50]), x, torch.tensor([0, 5])).abs().sum() > 0
    with pytest.raises(ValueError, match="shape of x"):
        SSRNet(cfg)(x, torch.tensor([1, 1]), x[:, :, :2], torch.tensor([0, 0]))


@pytest.mark.parametrize("frames,window", [(32, 8), (30, 8), (8, 8), (5, 8), (17, 4), (1, 4)])
def test_windows_cover_every_frame(frames, window):
    md = ssr_windows(frames, window, "multidiffusion")
    ind = ssr_windows(frames, window, "independent")
    for ws in (md, ind):
        covered = sorted({f for s, e in ws for f in range(s, e)})
        assert covered == list(range(frames)) and all(0 <= s < e <= frames and e - s <= window for s, e in ws)
    assert sum(e - s for s, e in ind) == frames                 # a partition: no frame in two windows
    if frames > window:
        assert sum(e - s for s, e in md) > frames                # overlapping
        assert all(e - s == window for s, e in md)
    with pytest.raises(ValueError, match="windows must be one of"):
        ssr_windows(frames, window, "tiles")


def test_multidiffusion_with_one_window_is_a_single_pass():
    net = make_ssr()
    cfg = net.config
    base = base_clip(frames=cfg.window)
    got = upscale(net, base, generator=torch.Generator().manual_seed(3), steps=3, precision=FP32)
    # by hand: the same draws, one call of the network on the whole clip per step
    gen = torch.Generator().manual_seed(3)
    shape = (1, 3, cfg.window, cfg.size, cfg.size)
    noise, cond_noise = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    sched = make_scheduler(cfg, "ddim")
    sched.set_timesteps(3)
    cond = add_noise(sched.alphas_cumprod.float(), upsample(base, cfg.size), cond_noise,
                     torch.tensor([cfg.cond_noise_step]))

    def den(x, t, k):
        return net(x, torch.tensor([t]), cond, torch.tensor([cfg.cond_noise_step])).float()
    *_, last = sample_loop(den, noise * sched.init_noise_sigma, sched, sched.timesteps, config=cfg, generator=gen)
    assert cfg.residual                                    # the loop ran on the residual over the bicubic base
    assert torch.equal(got, (last.sample + upsample(base, cfg.size)).clamp(-1, 1))


def test_window_modes_agree_without_temporal_mixing_and_differ_with_it():
    base = base_clip(frames=12)
    run = lambda net, mode: upscale(net, base, generator=torch.Generator().manual_seed(1), steps=2, windows=mode,
                                    precision=FP32)
    per_frame = make_ssr(temporal=False)
    assert torch.allclose(run(per_frame, "multidiffusion"), run(per_frame, "independent"), atol=1e-5)
    mixing = make_ssr(perturb=0.2)
    assert not torch.allclose(run(mixing, "multidiffusion"), run(mixing, "independent"), atol=1e-3)


def test_windowed_denoiser_averages_overlaps():
    """Every frame's prediction is the mean of its windows' predictions (MultiDiffusion's reconciliation)."""
    net = make_ssr(perturb=0.2)
    cfg = net.config
    x = torch.randn(1, 3, 6, cfg.size, cfg.size)
    cond = torch.randn_like(x)
    windows = ssr_windows(6, 4, "multidiffusion")              # (0, 4), (2, 6)
    got = WindowedSSR(net, cond, 2, windows, FP32)(x, 40, 0)
    call = lambda s, e: net(x[:, :, s:e], torch.tensor([40]), cond[:, :, s:e], torch.tensor([2]))
    a, b = call(0, 4), call(2, 6)
    want = torch.cat([a[:, :, :2], (a[:, :, 2:] + b[:, :, :2]) / 2, b[:, :, 2:]], 2)
    assert windows == [(0, 4), (2, 6)] and torch.allclose(got, want, atol=1e-6)


def test_upscale_is_deterministic_per_seed_and_checks_its_input():
    net = make_ssr()
    base = base_clip(frames=6)
    run = lambda seed: upscale(net, base, generator=torch.Generator().manual_seed(seed), steps=2, precision=FP32)
    a = run(5)
    assert a.shape == (1, 3, 6, 16, 16) and a.abs().max() <= 1
    assert torch.equal(a, run(5)) and not torch.equal(a, run(6))
    with pytest.raises(ValueError, match="base must be"):
        upscale(net, base_clip(size=16), generator=torch.Generator(), steps=2)
    with pytest.raises(ValueError, match="steps"):
        upscale(net, base, generator=torch.Generator(), steps=0)


def test_training_pairs_are_the_same_clip_at_two_sizes():
    cfg = ssr_preset("ssr")
    spec = world.parse_caption("a red circle moving right")
    hi, lo = pair(spec, 4, 1, 3, cfg)
    assert hi.shape == (4, 128, 128, 3) and lo.shape == (4, 32, 32, 3)
    assert np.array_equal(lo, world.make_clip(spec, 4, 32, 1, 3).video)
    shrunk = hi.reshape(4, 32, 4, 32, 4, 3).astype(float).mean((2, 4))
    assert np.abs(shrunk - lo).mean() < 1.0                     # area-shrunk, the large drawing is the small one
    hi_c, lo_c = pair(spec, 4, 1, 3, cfg, crop=64, origin=(32, 48))
    assert np.array_equal(lo_c, lo[:, 8:24, 12:28]) and np.array_equal(hi_c, hi[:, 32:96, 48:112])
    with pytest.raises(ValueError, match="must lie in the frame"):
        pair(spec, 4, 1, 3, cfg, crop=64, origin=(80, 0))
    rng = np.random.default_rng(0)
    top, left = crop_origin(rng, (np.array([30.0]), np.array([2.0])), cfg, 64)
    assert left == 64 and top == 0                               # near the object, inside the frame, on the grid
    b = ssr_batch(np.random.default_rng(1), ssr_preset("tiny"), 3, crop=8)
    assert b.hi.shape == (3, 3, 4, 8, 8) and b.lo.shape == (3, 3, 4, 4, 4) and len(b.captions) == 3
    with pytest.raises(ValueError, match="crop must be"):
        ssr_batch(rng, cfg, 1, crop=40)


def test_checkpoints_load_strictly(tmp_path, tiny_checkpoint):
    net = make_ssr()
    save_ssr(net, tmp_path / "m")
    back = load_ssr(tmp_path / "m")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())
    t = load_file(str(tmp_path / "m" / "model.safetensors"))
    t["conv_in.weight"] = torch.zeros(1)
    save_file(t, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="conv_in.weight"):
        load_ssr(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not an SSR model"):
        load_ssr(tiny_checkpoint)                               # a STUNet checkpoint


def test_train_ssr_command_lowers_its_loss_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-ssr", "--out", str(out), "--preset", "tiny", "--batch", "4", "--crop", "8", "--lr", "3e-3",
            "--warmup", "2", "--ckpt-every", "10", "--log-every", "5", "--val-batches", "2", "--precision", "fp32",
            "--quiet"]
    assert cli(args + ["--iters", "20"]) == 0
    lines = [json.loads(x) for x in (out / "train.log").read_text().splitlines()]
    val = [r["val_loss"] for r in lines if "val_loss" in r]
    assert len(val) == 3 and val[-1] < 0.95 * val[0], val    # x0 of the residual: it starts low (0.040)
    assert load_ssr(out).config == ssr_preset("tiny")
    assert cli(args + ["--iters", "20"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli(args + ["--iters", "25", "--resume"]) == 0
    lines = [json.loads(x) for x in (out / "train.log").read_text().splitlines()]
    assert any(r.get("event") == "resumed" and r["step"] == 20 for r in lines)
    assert lines[-1] == {**lines[-1], "event": "done", "step": 25}


def test_generate_upscale_command(tmp_path, tiny_checkpoint, capsys):
    ssr_dir = tmp_path / "ssr"
    save_ssr(make_ssr(base_size=16, scale=2), ssr_dir)        # the tiny STUNet makes 16x16 clips
    base = ["generate", "a red square spinning", "--model", str(tiny_checkpoint), "--steps", "2", "--precision",
            "fp32", "--seed", "4"]
    plain, up, up2, ind = (tmp_path / f"{n}.npy" for n in ("plain", "up", "up2", "ind"))
    assert cli(base + ["--out", str(plain)]) == 0
    assert cli(base + ["--out", str(up), "--upscale", "--ssr", str(ssr_dir), "--ssr-steps", "2"]) == 0
    assert cli(base + ["--out", str(up2), "--upscale", "--ssr", str(ssr_dir), "--ssr-steps", "2"]) == 0
    assert cli(base + ["--out", str(ind), "--upscale", "--ssr", str(ssr_dir), "--ssr-steps", "2",
                       "--ssr-windows", "independent"]) == 0
    p, u = np.load(plain), np.load(up)
    assert p.shape == (8, 16, 16, 3) and u.shape == (8, 32, 32, 3) and u.dtype == np.uint8
    assert np.array_equal(u, np.load(up2)) and not np.array_equal(u, np.load(ind))
    capsys.readouterr()
    assert cli(base + ["--out", str(tmp_path / "x.npy"), "--ssr", str(ssr_dir)]) == 2
    assert "go with --upscale" in capsys.readouterr().err
    save_ssr(make_ssr(), tmp_path / "ssr8")                    # made for 8x8 clips
    assert cli(base + ["--out", str(tmp_path / "y.npy"), "--upscale", "--ssr", str(tmp_path / "ssr8")]) == 2
    assert "upscales 8x8 clips" in capsys.readouterr().err and not (tmp_path / "y.npy").exists()
    assert cli(base + ["--out", str(tmp_path / "z.npy"), "--upscale", "--ssr", str(tmp_path / "none")]) == 1
    assert "not an SSR model" in capsys.readouterr().err


def test_measure_ssr_script_writes_its_three_tables(tmp_path, tiny_checkpoint):
    from conftest import load_script
    m = load_script("measure_ssr")
    ssr_dir = tmp_path / "ssr"
    save_ssr(make_ssr(base_size=16, scale=2), ssr_dir)
    out = tmp_path / "m"
    assert m.main(["--ssr", str(ssr_dir), "--model", str(tiny_checkpoint), "--out", str(out), "--seeds", "1",
                   "--limit", "2", "--steps", "1", "--precision", "fp32", "--quiet"]) == 0
    md = (out / "ssr.md").read_text()
    for heading in ("(a) Kept", "(b) Against the world", "(c) Window-boundary jump", "SSR time per"):
        assert heading in md
    data = json.loads((out / "ssr.json").read_text())
    assert len(data["rows"]) == 2 and data["settings"]["boundaries"] == [3]        # 8 frames, windows of 4
    assert set(data["summary"]["fidelity"]) == {"ssr", "nearest", "bicubic"}
    assert data["summary"]["seam"]["clips"] <= 2
    assert set(data["summary"]["jump"]) == {"multidiffusion", "independent", "bicubic base",
                                            "multidiffusion, added detail", "independent, added detail"}
    # the measures themselves: a perfect upscale has no error, a frozen clip's jump is nan-free only with motion
    truth = np.zeros((2, 8, 8, 3), np.uint8)
    truth[:, 2:6, 2:6, 0] = 200
    truth[:, 2, 2:6, 0] = 100
    assert m.fidelity(truth, truth) == {"mae": 0.0, "edge_mae": 0.0, "iou": 1.0}
    assert m.fidelity(np.zeros_like(truth), truth)["iou"] == 0.0
    clip = np.zeros((8, 4, 4, 3), np.uint8)
    clip[:, 0, 0, 0] = np.array([0, 10, 20, 30, 90, 100, 110, 120])                # a jump after frame 3
    assert m.boundary_ratio(clip, [3]) == pytest.approx(60 / 10)
    base = np.zeros_like(clip)
    base[:, 0, 0, 0] = np.arange(8) * 10                                           # the motion without the seam
    up = base.copy()
    up[:, 0, 0, 0] += np.array([0, 1, 0, 1, 50, 51, 50, 51], np.uint8)             # detail added, a seam after 3
    assert m.boundary_ratio(m.added(up, base), [3]) == pytest.approx(49 / 1)
    assert m.shrink(np.full((1, 8, 8, 3), 9, np.uint8), 4).shape == (1, 2, 2, 3)
    assert m.main(["--ssr", str(tmp_path / "none"), "--out", str(out)]) == 1


@pytest.mark.slow
def test_ssr_speed_benchmark_times_native_and_avx2_kernels(tmp_path, capsys):
    from benchmarks import ssr_speed
    save_ssr(make_ssr(), tmp_path / "m")
    assert ssr_speed.main(["--ssr", str(tmp_path / "m"), "--rounds", "1", "--frames", "4", "--steps", "1",
                           "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert set(r) == {"native", "AVX2 forced"} and r["AVX2 forced"]["capability"] == "AVX2"
    assert all(r[k]["seconds"][p][m] > 0 for k in r for p in ("bf16", "fp32") for m in ("multidiffusion",
                                                                                          "independent"))
    assert "| AVX2 forced | AVX2 | bf16 |" in capsys.readouterr().out
