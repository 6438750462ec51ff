"""A style directory read, checked and interpolated into a model (Lumiere section 4.1, issue 33).

The sampling side of ``stunet.stylize`` (which trains styles and re-exports all of this): every tensor of a
STUNet is ``spatial``, ``temporal`` or ``text`` (``param_group``); a style directory (``config.json``,
``style.safetensors``, ``style.json``) holds styled spatial tensors (``load_style``, strict: names, shapes,
finiteness, no unpickling); ``check_style`` refuses a style made for another architecture or from other base
weights (``StyleError``, naming which); ``apply_style`` makes a new STUNet whose styled tensors are
``(1 - A) original + A styled`` (A = 0: the original weights bit for bit) and ``styled_pipeline`` a ``Pipeline``
around it. Here, below the training layer, so that the studio may use styles too.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from .config import STUNetConfig
from .model import STUNet, is_temporal_param

SPATIAL, TEMPORAL, TEXT = "spatial", "temporal", "text"
GROUPS = (SPATIAL, TEMPORAL, TEXT)
STYLE_FORMAT = "stunet-style"
STYLE_VERSION = 1
STYLE_JSON, STYLE_WEIGHTS, CONFIG_NAME = "style.json", "style.safetensors", "config.json"


class StyleError(ValueError):
    """A style that cannot be used with this model (another architecture, other base weights, a bad file)."""


# ---------------------------------------------------------------------------- which tensors
def param_group(name: str) -> str:
    """``temporal`` (only in the video model), ``text`` (the text encoder) or ``spatial`` (the image U-Net)."""
    if is_temporal_param(name):
        return TEMPORAL
    if name.startswith("text_encoder."):
        return TEXT
    return SPATIAL


def group_names(model: torch.nn.Module, groups=(SPATIAL,)) -> list[str]:
    """The names of ``model``'s tensors (its state dict) in ``groups``, in state-dict order."""
    return [k for k in model.state_dict() if param_group(k) in groups]


def config_hash(cfg: STUNetConfig) -> str:
    """sha256 of the config's canonical JSON: the architecture (and schedule) a style was made for."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over every tensor of ``model`` (name, shape, float32 bytes, in name order): which base weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- a style directory
@dataclasses.dataclass(frozen=True)
class Style:
    """A loaded style directory: its ``style.json`` (``info``), base config and styled tensors."""
    path: Path
    info: dict
    config: STUNetConfig
    tensors: dict

    @property
    def name(self) -> str:
        return self.info["style"]

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.info["groups"])


def read_style_info(directory: str | Path) -> dict:
    """``style.json`` of a style directory, checked (a StyleError names what is wrong)."""
    d = Path(directory)
    path = d / STYLE_JSON
    if not path.is_file():
        raise StyleError(f"{d}: not a style directory (no {STYLE_JSON}; make one with `stunet stylize`)")
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise StyleError(f"{path}: not JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != STYLE_FORMAT:
        raise StyleError(f"{path}: not a stunet style (format must be {STYLE_FORMAT!r})")
    if info.get("version") != STYLE_VERSION:
        raise StyleError(f"{path}: style format version {info.get('version')!r}, this stunet reads {STYLE_VERSION}")
    groups = info.get("groups")
    if not isinstance(groups, list) or SPATIAL not in groups or not set(groups) <= {SPATIAL, TEMPORAL}:
        raise StyleError(f"{path}: groups must be ['spatial'] or ['spatial', 'temporal'], got {groups!r}")
    for key in ("style", "config_hash", "base_hash"):
        if not isinstance(info.get(key), str):
            raise StyleError(f"{path}: missing {key!r}")
    return info


def load_style(directory: str | Path) -> Style:
    """A style directory, read without unpickling (safetensors + JSON); the tensors' names and shapes are
    checked against its own config before any is read."""
    d = Path(directory)
    info = read_style_info(d)
    try:
        config = STUNetConfig.from_dict(json.loads((d / CONFIG_NAME).read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise StyleError(f"{d}: bad or missing {CONFIG_NAME}: {e}") from None
    if config_hash(config) != info["config_hash"]:
        raise StyleError(f"{d}: {CONFIG_NAME} does not match the config hash in {STYLE_JSON}")
    from .checkpoint import _meta_build, read_checked_tensors
    with _meta_build():
        expected = {k: tuple(v.shape) for k, v in STUNet(config).state_dict().items()
                    if param_group(k) in info["groups"]}
    weights = d / STYLE_WEIGHTS
    if not weights.is_file():
        raise StyleError(f"{d}: no {STYLE_WEIGHTS}")
    tensors = read_checked_tensors(weights, expected, StyleError,
                                   f"{weights} ({'+'.join(info['groups'])} tensors of its config)")
    if not all(v.is_floating_point() and torch.isfinite(v).all() for v in tensors.values()):
        raise StyleError(f"{weights}: every tensor must be finite floating point")
    return Style(d, info, config, tensors)


def check_style(model: STUNet, style: Style, same_base: bool = True) -> None:
    """Refuse (StyleError) a style made for another architecture or, with ``same_base``, from other weights."""
    if model.config != style.config:
        a, b = model.config.to_dict(), style.config.to_dict()
        diff = [f"{k} {b[k]!r} (model: {a[k]!r})" for k in a if a[k] != b[k]]
        raise StyleError(f"style {style.name!r} ({style.path}) was made for another architecture: its config "
                         f"differs in {', '.join(diff)}")
    if config_hash(model.config) != style.info["config_hash"]:
        raise StyleError(f"style {style.name!r} ({style.path}) was made for another architecture (config hash)")
    own = model.state_dict()
    bad = [k for k, v in style.tensors.items() if k not in own or tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise StyleError(f"style {style.name!r} ({style.path}) does not fit this model's tensors: {bad[:5]}")
    if same_base and weights_hash(model) != style.info["base_hash"]:
        raise StyleError(f"style {style.name!r} ({style.path}) was fine-tuned from other weights of this "
                         f"architecture (base {style.info.get('base_model', '?')}); interpolating it with "
                         f"these would mix two models")


def apply_style(model: STUNet, style: str | Path | Style, strength: float = 1.0, *,
                same_base: bool = True) -> STUNet:
    """A new STUNet: the style's tensors ``(1 - strength) * original + strength * styled``, every other tensor
    the original's (``model`` itself is not changed). ``strength`` in [0, 1]; 0 gives the original weights
    bit for bit, 1 the styled ones. A style made for another architecture (or, with ``same_base``, from
    other base weights) is refused with a StyleError."""
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0.0 <= strength <= 1.0:
        raise StyleError(f"style strength must be a number in [0, 1], got {strength!r}")
    style = style if isinstance(style, Style) else load_style(style)
    check_style(model, style, same_base)
    new = copy.deepcopy(model)
    if strength == 0.0:
        return new
    params = dict(new.named_parameters())
    with torch.no_grad():
        for k, styled in style.tensors.items():
            p = params[k]
            s = styled.to(device=p.device, dtype=p.dtype)
            p.copy_(s if strength == 1.0 else torch.lerp(p, s, float(strength)))
    return new


def styled_pipeline(pipe, style: str | Path, strength: float = 1.0):
    """``pipe`` (a ``Pipeline``) with its model replaced by ``apply_style(pipe.model, style, strength)``: same
    tokenizer, precision and sampling defaults."""
    from .pipeline import Pipeline
    if not isinstance(pipe, Pipeline):
        raise StyleError("a style needs a STUNet checkpoint (the cascade baseline has its own networks)")
    return Pipeline(apply_style(pipe.model, style, strength), pipe.tokenizer, pipe.precision, pipe.defaults)
