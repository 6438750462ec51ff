"""The Space-Time U-Net (STUNet) of Lumiere (Bar-Tal et al. 2024, arXiv 2401.12945, section 3).

Input: the noisy clip, a masked conditioning clip and the mask, concatenated on
channels (3 + 3 + 1, section 4), so one network serves text-to-video, image-to-video,
inpainting and keyframe filling. Conditioned on the diffusion timestep, the text,
and the frame rate (the stride at which the clip was sampled).

Per level (finest first): residual blocks of a 2D spatial conv over frames followed,
where ``temporal_conv`` says, by a 1D temporal conv (factorized space-time conv);
text cross-attention and spatial attention where configured; stacked temporal
attention where ``temporal_attention`` says (at the coarsest level in Lumiere's design).
Between levels: spatial downsampling and, where ``temporal_down`` says, temporal
downsampling (identity-initialised 1D conv, then stride 2); on the way up, frame
duplication then an identity-initialised 1D conv.

With ``config.temporal=False`` the same class is the image U-Net; ``inflate`` loads
its weights into a STUNet (section 3: temporal layers are added to an image model).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import STUNetConfig
from .layers import (CrossAttention, ResBlock, SpatialAttention, TemporalAttention, TemporalConv,
                     TemporalDown, TemporalUp, norm, sinusoidal)
from .text import TextEncoder, TextEncoding

TEMPORAL_TAGS = ("temporal", "stride_mlp", "frame_mlp")
GUIDANCE_EMBED_SCALE = 100.0    # guidance 1..10 -> positions 100..1000, the range of diffusion steps


def is_temporal_param(name: str) -> bool:
    """Parameters that exist only in the STUNet, not in the image U-Net."""
    return any(tag in name for tag in TEMPORAL_TAGS)


class LevelBlock(nn.Module):
    """One block of a level: spatial ResBlock [+ temporal conv] [+ cross-attn] [+ spatial attn] [+ temporal attn]."""

    def __init__(self, cfg: STUNetConfig, level: int, c_in: int, c: int, emb_dim: int):
        super().__init__()
        self.res = ResBlock(c_in, c, emb_dim, cfg.groups)
        self.temporal_conv = TemporalConv(c, cfg.groups) if cfg.temporal and cfg.temporal_conv[level] else None
        self.cross = CrossAttention(c, cfg.text_dim, cfg.head_dim, cfg.groups) if cfg.cross_attention[level] else None
        self.spatial_attn = SpatialAttention(c, cfg.head_dim, cfg.groups) if cfg.spatial_attention[level] else None
        n_attn = cfg.temporal_attention[level] if cfg.temporal else 0
        self.temporal_attn = nn.ModuleList(TemporalAttention(c, cfg.head_dim) for _ in range(n_attn))

    def forward(self, x, emb, text: TextEncoding, t: int):
        x = self.res(x, emb)
        if self.temporal_conv is not None:
            x = self.temporal_conv(x, t)
        if self.cross is not None:
            x = self.cross(x, text.tokens, text.mask, t)
        if self.spatial_attn is not None:
            x = self.spatial_attn(x)
        for attn in self.temporal_attn:
            x = attn(x, t)
        return x


class Level(nn.Module):
    """The blocks of one level; its output is what the inspector records as that level's features."""

    def __init__(self, cfg, level, c_in, c, emb_dim):
        super().__init__()
        self.blocks = nn.ModuleList(
            LevelBlock(cfg, level, c_in if i == 0 else c, c, emb_dim) for i in range(cfg.blocks_per_level))

    def forward(self, x, emb, text, t):
        for blk in self.blocks:
            x = blk(x, emb, text, t)
        return x


class Down(nn.Module):
    """Between level i and i+1 on the way down: a stride-2 3x3 conv halves height and width; where
    ``temporal``, a ``TemporalDown`` then halves the frames (Lumiere section 3). (b t) c h w -> (b t') c' h/2 w/2."""

    def __init__(self, c_in, c_out, temporal: bool):
        super().__init__()
        self.spatial = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.temporal = TemporalDown(c_out) if temporal else None

    def forward(self, x, t):
        x = self.spatial(x)
        if self.temporal is not None:
            x, t = self.temporal(x, t), t // 2
        return x, t


