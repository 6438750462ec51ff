"""The cascade baseline (``stunet.cascade``, issue 18): config, checkpoint, pipeline, training, CLI, on ``tiny``."""
import json

import numpy as np
import pytest
import torch

from stunet.cascade import (CascadeConfig, CascadePipeline, is_cascade, load_cascade, load_pipeline, net_preset,
                            preset, save_cascade)
from stunet.cascade import train as ctrain
from stunet.cascade.testing import save_tiny_cascade, tiny_cascade_net
from stunet.checkpoint import CheckpointError, estimate_parameters, save_pretrained
from stunet.config import preset as stunet_preset
from stunet.model import STUNet
from stunet.pipeline import Pipeline, Settings
from stunet.shapes.data import tokenizer_for

PROMPTS = ["a red circle moving left", "a blue square spinning"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two fighting over a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    return save_tiny_cascade(tmp_path_factory.mktemp("cascade") / "tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(cascade_dir):
    return CascadePipeline.from_pretrained(cascade_dir, precision="fp32")


# ---------------------------------------------------------------------------- config
def test_config_is_validated_and_round_trips():
    c = preset("shapes")
    assert (c.frames, c.keyframe_frames, c.shared) == (32, (0, 4, 8, 12, 16, 20, 24, 28), True)
    assert CascadeConfig.from_dict(json.loads(c.to_json())) == c
    assert c.to_dict()["model_type"] == "cascade" and c.to_dict()["keyframe"] == c.to_dict()["tsr"] == "net"
    for bad, words in (({"window": 4}, r"window must be keyframe_stride \+ 1"), ({"keyframes": 1}, "keyframes"),
                       ({"keyframe": "../x"}, "plain subfolder"), ({"tsr": ""}, "plain subfolder"),
                       ({"cond_noise_step": -1}, "cond_noise_step"), ({"keyframe_stride": 2.0}, "integer")):
        with pytest.raises(ValueError, match=words):
            CascadeConfig(**bad)
    with pytest.raises(ValueError, match="model_type"):
        CascadeConfig.from_dict({"keyframes": 8})
    with pytest.raises(ValueError, match="unknown keys"):
        CascadeConfig.from_dict({"model_type": "cascade", "layers": 3})
    with pytest.raises(ValueError, match="halves time"):
        c.check_net(stunet_preset("shapes"), "tsr")          # a 5-frame window needs no temporal down-sampling


def test_shared_network_has_the_stunets_parameters_within_ten_percent():
    net, stunet = net_preset("shapes"), stunet_preset("shapes")
    assert net.temporal_down == (False, False) and net.temporal_factor == 1
    assert net.replace(temporal_down=stunet.temporal_down, frames=stunet.frames) == stunet   # otherwise the same
    n, m = estimate_parameters(net), estimate_parameters(stunet)
    assert (n, m) == (1_686_499, 1_763_587)
    assert abs(n - m) / m < 0.10


# ---------------------------------------------------------------------------- inflation
def _per_frame(img, x, text, t):
    return torch.cat([img(x[:, :, i:i + 1], t, text) for i in range(x.shape[2])], dim=2)


@torch.no_grad()
def test_cascade_net_from_an_image_checkpoint_is_the_image_model_per_frame(tmp_path, tiny_tokenizer):
    image = STUNet(stunet_preset("tiny").image())         # as `stunet train`'s image stage saves it
    g = torch.Generator().manual_seed(0)
    for p in image.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.05)
    save_pretrained(image.eval(), tiny_tokenizer, tmp_path / "image_unet")
    net = ctrain.init_net(tmp_path / "image_unet", net_preset("tiny")).eval()
    x = torch.randn(2, 3, 5, 16, 16, generator=g)
    ids, _ = tiny_tokenizer.batch(PROMPTS)
    t = torch.tensor([10, 700])
    for stride in (1, 4):                                   # T's and K's input
        torch.testing.assert_close(net(x, t, net.encode_text(ids), stride),
                                   _per_frame(image.eval(), x, image.encode_text(ids), t), rtol=0, atol=2e-5)
    with pytest.raises(ValueError, match="differ"):
        ctrain.init_net(tmp_path / "image_unet", net_preset("tiny").replace(noise_shift=2.0))


# ---------------------------------------------------------------------------- checkpoint
def test_save_load_round_trip_is_strict_and_names_what_is_missing(tmp_path, cascade_dir):
    cfg, k, t, tok, sampling = load_cascade(cascade_dir)
    assert t is k and cfg == preset("tiny") and sampling.steps == 2
    assert sorted(p.name for p in cascade_dir.iterdir()) == ["config.json", "net"]
    ref = tiny_cascade_net(0)
    assert all(torch.equal(a, b) for a, b in zip(k.state_dict().values(), ref.state_dict().values()))
    # separate K and T
    two = save_tiny_cascade(tmp_path / "two", shared=False)
    cfg2, k2, t2, _, _ = load_cascade(two)
    assert (cfg2.keyframe, cfg2.tsr) == ("keyframe", "tsr") and k2 is not t2
    assert not torch.equal(k2.conv_in.weight, t2.conv_in.weight)
    # a missing weights file, a missing subfolder, an unexpected tensor, a bad config: named errors
    (two / "tsr" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"tsr network \(tsr/\).*model\.safetensors"):
        load_cascade(two)
    (two / "config.json").write_text(json.dumps({**cfg2.to_dict(), "tsr": "absent"}))
    with pytest.raises(CheckpointError, match="no subfolder 'absent'"):
        load_cascade(two)
    bad = tmp_path / "bad"
    save_tiny_cascade(bad)
    sd = {**tiny_cascade_net(0).state_dict(), "extra.weight": torch.zeros(1)}
    save_pretrained(tiny_cascade_net(0), tokenizer_for(net_preset("tiny")), bad / "net", state_dict=sd)
    with pytest.raises(CheckpointError, match="unexpected.*extra.weight"):
        load_cascade(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "cascade", "window": 3}))
    with pytest.raises(CheckpointError, match="bad cascade config.json.*window"):
        load_cascade(bad)
    with pytest.raises(ValueError, match="one subfolder"):
        save_cascade(tmp_path / "x", preset("tiny"), k, tok, tiny_cascade_net(1))


