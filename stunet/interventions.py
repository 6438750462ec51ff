"""Interventions: switch one temporal part of the STUNet off (or swap it) and see what breaks.

Activation patching and ablation as TransformerLens does them for language models, on Lumiere's
temporal parts (arXiv 2401.12945, section 3): the same prompt, seed and noise, so the only
difference between two clips is the intervention. A part is named by a short string
(``parse_part``; ``stunet info --parts`` lists a model's):

    none                          nothing changed (the identity)
    tattn:LAYER=identity          temporal attention at LAYER (``mid.0.0``, ... or ``all``): each frame
    tattn:LAYER=uniform             attends only to itself / equally to every frame of its level
    tconv:LEVEL                   the residual temporal convolutions of LEVEL (``enc0``, ... or ``all``) skipped
    word:WORD[+WORD...]           the word(s) removed from text cross-attention (their keys masked; the
                                    pooled text vector, which joins the timestep embedding, is kept)
    stride:N                      the frame-rate conditioning told stride N (the clip is made as before)
    patch-attn:LAYER=PROMPT       temporal-attention weights recorded from PROMPT's run written into this
                                    run at the same step and layer (MotionClone, arXiv 2406.05338)
    patch-features:LEVEL=PROMPT   a level's output recorded from PROMPT's run written into this run

Hooks are forward hooks registered in a context manager (``Intervention``) and always removed on
exit. Nothing per call is stored on modules: the sampler announces each model call with
``inspection.step_scope(owner, ...)``, and a hook acts only when the active scope names its own
``Intervention`` (pass it as ``inspector=``), so a concurrent run on the same shared model is
untouched. ``run`` / ``sample_batch`` do all of it: check every part first (a clear error naming
it, before any sampling), record the patch sources, then sample under the hooks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .inspection import current_scope, named_levels
from .layers import CrossAttention, TemporalAttention, TemporalConv, columns_to_frames

MAX_PATCH_BYTES = 512 * 2**20   # what a patch source's recording (every step, every row) may hold
KINDS = ("none", "tattn", "tconv", "word", "stride", "patch-attn", "patch-features")
TATTN_MODES = ("identity", "uniform")
ALL = "all"


# ----------------------------------------------------------------------------- naming
@dataclass(frozen=True)
class Part:
    """One intervention. ``target``: layer / level / ``all`` / words joined by ``+`` / stride.
    ``mode``: ``identity`` or ``uniform`` (tattn), the source prompt (patches). ``label``: an optional
    display name (``word:colour`` for "whichever colour word the prompt has")."""
    kind: str
    target: str = ""
    mode: str = ""
    label: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown part kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.kind == "tattn" and self.mode not in TATTN_MODES:
            raise ValueError(f"part {self.name!r}: temporal attention mode must be one of {TATTN_MODES}")
        if self.kind.startswith("patch") and not self.mode.strip():
            raise ValueError(f"part {self.kind}:{self.target}: a patch needs a source prompt (={self.kind}:"
                             f"{self.target or 'LAYER'}=PROMPT)")
        if self.kind != "none" and not self.target:
            raise ValueError(f"part {self.kind!r} needs a target ({self.kind}:TARGET)")

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if self.kind == "none":
            return "none"
        return f"{self.kind}:{self.target}" + (f"={self.mode}" if self.mode else "")

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(w for w in self.target.lower().split("+") if w) if self.kind == "word" else ()


def parse_part(spec: str) -> Part:
    """``"tattn:mid.0.0=uniform"`` -> Part. ``tattn`` without a mode is ``identity``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("a part name is empty; see `stunet info --parts`")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "none" and not rest:
        return Part("none")
    if kind not in KINDS:
        raise ValueError(f"unknown part {spec!r}: its kind {kind!r} is not one of {', '.join(KINDS)} "
                         "(see `stunet info --parts`)")
    target, _, mode = rest.partition("=")
    if kind == "tattn" and not mode:
        mode = "identity"
    return Part(kind, target.strip(), mode.strip())


