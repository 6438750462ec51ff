"""Checkpoints in the Hugging Face layout: ``config.json`` + ``model.safetensors`` + ``vocab.json``.

Loading never unpickles (safetensors only), checks the config before any tensor is
allocated, and is strict: a missing, unexpected or mis-shaped tensor is an error
that names it.
"""
from __future__ import annotations

import contextlib

import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import STUNetConfig
from .defaults import SamplingDefaults
from .model import STUNet
from .text import Tokenizer

CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME = "config.json", "model.safetensors", "vocab.json"
SAMPLING_NAME = "sampling.json"     # optional: the checkpoint's own sampling defaults (a distilled model's)
MAX_PARAMETERS = 200_000_000  # refuse configs that would allocate more than this
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "stunet-shapes"


class CheckpointError(ValueError):
    pass


def default_model_dir() -> Path:
    return Path(os.environ.get("STUNET_MODEL", DEFAULT_MODEL))


def save_pretrained(model: STUNet, tokenizer: Tokenizer, directory: str | Path,
                    state_dict: dict[str, torch.Tensor] | None = None, extra: dict | None = None,
                    sampling: SamplingDefaults | None = None) -> Path:
    """Write config.json, model.safetensors (``state_dict`` or the model's own), vocab.json and, when
    given, sampling.json (the checkpoint's own sampling defaults)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    sd = {k: v.detach().to(device="cpu", dtype=torch.float32).contiguous().clone() for k, v in sd.items()}
    tmp = d / (WEIGHTS_NAME + ".tmp")
    save_file(sd, str(tmp), metadata={k: str(v) for k, v in (extra or {}).items()})
    os.replace(tmp, d / WEIGHTS_NAME)
    (d / CONFIG_NAME).write_text(model.config.to_json())
    tokenizer.save(d / VOCAB_NAME)
    if sampling is not None:
        (d / SAMPLING_NAME).write_text(json.dumps(sampling.to_dict(), indent=2) + "\n")
    return d


def read_sampling(directory: str | Path | None = None) -> SamplingDefaults:
    """The checkpoint's sampling defaults (``sampling.json``), or the library's when it has none."""
    path = (Path(directory) if directory is not None else default_model_dir()) / SAMPLING_NAME
    if not path.is_file():
        return SamplingDefaults()
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        return SamplingDefaults.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"bad {SAMPLING_NAME}: {e}") from None


def read_config(directory: str | Path) -> STUNetConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {Path(directory).name!r}")
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and raw.get("model_type") == "cascade":
            raise CheckpointError(f"{Path(directory).name!r} is a cascade checkpoint (keyframes + temporal "
                                  f"super-resolution): load it with stunet.cascade.load_pipeline")
        return STUNetConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"bad {CONFIG_NAME}: {e}") from None


@contextlib.contextmanager
def _meta_build():
    """Build modules on the meta device (shapes only, nothing allocated), skipping ``normal_`` init.

    On meta tensors ``torch.nn.init.normal_`` (the text embedding's init) runs a Python reference
    that imports ``torch._dynamo``: seconds on a first load, for values a meta tensor does not have.
    (Patched for the duration of the build only; models are built this way only to read shapes.)
    """
    saved = torch.nn.init.normal_
    torch.nn.init.normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        with torch.device("meta"):
            yield
    finally:
        torch.nn.init.normal_ = saved


def estimate_parameters(config: STUNetConfig) -> int:
    """Parameter count without allocating (built on the meta device)."""
    with _meta_build():
        return sum(p.numel() for p in STUNet(config).parameters())


def read_checked_tensors(path: Path, expected: dict[str, tuple[int, ...]], error: type[Exception] = CheckpointError,
                         label: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file that must hold exactly ``expected`` ({name: shape}): names and shapes
    are checked before any tensor is read; anything wrong (or a corrupt file) raises ``error`` naming ``label``
    (default: the file's name)."""
    label = label or Path(path).name
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
            if missing or unexpected:
                raise error(f"{label} does not match config: missing {missing[:5]}"
                            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                            f"{' ...' if len(unexpected) > 5 else ''}")
            for k in sorted(keys):
                shape = tuple(f.get_slice(k).get_shape())
                if shape != expected[k]:
                    raise error(f"{label}: tensor {k}: shape {shape} in file, {expected[k]} in config")
            return {k: f.get_tensor(k) for k in sorted(keys)}
    except error:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise error(f"cannot read {label}: {type(e).__name__}: {e}") from None


def load_pretrained(directory: str | Path | None = None) -> tuple[STUNet, Tokenizer]:
    """Strictly load a checkpoint directory; returns (model in eval mode, tokenizer)."""
    d = Path(directory) if directory is not None else default_model_dir()
    if not d.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {d}")
    config = read_config(d)
    n = estimate_parameters(config)
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"config asks for {n:,} parameters (limit {MAX_PARAMETERS:,})")
    try:
        tokenizer = Tokenizer.load(d / VOCAB_NAME)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"bad {VOCAB_NAME}: {e}") from None
    if len(tokenizer) > config.vocab_size or tokenizer.max_words != config.max_words:
        raise CheckpointError(f"{VOCAB_NAME} ({len(tokenizer)} tokens, max_words {tokenizer.max_words}) does "
                              f"not fit the config (vocab_size {config.vocab_size}, max_words {config.max_words})")
    weights = d / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_NAME} in {d.name!r}")
    with _meta_build():
        expected = {k: tuple(v.shape) for k, v in STUNet(config).state_dict().items()}
    sd = read_checked_tensors(weights, expected, CheckpointError, WEIGHTS_NAME)
    model = STUNet(config)
    model.load_state_dict(sd, strict=True)
    model.eval().requires_grad_(False)
    return model, tokenizer


