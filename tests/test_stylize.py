"""``stunet.stylize`` on the tiny model: only spatial tensors are fine-tuned and stored, the temporal ones never
change, strength 0 is the original bit for bit, a style of another architecture is refused, a short run
lowers its loss; ``stunet stylize`` / ``generate --style`` and ``scripts/measure_style.py``."""
import json

import numpy as np
import pytest
import torch
from conftest import load_script, make_tiny
from safetensors.torch import load_file, save_file

from stunet import stylize
from stunet.checkpoint import load_pretrained, save_pretrained
from stunet.cli import main as cli
from stunet.config import preset
from stunet.model import STUNet, is_temporal_param
from stunet.precision import Precision
from stunet.shapes.data import tokenizer_for
from stunet.training_loop import JsonLog

FP32 = Precision("fp32", "test")


def run_stylize(base, tok, out, **kw):
    rc = stylize.StylizeConfig(**{"style": "outline", "out": str(out), "iters": 3, "batch": 4, "lr": 1e-3,
                                  "warmup": 1, "ckpt_every": 2, "log_every": 1, "val_batches": 1, "quiet": True,
                                  **kw})
    out.mkdir(parents=True, exist_ok=True)
    log = JsonLog(out / "train.log")
    try:
        return stylize.train(base, tok, rc, FP32, log, base_model="tiny")
    finally:
        log.close()


