"""The few-step distillation (``stunet.distill``) and the distilled model's sampling path, on ``tiny``."""
import json
import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_tiny
from stunet import distill
from stunet.checkpoint import CheckpointError, load_pretrained, read_sampling, save_pretrained
from stunet.defaults import SamplingDefaults
from stunet.diffusion import alphas_cumprod, make_scheduler
from stunet.pipeline import Pipeline, Settings
from stunet.precision import resolve


def _inputs(model, tok, b=2, seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, cfg.frames, cfg.height, cfg.width, generator=g)
    ids, _ = tok.batch(["a red circle moving left", "a blue square spinning"][:b])
    return x, model.encode_text(ids)


def test_student_at_init_is_the_teachers_conditional_branch(tiny_tokenizer):
    tiny_model = make_tiny()            # its own copy: a Pipeline elsewhere may have made the shared one channels-last
    student = distill.student_from_teacher(tiny_model).eval()
    assert student.config.guidance_embedding and not tiny_model.config.guidance_embedding
    x, text = _inputs(tiny_model, tiny_tokenizer)
    ts = torch.tensor([900, 100])
    with torch.no_grad():
        want = tiny_model(x, ts, text, 1)
        for w in (1.0, 3.0, torch.tensor([2.0, 7.5])):
            assert torch.equal(student(x, ts, student.encode_text(tiny_tokenizer.batch(
                ["a red circle moving left", "a blue square spinning"])[0]), 1, guidance=w), want)


def test_guidance_embedding_changes_the_output_once_trained(tiny_tokenizer):
    student = distill.student_from_teacher(make_tiny())
    with torch.no_grad():
        student.guidance_mlp[-1].weight.normal_(0, 0.1)
    x, text = _inputs(student, tiny_tokenizer)
    with torch.no_grad():
        a = student(x, torch.tensor([500, 500]), text, 1, guidance=1.0)
        b = student(x, torch.tensor([500, 500]), text, 1, guidance=5.0)
    assert not torch.allclose(a, b)


def test_teacher_grid_passes_through_every_student_timestep():
    cfg = make_tiny().config
    student = distill.student_timesteps(cfg, 4)
    grid = distill.teacher_timesteps(student, 3)
    assert len(grid) == 12 and grid[::3] == student
    assert grid == sorted(grid, reverse=True) and min(grid) >= 0
    with pytest.raises(ValueError):
        distill.teacher_timesteps([999, 998], 5)


def test_x0_target_makes_one_ddim_step_land_on_the_next_state():
    cfg = make_tiny().config
    ac = alphas_cumprod(cfg)
    student = distill.student_timesteps(cfg, 4)
    g = torch.Generator().manual_seed(3)
    x_t, x_s = torch.randn(2, 3, 8, 16, 16, generator=g), torch.randn(2, 3, 8, 16, 16, generator=g)
    for k, t in enumerate(student):
        s = student[k + 1] if k + 1 < len(student) else -1
        x0 = distill.ddim_x0_target(ac, x_t, x_s, torch.tensor([t, t]), torch.tensor([s, s]))
        a, sig = ac[t].sqrt(), (1 - ac[t]).sqrt()
        v = (a * x_t - x0) / sig                                   # the v the student should output
        sched = make_scheduler(cfg, "ddim")
        sched.set_timesteps(4)
        landed = sched.step(v, t, x_t).prev_sample
        assert torch.allclose(landed, x_s if s >= 0 else x0, atol=2e-4), (k, (landed - x_s).abs().max())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_tokenizer):
    """Teacher shards of the tiny model, and a short student run on them."""
    teacher = make_tiny()
    out = tmp_path_factory.mktemp("distill")
    logs = []
    n = distill.generate_trajectories(teacher, tiny_tokenizer, out / "trajectories", count=24, steps=4, sub=2,
                                      batch=4, seed=0, precision=resolve("fp32"), deadline=float("inf"),
                                      log=logs.append, quiet=True)
    assert n == 24
    return teacher, out, logs


def test_trajectory_shards_hold_states_at_the_student_timesteps(tiny_run):
    from safetensors import safe_open
    teacher, out, logs = tiny_run
    shards = distill.shard_paths(out / "trajectories")
    assert len(shards) == 6 and [r["trajectories"] for r in logs] == [4, 8, 12, 16, 20, 24]
    with safe_open(str(shards[0]), framework="pt") as f:
        states = f.get_tensor("states")
        meta = f.metadata()
        assert states.shape[:2] == (4, 5)                           # 4 trajectories, N + 1 states
        assert f.get_tensor("timesteps").tolist() == distill.student_timesteps(teacher.config, 4)
        assert len(json.loads(meta["teacher_timesteps"])) == 8
        assert all(json.loads(meta["captions"]))                    # no empty captions
    assert states[:, -1].abs().max() <= 1.0                         # the final clip, clamped


