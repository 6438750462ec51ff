"""Building blocks of the space-time U-Net.

All spatial modules work on frames folded into the batch, ``(b t) c h w``, stored
channels-last (memory order b t h w c), so the same weights serve the image U-Net and
the STUNet (inflation, Lumiere section 3).

Temporal convolutions (the 1D halves of the factorized space-time convs, and temporal
down/upsampling) read the *same memory* as a grid ``b c t (h w)``: a channels-last view in
which a (3, 1) Conv2d is exactly a 1D conv over frames at every position. No copy into
columns and back is made; the group norms of the temporal branch, which normalise each
position's column over (channels of a group) x frames, are computed from per-column sums in
the same layout (``column_group_norm``). This replaced 1D convs over ``(b h w) c t``
columns, which cost two layout copies per layer and a slow 1D kernel (the old path is
kept in ``benchmarks/`` for the speed comparison). A Conv3d with a (3,1,1) kernel is the
same maths again, but gave NaN gradients under CPU bf16 autocast on 2-frame inputs.

Temporal attention (coarsest level only, few positions) still works on columns
``(b h w) t c``.

Every temporal branch is residual and starts as the identity (``model.initialize_weights``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- layout helpers
def frames_to_columns(x: torch.Tensor, t: int) -> torch.Tensor:
    """(b t) c h w -> (b h w) c t"""
    bt, c, h, w = x.shape
    b = bt // t
    return x.reshape(b, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)


def columns_to_frames(x: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """(b h w) c t -> (b t) c h w"""
    _, c, t = x.shape
    return x.reshape(b, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(b * t, c, h, w) \
        .contiguous(memory_format=torch.channels_last)


def frames_to_grid(x: torch.Tensor, t: int) -> torch.Tensor:
    """(b t) c h w, channels-last -> b c t (h w): a view, no copy (a channels-last grid)."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4).reshape(bt // t, c, t, h * w)


