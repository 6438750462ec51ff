"""Shared fixtures: tiny, seeded models and checkpoints (unit tests never need the shipped model),
a free port, the studio launched on a checkpoint, a model that records its calls.

Tiers (markers registered in pyproject.toml): unmarked tests are the unit tier, run by default
(library and in-process handlers); ``integration`` (a launched server, or a subprocess of the app or
the command line), ``browser`` (a real Chromium) and ``slow`` (load, fuzz, memory) run on request:
``python -m pytest -m "integration or browser or slow"``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
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


def make_ssr(seed=0, perturb=0.05, temporal=True, **overrides):
    """A tiny SSRNet with perturbed weights; ``temporal=False`` leaves the temporal convs' output at zero, so
    no frame's prediction depends on another frame."""
    from stunet.ssr import SSRNet, ssr_preset
    torch.manual_seed(seed)
    net = SSRNet(ssr_preset("tiny", **overrides))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for k, p in net.named_parameters():
            if temporal or ".temporal." not in f".{k}" or "conv2" not in k:
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    return net.eval()


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def model_env(model_dir):
    """``STUNET_MODEL`` set to ``model_dir`` inside the block, restored (or removed) after it."""
    old = os.environ.get("STUNET_MODEL")
    os.environ["STUNET_MODEL"] = str(model_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("STUNET_MODEL", None)
        else:
            os.environ["STUNET_MODEL"] = old


@contextlib.contextmanager
def launched_app(model_dir, **build_kw):
    """(demo, url): the studio on ``model_dir`` (also ``STUNET_MODEL``, so the app's launch options
    block that folder), launched on a free local port with those options; closed afterwards."""
    from demo.app import build_demo, launch_options
    from stunet.pipeline import Pipeline
    with model_env(model_dir):
        d = build_demo(Pipeline.from_pretrained(model_dir), warm=False, **build_kw)
        _, url, _ = d.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                             quiet=True, **launch_options())
        try:
            yield d, url
        finally:
            d.close()
