"""Training the SSR model on world pairs (``stunet train-ssr``; Lumiere section 3.2, issue 34).

Each step: ``batch`` pairs of ``window``-frame clips (``data.ssr_batch``: a ``crop`` of the large clip and the
matching crop of the base-size clip), the large crop noised to a uniform diffusion step, the small one
upsampled (bicubic) and noise-augmented to a step drawn uniformly in [0, ``cond_noise_max``] (cascaded
diffusion's conditioning augmentation: at sampling the base model's clip is not the world's, and the noise
hides the difference), the loss the MSE of the network's prediction (``config.prediction_type``: x0 by
default) of what is diffused (``config.residual``: the large crop minus the bicubic upsampling of the small). AdamW with warm-up and cosine decay,
an EMA (``stunet.training_loop``); the EMA weights are the run's model (``OUT/config.json`` +
``OUT/model.safetensors``), ``OUT/train_state`` resumes it, ``OUT/train.log`` holds JSON lines with a fixed
held-out loss at every checkpoint.

    python -m stunet train-ssr --out runs/ssr --iters 3000 --minutes 30 --precision bf16
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..defaults import PRECISION, PRECISIONS
from ..diffusion import add_noise, alphas_cumprod, target
from ..precision import resolve as resolve_precision
from ..training_loop import (LoopConfig, Optimisation, OptimConfig, add_optimisation_args, command_device, fit,
                             open_run, resume_into, save_state)
from .checkpoint import save_ssr
from .config import SSR_PRESETS, ssr_preset
from .data import SSRBatch, ssr_batch
from .model import SSRNet
from .sampling import upsample


@dataclasses.dataclass(frozen=True)
class TrainSSRConfig:
    """One SSR training run (the command line's flags, validated)."""
    out: str = "runs/ssr"
    preset: str = "ssr"
    iters: int = 3000
    batch: int = 16
    crop: int = 64
    lr: float = 5e-4
    warmup: int = 100
    ema: float = 0.999
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 250
    val_batches: int = 4
    minutes: float = float("inf")
    resume: bool = False
    precision: str = PRECISION
    threads: int = 0
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        if self.preset not in SSR_PRESETS:
            raise ValueError(f"unknown SSR preset {self.preset!r}; choose from {sorted(SSR_PRESETS)}")
        for name in ("iters", "val_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("batch", "crop", "warmup", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.lr > 0 or not 0.0 < self.ema < 1.0:
            raise ValueError("lr must be > 0 and ema in (0, 1)")


def loss_fn(net: SSRNet, ac: torch.Tensor, b: SSRBatch, gen: torch.Generator) -> torch.Tensor:
    """The MSE of the network's prediction (``config.prediction_type``) on one batch; every random draw from ``gen`` (CPU), so a seed repeats it."""
    cfg = net.config
    dev = next(net.parameters()).device
    n = b.hi.shape[0]
    t = torch.randint(0, cfg.train_timesteps, (n,), generator=gen)
    c = torch.randint(0, cfg.cond_noise_max + 1, (n,), generator=gen)
    noise = torch.randn(b.hi.shape, generator=gen)
    cond_noise = torch.randn(b.hi.shape, generator=gen)
    hi, noise, cond_noise, t, c = (v.to(dev) for v in (b.hi, noise, cond_noise, t, c))
    ac = ac.to(dev)
    up = upsample(b.lo.to(dev), hi.shape[-1])
    cond = add_noise(ac, up, cond_noise, c)
    x0 = hi - up if cfg.residual else hi                  # what is diffused (config.residual)
    out = net(add_noise(ac, x0, noise, t), t, cond, c)
    return torch.nn.functional.mse_loss(out.float(), target(cfg, ac, x0, noise, t))


@torch.no_grad()
def validation_loss(net: SSRNet, held: list[SSRBatch], ac: torch.Tensor, autocast, seed: int) -> float | None:
    """Mean loss on fixed held-out batches with fixed noise: comparable across steps."""
    if not held:
        return None
    losses = []
    for i, b in enumerate(held):
        with autocast:
            losses.append(loss_fn(net, ac, b, torch.Generator().manual_seed(seed * 1_000_003 + 7919 + i)).item())
    return round(float(np.mean(losses)), 6)


def train(rc: TrainSSRConfig, precision, log) -> SSRNet:
    """Train (or resume) the run in ``rc.out``; returns the EMA network."""
    out = Path(rc.out)
    device = torch.device("cpu" if rc.device == "auto" else rc.device)
    deadline = time.time() + rc.minutes * 60
    cfg = ssr_preset(rc.preset)
    if rc.crop % (cfg.scale * cfg.unshuffle) or rc.crop > cfg.size:
        raise ValueError(f"crop must be a multiple of {cfg.scale * cfg.unshuffle} and at most {cfg.size}")
    torch.manual_seed(rc.seed)
    net = SSRNet(cfg)
    step, opt_sd, ema_sd = (0, None, None)
    if rc.resume:
        step, opt_sd, ema_sd = resume_into(net, out)
        if step == 0:
            raise ValueError(f"--resume: no train_state in {out}")
        log({"event": "resumed", "step": step})
    elif (out / "train_state").exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or another --out")
    net.to(device).train()
    log({"event": "parameters", "parameters": sum(p.numel() for p in net.parameters()), "config": json.loads(cfg.to_json())})
    optim = Optimisation(net, OptimConfig(lr=rc.lr, total=rc.iters, warmup=rc.warmup, ema=rc.ema), step,
                         opt_sd, ema_sd)
    ema = optim.ema.eval()
    ac = alphas_cumprod(cfg)
    autocast = precision.autocast(device.type)
    held_rng = np.random.default_rng([rc.seed, 99991])
    held = [ssr_batch(held_rng, cfg, min(rc.batch, 8), rc.crop) for _ in range(rc.val_batches)]
    rng = np.random.default_rng([rc.seed, step, 17])
    gen = torch.Generator().manual_seed(rc.seed * 1_000_003 + step)
    if step == 0:
        log({"step": 0, "val_loss": validation_loss(ema, held, ac, autocast, rc.seed)})

    def loss_at(k: int):
        b = ssr_batch(rng, cfg, rc.batch, rc.crop)
        with autocast:
            return loss_fn(net, ac, b, gen), {}

    saved_at = [step if rc.resume else -1]

    def save(k: int):
        log({"step": k, "val_loss": validation_loss(ema, held, ac, autocast, rc.seed)})
        save_ssr(ema, out)
        save_state(out / "train_state", "ssr", k, net, optim.opt, {"run": dataclasses.asdict(rc)})
        saved_at[0] = k

    loop = LoopConfig(total=rc.iters, deadline=deadline, log_every=rc.log_every, ckpt_every=rc.ckpt_every,
                      name="ssr", smoothing=0.95, loss_digits=6, quiet=rc.quiet)
    step = fit(optim, loss_at, loop, log=log, checkpoint=save)
    if saved_at[0] != step:
        save(step)
    log({"event": "done" if step >= rc.iters else "stopped", "step": step})
    return ema


def parse_args(argv=None) -> TrainSSRConfig:
    d = TrainSSRConfig()
    p = argparse.ArgumentParser(prog="stunet train-ssr", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder: config.json, model.safetensors, train.log, train_state/")
    p.add_argument("--preset", default=d.preset, choices=sorted(SSR_PRESETS))
    p.add_argument("--iters", type=int, default=d.iters, help="optimiser steps in all (a resumed run goes on to it)")
    p.add_argument("--batch", type=int, default=d.batch, help="window pairs per step")
    p.add_argument("--crop", type=int, default=d.crop, help="side of the output crops trained on (pixels)")
    add_optimisation_args(p, lr=d.lr, warmup=d.warmup, ema=d.ema, ckpt_every=d.ckpt_every, log_every=d.log_every)
    p.add_argument("--val-batches", type=int, default=d.val_batches, help="held-out batches for val_loss")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        return TrainSSRConfig(**vars(a))
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    rc = parse_args(argv)
    rc = dataclasses.replace(rc, device=command_device(rc.device, rc.threads))
    try:
        precision = resolve_precision(rc.precision, rc.device)
        log = open_run(rc.out, {"event": "start", "run": dataclasses.asdict(rc)}, precision,
                       occupied="train_state", resume=rc.resume, quiet=rc.quiet)
        train(rc, precision, log)
        log.close()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(rc.out)
    return 0

if __name__ == "__main__":
    sys.exit(main())