def grid_to_frames(v: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """b c t (h w) -> (b t) c h w, channels-last (a view when ``v`` is a channels-last grid)."""
    b, c, t, _ = v.shape
    return v.permute(0, 2, 1, 3).reshape(b * t, c, h, w).contiguous(memory_format=torch.channels_last)


def temporal_conv(v: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` (a 1D conv over frames) applied at every position of a grid b c t (h w).

    A (k, 1) Conv2d with the 1D kernel: the same maths as the 1D conv on (b h w) c t columns,
    without moving the data (on channels-last memory it is about 50x faster than the 1D conv
    on columns here, which is also why the weights stay a ``Conv1d``: checkpoints are unchanged).
    """
    return F.conv2d(v, conv.weight.unsqueeze(-1), conv.bias, stride=(conv.stride[0], 1),
                    padding=(conv.padding[0], 0))


def column_group_norm(v: torch.Tensor, gn: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm of every position's column, on a grid b c t (h w); returns the same layout.

    Equal to ``gn`` applied to (b h w) c t columns: statistics over (channels of a group) x
    frames, per position. The sums over frames (the outer axis of channels-last memory) are one
    batched (1 x t) @ (t x (h w c)) product each, accumulated in fp32; normalisation and the affine
    map are one fused multiply-add in the input's dtype.
    """
    b, c, t, n = v.shape
    g = gn.num_groups
    u = v.permute(0, 2, 3, 1).reshape(b, t, n * c)                      # a view for a grid
    with torch.autocast(u.device.type, enabled=False):                  # sums in fp32: var = E[x^2] - mean^2
        u32 = u.float()
        ones = torch.ones(b, 1, t, device=u.device)
        s1 = torch.bmm(ones, u32).view(b, n, g, c // g).sum(-1, keepdim=True)          # b n g 1
        s2 = torch.bmm(ones, u32 * u32).view(b, n, g, c // g).sum(-1, keepdim=True)
    count = t * (c // g)
    mean = s1 / count
    r = torch.rsqrt((s2 / count - mean.square()).clamp_min(0) + gn.eps)
    weight = gn.weight.float().view(g, c // g) if gn.weight is not None else torch.ones(g, c // g, device=u.device)
    bias = gn.bias.float().view(g, c // g) if gn.bias is not None else torch.zeros(g, c // g, device=u.device)
    scale = (r * weight).reshape(b, 1, n * c)
    shift = (bias - mean * r * weight).reshape(b, 1, n * c)
    y = torch.addcmul(shift.to(u.dtype), u, scale.to(u.dtype))          # b t (n c)
    return y.view(b, t, n, c).permute(0, 3, 1, 2)


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of a 1D tensor of (diffusion or frame) positions -> (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def norm(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, c), c, eps=1e-5)


# ----------------------------------------------------------------------------- spatial (image) blocks
class ResBlock(nn.Module):
    """2D residual conv block with scale-shift conditioning on the embedding (per frame)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: (b t) c h w ; emb: (b t) e
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Self-attention over the h*w positions of each frame (image U-Net part)."""

    def __init__(self, c: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = norm(c, groups)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt, c, h, w = x.shape
        s = self.norm(x).flatten(2).transpose(1, 2)                      # (b t) (h w) c
        q, k, v = self.qkv(s).reshape(bt, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)                      # (b t) heads (h w) d
        o = self.proj(o.transpose(1, 2).reshape(bt, h * w, c))
        return x + o.transpose(1, 2).reshape(bt, c, h, w)


class CrossAttention(nn.Module):
    """Attention from every pixel of every frame to the prompt's tokens.

    The probabilities ``attention_probs`` returns are what the word-attention view
    shows (DAAM-style maps, extended over space *and* time).
    """

    def __init__(self, c: int, text_dim: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = norm(c, groups)
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(text_dim, 2 * c)
        self.proj = nn.Linear(c, c)

    def _qkv(self, x, context, t):
        bt, c, h, w = x.shape
        d = c // self.heads
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))              # (b t) (h w) c
        q = q.reshape(bt, h * w, self.heads, d).transpose(1, 2)          # (b t) heads (h w) d
        ctx = context.repeat_interleave(t, dim=0)                        # (b t) l e
        k, v = self.kv(ctx).reshape(bt, ctx.shape[1], 2, self.heads, d).permute(2, 0, 3, 1, 4)
        return q, k, v

    @staticmethod
    def _bias(pad_mask, t, dtype):
        # pad_mask: b l, True where a real token -> additive bias (b t) 1 1 l
        bias = torch.zeros(pad_mask.shape, dtype=dtype, device=pad_mask.device)
        bias = bias.masked_fill(~pad_mask, float("-inf"))
        return bias.repeat_interleave(t, dim=0)[:, None, None, :]

    def forward(self, x, context, pad_mask, t: int):
        bt, c, h, w = x.shape
        q, k, v = self._qkv(x, context, t)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(pad_mask, t, q.dtype))
        o = self.proj(o.transpose(1, 2).reshape(bt, h * w, c))
        return x + o.transpose(1, 2).reshape(bt, c, h, w)

    @torch.no_grad()
    def attention_probs(self, x, context, pad_mask, t: int) -> torch.Tensor:
        """Softmax weights, (b t) heads (h w) l. Recomputed for inspection only."""
        q, k, _ = self._qkv(x, context, t)
        logits = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        return (logits + self._bias(pad_mask, t, torch.float32)).softmax(-1)


# ----------------------------------------------------------------------------- temporal blocks
class TemporalConv(nn.Module):
    """Factorized (2+1)D conv: the 1D temporal half, residual; identity at init (Lumiere 3)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm1 = norm(c, groups)
        self.conv1 = nn.Conv1d(c, c, 3, padding=1)
        self.norm2 = norm(c, groups)
        self.conv2 = nn.Conv1d(c, c, 3, padding=1)   # zero-initialised: the branch adds nothing at first

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        v = frames_to_grid(x, t)                                         # b c t (h w), a view
        y = temporal_conv(F.silu(column_group_norm(v, self.norm1)), self.conv1)
        y = temporal_conv(F.silu(column_group_norm(y, self.norm2)), self.conv2)
        return x + grid_to_frames(y, h, w)


class TemporalAttention(nn.Module):
    """Multi-head self-attention over frames at every spatial position (coarsest level).

    Cost is quadratic in frames, which is why Lumiere keeps it at the coarsest level.
    A sinusoidal frame-position encoding is added to queries and keys' input.
    """

    def __init__(self, c: int, head_dim: int):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)                  # zero-initialised
        self.ff_norm = nn.LayerNorm(c)
        self.ff = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))  # last zero-initialised

    def _qkv(self, x, t):
        bt, c, h, w = x.shape
        s = frames_to_columns(x, t).transpose(1, 2)                      # (b h w) t c
        pos = sinusoidal(torch.arange(t, device=x.device), c).to(s.dtype)
        z = self.norm(s) + pos
        q, k, v = self.qkv(z).reshape(s.shape[0], t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return s, q, k, v                                                # q: (b h w) heads t d

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        s, q, k, v = self._qkv(x, t)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(s.shape[0], t, c)
        s = s + self.proj(o)
        s = s + self.ff(self.ff_norm(s))
        return columns_to_frames(s.transpose(1, 2), bt // t, h, w)

    @torch.no_grad()
    def attention_probs(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Softmax weights, (b h w) heads t t (query frame x key frame)."""
        _, q, k, _ = self._qkv(x, t)
        return ((q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1)


class TemporalDown(nn.Module):
    """1D temporal conv (identity-initialised), then stride 2 (Lumiere 3, appendix B)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        return grid_to_frames(temporal_conv(frames_to_grid(x, t), self.conv), h, w)   # (b t/2) c h w


class TemporalUp(nn.Module):
    """Frame duplication, then a 1D temporal conv (identity-initialised)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        # duplicate every frame, in channels-last memory: (b t) h w c -> (b t 2) h w c
        dup = x.permute(0, 2, 3, 1).unsqueeze(1).expand(bt, 2, h, w, c).reshape(2 * bt, h, w, c)
        dup = dup.permute(0, 3, 1, 2)                                    # (b 2t) c h w, channels-last
        return grid_to_frames(temporal_conv(frames_to_grid(dup, 2 * t), self.conv), h, w)
