"""Training: a tiny run lowers the loss, resumes, and runs data-parallel on two processes (these runs: -m slow)."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from conftest import load_script
from stunet.checkpoint import load_pretrained
from stunet.config import preset
from stunet.diffusion import alphas_cumprod
from stunet.model import STUNet
from stunet.shapes.data import tokenizer_for, video_batch
from stunet.train import TASKS, batches, loss_fn, main, make_condition


def _fixed_loss(model, seed=0, n=4):
    cfg = model.config
    tok = tokenizer_for(cfg)
    ac = alphas_cumprod(cfg)
    losses = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        b = video_batch(rng, tok, cfg, 8)
        with torch.no_grad():
            losses.append(loss_fn(model, cfg, ac, b, rng, torch.Generator().manual_seed(i)).item())
    return float(np.mean(losses))


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--out", str(out), "--image-steps", "20", "--video-steps", "60", "--batch", "4",
            "--image-batch", "16", "--lr", "2e-3", "--image-lr", "2e-3", "--warmup", "5", "--ckpt-every", "40",
            "--log-every", "10", "--quiet"]
    main(args)
    torch.manual_seed(0)
    before = _fixed_loss(STUNet(preset("tiny")).eval())
    model, _ = load_pretrained(out)
    after = _fixed_loss(model)
    assert after < 0.8 * before, (before, after)
    log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
    assert any(r.get("event") == "inflated" for r in log)
    assert log[-1]["event"] == "done" and log[-1]["step"] == 60
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert (state["stage"], state["step"]) == ("video", 60)
    assert "image_unet" in {p.name for p in out.iterdir()}
    # resume to a later step count, with bouncing clips drawn twice as often
    main(args[:6] + ["--video-steps", "70"] + args[8:] + ["--resume", "--motion-weights", "bouncing=2",
                                                            "--workers", "2"])
    log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
    starts = [r for r in log if r.get("event") == "start"]
    assert starts[-1]["stage"] == "video" and starts[-1]["step"] == 60
    weighted = [r for r in log if r.get("event") == "motion_weights"]
    assert len(weighted) == 1 and weighted[0]["weights"] == {"bouncing": 2.0}
    assert weighted[0]["shares"]["bouncing"] == pytest.approx(144 / 720, abs=1e-4)   # 72 kinds x 2 of 720
    assert log[-1]["event"] == "done" and log[-1]["step"] == 70


def test_high_noise_options_are_checked(capsys):
    from stunet.train import parse_args
    assert parse_args(["--high-noise-frac", "0", "--high-noise-from", "0.5"]).high_noise_frac == 0.0
    for bad in (["--high-noise-frac", "1.5"], ["--high-noise-frac", "-0.1"], ["--high-noise-from", "-0.1"],
                ["--high-noise-from", "1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert "--high-noise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--workers", "-1"])
    assert "--workers must be >= 0" in capsys.readouterr().err


def test_motion_weights_option_is_checked(capsys):
    from stunet.train import parse_args
    assert parse_args([]).motion_weights == {}
    assert parse_args(["--motion-weights", "bouncing=2, standing still=0.5"]).motion_weights == \
        {"bouncing": 2.0, "standing still": 0.5}
    for bad, words in (("bounce=2", "unknown motion 'bounce'"), ("bouncing=0", "finite and > 0"),
                       ("bouncing=-1", "finite and > 0"), ("bouncing=inf", "finite and > 0"),
                       ("bouncing", "MOTION=WEIGHT"), ("bouncing=two", "MOTION=WEIGHT")):
        with pytest.raises(SystemExit) as e:
            parse_args(["--motion-weights", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--motion-weights" in err and words in err, err


def test_motion_weights_change_what_the_video_batches_draw():
    from stunet.shapes import world
    cfg = preset("tiny")
    tok = tokenizer_for(cfg)
    # default: clip kinds uniform, and the draw is the one it always was (same rng use as before weights existed)
    assert world.random_spec(np.random.default_rng(0)).caption == world._ALL[int(
        np.random.default_rng(0).integers(len(world._ALL)))].caption
    p = world.spec_probs({"bouncing": 20.0})
    assert p.sum() == pytest.approx(1.0)
    assert world.motion_shares(p)["bouncing"] == pytest.approx(20 * 72 / (648 - 72 + 20 * 72))
    assert world.motion_shares(world.spec_probs({}))["bouncing"] == pytest.approx(72 / 648)

    def bouncing_share(spec_p, n=30):
        rng = np.random.default_rng(1)
        caps = [c for _ in range(n) for c in video_batch(rng, tok, cfg, 8, spec_p).captions if c]
        return np.mean(["bouncing" in c for c in caps])
    assert bouncing_share(p) > 0.6          # expected 0.71
    assert bouncing_share(None) < 0.2       # expected 0.11
    with pytest.raises(ValueError, match="unknown motion"):
        world.spec_probs({"jumping": 2.0})


def test_worker_batches_are_seeded_and_well_formed():
    """``--workers``: DataLoader processes draw the clips; same seed, same batches, in order."""
    cfg = preset("tiny")
    tok = tokenizer_for(cfg)

    def first(seed, workers, n=4):
        stream = batches(video_batch, np.random.default_rng(seed), tok, cfg, 3, workers)
        out = [next(stream) for _ in range(n)]
        stream.close()
        return out
    a, b, c = first(0, 2), first(0, 2), first(1, 2)
    for x, y in zip(a, b):
        assert torch.equal(x.x0, y.x0) and torch.equal(x.ids, y.ids) and x.captions == y.captions
    assert not torch.equal(a[0].x0, c[0].x0)
    assert not torch.equal(a[0].x0, a[1].x0)        # the two workers draw different clips
    inline = first(0, 0, n=1)[0]
    for x in (a[0], inline):
        assert x.x0.shape == (3, 3, cfg.frames // int(x.stride[0]), cfg.height, cfg.width)
        assert x.x0.dtype == torch.float32 and -1.0 <= x.x0.min() and x.x0.max() <= 1.0
        assert x.ids.shape[0] == 3 and x.stride.shape == (3,) and len(x.captions) == 3
    # inline (the default) keeps drawing from the rng it was given, as before workers existed
    rng = np.random.default_rng(0)
    assert torch.equal(inline.x0, video_batch(rng, tok, cfg, 3).x0)


def test_condition_tasks_mask_the_right_pixels():
    x0 = torch.randn(64, 3, 8, 16, 16)
    cond, mask, tasks = make_condition(x0, np.random.default_rng(0))
    assert set(tasks) == set(TASKS)
    for i, t in enumerate(tasks):
        m = mask[i, 0]
        if t == "none":
            assert m.sum() == 0
        elif t == "first_frame":
            assert m[0].all() and m[1:].sum() == 0
        elif t == "region":
            assert 0 < m.mean() < 1 and (m == m[0]).all()        # same box in every frame
        assert torch.equal(cond[i], x0[i] * mask[i])


@pytest.mark.slow
@pytest.mark.integration
def test_ddp_two_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stunet.train", "--preset", "tiny", "--out", str(out), "--image-steps", "3", "--video-steps", "4",
           "--batch", "2", "--image-batch", "4", "--quiet", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
    assert log[0]["world_size"] == 2
    assert log[-1]["event"] == "done"
    load_pretrained(out)


@pytest.mark.slow
def test_train_for_times_a_probe_and_ends_the_cosine_at_the_budget(tmp_path, capsys, monkeypatch):
    """scripts/train_for.py: a step rate from the last segment, then a resumed run sized to the budget.

    The script's clock is fixed and the probe's measured rate replaced by a known one, so the plan
    (and whether the run finishes) does not depend on how busy the machine is.
    """
    tf = load_script("train_for")
    recs = [{"event": "start"}, {"step": 25, "loss": 1, "seconds": 9.0},
            {"event": "start"}, {"step": 125, "loss": 1, "seconds": 7.0}, {"step": 150, "loss": 1, "seconds": 12.0},
            {"step": 175, "loss": 1, "seconds": 17.0}]
    assert tf.steps_per_second(recs) == pytest.approx(5.0)
    with pytest.raises(RuntimeError, match="probe too short"):
        tf.steps_per_second(recs[:4])
    image_run = tmp_path / "image-run" / "train_state"
    image_run.mkdir(parents=True)
    (image_run / "state.json").write_text(json.dumps({"stage": "image", "step": 5}))
    with pytest.raises(SystemExit):
        tf.main([str(image_run.parent), "--minutes", "1"])
    assert "image stage" in capsys.readouterr().err
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--image-steps", "10", "--batch", "2", "--image-batch", "8", "--quiet"]
    main(common + ["--out", str(out), "--video-steps", "20"])
    probes, timed = [], tf.steps_per_second

    def rate(records):                      # the probe is timed for real; the plan uses 0.005 steps/s
        probes.append((timed(records), [r["step"] for r in records if "loss" in r]))
        return 0.005

    monkeypatch.setattr(tf, "time", types.SimpleNamespace(time=lambda: 1000.0))   # the probe takes no time
    monkeypatch.setattr(tf, "steps_per_second", rate)
    tf.main([str(out), "--minutes", "100", "--probe-steps", "20", "--reserve", "0.5", "--", *common])
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert len(probes) == 1 and probes[0][0] > 0 and probes[0][1][-1] == 40    # 20 probe steps, timed
    assert plan == {"probe_steps_per_s": 0.005, "from_step": 20, "video_steps": 49, "minutes": 99.5}
    assert plan["from_step"] == 20 and plan["video_steps"] > 40           # the probe ran on a copy
    assert not any(r.get("step") == 40 and "loss" in r for r in log)      # ... not on the run itself
    assert log[-1]["event"] in ("done", "stopped") and 20 < log[-1]["step"] <= plan["video_steps"]
    assert (log[-1]["event"], log[-1]["step"]) == ("done", 49)           # 99.5 minutes: it finishes
    assert log[-2]["lr"] < 0.5 * 5e-4 or log[-1]["event"] == "stopped"   # near the cosine's floor at the end
