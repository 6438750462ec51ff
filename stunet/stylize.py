"""Stylized generation by swapping spatial weights (Lumiere section 4.1, issue 33).

Lumiere fine-tunes only the text-to-image weights of its video model on a style and interpolates them with
the originals, keeping the temporal layers: clips take the style and keep their motion. Our STUNet was
built the same way (``stunet.train``: an image U-Net, then inflated), so the same split is available:

* **Which weights.** Every tensor of a STUNet is one of three groups (``param_group``):
  ``temporal``: what exists only in the video model (``model.is_temporal_param``: temporal convolutions,
  temporal attention, temporal down/up-sampling, the frame-rate and frame-time MLPs: everything that mixes
  or tells apart frames); ``text``: the text encoder (``text_encoder.*``: it reads the motion words, so it
  is kept as it is, and the prompt means what it meant); ``spatial``: the rest, the image U-Net's own
  layers (2D convolutions, spatial and cross attention, the timestep and pooled-text embeddings, input and
  output convolutions). A style is a set of ``spatial`` tensors.
* **Fine-tuning** (``train``): the base checkpoint's image U-Net (``config.image()``, the STUNet without its
  temporal layers, loaded strictly from the STUNet's non-temporal tensors) is trained as in the image stage,
  on single frames (T = 1) of world clips drawn in one style (``world.STYLES``), with the captions the world
  gives them (no style word: the style lives in the weights, the prompt stays the same), the text encoder
  frozen. The temporal tensors are not in the network being trained, so they cannot change; the style file
  holds only the spatial ones, and before every checkpoint the run checks that the trained network holds no
  temporal tensor and that its text encoder is bit-identical to the base's (the log's ``checked_unchanged``).
  ``--train-temporal`` is the issue's negative control: the whole STUNet (temporal layers included, text
  encoder still frozen) is fine-tuned on the same frames, each repeated into a still clip (the only way a
  video model sees an image), so its temporal layers are free to learn that nothing moves.
* **Frames or clips** (``--data``). ``frames`` is Lumiere's recipe as written: the image U-Net on single
  frames. It relies on what Lumiere's training guarantees and ours does not: Lumiere keeps its text-to-image
  weights frozen while the temporal layers are trained (section 3), so those layers learn to read whatever
  the image layers make; our video stage trained the spatial layers together with the temporal ones, so the
  spatial layers carry part of the motion, and moving them alone on frames moves the clip's motion with them
  (``docs/style-attempt/``). ``clips`` keeps the split and the file format and changes only the data: the
  whole STUNet runs on moving world clips drawn in the style (the video stage's clip kinds, strides,
  conditioning tasks and high-noise share), and only the spatial tensors are trainable; the temporal and text
  tensors are frozen in the network (``requires_grad`` off) and checked bit-identical to the base's before
  every checkpoint, and the style file still holds only the spatial tensors. The style is then learned by
  spatial weights that were trained against the frozen temporal layers, as Lumiere's are.
* **A style directory**: ``config.json`` (the base's config), ``style.safetensors`` (the styled tensors:
  spatial only; spatial and temporal for the control), ``style.json`` (format, style, the base's config hash
  and weights hash, the groups held, the step, the run), ``train.log`` (JSON lines) and ``train_state/``
  (raw weights and optimiser, safetensors + JSON: ``--resume`` continues from it).
* **Interpolation** (``apply_style``; it and the loading live in ``stunet.style_weights``, for the studio): a
  new STUNet whose styled tensors are ``(1 - A) original + A styled`` and whose other tensors are the
  original's; A = 0 gives the original weights bit for bit. Loading is strict: a style made for another
  architecture (config, tensor names or shapes) or from other base weights is refused with an error that
  says which.

    python -m stunet stylize --style outline --out runs/style-outline --iters 600 --minutes 30
    python -m stunet generate "a red square spinning" --style runs/style-outline --style-strength 1 --seed 0
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .checkpoint import load_pretrained
from .config import STUNetConfig
from .defaults import PRECISION, PRECISIONS
from .diffusion import alphas_cumprod
from .model import STUNet
from .precision import resolve as resolve_precision
from .shapes import world
from .shapes.data import CAPTION_DROPOUT, Batch, stride_probs, to_tensor, video_batch
from .style_weights import (CONFIG_NAME, GROUPS, SPATIAL, STYLE_FORMAT, STYLE_JSON, STYLE_VERSION,  # noqa: F401
                            STYLE_WEIGHTS, TEMPORAL, TEXT, Style, StyleError, apply_style, check_style,
                            config_hash, group_names, load_style, param_group, read_style_info,
                            styled_pipeline, weights_hash)      # (re-exported: the sampling side of styles)
from .text import Tokenizer
from .training_loop import (LoopConfig, Optimisation, OptimConfig, add_optimisation_args, command_device, fit,
                            load_state, open_run, save_state)

TASK_PROBS = (0.8, 0.0, 0.2, 0.0)      # as the image stage (train.run_stage): no conditioning, or a region
DATA = ("frames", "clips")              # what the spatial fine-tune sees (module docstring)
WORLD_FRAMES = world.BASE_SPAN          # a frame is drawn from a moment of a clip this long


# ---------------------------------------------------------------------------- data
def style_frames(rng: np.random.Generator, size: int, n: int, style: str) -> tuple[np.ndarray, list[str]]:
    """``n`` single frames (n h w 3 uint8) in ``style``, each a random moment of a random world clip kind
    (every kind equally often, as the image stage), and their captions (without a style word)."""
    frames, captions = [], []
    for _ in range(n):
        spec = world.random_spec(rng)
        clip_rng = np.random.default_rng(int(rng.integers(2**62)))
        x, y, r, a = world.trajectory(spec, WORLD_FRAMES, 1, size, clip_rng)
        i = int(rng.integers(WORLD_FRAMES))
        frames.append(world.render(spec.shape, world.COLORS[spec.color], x[i:i + 1], y[i:i + 1], r[i:i + 1],
                                   a[i:i + 1], size, size, style=style)[0])
        captions.append(spec.caption)
    return np.stack(frames), captions


def style_batch(rng: np.random.Generator, tok: Tokenizer, cfg: STUNetConfig, batch: int, style: str,
                caption_dropout: float = CAPTION_DROPOUT, data: str = "frames") -> Batch:
    """A training batch in ``style``. ``data="clips"``: moving world clips (``video_batch``: b 3 t h w, the
    video stage's kinds and strides). ``frames``: single frames, b 3 1 h w for an image U-Net; for a video
    model (the negative control) each frame repeated into a still clip of ``cfg.frames / stride`` frames at a
    stride drawn as the video stage draws it. ``caption_dropout`` of the captions are the empty prompt
    (guidance stays trained)."""
    if data == "clips":
        return video_batch(rng, tok, cfg, batch, caption_dropout=caption_dropout, style=style)
    frames, captions = style_frames(rng, cfg.height, batch, style)
    captions = [c if rng.random() >= caption_dropout else "" for c in captions]
    ids, _ = tok.batch(captions)
    if not cfg.temporal:
        return Batch(to_tensor(frames[:, None]), ids, torch.ones(batch, dtype=torch.long), captions)
    strides, p = stride_probs(cfg)
    stride = int(rng.choice(strides, p=p))
    still = np.repeat(frames[:, None], cfg.frames // stride, axis=1)                   # b t h w 3
    return Batch(to_tensor(still), ids, torch.full((batch,), stride), captions)


# ---------------------------------------------------------------------------- the run
@dataclasses.dataclass(frozen=True)
class StylizeConfig:
    """One style fine-tune (the command line's flags, validated)."""
    style: str = "outline"
    out: str = "runs/style"
    model: str | None = None             # the base checkpoint (default: the shipped model)
    iters: int = 600
    batch: int | None = None             # frames per step (None: 64; still clips for --train-temporal: 8)
    lr: float = 2e-4
    warmup: int = 50
    ema: float = 0.995
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 100
    val_batches: int = 4
    minutes: float = float("inf")
    resume: bool = False
    train_temporal: bool = False
    data: str = "frames"                 # DATA: single frames (Lumiere's recipe) or moving clips
    precision: str = PRECISION
    threads: int = 0
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        world.check_style(self.style)
        if self.style == "flat":
            raise ValueError("style 'flat' is the base model's own; choose one of "
                             + ", ".join(s for s in world.STYLES if s != "flat"))
        for name in ("iters", "warmup", "log_every", "ckpt_every", "val_batches"):
            if getattr(self, name) < (0 if name in ("iters", "val_batches") else 1):
                raise ValueError(f"{name} must be >= {0 if name in ('iters', 'val_batches') else 1}")
        if self.data not in DATA:
            raise ValueError(f"data must be one of {', '.join(DATA)}, got {self.data!r}")
        if self.batch is not None and self.batch < 1:
            raise ValueError("batch must be >= 1")
        if not 0.0 < self.ema < 1.0 or not self.lr > 0:
            raise ValueError("ema must be in (0, 1) and lr > 0")

    @property
    def frames_per_step(self) -> int:
        return self.batch if self.batch is not None else (8 if self.video_network else 64)

    @property
    def video_network(self) -> bool:
        """Whether the network trained is the whole STUNet (clips, or the control) rather than the image U-Net."""
        return self.train_temporal or self.data == "clips"

    @property
    def groups(self) -> list[str]:
        return [SPATIAL, TEMPORAL] if self.train_temporal else [SPATIAL]


def trainable_network(base: STUNet, train_temporal: bool, data: str = "frames") -> STUNet:
    """What is trained: the base's image U-Net (its non-temporal tensors, loaded strictly; ``data="frames"``),
    or a copy of the whole STUNet (clips, or the negative control) whose temporal tensors are frozen unless
    ``train_temporal``; the text encoder frozen always."""
    if train_temporal or data == "clips":
        net = copy.deepcopy(base)
    else:
        net = STUNet(base.config.image())
        own = {k: v for k, v in base.state_dict().items() if param_group(k) != TEMPORAL}
        net.load_state_dict(own, strict=True)
    net = net.cpu().to(torch.float32).train().requires_grad_(True)
    net.text_encoder.requires_grad_(False)
    if not train_temporal:
        for k, p in net.named_parameters():
            if param_group(k) == TEMPORAL:
                p.requires_grad_(False)
    return net


def styled_tensors(net: STUNet, groups) -> dict:
    """``net``'s tensors in ``groups`` (float32, on the CPU, contiguous): what a style file holds."""
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()
            if param_group(k) in groups}


def verify_frozen(base: STUNet, net: STUNet, groups) -> dict:
    """The check every checkpoint is written after: each tensor of the trained network ``net`` outside
    ``groups`` (the frozen text encoder; the temporal tensors unless trained) is bit-identical to the base's or,
    for temporal tensors of an image U-Net, not in ``net`` at all. Returns the parameters checked per group;
    raises RuntimeError otherwise (a bug, never a user error)."""
    own, ref = net.state_dict(), base.state_dict()
    checked: dict[str, int] = {}
    for k, v in ref.items():
        g = param_group(k)
        if g in groups:
            continue
        if k in own and not torch.equal(own[k].detach().cpu(), v.detach().cpu()):
            raise RuntimeError(f"frozen tensor {k} ({g}) changed")
        if k not in own and g != TEMPORAL:
            raise RuntimeError(f"tensor {k} ({g}) is missing from the trained network")
        checked[g] = checked.get(g, 0) + v.numel()
    return checked


def write_style(out: Path, base: STUNet, base_model: str, rc: StylizeConfig, tensors: dict, step: int,
                base_hash: str, extra: dict | None = None) -> Path:
    """``config.json`` + ``style.safetensors`` + ``style.json`` into ``out`` (the weights replaced atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (STYLE_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"style": rc.style, "step": str(step), "groups": ",".join(rc.groups)})
    os.replace(tmp, out / STYLE_WEIGHTS)
    (out / CONFIG_NAME).write_text(base.config.to_json())
    info = {"format": STYLE_FORMAT, "version": STYLE_VERSION, "style": rc.style,
            "style_word": world.STYLE_WORDS[rc.style], "groups": rc.groups,
            "config_hash": config_hash(base.config), "base_hash": base_hash, "base_model": base_model,
            "step": step, "tensors": len(tensors), "parameters": int(sum(v.numel() for v in tensors.values())),
            "run": {k: v for k, v in dataclasses.asdict(rc).items() if k not in ("quiet", "resume")},
            **(extra or {})}
    (out / STYLE_JSON).write_text(json.dumps(info, indent=1) + "\n")
    return out


def validation_batches(tok: Tokenizer, cfg: STUNetConfig, rc: StylizeConfig) -> list[Batch]:
    """Fixed held-out batches (their own seed, captions kept), the same at every evaluation."""
    rng = np.random.default_rng([rc.seed, 99991])
    return [style_batch(rng, tok, cfg, min(rc.frames_per_step, 16), rc.style, caption_dropout=0.0, data=rc.data)
            for _ in range(rc.val_batches)]


def loss_setting(data: str) -> tuple:
    """(conditioning task probabilities, high-noise share) of the loss: the image stage's for frames, the
    video stage's (``stunet.train``) for clips."""
    if data == "clips":
        from .train import TASK_PROBS as VIDEO_TASKS
        from .train import RunConfig
        return VIDEO_TASKS, (RunConfig.high_noise_frac, RunConfig.high_noise_from)
    return TASK_PROBS, (0.0, 1.0)


@torch.no_grad()
def validation_loss(net: STUNet, held: list[Batch], ac: torch.Tensor, autocast, seed: int = 0,
                    data: str = "frames") -> float | None:
    """Mean loss of ``net`` on ``held`` with fixed noise, timesteps and conditioning: comparable across steps."""
    from .train import loss_fn
    if not held:
        return None
    losses = []
    for i, b in enumerate(held):
        rng = np.random.default_rng([seed, 7, i])
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        with autocast:
            losses.append(loss_fn(net, net.config, ac, b, rng, gen, *loss_setting(data)).item())
    return round(float(np.mean(losses)), 6)


def _resume(out: Path, rc: StylizeConfig, net: STUNet, base: STUNet, base_hash: str):
    """(step, optimiser state, EMA state) from ``out``'s train_state and style, checked to be this run's."""
    saved = load_state(out / "train_state")
    if saved is None:
        raise ValueError(f"--resume: no train_state in {out}")
    info = read_style_info(out)
    run = saved.info.get("run", {})
    if (saved.stage != "stylize" or run.get("style") != rc.style
            or bool(run.get("train_temporal")) != rc.train_temporal or run.get("data", "frames") != rc.data):
        raise ValueError(f"--resume: {out} holds another run (stage {saved.stage!r}, style {run.get('style')!r}, "
                         f"train_temporal {run.get('train_temporal')!r}, data {run.get('data', 'frames')!r})")
    if info["base_hash"] != base_hash:
        raise ValueError(f"--resume: {out} was fine-tuned from other base weights ({info.get('base_model')})")
    if info.get("step") != saved.step:
        raise ValueError(f"--resume: {STYLE_WEIGHTS} is at step {info.get('step')}, train_state at {saved.step}")
    net.load_state_dict(saved.raw, strict=True)
    style = load_style(out)
    check_style(base, style)
    ema = {**{k: v for k, v in base.state_dict().items() if k in net.state_dict()}, **style.tensors}
    return saved.step, saved.optimizer, ema


def train(base: STUNet, tok: Tokenizer, rc: StylizeConfig, precision, log, base_model: str = "?") -> STUNet:
    """Fine-tune ``base``'s spatial weights on frames of ``rc.style`` (its temporal weights too with
    ``rc.train_temporal``), resumable from ``rc.out``; writes the style directory and returns the EMA network
    (an image U-Net, or a STUNet for the control). ``base`` is not changed."""
    out = Path(rc.out)
    device = torch.device("cpu" if rc.device == "auto" else rc.device)
    deadline = time.time() + rc.minutes * 60
    base = base.eval()
    base_hash = weights_hash(base)
    net = trainable_network(base, rc.train_temporal, rc.data)
    step, opt_sd, ema_sd = 0, None, None
    if rc.resume:
        step, opt_sd, ema_sd = _resume(out, rc, net, base, base_hash)
        log({"event": "resumed", "step": step})
    elif (out / STYLE_JSON).exists():
        raise ValueError(f"{out} already holds a style; pass --resume to continue it, or another --out")
    cfg = net.config
    trained: dict[str, int] = {}
    frozen: dict[str, int] = {}
    for k, p in net.named_parameters():
        d = trained if p.requires_grad else frozen
        d[param_group(k)] = d.get(param_group(k), 0) + p.numel()
    absent = sum(v.numel() for k, v in base.state_dict().items() if k not in net.state_dict())
    log({"event": "parameters", "network": "stunet" if rc.video_network else "image_unet", "trained": trained,
         "frozen": frozen, "temporal_not_in_network": absent})
    net.to(device)
    optim = Optimisation(net, OptimConfig(lr=rc.lr, total=rc.iters, warmup=rc.warmup, ema=rc.ema), step,
                         opt_sd, ema_sd)
    ema = optim.ema.eval()
    ac = alphas_cumprod(cfg)
    autocast = precision.autocast(device.type)
    held = validation_batches(tok, cfg, rc)
    rng = np.random.default_rng([rc.seed, step, 17])
    gen = torch.Generator().manual_seed(rc.seed * 1_000_003 + step)
    if step == 0:
        log({"step": 0, "val_loss": validation_loss(ema, held, ac, autocast, rc.seed, rc.data)})

    def loss_at(k: int):
        from .train import loss_fn
        b = style_batch(rng, tok, cfg, rc.frames_per_step, rc.style, data=rc.data)
        with autocast:
            return loss_fn(net, cfg, ac, b, rng, gen, *loss_setting(rc.data)), {}

    saved_at = [step if rc.resume else -1]

    def save(k: int):
        frozen = verify_frozen(base, net, rc.groups)
        verify_frozen(base, ema, rc.groups)
        tensors = styled_tensors(ema, rc.groups)
        log({"step": k, "val_loss": validation_loss(ema, held, ac, autocast, rc.seed, rc.data),
             "checked_unchanged": frozen})
        write_style(out, base, base_model, rc, tensors, k, base_hash)
        save_state(out / "train_state", "stylize", k, net, optim.opt, {"run": dataclasses.asdict(rc)})
        saved_at[0] = k

    loop = LoopConfig(total=rc.iters, deadline=deadline, log_every=rc.log_every, ckpt_every=rc.ckpt_every,
                      name=f"stylize {rc.style}", smoothing=0.95, loss_digits=6, quiet=rc.quiet)
    step = fit(optim, loss_at, loop, log=log, checkpoint=save)
    if saved_at[0] != step:
        save(step)
    log({"event": "done" if step >= rc.iters else "stopped", "step": step})
    return ema


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None) -> StylizeConfig:
    d = StylizeConfig()
    p = argparse.ArgumentParser(prog="stunet stylize", description=__doc__.split("\n\n")[0])
    p.add_argument("--style", required=True, choices=[s for s in world.STYLES if s != "flat"])
    p.add_argument("--out", required=True, help="style directory: config.json, style.safetensors, style.json, "
                                                "train.log, train_state/")
    p.add_argument("--model", default=None, help="base checkpoint (default: the shipped model)")
    p.add_argument("--iters", type=int, default=d.iters, help="optimiser steps in all (a resumed run goes on to it)")
    p.add_argument("--batch", type=int, default=None,
                   help="frames per step (default 64; with --train-temporal, still clips per step, default 8)")
    add_optimisation_args(p, lr=d.lr, warmup=d.warmup, ema=d.ema, ckpt_every=d.ckpt_every, log_every=d.log_every)
    p.add_argument("--val-batches", type=int, default=d.val_batches, help="held-out batches for val_loss")
    p.add_argument("--train-temporal", action="store_true",
                   help="negative control: fine-tune the temporal layers too (the whole STUNet on still clips)")
    p.add_argument("--data", choices=DATA, default=d.data,
                   help="frames: the image U-Net on single frames (Lumiere's recipe); clips: the STUNet on moving "
                        "clips with its temporal layers frozen (spatial tensors trained and stored either way)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        return StylizeConfig(**vars(a))
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    rc = parse_args(argv)
    rc = dataclasses.replace(rc, device=command_device(rc.device, rc.threads))
    try:
        precision = resolve_precision(rc.precision, rc.device)
        base, tok = load_pretrained(rc.model)
        log = open_run(rc.out, {"event": "start", "run": dataclasses.asdict(rc)}, precision,
                       occupied=STYLE_JSON, what="style", resume=rc.resume, quiet=rc.quiet)
        train(base, tok, rc, precision, log, base_model=str(rc.model or "the shipped model"))
        log.close()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(rc.out)
    return 0

if __name__ == "__main__":
    sys.exit(main())


def cli_pipeline(pipe, style: str | Path | None, strength: float | None):
    """``stunet generate --style DIR [--style-strength A]``: ``pipe`` with the style applied (strength 1 by
    default), or ``pipe`` itself without ``--style``."""
    if style is None:
        if strength is not None:
            raise StyleError("--style-strength needs --style DIR")
        return pipe
    return styled_pipeline(pipe, style, 1.0 if strength is None else strength)