def log_lines(out):
    return [json.loads(x) for x in (out / "train.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def base():
    return make_tiny()


@pytest.fixture(scope="module")
def tok():
    return tokenizer_for(preset("tiny"))


@pytest.fixture(scope="module")
def styles(base, tok, tmp_path_factory):
    """(snapshot of the base's tensors before, spatial style dir, negative-control style dir)."""
    before = {k: v.clone() for k, v in base.state_dict().items()}
    root = tmp_path_factory.mktemp("styles")
    run_stylize(base, tok, root / "outline")
    run_stylize(base, tok, root / "control", train_temporal=True, batch=2)
    return before, root / "outline", root / "control"


def test_parameter_groups_split_the_model_as_inflation_does():
    for name in ("tiny", "shapes"):
        cfg = preset(name)
        keys = list(STUNet(cfg).state_dict())
        groups = {k: stylize.param_group(k) for k in keys}
        assert {k for k in keys if groups[k] == "temporal"} == {k for k in keys if is_temporal_param(k)}
        assert {k for k in keys if groups[k] == "text"} == {k for k in keys if k.startswith("text_encoder.")}
        # the image U-Net holds exactly the spatial and text tensors: what the style fine-tune trains
        assert set(STUNet(cfg.image()).state_dict()) == {k for k in keys if groups[k] != "temporal"}
        assert {"temporal", "text", "spatial"} == set(groups.values())
    assert stylize.param_group("enc.2.blocks.0.temporal_attn.0.qkv.weight") == "temporal"
    assert stylize.param_group("frame_mlp.0.weight") == "temporal"
    assert stylize.param_group("up.0.temporal.conv.weight") == "temporal"
    assert stylize.param_group("up.0.spatial.weight") == "spatial"
    assert stylize.param_group("enc.1.blocks.0.cross.kv.weight") == "spatial"


def test_stylize_never_changes_temporal_parameters(base, styles):
    before, outline, _ = styles
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())     # the base is untouched
    stored = load_file(str(outline / "style.safetensors"))
    assert set(stored) == {k for k in before if stylize.param_group(k) == "spatial"}
    styled = stylize.apply_style(base, outline, 1.0).state_dict()
    for k, v in before.items():
        if stylize.param_group(k) in ("temporal", "text"):
            assert torch.equal(styled[k], v), k
    assert sum(not torch.equal(styled[k], before[k]) for k in stored) > len(stored) // 2
    info = json.loads((outline / "style.json").read_text())
    assert info["groups"] == ["spatial"] and info["style"] == "outline" and info["step"] == 3
    assert info["config_hash"] == stylize.config_hash(base.config) and info["base_hash"] == stylize.weights_hash(base)
    checks = [r for r in log_lines(outline) if "checked_unchanged" in r]
    assert checks and all(set(r["checked_unchanged"]) == {"temporal", "text"} for r in checks)
    params = next(r for r in log_lines(outline) if r.get("event") == "parameters")
    assert params["network"] == "image_unet" and set(params["trained"]) == {"spatial"}
    assert set(params["frozen"]) == {"text"} and params["temporal_not_in_network"] > 0


def test_the_negative_control_trains_the_temporal_layers_too(base, styles):
    before, _, control = styles
    stored = load_file(str(control / "style.safetensors"))
    assert {stylize.param_group(k) for k in stored} == {"spatial", "temporal"}
    styled = stylize.apply_style(base, control, 1.0).state_dict()
    temporal = [k for k in before if stylize.param_group(k) == "temporal"]
    assert any(not torch.equal(styled[k], before[k]) for k in temporal)
    assert all(torch.equal(styled[k], before[k]) for k in before if stylize.param_group(k) == "text")
    assert json.loads((control / "style.json").read_text())["groups"] == ["spatial", "temporal"]


def test_clips_data_trains_only_spatial_tensors_inside_the_frozen_video_model(base, tok, tmp_path):
    """``--data clips``: the whole STUNet on moving styled clips, temporal and text tensors frozen in it and
    bit-identical after training; the file holds spatial tensors only, as a frames style."""
    before = {k: v.clone() for k, v in base.state_dict().items()}
    out = tmp_path / "clips"
    run_stylize(base, tok, out, data="clips", batch=2, iters=3)
    stored = load_file(str(out / "style.safetensors"))
    assert set(stored) == {k for k in before if stylize.param_group(k) == "spatial"}
    styled = stylize.apply_style(base, out, 1.0).state_dict()
    assert all(torch.equal(styled[k], v) for k, v in before.items() if stylize.param_group(k) != "spatial")
    assert sum(not torch.equal(styled[k], before[k]) for k in stored) > len(stored) // 2
    lines = log_lines(out)
    params = next(r for r in lines if r.get("event") == "parameters")
    assert params["network"] == "stunet" and set(params["trained"]) == {"spatial"}
    assert set(params["frozen"]) == {"temporal", "text"} and params["temporal_not_in_network"] == 0
    checks = [r for r in lines if "checked_unchanged" in r]
    assert checks and all(set(r["checked_unchanged"]) == {"temporal", "text"} for r in checks)
    info = json.loads((out / "style.json").read_text())
    assert info["groups"] == ["spatial"] and info["run"]["data"] == "clips"
    b = stylize.style_batch(np.random.default_rng(0), tok, base.config, 2, "outline", data="clips")
    assert b.x0.shape[2] == base.config.frames // int(b.stride[0]) and b.x0.shape[2] > 1
    assert not torch.equal(b.x0[:, :, 0], b.x0[:, :, -1])                          # the clips move
    with pytest.raises(ValueError, match="another run"):                            # frames cannot resume clips
        run_stylize(base, tok, out, iters=4, resume=True)
    with pytest.raises(ValueError, match="data must be one of"):
        stylize.StylizeConfig(data="pixels")


def test_strength_zero_is_the_original_bit_for_bit_and_between_is_the_mix(base, styles):
    before, outline, _ = styles
    zero = stylize.apply_style(base, outline, 0.0)
    assert zero is not base
    for k, v in zero.state_dict().items():
        assert torch.equal(v.view(torch.int32), before[k].view(torch.int32)), k
    style = stylize.load_style(outline)
    half = stylize.apply_style(base, style, 0.5).state_dict()
    k = next(iter(style.tensors))
    assert torch.allclose(half[k], 0.5 * before[k] + 0.5 * style.tensors[k], atol=1e-7)
    one = stylize.apply_style(base, style, 1).state_dict()
    assert all(torch.equal(one[k], v) for k, v in style.tensors.items())
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(stylize.StyleError, match="strength"):
            stylize.apply_style(base, style, bad)


def test_loading_refuses_a_style_of_another_architecture(tok, styles, tmp_path):
    _, outline, _ = styles
    other = make_tiny(text_layers=2)
    with pytest.raises(stylize.StyleError, match="another architecture.*text_layers"):
        stylize.apply_style(other, outline, 1.0)
    with pytest.raises(stylize.StyleError, match="other weights"):
        stylize.apply_style(make_tiny(seed=3), outline, 1.0)
    assert stylize.apply_style(make_tiny(seed=3), outline, 1.0, same_base=False) is not None
    # a tampered file: a temporal tensor in a spatial-only style
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("style.json", "config.json"):
        (bad / name).write_text((outline / name).read_text())
    t = load_file(str(outline / "style.safetensors"))
    t["up.0.temporal.conv.weight"] = torch.zeros(16, 16, 3)
    save_file(t, str(bad / "style.safetensors"))
    with pytest.raises(stylize.StyleError, match="unexpected"):
        stylize.load_style(bad)
    with pytest.raises(stylize.StyleError, match="not a style directory"):
        stylize.load_style(tmp_path)


def test_a_short_tiny_run_lowers_its_loss(tok, tmp_path):
    base = make_tiny(seed=5)
    run_stylize(base, tok, tmp_path / "s", iters=12, batch=8, lr=2e-3, warmup=2, ckpt_every=12, val_batches=2)
    val = [r["val_loss"] for r in log_lines(tmp_path / "s") if "val_loss" in r]
    assert len(val) == 2 and val[-1] < 0.8 * val[0], val


def test_resume_continues_and_a_used_folder_is_refused(base, tok, tmp_path):
    out = tmp_path / "r"
    run_stylize(base, tok, out, iters=2)
    with pytest.raises(ValueError, match="already holds a style"):
        run_stylize(base, tok, out, iters=4)
    run_stylize(base, tok, out, iters=4, resume=True)
    lines = log_lines(out)
    assert any(r.get("event") == "resumed" and r["step"] == 2 for r in lines)
    assert json.loads((out / "style.json").read_text())["step"] == 4
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="another run"):
        run_stylize(base, tok, out, iters=6, resume=True, style="stripes")


