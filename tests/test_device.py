"""The studio on a GPU: ``$STUNET_DEVICE`` (``stunet.device``), bf16 only where the GPU has it natively, recordings
kept on the CPU; and, where CUDA exists, every network-running handler (Generate with both models, the Inspect
views, the edits, Compare) on CUDA. The CUDA tests are skipped without a GPU."""
from __future__ import annotations

import pytest
import torch

from stunet.device import DEVICE_ENV, DeviceError, resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("value", ["gpu", "cuda:0", "tpu", "1"])
def test_unknown_device_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(DEVICE_ENV, value)
    with pytest.raises(DeviceError, match=f"{DEVICE_ENV} must be one of auto, cpu, cuda"):
        resolve_device()


def test_auto_and_cpu(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu") and resolve_device("") == resolve_device("auto")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=f"{DEVICE_ENV}=cuda, but .*{DEVICE_ENV}=cpu"):
        resolve_device("cuda")


def test_the_studio_refuses_a_bad_device_before_serving(monkeypatch):
    from demo.app import build_demo
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(DeviceError, match=DEVICE_ENV):
        build_demo()


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_cuda_precision_is_bf16_only_where_native(monkeypatch, native, expected):
    """auto on CUDA: bf16 on compute capability 8.0+; emulated bf16 (a T4) is fp32, as slow bf16 is no gain."""
    from stunet import precision
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    precision.clear_cache()
    try:
        assert precision.resolve("auto", "cuda").name == expected
    finally:
        precision.clear_cache()


def test_recordings_are_kept_on_the_cpu(tiny_model, tiny_tokenizer):
    from stunet.inspection import Inspector
    from stunet.pipeline import Pipeline, Settings
    pipe = Pipeline(tiny_model, tiny_tokenizer, "bf16")
    with Inspector(pipe.model) as rec:
        pipe(Settings("a red circle moving left", steps=2, frames=8), inspector=rec)
    r = rec.recording
    tensors = [t for d in (r.features, r.temporal_attention, r.cross_attention, r.x0) for t in d.values()]
    assert tensors and all(t.device.type == "cpu" and t.dtype == torch.float16 for t in tensors)


# ---------------------------------------------------------------------------- on a GPU
@needs_cuda
def test_models_load_on_cuda_where_there_is_a_gpu(tiny_checkpoint, monkeypatch):
    from demo import models
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(models, "_PIPELINES", {})                  # not one loaded on the CPU by another test
    pipe = models.load(tiny_checkpoint)
    assert pipe.device.type == "cuda" and next(pipe.model.parameters()).is_cuda
    expected = "bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp32"
    assert pipe.precision.name == expected or "chosen explicitly" in pipe.precision.reason


@needs_cuda
def test_every_network_handler_runs_on_cuda(tiny_model, tiny_tokenizer, tmp_path_factory):
    """Generate (the full and a fast model), the Inspect views of its recording, video-to-video and a cinemagraph
    of the last clip, and Compare, with the models on CUDA: outputs made, recordings on the CPU."""
    import copy

    import numpy as np

    from demo import models
    from demo.app import build_demo
    from stunet.cascade import load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    from stunet.defaults import SamplingDefaults
    from stunet.pipeline import Pipeline
    full = Pipeline(copy.deepcopy(tiny_model).cuda(), tiny_tokenizer, None, SamplingDefaults(steps=2, sampler="ddim"))
    fast = Pipeline(copy.deepcopy(tiny_model).cuda(), tiny_tokenizer, None, SamplingDefaults(steps=2, sampler="ddim"))
    choices = [models.ModelChoice(models.FULL, None, full.defaults),
               models.ModelChoice(models.FAST, None, fast.defaults)]
    cascade = load_pipeline(save_tiny_cascade(tmp_path_factory.mktemp("cuda-cascade"), steps=2), device="cuda")
    d = build_demo(full, warm=False, janitor=False, choices=choices, loaders={models.FAST: lambda: fast},
                   cascade=cascade)
    try:
        fns = {f.api_name: f.fn for f in d.fns.values() if f.api_name}
        for model in (models.FULL, models.FAST):
            out = list(fns["generate"]("a red circle moving right", 0, 2, 3.0, 8, "ddim", 1, 8, None, model))[-1]
            rec = out[-1]
            assert rec.video.shape[0] == 8 and rec.model == model
        r = rec.recording
        assert all(t.device.type == "cpu" for d_ in (r.features, r.temporal_attention, r.x0) for t in d_.values())
        d.studio.render_all(rec)
        fns["features"](rec, 1)
        fns["word_attention"](rec, 1, "all", False)
        fns["xt_slice"](rec, 4, 1)
        fns["export_npz"](rec)
        edited = list(fns["video_to_video"](rec, "last", None, "a blue circle moving left", 0, 2, 3.0, 0.6, 8))[-1]
        assert edited[-1].edit["mode"] == "video_to_video"
        from stunet import editing
        region = np.zeros(rec.video.shape[1:3], bool)
        region[:, : region.shape[1] // 2] = True
        e = editing.cinemagraph(full, rec.video[0], region, "a red circle moving right", steps=2)
        assert (e.video[:, ~region] == rec.video[0][~region]).all()
        video, xt, *_ = fns["compare"]("a blue square quickly spinning", 0)
        assert video and xt
    finally:
        d.close()