def ema_checkpoint_dir(run_dir: str | Path, stage: str) -> Path:
    """Where a training run keeps its loadable EMA checkpoint: the run folder (video stage) or its ``image_unet/``."""
    return Path(run_dir) / ("image_unet" if stage == "image" else "")


def load_resume_ema(run_dir: str | Path, stage: str, step: int) -> dict[str, torch.Tensor]:
    """The EMA weights to resume a run from, at ``stage`` / ``step`` (those of ``train_state/state.json``).

    Old runs have ``train_state/ema.safetensors``, read when present. Newer runs do not write it:
    the run's own checkpoint (``model.safetensors``, see ``ema_checkpoint_dir``) holds the same
    tensors, and its metadata must name the same stage and step, so a checkpoint from another
    point of the run is refused rather than resumed from.
    """
    run_dir = Path(run_dir)
    legacy = run_dir / "train_state" / "ema.safetensors"
    if legacy.is_file():
        from safetensors.torch import load_file
        return load_file(str(legacy))
    weights = ema_checkpoint_dir(run_dir, stage) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"cannot resume: no {legacy.relative_to(run_dir)} and no "
                              f"{weights.relative_to(run_dir)} (the EMA weights) in {run_dir}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {weights}: {type(e).__name__}: {e}") from None
    if meta.get("stage") != stage or meta.get("step") != str(step):
        raise CheckpointError(f"cannot resume: {weights.relative_to(run_dir)} holds {meta.get('stage')} step "
                              f"{meta.get('step')}, train_state is at {stage} step {step}")
    return sd


def average_checkpoints(directories, weights=None) -> tuple[STUNet, Tokenizer, dict[str, str]]:
    """Weight-space average of checkpoints of one model: ``sum_i w_i theta_i / sum_i w_i``.

    Checkpoint averaging along one training run (stochastic weight averaging, Izmailov et al.
    2018; a coarse form of the post-hoc EMA of Karras et al. 2024, EDM2, sec. 3) trades the
    gradient noise of one snapshot against the staleness of older ones. Every checkpoint must
    have the same config and vocabulary (one architecture, one run); each is loaded strictly. Returns
    (model, tokenizer, metadata for ``save_pretrained(extra=...)``: the sources, their steps
    and the weights).
    """
    dirs = [Path(d) for d in directories]
    if not dirs:
        raise CheckpointError("nothing to average: give at least one checkpoint directory")
    w = [1.0] * len(dirs) if weights is None else [float(x) for x in weights]
    if len(w) != len(dirs):
        raise CheckpointError(f"{len(w)} weights for {len(dirs)} checkpoints")
    if not all(math.isfinite(x) and x >= 0.0 for x in w) or sum(w) <= 0.0:
        raise CheckpointError(f"weights must be finite, non-negative and not all zero: {w}")
    total, acc, steps = sum(w), None, []
    first_model = first_tok = None
    for d, x in zip(dirs, w):
        model, tok = load_pretrained(d)
        if first_model is None:
            first_model, first_tok = model, tok
        elif model.config != first_model.config:
            raise CheckpointError(f"{d}: config differs from {dirs[0]}; only checkpoints of one model average")
        elif tok.words != first_tok.words:
            raise CheckpointError(f"{d}: vocabulary differs from {dirs[0]}")
        with safe_open(str(d / WEIGHTS_NAME), framework="pt") as f:
            steps.append((f.metadata() or {}).get("step", "?"))
        sd = model.state_dict()
        if acc is None:
            acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in sd.items() if v.is_floating_point()}
        for k in acc:
            acc[k].add_(sd[k].double(), alpha=x / total)
    avg = {k: (acc[k].float() if k in acc else v) for k, v in first_model.state_dict().items()}
    first_model.load_state_dict(avg, strict=True)
    meta = {"averaged_from": json.dumps([{"checkpoint": d.name, "step": s, "weight": x}
                                         for d, s, x in zip(dirs, steps, w)]),
            "step": max((s for s in steps if s.isdigit()), key=int, default="?")}
    return first_model, first_tok, meta