class Up(nn.Module):
    """Between level i+1 and i on the way up: nearest 2x upsampling and a 3x3 conv in space; where
    ``temporal``, a ``TemporalUp`` doubles the frames (frame duplication, then an identity-initialised
    temporal conv: Lumiere appendix B). (b t) c h w -> (b t'') c' 2h 2w."""

    def __init__(self, c_in, c_out, temporal: bool):
        super().__init__()
        self.spatial = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temporal = TemporalUp(c_out) if temporal else None

    def forward(self, x, t):
        x = self.spatial(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        if self.temporal is not None:
            x, t = self.temporal(x, t), t * 2
        return x, t


@dataclass(frozen=True)
class LevelInfo:
    name: str
    channels: int
    frames: int
    height: int
    width: int
    temporal_conv: bool
    temporal_attention: int
    cross_attention: bool


class STUNet(nn.Module):
    """The Space-Time U-Net (Lumiere section 3, figure 4), or the image U-Net when ``config.temporal``
    is False. ``forward(sample, timesteps, text, stride, cond, mask)`` predicts the diffusion target
    (v or epsilon) of a b c t h w clip; the encoder levels ``enc``, the coarsest (``mid``, the last of
    ``enc``) and the decoder levels ``dec`` are what the inspector names and records."""

    def __init__(self, config: STUNetConfig):
        super().__init__()
        cfg = self.config = config
        ch = cfg.channels
        emb_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.text_encoder = TextEncoder(cfg.vocab_size, cfg.text_dim, cfg.text_layers, cfg.max_words)
        self.text_proj = nn.Linear(cfg.text_dim, emb_dim)
        # Frame-rate conditioning exists only in the video model (starts at zero: a temporal part).
        self.stride_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if cfg.temporal else None
        # Frame-time conditioning (video model only; output starts at zero: a temporal part).
        self.frame_mlp = nn.Sequential(nn.Linear(ch[0] + emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if cfg.temporal and cfg.frame_embedding else None
        # Guidance-scale conditioning (distilled students only; output starts at zero).
        self.guidance_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if cfg.guidance_embedding else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        L = cfg.levels
        self.enc = nn.ModuleList(Level(cfg, i, ch[i], ch[i], emb_dim) for i in range(L))
        self.down = nn.ModuleList(
            Down(ch[i], ch[i + 1], cfg.temporal and cfg.temporal_down[i]) for i in range(L - 1))
        self.up = nn.ModuleList(
            Up(ch[i + 1], ch[i], cfg.temporal and cfg.temporal_down[i]) for i in range(L - 1))
        self.dec = nn.ModuleList(Level(cfg, i, 2 * ch[i], ch[i], emb_dim) for i in range(L - 1))
        self.norm_out = norm(ch[0], cfg.groups)
        self.conv_out = nn.Conv2d(ch[0], cfg.video_channels, 3, padding=1)
        initialize_weights(self)

    # ------------------------------------------------------------------ conditioning
    def encode_text(self, ids: torch.Tensor) -> TextEncoding:
        return self.text_encoder(ids)

    def _embedding(self, timesteps, text: TextEncoding, stride, guidance=None):
        emb = self.time_mlp(sinusoidal(timesteps, self.config.channels[0]))
        emb = emb + self.text_proj(text.pooled)
        if self.guidance_mlp is not None:
            g = torch.as_tensor(1.0 if guidance is None else guidance, device=emb.device,
                                dtype=torch.float32).expand(emb.shape[0])
            emb = emb + self.guidance_mlp(sinusoidal(g * GUIDANCE_EMBED_SCALE, self.config.channels[0]))
        if self.stride_mlp is not None:
            s = torch.as_tensor(stride, device=emb.device, dtype=torch.float32).expand(emb.shape[0])
            emb = emb + self.stride_mlp(sinusoidal(torch.log2(s) * 100.0, self.config.channels[0]))
        return emb

    def _frame_embedding(self, emb: torch.Tensor, stride, frames: int, level_frames: int) -> torch.Tensor:
        """Per-frame embedding at a level with ``level_frames`` frames: (b t) e.

        A frame of a level that has halved time k times stands for 2^k clip frames; its time is
        their centre, in base frames (clip frame x stride), so the same motion reads the same at
        every frame rate. The MLP sees that time together with the clip's embedding (diffusion
        time + text + stride), so it can say what *this* frame of *this* caption should show.
        """
        b, e = emb.shape
        per = frames // level_frames
        centre = (torch.arange(level_frames, device=emb.device, dtype=torch.float32) + 0.5) * per - 0.5
        s = torch.as_tensor(stride, device=emb.device, dtype=torch.float32).expand(b)
        when = sinusoidal((s[:, None] * centre[None]).reshape(-1), self.config.channels[0])   # (b t) c0
        per_frame = emb.repeat_interleave(level_frames, 0)                                     # (b t) e
        return per_frame + self.frame_mlp(torch.cat([when.to(emb.dtype), per_frame], dim=1))

    def _level_embedding(self, emb, stride, frames: int, level_frames: int) -> torch.Tensor:
        if self.frame_mlp is None:
            return emb.repeat_interleave(level_frames, 0)
        return self._frame_embedding(emb, stride, frames, level_frames)

    # ------------------------------------------------------------------ forward
    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, text: TextEncoding,
                stride: int | torch.Tensor = 1, cond: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, guidance: float | torch.Tensor | None = None) -> torch.Tensor:
        """Predict the diffusion target (v or epsilon).

        sample: b c t h w (noisy clip); timesteps: (b,) diffusion steps; text: from ``encode_text``;
        stride: frame stride of the clip (int or (b,)); cond: b c t h w masked conditioning clip;
        mask: b 1 t h w, 1 where ``cond`` is given; guidance: the classifier-free guidance scale (float
        or (b,)) of a model with ``config.guidance_embedding`` (ignored otherwise; None = 1, unguided).
        Returns b c t h w.
        """
        b, c, t, h, w = sample.shape
        cfg = self.config
        if c != cfg.video_channels:
            raise ValueError(f"expected {cfg.video_channels} channels, got {c}")
        if (h, w) != (cfg.height, cfg.width) and (h % cfg.spatial_factor or w % cfg.spatial_factor):
            raise ValueError(f"height and width must be divisible by {cfg.spatial_factor}, got {h}x{w}")
        cfg.check_frames(t)
        if cond is None:
            cond = torch.zeros_like(sample)
        if mask is None:
            mask = torch.zeros_like(sample[:, :1])
        x = torch.cat([sample, cond * mask, mask], dim=1)                # b 7 t h w
        x = x.transpose(1, 2).reshape(b * t, cfg.in_channels, h, w).contiguous(memory_format=torch.channels_last)
        timesteps = torch.as_tensor(timesteps, device=sample.device).expand(b)
        emb = self._embedding(timesteps, text, stride, guidance)         # b e

        x = self.conv_in(x)                                              # (b t) c0 h w
        skips, frames = [], [t]
        level_emb: dict[int, torch.Tensor] = {}                          # frames -> (b t) e, shared by enc/dec

        def emb_at(n: int) -> torch.Tensor:
            if n not in level_emb:
                level_emb[n] = self._level_embedding(emb, stride, t, n)
            return level_emb[n]

        for i, level in enumerate(self.enc):
            x = level(x, emb_at(frames[-1]), text, frames[-1])
            if i < len(self.down):
                skips.append(x)
                x, tn = self.down[i](x, frames[-1])
                frames.append(tn)
        for i in reversed(range(len(self.dec))):
            x, tn = self.up[i](x, frames[i + 1])
            x = torch.cat([x, skips[i]], dim=1)
            x = self.dec[i](x, emb_at(frames[i]), text, frames[i])
        x = self.conv_out(F.silu(self.norm_out(x)))                      # (b t) c h w
        return x.reshape(b, t, c, h, w).transpose(1, 2).contiguous()

    # ------------------------------------------------------------------ description
    def pyramid(self, frames: int | None = None) -> list[LevelInfo]:
        """Feature shape at every level for a clip of ``frames`` frames (default: training window)."""
        cfg = self.config
        return describe_pyramid(cfg, frames)

    def temporal_parameters(self):
        return [p for n, p in self.named_parameters() if is_temporal_param(n)]


def level_path(levels: int) -> list[tuple[str, int]]:
    """(name, depth) of every level a clip passes through, in forward order.

    ``enc0 .. enc{L-2}``, ``mid`` (the coarsest level) and ``dec{L-2} .. dec0``; depth 0 is the
    finest. The Inspector records under these names and the studio labels its views with them.
    """
    return ([(f"enc{i}", i) for i in range(levels - 1)] + [("mid", levels - 1)]
            + [(f"dec{i}", i) for i in reversed(range(levels - 1))])


def describe_pyramid(cfg: STUNetConfig, frames: int | None = None, path: bool = False) -> list[LevelInfo]:
    """Feature shape and layers at every resolution level (``level0`` finest .. coarsest).

    ``path=True``: every level a clip passes through in forward order, named as ``level_path``
    (``enc0 .. mid .. dec0``; a decoder level has the shape of the encoder level at its depth).
    """
    t = cfg.frames if frames is None else frames
    cfg.check_frames(t)
    h, w = cfg.height, cfg.width
    out = []
    L = cfg.levels
    for i in range(L):
        name = f"level{i}" + (" (coarsest)" if i == L - 1 else "")
        out.append(LevelInfo(name, cfg.channels[i], t, h, w, bool(cfg.temporal and cfg.temporal_conv[i]),
                             cfg.temporal_attention[i] if cfg.temporal else 0, cfg.cross_attention[i]))
        if i < L - 1:
            h, w = h // 2, w // 2
            if cfg.temporal and cfg.temporal_down[i]:
                t //= 2
    if path:
        import dataclasses                      # local: the module's imports are left as they are
        return [dataclasses.replace(out[depth], name=name) for name, depth in level_path(L)]
    return out


# ---------------------------------------------------------------------------- weight init (one place)
def _identity_conv1d(conv: nn.Conv1d) -> None:
    """Kernel [0, 1, 0] on the channel diagonal: the conv passes frames through unchanged."""
    with torch.no_grad():
        conv.weight.zero_()
        k = conv.kernel_size[0] // 2
        for i in range(conv.out_channels):
            conv.weight[i, i, k] = 1.0
        conv.bias.zero_()


def _zero(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def initialize_weights(model: STUNet) -> None:
    """All initialisation lives here (as DiT's ``initialize_weights``).

    Spatial convs / linears: PyTorch defaults (the image U-Net's own init), with the
    output conv zeroed. Temporal branches start as the identity, so an inflated STUNet
    begins as the image U-Net applied per frame (Lumiere section 3, appendix B):
    residual temporal convs and temporal attention have zero output projections,
    temporal down/up convs are identity kernels, the frame-rate and frame-time MLPs output zero.
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear,)) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, ResBlock):
            _zero(m.conv2)                       # each residual block starts as its skip path
        elif isinstance(m, (SpatialAttention, CrossAttention)):
            _zero(m.proj)
        elif isinstance(m, TemporalConv):
            _zero(m.conv2)
        elif isinstance(m, TemporalAttention):
            _zero(m.proj)
            _zero(m.ff[-1])
        elif isinstance(m, (TemporalDown, TemporalUp)):
            _identity_conv1d(m.conv)
    if model.stride_mlp is not None:
        _zero(model.stride_mlp[-1])
    if model.frame_mlp is not None:
        _zero(model.frame_mlp[-1])
    if model.guidance_mlp is not None:           # a student starts as its teacher's conditional branch
        _zero(model.guidance_mlp[-1])
    _zero(model.conv_out)


# ---------------------------------------------------------------------------- inflation
def inflate(image_model: STUNet, config: STUNetConfig) -> STUNet:
    """Build a STUNet whose spatial weights are ``image_model``'s (Lumiere section 3).

    Every image-U-Net weight must land in the STUNet and every STUNet weight not
    loaded must be temporal; anything else is a config mismatch and raises.
    """
    if image_model.config.temporal:
        raise ValueError("inflate expects an image U-Net (config.temporal=False)")
    if image_model.config.replace(frames=config.frames, temporal=True) != config.replace(temporal=True):
        raise ValueError("the image U-Net and the STUNet config differ in more than their temporal layers")
    video = STUNet(config)
    result = video.load_state_dict(image_model.state_dict(), strict=False)
    bad_missing = [k for k in result.missing_keys if not is_temporal_param(k)]
    if bad_missing or result.unexpected_keys:
        raise ValueError(f"inflation mismatch: missing non-temporal {bad_missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return video