def test_trajectories_resume_without_rewriting(tiny_run, tiny_tokenizer):
    teacher, out, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in distill.shard_paths(out / "trajectories")}
    logs = []
    n = distill.generate_trajectories(teacher, tiny_tokenizer, out / "trajectories", count=24, steps=4, sub=2,
                                      batch=4, seed=0, precision=resolve("fp32"), deadline=float("inf"),
                                      log=logs.append, quiet=True)
    assert n == 24 and logs == []
    assert {p: p.stat().st_mtime_ns for p in distill.shard_paths(out / "trajectories")} == before


def test_a_short_distillation_lowers_the_loss(tiny_run, tiny_tokenizer):
    teacher, out, _ = tiny_run
    torch.manual_seed(0)
    args = distill.DistillConfig(device="cpu", resume=False, lr=2e-3, warmup=5, iters=40, batch=8, ema=0.9, seed=0,
                                 quiet=True, log_every=5, ckpt_every=1000)
    rows = distill.TrajectoryRows(out / "trajectories")
    ac = alphas_cumprod(teacher.config)
    ts = torch.tensor(rows.timesteps)
    fixed = rows.rows([(p, j, k) for p, j in rows.by_stride[min(rows.by_stride)][:4] for k in range(4)])
    fp32 = resolve("fp32").autocast("cpu")
    with torch.no_grad():
        before = distill.distill_loss(distill.student_from_teacher(teacher), ac, ts, fixed, fp32).item()
    logs = []
    student = distill.train_student(teacher, tiny_tokenizer, out / "trajectories", out / "student", args,
                                    resolve("fp32"), float("inf"), logs.append)
    with torch.no_grad():
        after = distill.distill_loss(student, ac, ts, fixed, fp32).item()
    assert after < 0.7 * before, (before, after)
    assert logs[-1] == {"event": "done", "phase": "student", "step": 40}
    assert read_sampling(out / "student") == SamplingDefaults(steps=4, guidance=3.0, sampler="ddim")
    model, _ = load_pretrained(out / "student")                     # strict load of the student
    assert model.config.guidance_embedding


def test_student_resumes_from_its_train_state(tiny_run, tiny_tokenizer):
    teacher, out, _ = tiny_run
    args = distill.DistillConfig(device="cpu", resume=False, lr=1e-3, warmup=2, iters=4, batch=4, ema=0.9, seed=0,
                                 quiet=True, log_every=2, ckpt_every=2)
    distill.train_student(teacher, tiny_tokenizer, out / "trajectories", out / "resumed", args, resolve("fp32"),
                          float("inf"), lambda r: None)
    args = dataclasses.replace(args, iters=6, resume=True)
    logs = []
    distill.train_student(teacher, tiny_tokenizer, out / "trajectories", out / "resumed", args, resolve("fp32"),
                          float("inf"), logs.append)
    assert logs[0] == {"event": "resumed", "phase": "student", "step": 4}
    assert logs[1]["step"] == 4 and "loss" not in logs[1]          # held-out loss where the resumed run starts
    assert [r["step"] for r in logs if "loss" in r] == [6]


def test_student_can_start_from_another_students_checkpoint(tiny_run, tiny_tokenizer, tmp_path):
    teacher, out, _ = tiny_run
    other = distill.student_from_teacher(teacher)
    with torch.no_grad():
        other.guidance_mlp[-1].weight.normal_(0, 0.05)              # a trained-looking guidance embedding
    init = save_pretrained(other, tiny_tokenizer, tmp_path / "other", sampling=SamplingDefaults(steps=8, sampler="ddim"))
    args = distill.DistillConfig(device="cpu", resume=False, init=str(init), lr=1e-3, warmup=2, iters=0, batch=4,
                                 ema=0.9, seed=0, quiet=True, log_every=2, ckpt_every=2)
    logs = []
    student = distill.train_student(teacher, tiny_tokenizer, out / "trajectories", tmp_path / "warm", args,
                                    resolve("fp32"), float("inf"), logs.append)
    assert logs[0] == {"event": "init", "phase": "student", "from": str(init)}
    want = other.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in student.state_dict().items())
    assert read_sampling(tmp_path / "warm").steps == 4              # the trajectories' step count, not the init's
    with pytest.raises(ValueError, match="not a student of this teacher"):
        distill.student_from_checkpoint(teacher, save_pretrained(make_tiny(), tiny_tokenizer, tmp_path / "teacher"))


def _student_checkpoint(tmp_path, tok, steps=4):
    student = distill.student_from_teacher(make_tiny())
    with torch.no_grad():
        student.guidance_mlp[-1].weight.normal_(0, 0.05)
    d = save_pretrained(student, tok, tmp_path / "fast", sampling=SamplingDefaults(steps=steps, sampler="ddim"))
    return student, d


