"""Shared fixtures: tiny, seeded models and checkpoints (unit tests never need the shipped model)."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_tiny(seed: int = 0, perturb: float = 0.05, **overrides):
    """A tiny STUNet whose zero-initialised weights are perturbed (so identities are not trivial)."""
    from stunet.config import preset
    from stunet.model import STUNet
    torch.manual_seed(seed)
    model = STUNet(preset("tiny", **overrides))
    if perturb:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from stunet.config import preset
    from stunet.shapes.data import tokenizer_for
    return tokenizer_for(preset("tiny"))


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model, tiny_tokenizer):
    """A checkpoint directory (config.json + model.safetensors + vocab.json) of the tiny model."""
    from stunet.checkpoint import save_pretrained
    d = tmp_path_factory.mktemp("tiny-ckpt")
    save_pretrained(tiny_model, tiny_tokenizer, d)
    return d


@contextlib.contextmanager
def slow_model(model, delay: float):
    """Every model call sleeps ``delay`` s first and records when it started (one call per denoising step)."""
    calls: list[float] = []

    def pre(module, args):
        calls.append(time.monotonic())
        time.sleep(delay)

    h = model.register_forward_pre_hook(pre)
    try:
        yield calls
    finally:
        h.remove()


def load_script(name: str):
    """scripts/NAME.py imported as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stunet_script_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