def model_names(config) -> dict[str, list[str]]:
    """Names a config's parts are addressed by: temporal-attention layers, temporal-conv levels, all levels."""
    from .inspection import layer_names
    from .model import level_path
    levels = [name for name, _ in level_path(config.levels)]
    depth = dict(level_path(config.levels))
    tconv = [n for n in levels if config.temporal and config.temporal_conv[depth[n]]]
    return {"tattn": [n for n, _ in layer_names(config)[0]], "tconv": tconv, "levels": levels}


def list_parts(config) -> list[tuple[str, str]]:
    """(part name, what it does) for every concrete part of a model, then the templates."""
    names = model_names(config)
    out = [("none", "nothing changed (the identity)")]
    for layer in names["tattn"] + ([ALL] if names["tattn"] else []):
        for mode in TATTN_MODES:
            out.append((f"tattn:{layer}={mode}", describe(Part("tattn", layer, mode))))
    for level in names["tconv"] + ([ALL] if names["tconv"] else []):
        out.append((f"tconv:{level}", describe(Part("tconv", level))))
    for s in config.strides:
        out.append((f"stride:{s}", describe(Part("stride", str(s)))))
    out += [("word:WORD", "WORD (a word of the prompt; several joined by +) removed from text cross-attention"),
            ("patch-attn:LAYER=PROMPT", "LAYER's temporal attention (or all) copied from PROMPT's run, step by step"),
            ("patch-features:LEVEL=PROMPT", f"a level's output ({', '.join(names['levels'])}) copied from PROMPT's "
                                            "run, step by step")]
    return out


def describe(part: Part) -> str:
    """One plain sentence: what the part does."""
    where = "every layer" if part.target == ALL else part.target
    return {
        "none": "nothing changed (the identity)",
        "tattn": f"temporal attention at {where} " + ("attends each frame only to itself" if part.mode == "identity"
                                                       else "spreads each frame's attention evenly over all frames"),
        "tconv": f"the residual temporal convolutions at {'every level' if part.target == ALL else where} skipped",
        "word": f"'{' / '.join(part.words)}' removed from text cross-attention (keys masked)",
        "stride": f"the frame-rate conditioning told stride {part.target}",
        "patch-attn": f"temporal attention at {where} copied from the run of '{part.mode}'",
        "patch-features": f"the output of level {part.target} copied from the run of '{part.mode}'",
    }[part.kind]


# ----------------------------------------------------------------------------- checks (before any sampling)
def check_parts(parts: Sequence[Part | str], config, prompts: Sequence[str], tokenizer) -> list[Part]:
    """Every part valid for this model and these prompts, else ValueError naming the part."""
    names = model_names(config)
    out = []
    for p in parts:
        p = parse_part(p) if isinstance(p, str) else p
        if p.kind in ("tattn", "patch-attn"):
            _need(p, p.target, names["tattn"] + [ALL], "temporal-attention layer")
        elif p.kind == "tconv":
            _need(p, p.target, names["tconv"] + [ALL], "level with temporal convolutions")
        elif p.kind == "patch-features":
            _need(p, p.target, names["levels"], "level")
        elif p.kind == "stride":
            if not p.target.isdigit() or int(p.target) not in config.strides:
                raise ValueError(f"part {p.name!r}: stride must be one of {tuple(config.strides)}")
        elif p.kind == "word":
            _check_words(p, prompts, tokenizer)
        if p.kind.startswith("patch") and not tokenizer.encode(p.mode).words:
            raise ValueError(f"part {p.name!r}: the source prompt has no word the model knows")
        out.append(p)
    return out


