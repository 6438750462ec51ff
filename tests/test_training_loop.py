"""``stunet.training_loop``: the one scaffold of every trainer (optimiser step, loop, train_state, log)."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny
from stunet import guidance_distill
from stunet.checkpoint import save_pretrained
from stunet.precision import resolve
from stunet.training_loop import (JsonLog, LoopConfig, Optimisation, OptimConfig, command_device, fit, learning_rate,
                                  load_state, open_run, save_state)


def _regression():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return model, lambda step: (torch.nn.functional.mse_loss(model(x), y), {"half": 0.5})


def test_fit_steps_logs_and_checkpoints_on_its_cadence():
    model, loss_at = _regression()
    optim = Optimisation(model, OptimConfig(lr=0.05, total=30, warmup=2, ema=0.9))
    logs, ckpts = [], []
    first = loss_at(0)[0].item()
    step = fit(optim, loss_at, LoopConfig(total=30, log_every=10, ckpt_every=15, quiet=True), log=logs.append,
               checkpoint=ckpts.append, head={"stage": "x"}, extra=lambda: {"n": 1})
    assert step == optim.step == 30 and ckpts == [15, 30]
    assert [r["step"] for r in logs] == [10, 20, 30] and logs[-1]["loss"] < first
    assert set(logs[0]) == {"stage", "step", "loss", "loss_half", "grad_norm", "lr", "seconds", "n"}
    assert logs[-1]["lr"] == pytest.approx(learning_rate(0.05, 29, 30, 2))
    # the EMA moved towards the weights, and a deadline in the past takes no step
    assert not torch.equal(optim.ema.weight, model.weight)
    assert fit(optim, loss_at, LoopConfig(total=40, deadline=0.0, quiet=True), log=logs.append,
               checkpoint=ckpts.append) == 30


def test_a_non_finite_loss_stops_the_loop():
    model, _ = _regression()
    optim = Optimisation(model, OptimConfig(lr=0.1, total=5, warmup=1, ema=0.9))
    nan = lambda step: (model.weight.sum() * float("nan"), {})                    # noqa: E731
    with pytest.raises(FloatingPointError, match="non-finite probe loss at step 1"):
        fit(optim, nan, LoopConfig(total=5, name="probe", quiet=True), log=print, checkpoint=print)


def test_train_state_round_trips_and_resumes_the_same_steps(tmp_path):
    model = make_tiny()
    model.train()
    optim = Optimisation(model, OptimConfig(lr=1e-3, total=10, warmup=1, ema=0.9))
    x = torch.randn(2, 8)

    def loss_at(step):
        return sum(p.float().pow(2).mean() for p in model.parameters()) * (1 + x.mean()), {}
    fit(optim, loss_at, LoopConfig(total=2, quiet=True), log=lambda r: None, checkpoint=lambda s: None)
    save_state(tmp_path / "train_state", "video", 2, model, optim.opt, {"args": {"lr": 1e-3}})
    assert {p.name for p in (tmp_path / "train_state").iterdir()} == {
        "raw.safetensors", "optimizer.safetensors", "optimizer.json", "config.json", "state.json"}
    saved = load_state(tmp_path / "train_state")
    assert (saved.stage, saved.step, saved.info["args"]) == ("video", 2, {"lr": 1e-3})
    again = make_tiny(seed=3).train()
    again.load_state_dict(saved.raw)
    resumed = Optimisation(again, OptimConfig(lr=1e-3, total=10, warmup=1, ema=0.9), saved.step, saved.optimizer)
    assert resumed.opt.state_dict()["state"][0]["step"] == optim.opt.state_dict()["state"][0]["step"]
    assert load_state(tmp_path / "nothing") is None


def test_json_log_appends_timed_records(tmp_path):
    log = JsonLog(tmp_path / "train.log")
    log({"step": 1})
    log({"event": "done"})
    log.close()
    recs = [json.loads(line) for line in (tmp_path / "train.log").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in recs] == [{"step": 1}, {"event": "done"}]
    JsonLog(None)({"step": 2})                                      # another rank's log: nothing written


def test_a_command_opens_its_run_once_and_refuses_an_occupied_folder(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert command_device("cpu", 1) == "cpu" and torch.get_num_threads() == 1
        assert command_device("auto", 1) == ("cuda" if torch.cuda.is_available() else "cpu")
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "run"
    fp32 = resolve("fp32", "cpu")
    log = open_run(out, {"event": "start", "run": {"a": 1}}, fp32, occupied="train_state")
    log.close()
    records = [json.loads(x) for x in (out / "train.log").read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "precision"] and records[1]["precision"] == "fp32"
    assert "precision: fp32" in capsys.readouterr().err
    (out / "train_state").mkdir()
    with pytest.raises(ValueError, match="already holds a style; pass --resume"):
        open_run(out, {"event": "start"}, fp32, occupied="train_state", what="style", quiet=True)
    assert len((out / "train.log").read_text().splitlines()) == 2           # refused before writing
    open_run(out, {"event": "start"}, fp32, occupied="train_state", resume=True, quiet=True).close()
    assert len((out / "train.log").read_text().splitlines()) == 4
    assert capsys.readouterr().err == ""                                   # quiet: no precision line


def test_guidance_distillation_runs_and_resumes_in_its_layout(tmp_path, tiny_tokenizer):
    teacher = save_pretrained(make_tiny(), tiny_tokenizer, tmp_path / "teacher")
    out = tmp_path / "guided"
    common = ["--teacher", str(teacher), "--out", str(out), "--batch", "2", "--warmup", "1", "--log-every", "1",
              "--ckpt-every", "2", "--threads", "1", "--precision", "fp32", "--device", "cpu", "--quiet"]
    assert guidance_distill.main(common + ["--iters", "2"]) == 0
    assert {p.name for p in (out / "train_state").iterdir()} == {
        "raw.safetensors", "optimizer.safetensors", "optimizer.json", "config.json", "state.json"}
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert (state["stage"], state["step"], state["run"]["iters"]) == ("guidance", 2, 2)
    assert guidance_distill.main(common + ["--iters", "3", "--resume"]) == 0
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert {"event": "resumed", "step": 2} in [{k: v for k, v in r.items() if k != "time"} for r in log]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3] and log[-1]["event"] == "done"
    assert json.loads((out / "train_state" / "state.json").read_text())["step"] == 3