def test_load_pipeline_dispatches_on_model_type(cascade_dir, tiny_checkpoint):
    assert is_cascade(cascade_dir) and not is_cascade(tiny_checkpoint) and not is_cascade(None)
    assert type(load_pipeline(cascade_dir, precision="fp32")) is CascadePipeline
    assert type(load_pipeline(tiny_checkpoint, precision="fp32")) is Pipeline
    with pytest.raises(CheckpointError, match="cascade checkpoint"):
        Pipeline.from_pretrained(cascade_dir)
    import stunet
    assert stunet.load_pipeline is load_pipeline


# ---------------------------------------------------------------------------- pipeline
def test_clip_has_32_frames_keyframes_from_k_and_is_seeded(pipe):
    assert pipe.keyframe_frames == (0, 4, 8, 12, 16, 20, 24, 28) and pipe.config.frames == 32
    gen = pipe(Settings(PROMPTS[0], seed=3))
    assert gen.video.shape == (32, 16, 16, 3) and gen.video.dtype == np.uint8
    assert gen.settings.steps == 2 and gen.settings.sampler == "ddim"          # the checkpoint's defaults
    assert np.array_equal(pipe(Settings(PROMPTS[0], seed=3)).video, gen.video)
    assert not np.array_equal(pipe(Settings(PROMPTS[0], seed=4)).video, gen.video)
    keys = pipe.sample_keyframes([PROMPTS[0]], generator=torch.Generator().manual_seed(3), steps=2)
    assert keys.shape == (1, 8, 16, 16, 3)
    assert np.array_equal(gen.video[list(pipe.keyframe_frames)], keys[0])      # K's output, exactly
    # batched: the same as keyframes then fill with one generator, and one clip per prompt
    a = pipe.sample_batch(PROMPTS, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    k = pipe.sample_keyframes(PROMPTS, generator=g)
    assert a.shape == (2, 32, 16, 16, 3) and np.array_equal(a, pipe.fill(PROMPTS, k, generator=g))
    assert not np.array_equal(a[0], a[1])
    with pytest.raises(ValueError, match="stride 2 is not supported"):
        pipe.sample_batch(PROMPTS, generator=torch.Generator(), frames=32, stride=2)


def test_fill_keeps_the_given_keyframes_and_reports_whole_clips(pipe):
    keys = np.random.default_rng(0).integers(0, 256, (2, 8, 16, 16, 3), dtype=np.uint8)
    steps = []
    out = pipe.fill(PROMPTS, keys, generator=torch.Generator().manual_seed(0), steps=3,
                    callback=lambda o: steps.append((o.step, o.num_steps, tuple(o.sample.shape), tuple(o.x0.shape))))
    assert out.shape == (2, 32, 16, 16, 3) and np.array_equal(out[:, ::4], keys)
    assert [s[0] for s in steps] == list(range(6)) and {s[1:] for s in steps} == {(6, (2, 3, 32, 16, 16),
                                                                                  (2, 3, 32, 16, 16))}
    with pytest.raises(ValueError, match=r"keyframes must be uint8 of shape \(2, 8, 16, 16, 3\)"):
        pipe.fill(PROMPTS, keys[:, :7], generator=torch.Generator())


def test_invalid_settings_are_refused_before_sampling(pipe):
    calls = []
    h = pipe.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        for kw, words in (({"stride": 2}, "stride 2 is not supported"), ({"frames": 64}, "frames=64"),
                          ({"overlap": 4}, "overlap"), ({"sampler": "euler"}, "sampler")):
            with pytest.raises(ValueError, match=words):
                pipe(Settings(PROMPTS[0], **kw))
        with pytest.raises(ValueError, match="32-frame clips at stride 1 only"):
            pipe.validate(Settings(PROMPTS[0], stride=4))
    finally:
        h.remove()
    assert calls == []


def test_first_frame_and_progress_callback(pipe):
    first = np.full((16, 16, 3), 200, np.uint8)
    seen = []
    gen = pipe(Settings(PROMPTS[1], seed=0, steps=2), first_frame=first,
               callback=lambda o: seen.append((o.step, o.num_steps, o.sample.shape[2])))
    assert gen.video.shape == (32, 16, 16, 3) and gen.first_frame is first
    assert seen == [(k, 6, 32) for k in range(6)]
    with pytest.raises(ValueError, match="first frames must be uint8"):
        pipe(Settings(PROMPTS[1]), first_frame=first[:8])


# ---------------------------------------------------------------------------- FLOP matching
def test_window_counts_keep_cumulative_flops_on_the_stunets():
    casc = preset("shapes")
    f = {"keyframe": 10_621_288_448, "interp": 6_647_865_344, "extrap": 5_323_390_976}    # measured, see train.py
    per_clip = 20.8e9
    rng = np.random.default_rng(0)
    flops = clips = 0
    for _ in range(200):
        n = ctrain.windows_this_step((clips + 8) * per_clip, flops, 8, f, casc)
        windows = ctrain.allocate_windows(n, 8, casc, rng)
        assert len(windows) == n and len(set(windows)) == n
        counts = np.bincount([i for i, _ in windows], minlength=8)
        assert counts.max() - counts.min() <= 1
        clips += 8
        flops += 8 * f["keyframe"] + sum(f["extrap"] if j == 7 else f["interp"] for _, j in windows)
        assert abs(flops - clips * per_clip) < f["interp"]
    assert 1.5 < (flops / clips - f["keyframe"]) / ctrain.mean_window_flops(f, casc) < 1.65


@pytest.mark.slow
def test_flops_of_the_real_configs_are_the_documented_ones():
    from stunet.flops import example_flops, stride_mixture_flops
    f = ctrain.cascade_flops(net_preset("shapes"), preset("shapes"))
    assert f == {"keyframe": 10_621_288_448, "interp": 6_647_865_344, "extrap": 5_323_390_976}
    assert example_flops(stunet_preset("shapes"), 32, 1) == 26_266_435_584
    assert stride_mixture_flops(stunet_preset("shapes")) == pytest.approx(20.80e9, rel=1e-3)


# ---------------------------------------------------------------------------- training
def _fixed_loss(model, n=3):
    casc, tok = preset("tiny"), tokenizer_for(model.config)
    from stunet.diffusion import alphas_cumprod
    ac = alphas_cumprod(model.config)
    out = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        b = ctrain.clip_batch(rng, tok, model.config, casc, 4)
        windows = ctrain.allocate_windows(8, 4, casc, rng)
        with torch.no_grad():
            out.append(ctrain.cascade_loss(model, casc, ac, b, windows, rng, torch.Generator().manual_seed(i))[0].item())
    return float(np.mean(out))


@pytest.mark.slow
def test_train_cascade_lowers_the_loss_resumes_and_logs_compute(tmp_path, tiny_tokenizer):
    from stunet.cli import main as cli_main
    image = STUNet(stunet_preset("tiny").image())
    save_pretrained(image, tiny_tokenizer, tmp_path / "image_unet")
    out = tmp_path / "run"
    args = ["train-cascade", "--preset", "tiny", "--init", str(tmp_path / "image_unet"), "--out", str(out),
            "--video-steps", "30", "--batch", "4", "--windows", "2", "--lr", "3e-3", "--warmup", "2",
            "--ema", "0.9", "--log-every", "10", "--ckpt-every", "20", "--quiet", "--precision", "fp32", "--threads", "1"]
    assert cli_main(args) == 0
    before = _fixed_loss(ctrain.init_net(tmp_path / "image_unet", net_preset("tiny")).eval())
    after = _fixed_loss(load_cascade(out)[1])
    assert after < 0.8 * before, (before, after)
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps[-1]["step"] == 30 and steps[-1]["clips"] == 120 and steps[-1]["keyframes"] == 120
    n = steps[-1]["windows"]
    assert abs(n - 240) <= 1 and "cpu_seconds" in steps[-1] and "wall_seconds" in steps[-1]   # --windows 2
    flops = next(r for r in log if r.get("event") == "flops")
    tsr = steps[-1]["flops"] - 120 * flops["keyframe"]              # every example counted once, by its kind
    assert n * flops["extrap"] < tsr < n * flops["interp"]
    assert log[-1]["event"] == "done"
    assert type(load_pipeline(out, precision="fp32")) is CascadePipeline
    # resume: from step 30 to 36, counters continued
    assert cli_main(args[:7] + ["--video-steps", "36"] + args[9:] + ["--resume"]) == 0
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    starts = [r for r in log if r.get("event") == "start"]
    assert (starts[-1]["stage"], starts[-1]["step"]) == ("video", 30)
    last = [r for r in log if "loss" in r][-1]
    assert (last["step"], last["clips"], log[-1]["event"]) == (36, 144, "done")


def test_train_cascade_logs_clips_and_flops_matched_to_the_stunet(tmp_path, tiny_tokenizer):
    save_pretrained(STUNet(stunet_preset("tiny").image()), tiny_tokenizer, tmp_path / "image_unet")
    out = ctrain.main(["--preset", "tiny", "--init", str(tmp_path / "image_unet"), "--out", str(tmp_path / "run"),
                       "--video-steps", "2", "--batch", "2", "--log-every", "1", "--quiet", "--precision", "fp32",
                       "--threads", "1"])
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    f = next(r for r in log if r.get("event") == "flops")
    assert f["parameters"] == estimate_parameters(net_preset("tiny")) and f["stunet_clip"] > 0
    steps = [r for r in log if "loss" in r]
    assert [r["clips"] for r in steps] == [2, 4] and [r["keyframes"] for r in steps] == [2, 4]
    # the tiny STUNet's 8-frame clips cost less than 8 keyframes: no FLOPs are left for T windows
    assert f["stunet_clip"] < f["keyframe"] and steps[-1]["windows"] == 0
    assert steps[-1]["flops"] == 4 * f["keyframe"]
    assert type(load_pipeline(out, precision="fp32")) is CascadePipeline


def test_stunet_train_logs_clips_and_flops_and_takes_an_image_checkpoint(tmp_path, tiny_tokenizer):
    from stunet.flops import example_flops
    from stunet.train import main as train_main
    image = STUNet(stunet_preset("tiny").image())
    save_pretrained(image, tiny_tokenizer, tmp_path / "image_unet")
    out = tmp_path / "run"
    train_main(["--preset", "tiny", "--out", str(out), "--init", str(tmp_path / "image_unet"), "--video-steps", "3",
                "--batch", "2", "--log-every", "1", "--quiet", "--precision", "fp32", "--threads", "1"])
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert any(r.get("event") == "inflated" and r.get("from") for r in log)
    steps = [r for r in log if "loss" in r]
    assert [r["stage"] for r in steps] == ["video"] * 3 and [r["clips"] for r in steps] == [2, 4, 6]
    cfg = stunet_preset("tiny")
    options = {example_flops(cfg, cfg.frames // s, s) for s in cfg.strides}
    assert all(r["flops"] > 0 for r in steps) and steps[0]["flops"] / 2 in options
    assert json.loads((out / "train_state" / "state.json").read_text())["counters"]["clips"] == 6


# ---------------------------------------------------------------------------- command line
def test_generate_cli_on_a_cascade(tmp_path, cascade_dir, capsys):
    from stunet.cli import main
    out = tmp_path / "clip.npy"
    assert main(["generate", "a red square quickly spinning", "--model", str(cascade_dir), "--out", str(out),
                 "--precision", "fp32", "--seed", "2"]) == 0
    clip = np.load(out)
    assert clip.shape == (32, 16, 16, 3) and clip.dtype == np.uint8
    assert main(["generate", "a red circle", "--model", str(cascade_dir), "--out", str(out), "--stride", "2"]) == 1
    assert "stride 2 is not supported" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--model", str(cascade_dir), "--video", str(out),
                 "--strength", "0.5"]) == 2
    assert "does not edit" in capsys.readouterr().err


# ---------------------------------------------------------------------------- experiment driver
def tiny_experiment(run, threads: int = 1, *extra: str):
    """The experiment script and its argv on ``tiny``: 2 image steps, 4 clips an arm in batches of 2."""
    from conftest import load_script
    argv = ["--out", str(run), "--budget-clips", "4", "--batch", "2", "--preset", "tiny", "--image-steps", "2",
            "--image-batch", "4", "--device", "cpu", "--precision", "fp32", "--threads", str(threads), "--log-every",
            "1", "--quiet", *extra]
    return load_script("cascade_experiment"), argv


def test_budget_segments_say_where_each_stretch_of_a_resumed_run_trained(tmp_path):
    exp, _ = tiny_experiment(tmp_path)
    recs = [{"time": 0, "event": "start", "stage": "image", "step": 0, "args": {"device": "cpu", "threads": 1}},
            {"time": 0, "event": "precision", "cpu_capability": "AVX512"},
            {"time": 1, "event": "inflated"}]
    recs += [{"time": 10 * k, "stage": "video", "step": 25 * k, "loss": 0.1} for k in range(1, 12)]  # killed at 275
    recs += [{"time": 200, "event": "start", "stage": "video", "step": 250,                    # resumed at 250
              "args": {"device": "cuda:0", "threads": 2}},
             {"time": 230, "stage": "video", "step": 275, "loss": 0.1},
             {"time": 240, "event": "stopped", "stage": "video", "step": 290},                  # deadline stop
             {"time": 300, "event": "start", "stage": "video", "step": 290, "args": {"device": "cpu"}},
             {"time": 301, "event": "done", "stage": "video", "step": 290}]                      # nothing left
    log = tmp_path / "train.log"
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    segs = exp.segments(log, "video")
    assert [(s["device"], s["from_step"], s["to_step"], s["steps"]) for s in segs] == [
        ("cpu", 0, 250, 250), ("cuda:0", 250, 290, 40)]
    assert segs[0]["cpu_capability"] == "AVX512" and segs[0]["wall_seconds"] == 110
    assert segs[1]["wall_seconds"] == 40
    assert exp.segments(tmp_path / "missing.log", "video") == []


@pytest.mark.slow
def test_experiment_driver_runs_both_arms_from_one_image_stage(tmp_path):
    run = tmp_path / "run"
    exp, argv = tiny_experiment(run)
    result = exp.main(argv)
    arms = result["arms"]
    assert arms["image"]["step"] == 2 and arms["image"]["images"] == 8
    for name in ("stunet", "cascade"):
        assert arms[name]["step"] == 2 and arms[name]["clips"] == 4 and arms[name]["flops"] > 0, arms[name]
        assert arms[name]["parameters"] > 0 and "cpu_seconds" in arms[name]
        assert [(s["device"], s["steps"]) for s in arms[name]["segments"]] == [("cpu", 2)]
    assert json.loads((run / "budget.json").read_text())["arms"]["cascade"]["clips"] == 4
    stunet_log = [json.loads(line) for line in (run / "stunet" / "train.log").read_text().splitlines()]
    assert any(r.get("event") == "inflated" and r.get("from", "").endswith("image_unet") for r in stunet_log)
    assert type(load_pipeline(run / "cascade", precision="fp32")) is CascadePipeline
    assert type(load_pipeline(run / "stunet", precision="fp32")) is Pipeline
    # resumable: a second run finds every stage done and trains nothing more
    again = exp.main(argv)
    assert again["arms"]["cascade"]["clips"] == 4 and again["arms"]["stunet"]["clips"] == 4


@pytest.mark.slow
def test_experiment_driver_trains_the_arms_in_parallel_processes(tmp_path):
    run = tmp_path / "run"
    exp, argv = tiny_experiment(run, 2, "--parallel")
    arms = exp.main(argv)["arms"]
    for name in ("stunet", "cascade"):
        assert arms[name]["step"] == 2 and arms[name]["clips"] == 4 and arms[name]["flops"] > 0, arms[name]
    for log in (run / "stunet" / "train.log", run / "cascade" / "train.log"):
        start = next(json.loads(x) for x in log.read_text().splitlines() if '"start"' in x)
        assert start["args"]["threads"] == 1                          # half of --threads each
    assert (run / "train.out").is_file() and (run / "train-cascade.out").is_file()
    (run / "cascade" / "train_state" / "state.json").write_text("{broken")      # an arm that fails is reported
    (run / "budget.json").unlink()
    argv[argv.index("--budget-clips") + 1] = "8"
    with pytest.raises(SystemExit, match="train-cascade"):
        exp.main(argv)
    assert not (run / "budget.json").exists()
