"""SSR checkpoints in the Hugging Face layout: ``config.json`` + ``model.safetensors``, loaded strictly."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..checkpoint import CheckpointError, read_checked_tensors
from .config import SSRConfig
from .model import SSRNet

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
DEFAULT_SSR = Path(__file__).resolve().parents[2] / "assets" / "stunet-ssr"


def default_ssr_dir() -> Path:
    """The SSR model used when none is named: $STUNET_SSR, else ``assets/stunet-ssr``."""
    return Path(os.environ.get("STUNET_SSR", DEFAULT_SSR))


def save_ssr(model: SSRNet, directory: str | Path, state_dict: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (``state_dict``, default the model's own) atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    tmp = d / (WEIGHTS_NAME + ".tmp")
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}, str(tmp))
    os.replace(tmp, d / WEIGHTS_NAME)
    (d / CONFIG_NAME).write_text(model.config.to_json() + "\n")
    return d


def is_ssr(directory: str | Path) -> bool:
    p = Path(directory) / CONFIG_NAME
    try:
        return p.is_file() and json.loads(p.read_text()).get("model_type") == "ssr"
    except (OSError, ValueError):
        return False


def load_ssr(directory: str | Path | None = None) -> SSRNet:
    """The SSR model of ``directory`` (default ``default_ssr_dir()``) in eval mode; names, shapes and
    finiteness checked before use, never unpickled. Raises ``CheckpointError`` (a ValueError) naming what is
    wrong."""
    d = Path(directory) if directory is not None else default_ssr_dir()
    if directory is None and not d.exists():
        raise CheckpointError(f"no SSR model at {d}: train one (stunet train-ssr --out DIR) and pass --ssr DIR, "
                              f"or set STUNET_SSR")
    if not is_ssr(d):
        raise CheckpointError(f"{d} is not an SSR model directory (config.json with model_type 'ssr')")
    try:
        cfg = SSRConfig.from_dict(json.loads((d / CONFIG_NAME).read_text()))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{d / CONFIG_NAME}: {e}") from None
    model = SSRNet(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tensors = read_checked_tensors(d / WEIGHTS_NAME, expected, label=f"{d.name}/{WEIGHTS_NAME}")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{d.name}/{WEIGHTS_NAME}: non-finite values in {bad[:3]}")
    model.load_state_dict(tensors, strict=True)
    return model.eval()
