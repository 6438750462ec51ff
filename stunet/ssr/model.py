"""``SSRNet``: the SSR denoiser, fully convolutional in space, a temporal conv per block (Lumiere 3.2).

Input: the noisy high-resolution window x_t and the base window upsampled to the same size (noise-augmented
to ``cond_step``), concatenated on channels. Both are folded to space-to-depth blocks (``pixel_unshuffle`` by
``config.unshuffle``), so every convolution runs at the base's resolution on ``unshuffle**2`` times the
channels; ``blocks`` residual 2D conv blocks (``stunet.layers.ResBlock``), each followed by a residual
temporal conv over the window's frames (``TemporalConv``); the output is unfolded back (``pixel_shuffle``).
The diffusion step and the conditioning's noise step are embedded (sinusoidal + MLP) and added.

Shapes: x_t, cond b c t H W (H = W = ``config.size``); timesteps, cond_steps b; output b c t H W, the
prediction in ``config.prediction_type``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ResBlock, TemporalConv, norm, sinusoidal
from .config import SSRConfig


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class SSRNet(nn.Module):
    def __init__(self, config: SSRConfig):
        super().__init__()
        self.config = config
        c, u = config.channels, config.unshuffle
        self.time_mlp = _mlp(config.emb_dim)
        self.cond_mlp = _mlp(config.emb_dim)
        self.conv_in = nn.Conv2d(2 * config.video_channels * u * u, c, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(c, c, config.emb_dim, config.groups) for _ in range(config.blocks))
        self.temporal = nn.ModuleList(TemporalConv(c, config.groups) for _ in range(config.blocks))
        self.norm_out = norm(c, config.groups)
        self.conv_out = nn.Conv2d(c, config.video_channels * u * u, 3, padding=1)
        initialize_weights(self)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor,
                cond_steps: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, c, t, H, W = x.shape
        if cond.shape != x.shape:
            raise ValueError(f"cond must have the shape of x {tuple(x.shape)}, got {tuple(cond.shape)}")
        z = torch.cat([x, cond.to(x.dtype)], 1).transpose(1, 2).reshape(b * t, 2 * c, H, W)      # (b t) 2c H W
        z = F.pixel_unshuffle(z, cfg.unshuffle).contiguous(memory_format=torch.channels_last)   # (b t) 2c u² h w
        emb = (self.time_mlp(sinusoidal(timesteps, cfg.emb_dim)) + self.cond_mlp(sinusoidal(cond_steps, cfg.emb_dim)))
        emb = emb.repeat_interleave(t, 0)                                                       # (b t) e
        h = self.conv_in(z)
        for block, temporal in zip(self.blocks, self.temporal):
            h = temporal(block(h, emb), t)
        out = self.conv_out(F.silu(self.norm_out(h)))                                           # (b t) c u² h w
        out = F.pixel_shuffle(out, cfg.unshuffle)                                               # (b t) c H W
        return out.reshape(b, t, c, H, W).transpose(1, 2).float()


def _zero(m: nn.Module) -> None:
    nn.init.zeros_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def initialize_weights(model: SSRNet) -> None:
    """All initialisation lives here: PyTorch defaults, linear biases zero, every residual branch (2D blocks'
    second conv, temporal convs) and the output conv zero, so the untrained network predicts zero and each
    block starts as its skip path."""
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, ResBlock):
            _zero(m.conv2)
        elif isinstance(m, TemporalConv):
            _zero(m.conv2)
    _zero(model.conv_out)
