"""Cascade checkpoints: a folder of ordinary stunet checkpoints plus the cascade's own ``config.json``.

    DIR/config.json        {"model_type": "cascade", ...CascadeConfig fields..., "keyframe": "net", "tsr": "net"}
    DIR/net/               config.json, model.safetensors, vocab.json, sampling.json (``stunet.checkpoint``)
    DIR/README.md          model card (optional)

With separate networks ``keyframe`` and ``tsr`` name two subfolders (``keyframe/`` and ``tsr/``);
when both name the same one it is loaded once and shared. Every part is loaded strictly (safetensors,
never pickle); a missing or bad part is a ``CheckpointError`` naming it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import CONFIG_NAME, CheckpointError, load_pretrained, read_sampling, save_pretrained
from ..defaults import SamplingDefaults
from ..model import STUNet
from ..text import Tokenizer
from .config import MODEL_TYPE, CascadeConfig


def is_cascade(directory: str | Path | None) -> bool:
    """True when ``directory``'s config.json says ``"model_type": "cascade"`` (False for anything else)."""
    if directory is None:
        return False
    path = Path(directory) / CONFIG_NAME
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("model_type") == MODEL_TYPE


def read_cascade_config(directory: str | Path) -> CascadeConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {Path(directory).name!r}")
    try:
        return CascadeConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"bad cascade {CONFIG_NAME}: {e}") from None


def save_cascade(directory: str | Path, config: CascadeConfig, keyframe_model: STUNet, tokenizer: Tokenizer,
                 tsr_model: STUNet | None = None, *, keyframe_state: dict | None = None, tsr_state: dict | None = None,
                 sampling: SamplingDefaults | None = None, extra: dict | None = None) -> Path:
    """Write a cascade checkpoint. ``tsr_model`` None (or K itself): one shared network, and ``config``
    must name one subfolder for both roles; else two, and it must name two."""
    d = Path(directory)
    shared = tsr_model is None or tsr_model is keyframe_model
    if shared != config.shared:
        raise ValueError(f"config names {'one subfolder' if config.shared else 'two subfolders'} "
                         f"({config.keyframe!r}, {config.tsr!r}) for {'one network' if shared else 'two networks'}")
    config.check_net(keyframe_model.config, "keyframe")
    config.check_net((keyframe_model if shared else tsr_model).config, "tsr")
    d.mkdir(parents=True, exist_ok=True)
    save_pretrained(keyframe_model, tokenizer, d / config.keyframe, state_dict=keyframe_state, extra=extra,
                    sampling=sampling or SamplingDefaults())
    if not shared:
        save_pretrained(tsr_model, tokenizer, d / config.tsr, state_dict=tsr_state, extra=extra,
                        sampling=sampling or SamplingDefaults())
    (d / CONFIG_NAME).write_text(config.to_json() + "\n")
    return d


def load_cascade(directory: str | Path) -> tuple[CascadeConfig, STUNet, STUNet, Tokenizer, SamplingDefaults]:
    """Strictly load a cascade checkpoint: (config, K, T, tokenizer, sampling defaults); T is K when shared."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"cascade checkpoint directory not found: {d}")
    config = read_cascade_config(d)

    def part(role: str, sub: str):
        where = d / sub
        if not where.is_dir():
            raise CheckpointError(f"cascade {role} network: no subfolder {sub!r} in {d.name!r}")
        try:
            model, tok = load_pretrained(where)
            config.check_net(model.config, role)
        except CheckpointError as e:
            raise CheckpointError(f"cascade {role} network ({sub}/): {e}") from None
        except ValueError as e:
            raise CheckpointError(f"cascade {role} network ({sub}/): {e}") from None
        return model, tok

    keyframe, tok = part("keyframe", config.keyframe)
    if config.shared:
        tsr = keyframe
        try:
            config.check_net(keyframe.config, "tsr")
        except ValueError as e:
            raise CheckpointError(f"cascade network ({config.tsr}/): {e}") from None
    else:
        tsr, tok_t = part("tsr", config.tsr)
        if tok_t.words != tok.words:
            raise CheckpointError(f"cascade: the vocabularies of {config.keyframe}/ and {config.tsr}/ differ")
        kc, tc = keyframe.config, tsr.config
        if (kc.height, kc.width, kc.video_channels) != (tc.height, tc.width, tc.video_channels):
            raise CheckpointError(f"cascade: {config.keyframe}/ makes {kc.height}x{kc.width} frames, "
                                  f"{config.tsr}/ {tc.height}x{tc.width}")
    return config, keyframe, tsr, tok, read_sampling(d / config.keyframe)