def test_one_guided_student_step_is_one_forward_of_one_row(tmp_path, tiny_tokenizer):
    _, d = _student_checkpoint(tmp_path, tiny_tokenizer)
    pipe = Pipeline.from_pretrained(d, precision="fp32")
    rows = []
    hook = pipe.model.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    try:
        gen = pipe(Settings("a red circle moving left", seed=1, guidance=4.0, frames=8))
    finally:
        hook.remove()
    assert gen.settings.steps == 4 and gen.settings.sampler == "ddim" and gen.settings.guidance == 4.0
    assert rows == [1, 1, 1, 1]                                     # 4 steps, one row each: no unconditional pass


def test_student_guidance_scale_reaches_the_model(tmp_path, tiny_tokenizer):
    _, d = _student_checkpoint(tmp_path, tiny_tokenizer)
    pipe = Pipeline.from_pretrained(d, precision="fp32")
    a = pipe(Settings("a red circle moving left", seed=1, guidance=1.0, frames=8)).video
    b = pipe(Settings("a red circle moving left", seed=1, guidance=6.0, frames=8)).video
    c = pipe(Settings("a red circle moving left", seed=1, guidance=6.0, frames=8)).video
    assert not np.array_equal(a, b) and np.array_equal(b, c)


def test_fast_checkpoint_defaults_and_strict_loading(tmp_path, tiny_tokenizer, tiny_checkpoint):
    student, d = _student_checkpoint(tmp_path, tiny_tokenizer, steps=6)
    pipe = Pipeline.from_pretrained(d)
    assert pipe.distilled and pipe.defaults.steps == 6
    assert pipe.complete(Settings("a red circle")).steps == 6
    assert Pipeline.from_pretrained(tiny_checkpoint).complete(Settings("a red circle")).steps == 25
    # the student's weights without its guidance embedding are refused, by name
    from safetensors.torch import load_file, save_file
    sd = load_file(str(d / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("guidance_mlp.")}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="guidance_mlp"):
        load_pretrained(d)
    (d / "sampling.json").write_text('{"steps": 0}')
    with pytest.raises(CheckpointError, match="sampling.json"):
        read_sampling(d)


def test_cli_refuses_bad_arguments_and_missing_inputs(tmp_path, capsys):
    from stunet.cli import main
    with pytest.raises(SystemExit) as e:
        main(["distill", "--steps", "0"])
    assert e.value.code == 2 and "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "--part", "3/2"])
    assert "--part must be K/N" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "checkpoint directory not found" in capsys.readouterr().err


def test_student_keeps_image_to_video_and_long_clips(tmp_path, tiny_tokenizer):
    _, d = _student_checkpoint(tmp_path, tiny_tokenizer)
    pipe = Pipeline.from_pretrained(d, precision="fp32")
    rows = []
    hook = pipe.model.register_forward_pre_hook(lambda m, a: rows.append(tuple(a[0].shape[:3])))
    first = np.zeros((16, 16, 3), np.uint8)
    first[4:9, 4:9] = (255, 0, 0)
    try:
        gen = pipe(Settings("a red square moving right", seed=2, frames=16), first_frame=first)
    finally:
        hook.remove()
    assert gen.video.shape == (16, 16, 16, 3)
    assert rows == [(3, 3, 8)] * 4          # 3 MultiDiffusion windows of 8 frames, one call per step, no uncond


def test_step_weights_draw_the_noisiest_steps_more_often(tiny_run):
    _, out, _ = tiny_run
    rows = distill.TrajectoryRows(out / "trajectories")
    n = len(rows.timesteps)
    p = distill.step_probabilities([3] + [1] * (n - 1), n)
    assert p[0] == pytest.approx(3 / (n + 2)) and p.sum() == pytest.approx(1)
    rng = np.random.default_rng(0)
    ks = np.concatenate([rows.sample(rng, 8, p)["k"].numpy() for _ in range(150)])
    share = np.bincount(ks, minlength=n) / len(ks)
    assert share[0] == pytest.approx(p[0], abs=0.05) and share[0] > 2 * share[1:].max()   # n = 4: 0.5 against 0.17
    only_last = np.concatenate([rows.sample(rng, 4, distill.step_probabilities([0] * (n - 1) + [1], n))["k"].numpy()
                                for _ in range(5)])
    assert set(only_last.tolist()) == {n - 1}
    assert distill.step_probabilities(None, n) is None
    for bad in ([1] * (n + 1), [0] * n, [-1] + [1] * (n - 1), [float("nan")] * n):
        with pytest.raises(ValueError):
            distill.step_probabilities(bad, n)


def test_cli_refuses_bad_step_weights(capsys):
    from stunet.cli import main
    for bad, msg in (("1,2", "one weight per student step (8)"), ("a,b", "comma-separated numbers"),
                     ("0,0,0,0,0,0,0,0", "not all zero")):
        with pytest.raises(SystemExit) as e:
            main(["distill", "--step-weights", bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err
