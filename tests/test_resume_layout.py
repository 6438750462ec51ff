"""Resuming without ``train_state/ema.safetensors``: the EMA weights come from the run's ``model.safetensors``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import stunet.train as train
from stunet.checkpoint import CheckpointError, load_resume_ema

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "stunet-shapes"
COMMON = ["--preset", "tiny", "--image-steps", "2", "--batch", "2", "--image-batch", "4", "--warmup", "1",
          "--log-every", "1", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run stopped in the video stage at step 2, in the layout new runs write."""
    out = tmp_path_factory.mktemp("resume") / "run"
    train.main(COMMON + ["--out", str(out), "--video-steps", "2"])
    return out


def names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def capture_ema(monkeypatch) -> list:
    """Replace ``run_stage`` by a wrapper recording the EMA state it is handed."""
    seen, real = [], train.run_stage

    def spy(model, stage, *rest):
        seen.append((stage.name, stage.start_step, stage.ema_state))
        return real(model, stage, *rest)
    monkeypatch.setattr(train, "run_stage", spy)
    return seen


def test_new_runs_are_laid_out_like_the_shipped_model(run):
    """No duplicate EMA file, neither in new runs nor in the committed model."""
    assert "ema.safetensors" not in names(run / "train_state")
    assert names(run / "train_state") == names(SHIPPED / "train_state")
    assert {"config.json", "model.safetensors", "vocab.json"} <= names(run) & names(SHIPPED)


def test_resume_reads_ema_from_model_safetensors(run, tmp_path, monkeypatch):
    resumed = tmp_path / "run"
    shutil.copytree(run, resumed)
    ema = load_file(str(resumed / "model.safetensors"))
    seen = capture_ema(monkeypatch)
    train.main(COMMON + ["--out", str(resumed), "--video-steps", "4", "--resume"])
    (stage, start, ema_state), = seen
    assert (stage, start) == ("video", 2)
    assert ema_state.keys() == ema.keys() and all(torch.equal(ema_state[k], ema[k]) for k in ema)
    log = [json.loads(line) for line in (resumed / "train.log").read_text().splitlines()]
    assert log[-1]["event"] == "done" and log[-1]["step"] == 4
    assert json.loads((resumed / "train_state" / "state.json").read_text())["step"] == 4
    assert "ema.safetensors" not in names(resumed / "train_state")


def test_old_runs_with_ema_file_still_resume_from_it_and_lose_it(run, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    legacy = {k: v + 1.0 for k, v in load_file(str(old / "model.safetensors")).items()}
    save_file(legacy, str(old / "train_state" / "ema.safetensors"))
    seen = capture_ema(monkeypatch)
    train.main(COMMON + ["--out", str(old), "--video-steps", "3", "--resume"])
    ema_state = seen[0][2]
    assert all(torch.equal(ema_state[k], legacy[k]) for k in legacy)
    assert "ema.safetensors" not in names(old / "train_state")          # no stale copy left behind
    assert load_resume_ema(old, "video", 3).keys() == legacy.keys()     # the checkpoint is at step 3 now


def test_resume_refuses_a_checkpoint_from_another_step(run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run, other)
    state = json.loads((other / "train_state" / "state.json").read_text())
    (other / "train_state" / "state.json").write_text(json.dumps({**state, "step": 7}))
    with pytest.raises(CheckpointError, match="holds video step 2, train_state is at video step 7"):
        train.main(COMMON + ["--out", str(other), "--video-steps", "9", "--resume"])
    (other / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no train_state/ema.safetensors and no model.safetensors"):
        load_resume_ema(other, "video", 7)


def test_image_stage_resume_reads_image_unet(tmp_path, monkeypatch):
    out = tmp_path / "img"
    train.main(COMMON[:2] + ["--image-steps", "3", "--batch", "2", "--image-batch", "4", "--quiet",
                             "--out", str(out), "--video-steps", "1", "--minutes", "0"])
    assert json.loads((out / "train_state" / "state.json").read_text())["stage"] == "image"
    ema = load_resume_ema(out, "image", json.loads((out / "train_state" / "state.json").read_text())["step"])
    assert all(torch.equal(ema[k], v) for k, v in load_file(str(out / "image_unet" / "model.safetensors")).items())


def test_shipped_model_resume_state_matches_its_checkpoint():
    """The committed run resumes from model.safetensors: same stage and step as train_state."""
    state = json.loads((SHIPPED / "train_state" / "state.json").read_text())
    ema = load_resume_ema(SHIPPED, state["stage"], state["step"])
    raw = load_file(str(SHIPPED / "train_state" / "raw.safetensors"))
    assert ema.keys() == raw.keys()
