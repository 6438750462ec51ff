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


# ---------------------------------------------------------------- checkpoint averaging
def _second_checkpoint(tmp_path, tiny_tokenizer, name="b", **overrides):
    from conftest import make_tiny
    from stunet.checkpoint import save_pretrained
    return save_pretrained(make_tiny(seed=7, **overrides), tiny_tokenizer, tmp_path / name, extra={"step": 200})


def test_average_is_the_weighted_mean_and_loads_strictly(tiny_checkpoint, tiny_tokenizer, tmp_path):
    from stunet.checkpoint import average_checkpoints, save_pretrained
    b = _second_checkpoint(tmp_path, tiny_tokenizer)
    sa, sb = load_file(str(tiny_checkpoint / "model.safetensors")), load_file(str(b / "model.safetensors"))
    model, tok, meta = average_checkpoints([tiny_checkpoint, b], [1, 3])
    avg = model.state_dict()
    differ = 0
    for k, v in avg.items():
        torch.testing.assert_close(v, 0.25 * sa[k] + 0.75 * sb[k], rtol=1e-6, atol=1e-7)
        differ += not torch.equal(sa[k], sb[k])
    assert differ > 10                      # the two sources really differ
    sources = json.loads(meta["averaged_from"])
    assert [s["weight"] for s in sources] == [1.0, 3.0] and sources[1]["step"] == "200"
    assert meta["step"] == "200"
    out = save_pretrained(model, tok, tmp_path / "avg", extra=meta)
    reloaded, _ = load_pretrained(out)
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, avg[k])


def test_average_of_one_checkpoint_with_itself_is_that_checkpoint(tiny_checkpoint):
    from stunet.checkpoint import average_checkpoints
    model, _, _ = average_checkpoints([tiny_checkpoint, tiny_checkpoint], [0.3, 0.7])
    src = load_file(str(tiny_checkpoint / "model.safetensors"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, src[k], rtol=1e-6, atol=1e-7)


def test_average_refuses_other_models_and_bad_weights(tiny_checkpoint, tiny_tokenizer, tmp_path):
    from stunet.checkpoint import average_checkpoints
    other = _second_checkpoint(tmp_path, tiny_tokenizer, name="other", text_dim=48)
    with pytest.raises(CheckpointError, match="config differs"):
        average_checkpoints([tiny_checkpoint, other])
    for w, msg in (([1.0], "1 weights for 2"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "not all zero"),
                   ([float("nan"), 1.0], "finite")):
        with pytest.raises(CheckpointError, match=msg):
            average_checkpoints([tiny_checkpoint, tiny_checkpoint], w)
    with pytest.raises(CheckpointError, match="at least one"):
        average_checkpoints([])


def test_average_cli_writes_a_new_checkpoint_and_never_overwrites_by_accident(tiny_checkpoint, tiny_tokenizer,
                                                                            tmp_path, capsys):
    from stunet.cli import main
    b = _second_checkpoint(tmp_path, tiny_tokenizer)
    out = tmp_path / "avg"
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    first = (out / "model.safetensors").read_bytes()
    load_pretrained(out)
    # an existing checkpoint, or one of the sources, is never replaced without --overwrite
    before = (b / "model.safetensors").read_bytes()
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(b), "--overwrite"]) == 2
    assert "new directory" in capsys.readouterr().err
    assert (b / "model.safetensors").read_bytes() == before
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(out), "--weights", "1,0"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == first
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(out), "--weights", "1,x"]) == 2
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(out), "--weights", "1", "--overwrite"]) == 1
    assert "1 weights for 2" in capsys.readouterr().err
    assert main(["average", str(tiny_checkpoint), str(b), "--out", str(out), "--weights", "1,0", "--overwrite"]) == 0
    src = load_file(str(tiny_checkpoint / "model.safetensors"))
    for k, v in load_file(str(out / "model.safetensors")).items():
        torch.testing.assert_close(v, src[k], rtol=1e-6, atol=1e-7)


def test_loading_builds_shapes_without_torch_dynamo_and_restores_init(tiny_checkpoint):
    """Shape checks build the model on the meta device; that must neither pull in torch._dynamo
    (seconds on every first load) nor leave ``torch.nn.init.normal_`` patched."""
    import subprocess
    import sys
    code = ("import sys, torch; from stunet.checkpoint import load_pretrained; "
            f"load_pretrained({str(tiny_checkpoint)!r}); "
            "print('dynamo' if 'torch._dynamo' in sys.modules else 'clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "clean"
    import torch

    from stunet.checkpoint import estimate_parameters, load_pretrained
    before = torch.nn.init.normal_
    model, _ = load_pretrained(tiny_checkpoint)
    assert torch.nn.init.normal_ is before
    assert estimate_parameters(model.config) == sum(p.numel() for p in model.parameters())
    e = torch.nn.Embedding(4, 3)
    assert e.weight.std() > 0                                           # init still runs outside the build
