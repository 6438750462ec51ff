"""The cascade baseline's configuration: ``CascadeConfig`` (frozen, validated) and its presets.

A cascade is two roles of a STUNet-family network (see ``stunet.cascade``): the keyframe model K
makes ``keyframes`` frames at world stride ``keyframe_stride``; the temporal super-resolution
model T fills every ``window``-frame stretch between two consecutive keyframes at stride 1. The
clip has ``keyframes * keyframe_stride`` frames (32 for the ``shapes`` preset: keyframes at base
frames 0, 4, ..., 28, and frames 29-31 from an extrapolation window whose first frame is the
last keyframe).

The network itself is a ``STUNetConfig`` (``net_preset``): the STUNet of the same name with no
temporal down/up-sampling (``temporal_down`` all False), so temporal conv/attention run at
keyframe rate in K and at full rate in T.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from ..config import STUNetConfig
from ..config import preset as stunet_preset

MODEL_TYPE = "cascade"
_SUBFOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class CascadeConfig:
    """Keyframes + temporal super-resolution (Imagen Video, Ho et al. 2022, arXiv 2210.02303, section 2;
    Make-A-Video, Singer et al. 2022, arXiv 2209.14792, section 3.3: masked frame interpolation).

    ``cond_noise_step``: the diffusion step (of ``train_timesteps``) at which T's given frames are
    noised when sampling (Imagen Video's conditioning augmentation, section 2.5); in training they
    are noised at a step drawn uniformly from [0, ``cond_noise_max``]. ``keyframe`` / ``tsr``: the
    checkpoint subfolders of K and T (the same name: one shared network, loaded once).
    """

    keyframe_stride: int = 4
    window: int = 5
    keyframes: int = 8
    cond_noise_step: int = 50
    cond_noise_max: int = 100
    keyframe: str = "net"
    tsr: str = "net"

    def __post_init__(self):
        self.validate()

    @property
    def frames(self) -> int:
        """Frames of a generated clip (stride 1): the keyframes and everything between and after them."""
        return self.keyframes * self.keyframe_stride

    @property
    def shared(self) -> bool:
        """True when K and T are one network (one subfolder)."""
        return self.keyframe == self.tsr

    @property
    def keyframe_frames(self) -> tuple[int, ...]:
        """Base-frame index of every keyframe: (0, 4, ..., 28)."""
        return tuple(range(0, self.frames, self.keyframe_stride))

    def validate(self) -> None:
        def need(cond: bool, msg: str):
            if not cond:
                raise ValueError(f"invalid CascadeConfig: {msg}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("keyframe_stride", "window", "keyframes", "cond_noise_step", "cond_noise_max"):
            need(is_int(getattr(self, name)), f"{name} must be an integer, got {getattr(self, name)!r}")
        need(2 <= self.keyframe_stride <= 16, f"keyframe_stride in [2, 16], got {self.keyframe_stride}")
        need(self.window == self.keyframe_stride + 1,
             f"window must be keyframe_stride + 1 = {self.keyframe_stride + 1} (two keyframes and the "
             f"{self.keyframe_stride - 1} frames between them), got {self.window}")
        need(2 <= self.keyframes <= 64, f"keyframes in [2, 64], got {self.keyframes}")
        need(0 <= self.cond_noise_step <= 10_000, f"cond_noise_step in [0, 10000], got {self.cond_noise_step}")
        need(0 <= self.cond_noise_max <= 10_000, f"cond_noise_max in [0, 10000], got {self.cond_noise_max}")
        for name in ("keyframe", "tsr"):
            v = getattr(self, name)
            need(isinstance(v, str) and bool(_SUBFOLDER.match(v)) and v not in (".", ".."),
                 f"{name} must be a plain subfolder name (letters, digits, _ . -), got {v!r}")

    def check_net(self, cfg: STUNetConfig, role: str) -> None:
        """Clear error when a network cannot play ``role`` ("keyframe" or "tsr") in this cascade."""
        def need(cond: bool, msg: str):
            if not cond:
                raise ValueError(f"the {role} network does not fit the cascade: {msg}")
        need(cfg.temporal, "it is an image U-Net (config.temporal is False)")
        stride, frames = (self.keyframe_stride, self.keyframes) if role == "keyframe" else (1, self.window)
        need(stride in cfg.strides, f"stride {stride} is not one of its strides {cfg.strides}")
        need(frames % cfg.temporal_factor == 0 and (role == "keyframe" or cfg.temporal_factor == 1),
             f"it must take {frames}-frame clips, but it halves time (temporal factor {cfg.temporal_factor})")
        need(frames <= cfg.frames, f"its window is {cfg.frames} frames, the {role} clip {frames}")
        need(max(self.cond_noise_step, self.cond_noise_max) < cfg.train_timesteps,
             f"cond_noise_step / cond_noise_max must be below train_timesteps {cfg.train_timesteps}")

    def replace(self, **kw) -> "CascadeConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "CascadeConfig":
        if not isinstance(d, dict):
            raise ValueError("cascade config must be a JSON object")
        d = dict(d)
        kind = d.pop("model_type", None)
        if kind != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r}, got {kind!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"invalid CascadeConfig: unknown keys {unknown}")
        return cls(**d)


def net_preset(name: str) -> STUNetConfig:
    """The cascade's network: the STUNet preset ``name`` without temporal down/up-sampling, its
    training window the keyframe clip (8 frames for ``shapes``)."""
    cfg = stunet_preset(name)
    casc = preset(name)
    return cfg.replace(temporal_down=(False,) * (cfg.levels - 1), frames=casc.keyframes)


PRESETS = {
    "tiny": lambda: CascadeConfig(),            # 8 keyframes of 16x16 (the tiny STUNet's size), 32 frames
    "shapes": lambda: CascadeConfig(),
}


def preset(name: str, **overrides) -> CascadeConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown cascade preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
