"""``SSRConfig``: the SSR model's architecture, window and diffusion settings (frozen, validated), and presets."""
from __future__ import annotations

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class SSRConfig:
    """One SSR model. The network works at the base's resolution on space-to-depth blocks of the output
    (``unshuffle`` x ``unshuffle`` pixels per position, as sub-pixel convolution: Shi et al. 2016), so
    its cost grows with the base's size, not the output's."""
    base_size: int = 32              # the base clip's height and width
    scale: int = 4                   # output = base_size * scale
    window: int = 8                  # frames per temporal window
    video_channels: int = 3
    unshuffle: int = 4               # space-to-depth factor of the input (a divisor of the output size)
    channels: int = 32
    blocks: int = 3                  # residual blocks, each a 2D conv block + a temporal conv
    groups: int = 8
    emb_dim: int = 128
    # Diffusion (duck-typed with STUNetConfig for stunet.diffusion and stunet.sampling).
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # "sample": the network predicts the clean (residual) window itself (x0), so it never has to pass the
    # noise through its channels; "v_prediction" / "epsilon" as the base model.
    prediction_type: str = "sample"
    noise_shift: float = 1.0
    # Residual parametrization: what is diffused is the high-resolution clip minus the bicubic upsampling of
    # the clean base clip, so flat regions are zero to predict and the base's colours are kept by construction.
    residual: bool = True
    # Conditioning augmentation (Ho et al. 2022, "Cascaded diffusion"): the upsampled base clip is noised to
    # a diffusion step drawn in [0, cond_noise_max] in training and set to cond_noise_step at sampling.
    cond_noise_max: int = 150
    cond_noise_step: int = 50

    def __post_init__(self):
        def need(ok: bool, msg: str):
            if not ok:
                raise ValueError(f"invalid SSRConfig: {msg}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{f.name} must be an integer >= 0")
        for name in ("base_size", "scale", "window", "video_channels", "unshuffle", "channels", "blocks", "groups",
                     "emb_dim", "train_timesteps"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1")
        need(self.size % self.unshuffle == 0, f"unshuffle {self.unshuffle} must divide the output size {self.size}")
        need(self.channels % self.groups == 0, "channels must be a multiple of groups")
        need(self.emb_dim % 2 == 0, "emb_dim must be even")
        need(self.prediction_type in ("sample", "v_prediction", "epsilon"),
             "prediction_type: sample, v_prediction or epsilon")
        need(isinstance(self.residual, bool), "residual must be true or false")
        need(0 <= self.cond_noise_step <= self.cond_noise_max < self.train_timesteps,
             "0 <= cond_noise_step <= cond_noise_max < train_timesteps")
        need(isinstance(self.noise_shift, (int, float)) and 0.1 <= self.noise_shift <= 64, "noise_shift in [0.1, 64]")

    @property
    def size(self) -> int:
        """The output's height and width."""
        return self.base_size * self.scale

    def to_json(self) -> str:
        return json.dumps({"model_type": "ssr", **dataclasses.asdict(self)}, indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "SSRConfig":
        d = dict(d)
        if d.pop("model_type", "ssr") != "ssr":
            raise ValueError("not an SSR config (model_type)")
        d.setdefault("residual", False)        # written before the field existed: those models diffused the clip itself
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown SSRConfig fields: {sorted(unknown)}")
        return cls(**d)


SSR_PRESETS = {
    "tiny": lambda: SSRConfig(base_size=8, scale=2, window=4, unshuffle=2, channels=16, blocks=1, groups=4,
                              emb_dim=16, train_timesteps=100, cond_noise_max=15, cond_noise_step=5),
    "ssr": SSRConfig,
}


def ssr_preset(name: str, **overrides) -> SSRConfig:
    if name not in SSR_PRESETS:
        raise ValueError(f"unknown SSR preset {name!r}; choose from {sorted(SSR_PRESETS)}")
    return dataclasses.replace(SSR_PRESETS[name](), **overrides)
