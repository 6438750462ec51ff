"""Precision chosen by measurement (faked probes), or by the user; threaded through the pipeline."""
import pytest
import torch

from stunet import precision as P


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv(P.PRECISION_ENV, raising=False)
    P.clear_cache()
    yield
    P.clear_cache()


def fake_probe(monkeypatch, fp32_s, bf16_s):
    calls = []

    def probe(reps=3):
        calls.append(1)
        return P.Probe(fp32_s, bf16_s)
    monkeypatch.setattr(P, "probe_cpu", probe)
    return calls


def test_auto_picks_fp32_where_the_probe_says_bf16_is_slower(monkeypatch):
    fake_probe(monkeypatch, 0.010, 0.700)               # emulated bf16: 70x slower
    p = P.resolve("auto")
    assert p.name == "fp32" and p.dtype == torch.float32
    assert "not faster" in p.reason and "10.0 ms" in p.reason and "700.0 ms" in p.reason


def test_auto_picks_bf16_where_it_is_clearly_faster(monkeypatch):
    fake_probe(monkeypatch, 0.010, 0.005)
    p = P.resolve("auto")
    assert p.name == "bf16" and p.dtype == torch.bfloat16 and "0.50x" in p.reason


def test_auto_keeps_fp32_when_bf16_is_only_marginally_faster(monkeypatch):
    fake_probe(monkeypatch, 0.010, 0.0095)              # within the noise margin
    assert P.resolve("auto").name == "fp32"


def test_probe_runs_once_per_process_and_explicit_choice_skips_it(monkeypatch):
    calls = fake_probe(monkeypatch, 0.010, 0.005)
    assert P.resolve("fp32").name == "fp32" and P.resolve("bf16").name == "bf16"
    assert calls == []
    for _ in range(3):
        P.resolve("auto")
    assert calls == [1]


def test_environment_variable_and_bad_values(monkeypatch):
    calls = fake_probe(monkeypatch, 0.010, 0.005)
    monkeypatch.setenv(P.PRECISION_ENV, "fp32")
    assert P.resolve().name == "fp32" and P.resolve().reason == "chosen explicitly" and calls == []
    monkeypatch.setenv(P.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve()
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve("half")


def test_real_probe_is_short_and_returns_times():
    p = P.probe_cpu(reps=1)
    assert p.fp32_s > 0 and p.bf16_s > 0 and p.ratio > 0


def test_autocast_contexts():
    x = torch.randn(4, 4)
    with P.Precision("bf16", "test").autocast("cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with P.Precision("fp32", "test").autocast("cpu"):
        assert (x @ x).dtype == torch.float32


def test_pipeline_takes_and_reports_its_precision(monkeypatch, tiny_checkpoint):
    from stunet.pipeline import Pipeline, Settings
    fake_probe(monkeypatch, 0.010, 0.700)
    pipe = Pipeline.from_pretrained(tiny_checkpoint)                     # auto -> the faked probe -> fp32
    assert pipe.precision.name == "fp32"
    gen = pipe(Settings("a red circle moving left", steps=2, frames=8))
    rec = gen.record()
    assert rec["precision"] == "fp32" and "not faster" in rec["precision_reason"] and rec["steps"] == 2
    bf = Pipeline.from_pretrained(tiny_checkpoint, precision="bf16")
    again = bf(Settings("a red circle moving left", steps=2, frames=8))
    assert bf.precision.name == "bf16" and again.record()["precision"] == "bf16"
    assert (again.video != gen.video).any()                              # a different computation ran
    assert (bf(Settings("a red circle moving left", steps=2, frames=8)).video == again.video).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampling_runs_on_cuda(tiny_model, tiny_tokenizer):
    import copy

    from stunet.pipeline import Pipeline
    pipe = Pipeline(copy.deepcopy(tiny_model).cuda(), tiny_tokenizer, "fp32")
    v = pipe.sample_batch(["a red circle moving left"], generator=torch.Generator().manual_seed(0), steps=2)
    assert v.shape == (1, 8, 16, 16, 3)
