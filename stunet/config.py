"""Typed, frozen configuration of a space-time U-Net, with named presets.

Notation used across the package (as in nanoGPT / lumiere-pytorch):
    b  batch            c  channels         t  frames (the clip's time axis)
    h  height           w  width            l  text tokens
Diffusion (noise) time is the *step* or *timestep*, ``timesteps`` in code (integer indices
into the noise schedule), never ``t``; only ``x_t``, the noisy clip, keeps its usual name.

A config is passed whole. ``validate`` runs in ``__post_init__`` so absurd values
(from a hand-edited or hostile ``config.json``) fail before any tensor is allocated.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

# Hard limits that a config (including one read from disk) must respect.
MAX_CHANNELS = 1024
MAX_LEVELS = 6
MAX_SIDE = 512
MAX_FRAMES = 1024
MAX_VOCAB = 100_000
MAX_TEXT_DIM = 2048


@dataclass(frozen=True)
class STUNetConfig:
    """Architecture of a STUNet (Lumiere, arXiv 2401.12945, section 3, figure 4).

    Per-level tuples have one entry per resolution level, finest first.
    ``temporal_down[i]`` says whether time is halved between level i and i+1
    (spatial resolution is always halved there).
    """

    # Clip geometry of the training window (frames x height x width).
    frames: int = 32
    height: int = 32
    width: int = 32
    video_channels: int = 3
    # U-Net widths and resampling.
    channels: tuple[int, ...] = (32, 64, 128)
    blocks_per_level: int = 1
    temporal_down: tuple[bool, ...] = (True, True)
    # Temporal layers: factorized 1D temporal conv per level, temporal attention layers per level.
    temporal_conv: tuple[bool, ...] = (True, True, False)
    temporal_attention: tuple[int, ...] = (0, 0, 2)
    # Spatial parts of the (image) U-Net.
    spatial_attention: tuple[bool, ...] = (False, False, True)
    cross_attention: tuple[bool, ...] = (False, True, True)
    head_dim: int = 32
    groups: int = 8
    # Text encoder over the world's vocabulary.
    vocab_size: int = 64
    max_words: int = 16
    text_dim: int = 128
    text_layers: int = 2
    # Frame-rate conditioning: the strides the model knows.
    strides: tuple[int, ...] = (1, 2, 4)
    # Per-frame conditioning: the frame's time in the clip (base frames), read jointly with the
    # clip's diffusion-time + text embedding by a small MLP, added to every block's embedding.
    # (Our addition, not in the paper; it starts at zero, so inflation is unchanged.)
    frame_embedding: bool = False
    # Guidance-scale conditioning (a distilled student, ``stunet.distill``): the classifier-free
    # guidance scale is an input, embedded and added to the timestep embedding (Meng et al. 2023),
    # so one forward replaces the guided pair. Its output layer starts at zero.
    guidance_embedding: bool = False
    # False gives the image U-Net: the same spatial blocks, no temporal layers at all.
    temporal: bool = True
    # Diffusion.
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    # Shift of the noise schedule toward noise: log-SNR(step) - 2 log(noise_shift) (Hoogeboom et al.
    # 2023, "simple diffusion"; Chen 2023). A clip has far more pixels than one frame, so at the
    # unshifted cosine schedule the object's path is still visible through the noise almost to the
    # end and the network never has to learn motion from the words. 1.0 = the schedule as named.
    noise_shift: float = 1.0

    def __post_init__(self):
        # JSON gives lists; normalise to tuples so the dataclass stays hashable and comparable.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        self.validate()

    # ------------------------------------------------------------------ checks
    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def in_channels(self) -> int:
        """Noisy clip + masked conditioning clip + mask (Lumiere section 4)."""
        return 2 * self.video_channels + 1

    @property
    def temporal_factor(self) -> int:
        """How much time shrinks from the finest to the coarsest level."""
        if not self.temporal:
            return 1
        return 2 ** sum(bool(d) for d in self.temporal_down)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (self.levels - 1)

    def validate(self) -> None:
        def need(cond: bool, msg: str):
            if not cond:
                raise ValueError(f"invalid STUNetConfig: {msg}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("frames", "height", "width", "video_channels", "blocks_per_level", "head_dim",
                     "groups", "vocab_size", "max_words", "text_dim", "text_layers", "train_timesteps"):
            need(is_int(getattr(self, name)), f"{name} must be an integer, got {getattr(self, name)!r}")
        L = self.levels
        need(1 <= L <= MAX_LEVELS, f"1 to {MAX_LEVELS} levels, got {L}")
        need(all(is_int(c) and 1 <= c <= MAX_CHANNELS for c in self.channels),
             f"channels must be integers in [1, {MAX_CHANNELS}], got {self.channels}")
        need(all(c % self.groups == 0 for c in self.channels),
             f"every channel count must be divisible by groups={self.groups}")
        need(all(c % self.head_dim == 0 for c in self.channels) or self.head_dim >= max(self.channels),
             f"channels {self.channels} must be multiples of head_dim={self.head_dim}")
        for name in ("temporal_conv", "temporal_attention", "spatial_attention", "cross_attention"):
            need(len(getattr(self, name)) == L, f"{name} needs one entry per level ({L})")
        need(len(self.temporal_down) == L - 1, f"temporal_down needs {L - 1} entries")
        need(all(is_int(n) and 0 <= n <= 8 for n in self.temporal_attention),
             "temporal_attention counts must be integers in [0, 8]")
        need(1 <= self.blocks_per_level <= 8, "blocks_per_level in [1, 8]")
        need(1 <= self.video_channels <= 4, "video_channels in [1, 4]")
        need(8 <= self.height <= MAX_SIDE and 8 <= self.width <= MAX_SIDE,
             f"height and width in [8, {MAX_SIDE}]")
        need(self.height % self.spatial_factor == 0 and self.width % self.spatial_factor == 0,
             f"height and width must be divisible by {self.spatial_factor}")
        need(1 <= self.frames <= MAX_FRAMES, f"frames in [1, {MAX_FRAMES}]")
        need(self.frames % self.temporal_factor == 0,
             f"frames={self.frames} must be divisible by the temporal factor {self.temporal_factor}")
        need(4 <= self.vocab_size <= MAX_VOCAB, f"vocab_size in [4, {MAX_VOCAB}]")
        need(1 <= self.max_words <= 256, "max_words in [1, 256]")
        need(8 <= self.text_dim <= MAX_TEXT_DIM and self.text_dim % 8 == 0,
             f"text_dim in [8, {MAX_TEXT_DIM}] and divisible by 8")
        need(0 <= self.text_layers <= 12, "text_layers in [0, 12]")
        need(len(self.strides) >= 1 and all(is_int(s) and 1 <= s <= 64 for s in self.strides),
             "strides must be integers in [1, 64]")
        need(self.prediction_type in ("v_prediction", "epsilon"), "prediction_type: v_prediction or epsilon")
        need(self.beta_schedule in ("squaredcos_cap_v2", "linear", "scaled_linear"), "unknown beta_schedule")
        need(10 <= self.train_timesteps <= 10_000, "train_timesteps in [10, 10000]")
        need(isinstance(self.noise_shift, (int, float)) and not isinstance(self.noise_shift, bool)
             and 0.1 <= self.noise_shift <= 64, f"noise_shift in [0.1, 64], got {self.noise_shift!r}")

    def check_frames(self, frames: int) -> None:
        """Clear error for a clip length the U-Net cannot take."""
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if frames % self.temporal_factor:
            raise ValueError(
                f"frames={frames} is not divisible by the temporal factor {self.temporal_factor} "
                f"of this model (time is halved {self.temporal_factor.bit_length() - 1} times); "
                f"use a multiple of {self.temporal_factor}")

    # ------------------------------------------------------------------ derived configs
    def image(self) -> "STUNetConfig":
        """The image U-Net this STUNet inflates (Lumiere section 3): no temporal layers."""
        return dataclasses.replace(self, temporal=False, frames=1)

    def replace(self, **kw) -> "STUNetConfig":
        return dataclasses.replace(self, **kw)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "STUNetConfig":
        if not isinstance(d, dict):
            raise ValueError("config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"invalid STUNetConfig: unknown keys {unknown}")
        return cls(**d)


def _tiny() -> STUNetConfig:
    return STUNetConfig(frames=8, height=16, width=16, channels=(16, 32), temporal_down=(True,),
                        temporal_conv=(True, False), temporal_attention=(0, 1),
                        spatial_attention=(False, True), cross_attention=(False, True),
                        head_dim=16, groups=4, text_dim=32, text_layers=1, max_words=12,
                        frame_embedding=True)


def _shapes() -> STUNetConfig:
    return STUNetConfig(noise_shift=4.0, frame_embedding=True)


def _vdm() -> STUNetConfig:
    # Video Diffusion Models (Ho et al. 2022) design at the same widths: no temporal
    # down/upsampling, temporal attention at every level, no temporal convolutions.
    return _shapes().replace(temporal_down=(False, False), temporal_conv=(False, False, False),
                             temporal_attention=(1, 1, 2))


# A sampling setting, not part of a model's config: it lives in ``defaults`` with the others.
# Kept under this name for code that imported it from here.
from .defaults import GUIDANCE as DEFAULT_GUIDANCE  # noqa: E402


PRESETS = {
    "tiny": _tiny,
    "shapes": _shapes,
    "vdm": _vdm,
}


def preset(name: str, **overrides) -> STUNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
