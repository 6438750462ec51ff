"""Checkpoints: round trip, strict loading, clear errors before allocating, no pickle."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from stunet.checkpoint import CheckpointError, load_pretrained
from stunet.pipeline import Pipeline, Settings


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_round_trip_gives_the_same_clip(tiny_checkpoint, tiny_model, tiny_tokenizer):
    model, tok = load_pretrained(tiny_checkpoint)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    s = Settings("a red circle moving left", seed=5, steps=3, frames=8)
    a = Pipeline(model, tok)(s).video
    b = Pipeline(tiny_model, tiny_tokenizer)(s).video
    assert np.array_equal(a, b)


def test_missing_and_extra_tensors_fail(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "c")
    sd = load_file(d / "model.safetensors")
    sd.pop(sorted(sd)[3])
    save_file(sd, d / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained(d)
    sd = load_file(tiny_checkpoint / "model.safetensors")
    sd["evil.weight"] = torch.zeros(2)
    save_file(sd, d / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_pretrained(d)


def test_wrong_shape_fails_naming_the_tensor(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "c")
    sd = load_file(d / "model.safetensors")
    sd["conv_in.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(sd, d / "model.safetensors")
    with pytest.raises(CheckpointError, match="conv_in.weight"):
        load_pretrained(d)


@pytest.mark.parametrize("patch,msg", [({"channels": [1024, 1024, 1024, 1024, 1024, 1024],
                                        "temporal_down": [True] * 5, "temporal_conv": [True] * 6,
                                        "temporal_attention": [0] * 6, "spatial_attention": [False] * 6,
                                        "cross_attention": [False] * 6, "frames": 32, "height": 64, "width": 64},
                                       "parameters"),
                                      ({"channels": [10**9, 10**9]}, "invalid"),
                                      ({"frames": -1}, "invalid"),
                                      ({"height": "big"}, "invalid"),
                                      ({"__class__": "os.system"}, "unknown keys")])
def test_absurd_configs_fail_before_allocating(tiny_checkpoint, tmp_path, patch, msg):
    d = _copy(tiny_checkpoint, tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(patch)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=msg):
        load_pretrained(d)


def test_not_json_and_missing_files(tiny_checkpoint, tmp_path):
    d = _copy(tiny_checkpoint, tmp_path / "c")
    (d / "config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="config.json"):
        load_pretrained(d)
    d2 = _copy(tiny_checkpoint, tmp_path / "d")
    (d2 / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_pretrained(d2)
    d3 = _copy(tiny_checkpoint, tmp_path / "e")
    (d3 / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file, maybe a pickle")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pretrained(d3)
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "nope")


def test_save_writes_only_safe_formats(tiny_checkpoint):
    names = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert names == ["config.json", "model.safetensors", "vocab.json"]