def _need(part: Part, value: str, allowed: list[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"part {part.name!r}: {value!r} is not a {what} of this model "
                         f"(choose from {', '.join(allowed) or 'none: the model has none'})")


def _check_words(part: Part, prompts: Sequence[str], tokenizer) -> None:
    for w in part.words:
        if w not in tokenizer.index:
            raise ValueError(f"part {part.name!r}: {w!r} is not in the model's vocabulary")
    for prompt in prompts:
        words = tokenizer.encode(prompt).words
        if not set(part.words) & set(words):
            raise ValueError(f"part {part.name!r}: no such word in the prompt {prompt!r} "
                             f"(its words: {', '.join(words)})")


def patch_bytes(config, part: Part, settings) -> int:
    """Bytes a patch source's recording takes (fp32, every step and row: cond + uncond, every window)."""
    from .denoiser import temporal_windows
    from .model import describe_pyramid
    window = min(settings.frames, config.frames)
    rows = len(temporal_windows(settings.frames, config.frames, config.frames // 2)) * (
        1 if settings.guidance == 1.0 or config.guidance_embedding else 2)
    levels = {lv.name: lv for lv in describe_pyramid(config, window, path=True)}
    if part.kind == "patch-features":
        lv = levels[part.target]
        per_row = lv.channels * lv.frames * lv.height * lv.width
    else:
        layers = model_names(config)["tattn"] if part.target == ALL else [part.target]
        per_row = 0
        for layer in layers:
            lv = levels[layer.split(".")[0]]
            per_row += lv.height * lv.width * max(1, lv.channels // config.head_dim) * lv.frames ** 2
    return 4 * settings.steps * rows * per_row


def check_source(part: Part, source, target) -> None:
    """A patch source's settings against the target's: same length, steps, guidance and sampler."""
    for key in ("frames", "steps", "guidance", "sampler"):
        a, b = getattr(source, key), getattr(target, key)
        if a != b:
            raise ValueError(f"part {part.name!r}: the source clip has {key} {a}, this clip {b}; patching needs "
                             f"clips of the same {'length' if key == 'frames' else key}, step for step")


# ----------------------------------------------------------------------------- the hooks
def _arg(args, kwargs, i: int, name: str):
    return args[i] if len(args) > i else kwargs[name]


def _with_arg(args, kwargs, i: int, name: str, value):
    if len(args) > i:
        return args[:i] + (value,) + args[i + 1:], kwargs
    return args, {**kwargs, name: value}


def _guard(fn, n_rest: int):
    def hook(module, args, *rest):
        return fn(module, args, *rest) if len(rest) == n_rest else None
    return hook


def attend_with(module: TemporalAttention, x: torch.Tensor, t: int, mix) -> torch.Tensor:
    """``TemporalAttention.forward`` with its attention replaced: ``mix(q, k, v)`` -> o, (b h w) heads t d."""
    bt, c, h, w = x.shape
    s, q, k, v = module._qkv(x, t)                                     # q k v: (b h w) heads t d
    o = mix(q, k, v).contiguous()                                      # SDPA's layout, so proj sums alike
    o = o.transpose(1, 2).reshape(s.shape[0], t, c)
    s = s + module.proj(o)
    s = s + module.ff(module.ff_norm(s))
    return columns_to_frames(s.transpose(1, 2), bt // t, h, w)       # (b t) c h w


def _uniform(q, k, v):
    return v.mean(dim=2, keepdim=True).expand_as(v)


def _identity(q, k, v):
    return v


class _Hooked:
    """Hooks registered on enter and always removed on exit; they act only inside this owner's step scope."""

    def __init__(self, model):
        self.model = model
        self._handles = []

    def __enter__(self):
        try:
            self._register()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _register(self) -> None:
        raise NotImplementedError

    def _post(self, module, fn) -> None:
        """``fn(module, args, kwargs, output)`` as a forward hook with kwargs; ``_pre``: ``fn(module, args, kwargs)``
        as a pre-hook. ``Module.__call__`` snapshots the hooks but reads their with_kwargs flags as it goes, so a
        hook removed meanwhile (its owner exited, in another thread) is called without kwargs: then it does nothing
        (as ``inspection._kwargs_hook``)."""
        self._handles.append(module.register_forward_hook(_guard(fn, 2), with_kwargs=True))

    def _pre(self, module, fn) -> None:
        self._handles.append(module.register_forward_pre_hook(_guard(fn, 1), with_kwargs=True))

    def _scope(self):
        scope = current_scope()
        return scope if scope is not None and scope.inspector is self else None

    def on_step(self, out) -> None:
        """Called by the sampler after every step (as an Inspector's); nothing to record."""

    def _temporal_attention(self, names: Sequence[str]):
        for level_name, level in named_levels(self.model):
            for bi, blk in enumerate(level.blocks):
                for ai, attn in enumerate(blk.temporal_attn):
                    name = f"{level_name}.{bi}.{ai}"
                    if ALL in names or name in names:
                        yield name, attn


class Recorder(_Hooked):
    """Records, for every row of every model call, temporal-attention weights (``layers``) and level
    outputs (``levels``): the sources of patches. ``store[(step, name)]``: (b h w) heads t t / (b t) c h w."""

    def __init__(self, model, layers: Sequence[str] = (), levels: Sequence[str] = ()):
        super().__init__(model)
        self.layers, self.levels = list(layers), list(levels)
        self.store: dict[tuple[int, str], torch.Tensor] = {}

    def _register(self) -> None:
        for name, attn in self._temporal_attention(self.layers):
            self._post(attn, self._attn_hook(name))
        for name, level in named_levels(self.model):
            if name in self.levels:
                self._handles.append(level.register_forward_hook(self._level_hook(name)))

    def _attn_hook(self, name):
        def hook(module, args, kwargs, output):
            scope = self._scope()
            if scope is not None:
                x, t = _arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "t")
                self.store[(scope.step, name)] = module.attention_probs(x, t)      # fp32 softmax
        return hook

    def _level_hook(self, name):
        def hook(module, args, output):
            scope = self._scope()
            if scope is not None:
                self.store[(scope.step, name)] = output.detach().clone()
        return hook


class Intervention(_Hooked):
    """The parts' hooks on ``model``. ``ids``: the run's token ids (b l; word parts), ``sources``: a
    ``Recorder.store`` per patch part name. Pass the object as ``inspector=`` to the sampler."""

    def __init__(self, model, parts: Sequence[Part], ids: torch.Tensor | None = None, tokenizer=None,
                 sources: dict[str, dict] | None = None):
        super().__init__(model)
        self.parts = list(parts)
        self.ids, self.tokenizer = ids, tokenizer
        self.sources = sources or {}

    def _register(self) -> None:
        for p in self.parts:
            if p.kind in ("tattn", "patch-attn"):
                for name, attn in self._temporal_attention([p.target]):
                    self._post(attn, self._tattn_hook(p, name))
            elif p.kind == "tconv":
                for name, level in named_levels(self.model):
                    if p.target in (ALL, name):
                        for blk in level.blocks:
                            if isinstance(blk.temporal_conv, TemporalConv):
                                self._post(blk.temporal_conv, self._skip_hook)
            elif p.kind == "patch-features":
                for name, level in named_levels(self.model):
                    if name == p.target:
                        self._handles.append(level.register_forward_hook(self._features_hook(p, name)))
            elif p.kind == "word":
                self._register_word(p)
            elif p.kind == "stride":
                self._pre(self.model, self._stride_hook(int(p.target)))

    def _register_word(self, p: Part) -> None:
        if self.ids is None or self.tokenizer is None:
            raise ValueError(f"part {p.name!r} needs the run's token ids and tokenizer")
        remove = torch.zeros_like(self.ids, dtype=torch.bool)          # b l
        for w in p.words:
            remove |= self.ids == self.tokenizer.index[w]
        remove[:, 0] = False                                           # <cls> always stays
        for m in self.model.modules():
            if isinstance(m, CrossAttention):
                self._pre(m, self._word_hook(remove))

    def _tattn_hook(self, part: Part, name: str):
        def hook(module, args, kwargs, output):
            scope = self._scope()
            if scope is None:
                return None
            x, t = _arg(args, kwargs, 0, "x"), _arg(args, kwargs, 1, "t")
            if part.kind == "tattn":
                return attend_with(module, x, t, _identity if part.mode == "identity" else _uniform)
            probs = self.sources[part.name][(scope.step, name)]
            return attend_with(module, x, t, lambda q, k, v: probs.to(v.dtype) @ v)
        return hook

    def _skip_hook(self, module, args, kwargs, output):
        return _arg(args, kwargs, 0, "x") if self._scope() is not None else None   # the residual branch zeroed

    def _features_hook(self, part: Part, name: str):
        def hook(module, args, output):
            scope = self._scope()
            if scope is None:
                return None
            src = self.sources[part.name][(scope.step, name)]
            if src.shape != output.shape:
                raise RuntimeError(f"part {part.name!r}: source {tuple(src.shape)} vs {tuple(output.shape)}")
            return src.to(output.dtype).contiguous(memory_format=torch.channels_last)
        return hook

    def _word_hook(self, remove: torch.Tensor):
        def hook(module, args, kwargs):
            if self._scope() is None:
                return None
            pad_mask = _arg(args, kwargs, 2, "pad_mask")                # rows l; rows = reps x windows x b
            rows, b = pad_mask.shape[0], remove.shape[0]
            kill = remove.to(pad_mask.device).repeat(rows // b, 1)     # conditional rows first, then uncond (no-op)
            return _with_arg(args, kwargs, 2, "pad_mask", pad_mask & ~kill)
        return hook

    def _stride_hook(self, stride: int):
        def hook(module, args, kwargs):
            if self._scope() is None:
                return None
            return _with_arg(args, kwargs, 3, "stride", stride)
        return hook


# ----------------------------------------------------------------------------- running
def _patch_targets(p: Part) -> dict:
    return {"layers": [p.target]} if p.kind == "patch-attn" else {"levels": [p.target]}


def record_source(pipe, settings, part: Part, first_frame=None) -> dict:
    """Run ``settings`` (the source prompt's) with a Recorder for ``part``; returns its store."""
    with Recorder(pipe.model, **_patch_targets(part)) as rec:
        pipe(settings, first_frame=first_frame, inspector=rec)
    return rec.store


def prepare(pipe, settings, parts, source_settings: dict | None = None):
    """Check everything (before any sampling): (settings filled in, parts, {patch name: source settings})."""
    s = pipe.complete(settings)
    pipe.validate(s)
    parts = check_parts(parts, pipe.config, [s.prompt], pipe.tokenizer)
    sources = {}
    for p in parts:
        if p.kind.startswith("patch"):
            src = pipe.complete((source_settings or {}).get(p.name) or dataclasses.replace(s, prompt=p.mode))
            check_source(p, src, s)
            need = patch_bytes(pipe.config, p, s)
            if need > MAX_PATCH_BYTES:
                raise ValueError(f"part {p.name!r}: its source recording would take {need / 2**20:.0f} MB (limit "
                                 f"{MAX_PATCH_BYTES // 2**20} MB); patch a coarser level, or use fewer steps or frames")
            sources[p.name] = src
    return s, parts, sources


def run(pipe, settings, parts: Sequence[Part | str], first_frame: np.ndarray | None = None,
        source_settings: dict | None = None):
    """One clip of ``settings`` with ``parts`` applied (a ``pipeline.Generation``); ``parts`` empty or
    ``none``: the plain clip, bit for bit. Patch sources are the same settings with the patch's prompt
    unless ``source_settings[part.name]`` gives others (checked: same frames, steps, guidance, sampler)."""
    s, parts, src_settings = prepare(pipe, settings, parts, source_settings)
    sources = {p.name: record_source(pipe, src_settings[p.name], p, first_frame)
               for p in parts if p.kind.startswith("patch")}
    ids, _ = pipe.tokenizer.batch([s.prompt])
    with Intervention(pipe.model, parts, ids, pipe.tokenizer, sources) as iv:
        return pipe(s, first_frame=first_frame, inspector=iv)


def sample_batch(pipe, prompts: Sequence[str], parts: Sequence[Part | str], *, generator: torch.Generator,
                 frames: int | None = None, **kw) -> np.ndarray:
    """``Pipeline.sample_batch`` with ``parts`` applied (no patches: those need one source per prompt)."""
    parts = check_parts(parts, pipe.config, prompts, pipe.tokenizer)
    if any(p.kind.startswith("patch") for p in parts):
        raise ValueError("patches take one clip at a time (interventions.run)")
    ids, _ = pipe.tokenizer.batch(list(prompts))
    with Intervention(pipe.model, parts, ids, pipe.tokenizer) as iv:
        return pipe.sample_batch(list(prompts), generator=generator, frames=frames, inspector=iv, **kw)