def test_stylize_and_generate_commands(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "stripes"
    assert cli(["stylize", "--style", "stripes", "--out", str(out), "--model", str(tiny_checkpoint), "--iters", "2",
                "--batch", "2", "--lr", "0.01", "--warmup", "1", "--val-batches", "1", "--precision", "fp32",
                "--quiet"]) == 0
    assert (out / "style.safetensors").is_file() and (out / "train_state" / "state.json").is_file()
    assert cli(["stylize", "--style", "stripes", "--out", str(out), "--model", str(tiny_checkpoint)]) == 1
    assert "already holds a style" in capsys.readouterr().err
    base = ["generate", "a red square spinning", "--model", str(tiny_checkpoint), "--steps", "2", "--precision", "fp32"]
    plain, zero, full = (tmp_path / f"{n}.npy" for n in ("plain", "zero", "full"))
    assert cli(base + ["--out", str(plain)]) == 0
    assert cli(base + ["--out", str(zero), "--style", str(out), "--style-strength", "0"]) == 0
    assert cli(base + ["--out", str(full), "--style", str(out)]) == 0
    assert np.array_equal(np.load(plain), np.load(zero)) and not np.array_equal(np.load(plain), np.load(full))
    capsys.readouterr()
    assert cli(base + ["--out", str(tmp_path / "x.npy"), "--style-strength", "0.5"]) == 1
    assert "--style-strength needs --style" in capsys.readouterr().err
    other = tmp_path / "other"
    model, tok = load_pretrained(tiny_checkpoint)
    save_pretrained(make_tiny(text_layers=2), tok, other)
    assert cli(["generate", "a red square spinning", "--model", str(other), "--steps", "2", "--out",
                str(tmp_path / "y.npy"), "--style", str(out)]) == 1
    assert "another architecture" in capsys.readouterr().err and not (tmp_path / "y.npy").exists()


def test_measure_style_script_writes_the_table_and_resumes(tiny_checkpoint, styles, tmp_path, capsys):
    _, outline, _ = styles
    m = load_script("measure_style")
    style_dir = tmp_path / "outline"
    # the fixture's style was made from the conftest base; the checkpoint holds that same model
    style_dir.mkdir()
    for name in ("style.json", "config.json", "style.safetensors"):
        (style_dir / name).write_bytes((outline / name).read_bytes())
    out = tmp_path / "measure"
    argv = ["--model", str(tiny_checkpoint), "--styles", str(style_dir), "--out", str(out), "--limit", "2",
            "--seeds", "1", "--strengths", "0,0.5,1", "--steps", "2", "--batch", "2", "--precision", "fp32",
            "--quiet", "--world-seeds", "1"]
    assert m.main(argv) == 0
    table = (out / "style.md").read_text()
    assert "| outline | 0.5 |" in table and "| outline | 1 |" in table and "| outline | world |" in table
    result = json.loads((out / "style.json").read_text())
    row = next(r for r in result["rows"] if r["style"] == "outline" and r["strength"] == 1.0)
    assert row["clips"] == 2 and 0.0 <= row["style_frames"] <= 100.0 and "motion" in row["paired"]
    lines = (out / "clips.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3                                  # settings, then (0, 0.5, 1) x 2 clips
    assert m.main(argv) == 0                                         # a rerun resumes: nothing new generated
    assert (out / "clips.jsonl").read_text().splitlines() == lines
