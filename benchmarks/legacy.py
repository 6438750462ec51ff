"""Earlier implementations of layers the library has since made faster, kept only so the
benchmark can time a lever's "without" state against the library as it is.

``temporal_on_columns(model)``: the temporal convolutions (TemporalConv, TemporalDown,
TemporalUp) as they were before the channels-last grid: copy ``(b t) c h w`` into
``(b h w) c t`` columns, GroupNorm + Conv1d there, copy back. Same weights, same maths.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from stunet.layers import TemporalConv, TemporalDown, TemporalUp, columns_to_frames, frames_to_columns


def _conv_forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    col = frames_to_columns(x, t)                                    # (b h w) c t
    y = self.conv1(F.silu(self.norm1(col)))
    y = self.conv2(F.silu(self.norm2(y)))
    return x + columns_to_frames(y, bt // t, h, w)


def _down_forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    return columns_to_frames(self.conv(frames_to_columns(x, t)), bt // t, h, w)


def _up_forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    col = frames_to_columns(x, t).repeat_interleave(2, dim=2)        # (b h w) c 2t
    return columns_to_frames(self.conv(col), bt // t, h, w)


_FORWARDS = {TemporalConv: _conv_forward, TemporalDown: _down_forward, TemporalUp: _up_forward}


def temporal_on_columns(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model``'s temporal convs use the column layout (in place; per instance)."""
    for m in model.modules():
        fwd = _FORWARDS.get(type(m))
        if fwd is not None:
            m.forward = types.MethodType(fwd, m)
    return model
