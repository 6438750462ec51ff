"""Inspection: record what happens inside the STUNet during a sampling call.

    with Inspector(model, feature_steps=[0, 12, 24]) as rec:
        clip = sample(model, text, uncond, generator=g, inspector=rec)
    rec.recording.features[(24, "mid")]           # c t h w at the coarsest level

Recorded per denoising step asked for (for the first clip of the batch, first window):
* ``features[(step, level)]``: each level's output after its blocks, c t h w (float16);
  levels are ``enc0 .. enc{L-2}``, ``mid`` (coarsest) and ``dec{L-2} .. dec0``.
* ``temporal_attention[(step, layer)]``: h w heads t t softmax weights (query x key frame).
* ``cross_attention[(step, layer)]``: l t h w, softmax weights of each text token over
  space-time, averaged over heads (the word-attention maps).
* ``x0[step]``: the predicted clean clip, c t h w, at every step.

Hooks are forward hooks registered on ``__enter__`` (``with_kwargs=True``: a module called with
keyword arguments is recorded as one called positionally) and always removed on ``__exit__``
(errors included); the modules and their names come from ``hooked_modules``, the one place
layer names are made (``layer_names`` gives the same names from a config). Nothing per call is stored on modules: the sampler announces each
model call with ``step_scope(inspector, ...)`` (a ContextVar set and reset around the
call, in the calling thread), and a hook records only when the active scope names its own
inspector, so two inspected runs in parallel threads never mix. Memory is bounded by
``max_bytes``; what it costs for the shipped model is printed by ``Recording.nbytes``
(about 5 MB per feature step, 0.1 MB per attention step, 0.2 MB per x0 step). Records are
float16 on the CPU whatever device the model runs on.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
from dataclasses import dataclass, field

import numpy as np
import torch

from .layers import CrossAttention, TemporalAttention
from .model import describe_pyramid, level_path


@dataclass(frozen=True)
class _Scope:
    inspector: "Inspector | None"
    step: int
    timestep: int


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("stunet_step_scope", default=None)


@contextlib.contextmanager
def step_scope(inspector, step: int, timestep: int):
    """Announce one model call of denoising step ``step`` (used by the sampler)."""
    token = _SCOPE.set(_Scope(inspector, step, timestep))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> "_Scope | None":
    """The model call announced by ``step_scope`` in this context (None outside one): its
    ``inspector``, ``step`` and ``timestep``. Other hook owners (``stunet.interventions``) gate on it."""
    return _SCOPE.get()


@dataclass
class Recording:
    level_names: list[str] = field(default_factory=list)
    timesteps: dict[int, int] = field(default_factory=dict)
    features: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    temporal_attention: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    cross_attention: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    x0: dict[int, torch.Tensor] = field(default_factory=dict)
    dropped: int = 0     # records skipped because max_bytes was reached

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for d in (self.features, self.temporal_attention,
                                                         self.cross_attention, self.x0) for t in d.values())

    def steps(self, kind: str = "features") -> list[int]:
        d = getattr(self, kind)
        return sorted({k[0] if isinstance(k, tuple) else k for k in d})

    def layers(self, kind: str) -> list[str]:
        return list(dict.fromkeys(k[1] for k in getattr(self, kind)))

    # ----------------------------------------------------------------- queries (what the studio shows)
    def feature_steps(self) -> list[int]:
        """The denoising steps with feature maps."""
        return self.steps("features")

    def temporal_layers(self) -> list[str]:
        """Temporal-attention layers recorded (``level.block.attention``), in forward order."""
        return self.layers("temporal_attention")

    def cross_layers(self) -> list[str]:
        """Text cross-attention layers recorded (``level.block``), in forward order."""
        return self.layers("cross_attention")

    def heads(self, layer: str) -> int:
        """Heads of a temporal-attention layer (0 if it was not recorded)."""
        for (_, name), p in self.temporal_attention.items():
            if name == layer:
                return int(p.shape[2])
        return 0

    def grid(self, layer: str) -> tuple[int, int, int]:
        """(frames, height, width) of a temporal-attention layer."""
        for (_, name), p in self.temporal_attention.items():
            if name == layer:
                return int(p.shape[3]), int(p.shape[0]), int(p.shape[1])
        raise KeyError(layer)

    def recorded_frames(self, default: int) -> int:
        """Frames the features cover (the first window of a long clip), or ``default`` without features."""
        first = self.level_names[0] if self.level_names else None
        for (_, name), x in self.features.items():
            if name == first:
                return int(x.shape[1])
        return default

    def word_attention(self, n_words: int, frames: int, size: tuple[int, int], step: int | None = None,
                       layer: str | None = None) -> np.ndarray:
        """(n_words, frames, H, W): the attention mass of each known word (token positions 1..n_words), DAAM-style.

        ``step=None`` averages the recorded steps; ``layer=None`` averages every cross-attention
        layer, so a value is the share of that pixel's attention the word takes.
        """
        from .analysis import to_numpy, word_maps
        layers = [layer] if layer else self.cross_layers()
        steps = self.steps("cross_attention") if step is None else [step]
        positions = list(range(1, n_words + 1))
        maps = []
        for name in layers:
            per = [self.cross_attention[(s, name)] for s in steps if (s, name) in self.cross_attention]
            if per:
                maps.append(np.mean([to_numpy(p) for p in per], axis=0))
        if not maps or not positions:
            return np.zeros((len(positions), frames, *size), dtype=np.float32)
        return word_maps(maps, positions, (frames, *size), reduce="mean")

    def arrays(self, dtype=np.float16) -> dict[str, np.ndarray]:
        """Everything recorded as numpy arrays, keyed ``kind/SSS/name`` (``x0/SSS``, ``timesteps``)."""
        out = {"timesteps": np.array(sorted(self.timesteps.items()), dtype=np.int64).reshape(-1, 2)}
        for kind in ("features", "temporal_attention", "cross_attention"):
            for (s, name), t in getattr(self, kind).items():
                out[f"{kind}/{s:03d}/{name}"] = t.numpy().astype(dtype, copy=False)
        for s, t in self.x0.items():
            out[f"x0/{s:03d}"] = t.numpy().astype(dtype, copy=False)
        return out

    def save_npz(self, file, compress: bool = False, dtype=np.float16, **extra: np.ndarray) -> None:
        """Write ``arrays()`` (plus ``extra``) to a path or file object. Uncompressed float16 is
        fast (about 1 s for 100 MB); ``compress=True`` is smaller and much slower."""
        (np.savez_compressed if compress else np.savez)(file, **self.arrays(dtype), **extra)

    def to_npz(self, compress: bool = False, dtype=np.float16) -> bytes:
        buf = io.BytesIO()
        self.save_npz(buf, compress, dtype)
        return buf.getvalue()


class Inspector:
    """Context manager that records a STUNet's internals during sampling calls given ``inspector=self``."""

    def __init__(self, model, feature_steps=None, attention_steps=None, x0_steps=None, features: bool = True,
                 attention: bool = True, max_bytes: int = 64 * 2**20, batch_index: int = 0):
        """``*_steps``: the denoising steps to record (None: all). ``max_bytes`` bounds the recording."""
        self.model = model
        self.feature_steps = None if feature_steps is None else set(feature_steps)
        self.attention_steps = None if attention_steps is None else set(attention_steps)
        self.x0_steps = None if x0_steps is None else set(x0_steps)
        self.want_features, self.want_attention = features, attention
        self.max_bytes = max_bytes
        self.row = batch_index
        self.recording = Recording()
        self._handles = []
        self._bytes = 0

    # ----------------------------------------------------------------- hooks
    def __enter__(self) -> "Inspector":
        hooks = {"level": self._feature_hook if self.want_features else None,
                 "temporal": self._tattn_hook if self.want_attention else None,
                 "cross": self._xattn_hook if self.want_attention else None}
        try:
            for kind, name, module in hooked_modules(self.model):
                if kind == "level":
                    self.recording.level_names.append(name)
                if hooks[kind] is not None:
                    self._handles.append(module.register_forward_hook(_kwargs_hook(hooks[kind](name)),
                                                                      with_kwargs=True))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _active(self, steps) -> _Scope | None:
        scope = _SCOPE.get()
        if scope is None or scope.inspector is not self:
            return None
        if steps is not None and scope.step not in steps:
            return None
        return scope

    def _store(self, d, key, tensor):
        """Keep ``tensor`` as float16 on the CPU, whatever the model's device (a recording outlives the
        GPU: it is read by views, saved with numpy, and crosses process boundaries on ZeroGPU)."""
        if self._bytes + tensor.numel() * 2 > self.max_bytes:
            self.recording.dropped += 1
            return
        self._bytes += tensor.numel() * 2
        d[key] = tensor.detach().to(torch.float16).cpu().contiguous()

    def _feature_hook(self, name):
        def hook(module, args, kwargs, output):                          # Level.forward(x, emb, text, t)
            scope = self._active(self.feature_steps)
            if scope is None:
                return
            t = _arg(args, kwargs, 3, "t")                               # frames at this level
            bt, c, h, w = output.shape
            x = output.reshape(bt // t, t, c, h, w)[self.row].transpose(0, 1)   # c t h w
            self.recording.timesteps[scope.step] = scope.timestep
            self._store(self.recording.features, (scope.step, name), x)
        return hook

    def _tattn_hook(self, name):
        def hook(module: TemporalAttention, args, kwargs, output):       # forward(x, t)
            scope = self._active(self.attention_steps)
            if scope is None:
                return
            x, t = _arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "t")
            bt, c, h, w = x.shape
            p = module.attention_probs(x, t)                             # (b h w) heads t t
            p = p.reshape(bt // t, h, w, *p.shape[1:])[self.row]         # h w heads t t
            self.recording.timesteps[scope.step] = scope.timestep
            self._store(self.recording.temporal_attention, (scope.step, name), p)
        return hook

    def _xattn_hook(self, name):
        def hook(module: CrossAttention, args, kwargs, output):          # forward(x, context, pad_mask, t)
            scope = self._active(self.attention_steps)
            if scope is None:
                return
            x, context, pad_mask, t = (_arg(args, kwargs, i, n) for i, n in enumerate(("x", "context", "pad_mask", "t")))
            bt, c, h, w = x.shape
            p = module.attention_probs(x, context, pad_mask, t)          # (b t) heads (h w) l
            p = p.reshape(bt // t, t, p.shape[1], h, w, p.shape[-1])[self.row].mean(1)   # t h w l
            self.recording.timesteps[scope.step] = scope.timestep
            self._store(self.recording.cross_attention, (scope.step, name), p.permute(3, 0, 1, 2))
        return hook

    # ----------------------------------------------------------------- per step (called by the sampler)
    def on_step(self, out) -> None:
        self.recording.timesteps.setdefault(out.step, out.timestep)
        if self.x0_steps is None or out.step in self.x0_steps:
            self._store(self.recording.x0, out.step, out.x0[self.row])


def _kwargs_hook(fn):
    """``fn(module, args, kwargs, output)`` as a hook registered ``with_kwargs=True``, also when called without
    kwargs: ``Module.__call__`` takes a snapshot of the hooks before calling them but reads their with_kwargs
    flags as it goes, so a hook that another thread's inspector removes meanwhile is called as (module, args,
    output). It then returns at once (the scope is not its own), but must not fail first."""
    def hook(module, args, *rest):
        kwargs, output = rest if len(rest) == 2 else ({}, rest[0])
        return fn(module, args, kwargs, output)
    return hook


def _arg(args: tuple, kwargs: dict, i: int, name: str):
    """A hooked forward's argument ``name`` (position ``i``), passed by position or by keyword."""
    return args[i] if len(args) > i else kwargs[name]


def temporal_layer_name(level: str, block: int, index: int) -> str:
    """The name of temporal-attention layer ``index`` of block ``block`` of ``level``: ``mid.0.1``."""
    return f"{level}.{block}.{index}"


def cross_layer_name(level: str, block: int) -> str:
    """The name of the cross-attention layer of block ``block`` of ``level``: ``enc1.0``."""
    return f"{level}.{block}"


def hooked_modules(model):
    """(kind, name, module) in forward order: ("level", level name, Level), then its blocks' ("temporal", name,
    TemporalAttention) and ("cross", name, CrossAttention): what the Inspector hooks, under the names it records."""
    for name, level in named_levels(model):
        yield "level", name, level
        for bi, blk in enumerate(level.blocks):
            for ai, attn in enumerate(blk.temporal_attn):
                yield "temporal", temporal_layer_name(name, bi, ai), attn
            if blk.cross is not None:
                yield "cross", cross_layer_name(name, bi), blk.cross


def named_levels(model):
    """(name, Level) in forward order, named by ``model.level_path``: ``enc0 ..``, ``mid``, ``.. dec0``."""
    for name, depth in level_path(len(model.enc)):
        yield name, (model.dec[depth] if name.startswith("dec") else model.enc[depth])


def layer_names(model) -> tuple[list[tuple[str, int]], list[str]]:
    """(temporal-attention layers with their head counts, cross-attention layers), as the Inspector names them.

    ``model``: a STUNet or just its config (nothing is built: the studio asks before its weights are loaded).
    """
    cfg = getattr(model, "config", model)
    temporal, cross = [], []
    for lv in describe_pyramid(cfg, path=True):
        for bi in range(cfg.blocks_per_level):
            for ai in range(lv.temporal_attention):
                heads = max(1, lv.channels // cfg.head_dim)             # as TemporalAttention.heads
                temporal.append((temporal_layer_name(lv.name, bi, ai), heads))
            if lv.cross_attention:
                cross.append(cross_layer_name(lv.name, bi))
    return temporal, cross
