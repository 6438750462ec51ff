"""Training the cascade baseline (issue 18): ``stunet train-cascade``, following ``stunet train``.

1. Image stage: as ``stunet train`` (``stunet.train.run_stage``), or none with ``--init DIR``: an
   image-stage checkpoint (e.g. ``RUN/image_unet`` of ``stunet train``) inflated into the cascade
   network as ``stunet train`` inflates (``stunet.model.inflate``: temporal layers start as identity),
   or a cascade network's own checkpoint (``DIR/net``) to continue from.
2. Video stage: every training example comes from ONE 32-frame world clip at stride 1, drawn as
   ``stunet train`` draws (same world, clip kinds, ``--motion-weights``, caption dropout, noise-shifted
   schedule, high-noise share):

   * K learns the clip's 8 keyframes (frames 0, 4, ..., 28; stride conditioning 4) under the
     conditioning tasks of ``stunet.train.make_condition`` that apply to it: text only, first frame
     (``KEYFRAME_TASK_PROBS``: the STUNet's shares of the two, renormalised);
   * T learns windows of the same clip: frames 4j..4j+4 at stride 1 with both ends given, or the
     extrapolation window 28..31 with its first frame given (window positions uniform over the 8),
     the given frames noised at a diffusion step drawn from [0, ``cond_noise_max``] (Imagen Video's
     conditioning augmentation; at sampling, ``cond_noise_step``).

   Every example counts equally in the loss (mean over K rows and T rows together).

**Same clips, same compute.** FLOPs of one forward + backward pass (``stunet.flops.example_flops``,
FlopCounterMode on the real ``shapes`` configs):

    STUNet, 32 frames (stride 1)   26.27 GFLOP     K, 8 keyframes       10.62 GFLOP
    STUNet, 16 frames (stride 2)   13.15 GFLOP     T, 5-frame window     6.65 GFLOP
    STUNet,  8 frames (stride 4)    6.59 GFLOP     T, 4-frame window     5.32 GFLOP

``stunet train`` draws stride 1 four times as often as 2 or 4, so a STUNet clip costs 20.80 GFLOP on
average; a cascade clip is K (10.62) plus about 1.57 T windows (6.48 on average). So that both arms
see the same clips AND spend the same compute, each step gives the batch's clips as many T windows
as keep the run's cumulative FLOPs at (clips x the STUNet's FLOPs per clip) (error diffusion: the
number varies between steps, the running total stays within one window of the target;
``--windows X`` fixes X windows per clip on average instead). ``train.log`` records the cumulative
``clips``, ``flops``, ``cpu_seconds`` and ``wall_seconds``, as ``stunet train``'s does.

EMA weights, ``--precision``, ``--device cuda``, ``--resume``, ``--minutes``, tqdm and a JSON-lines
``train.log`` as ``stunet train`` (one process; no data-parallel). The EMA checkpoint is a cascade
checkpoint (``OUT/config.json`` + ``OUT/net/``) that ``stunet generate --model OUT`` samples.

    python -m stunet train-cascade --preset shapes --init runs/image/image_unet --out runs/cascade --video-steps 6000
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..checkpoint import estimate_parameters, load_pretrained, load_resume_ema
from ..config import STUNetConfig
from ..config import preset as stunet_preset
from ..diffusion import add_noise, alphas_cumprod, target
from ..flops import example_flops, stride_mixture_flops
from ..model import STUNet, inflate
from ..precision import Precision
from ..precision import resolve as resolve_precision
from ..shapes import world
from ..shapes.data import Batch, tokenizer_for, video_batch
from ..text import Tokenizer
from ..train import (TASK_PROBS, RunConfig, StageRun, add_run_args, add_video_data_args, batches,
                     check_video_data_args, load_counters, make_condition, sample_timesteps, video_start)
from ..training_loop import (JsonLog, LoopConfig, Optimisation, OptimConfig, fit, load_state, precision_record,
                             save_state)
from .checkpoint import save_cascade
from .config import CascadeConfig, net_preset
from .config import preset as cascade_preset

# K's conditioning tasks (train.TASKS: none, first frame, region, frames): text only and first frame, in
# the STUNet's proportion; regions (inpainting) and given frames are not the keyframe model's job.
KEYFRAME_TASK_PROBS = (TASK_PROBS[0] / sum(TASK_PROBS[:2]), TASK_PROBS[1] / sum(TASK_PROBS[:2]), 0.0, 0.0)


# ---------------------------------------------------------------------------- compute
def cascade_flops(net: STUNetConfig, casc: CascadeConfig) -> dict[str, int]:
    """FLOPs of one forward + backward of each example kind: keyframes, interpolation window, extrapolation window."""
    return {"keyframe": example_flops(net, casc.keyframes, casc.keyframe_stride),
            "interp": example_flops(net, casc.window, 1),
            "extrap": example_flops(net, casc.keyframe_stride, 1)}


def mean_window_flops(f: dict[str, int], casc: CascadeConfig) -> float:
    """A T window's FLOPs on average over the positions (K-1 interpolation windows, one extrapolation)."""
    return ((casc.keyframes - 1) * f["interp"] + f["extrap"]) / casc.keyframes


def windows_this_step(target_flops: float, flops_so_far: float, batch: int, f: dict[str, int],
                      casc: CascadeConfig) -> int:
    """T windows for this step's ``batch`` clips so the cumulative FLOPs after it are as near ``target_flops``
    as whole windows allow (at least 0, at most every window of every clip)."""
    left = target_flops - flops_so_far - batch * f["keyframe"]
    return int(min(max(round(left / mean_window_flops(f, casc)), 0), batch * casc.keyframes))


def allocate_windows(n: int, batch: int, casc: CascadeConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n`` (clip, window) pairs spread over the clips as evenly as possible; a clip's windows are distinct,
    positions uniform over 0..keyframes-1 (the last is the extrapolation window)."""
    per = np.full(batch, n // batch)
    per[rng.permutation(batch)[: n % batch]] += 1
    return [(i, int(j)) for i in range(batch) for j in sorted(rng.choice(casc.keyframes, size=per[i], replace=False))]


# ---------------------------------------------------------------------------- data and loss
def clip_batch(rng: np.random.Generator, tok: Tokenizer, net: STUNetConfig, casc: CascadeConfig, batch: int,
               spec_p: np.ndarray | None = None) -> Batch:
    """``batch`` world clips of ``casc.frames`` frames at stride 1 (``video_batch``: caption dropout included)."""
    return video_batch(rng, tok, net.replace(frames=casc.frames, strides=(1,)), batch, spec_p=spec_p)


def _example_losses(model: STUNet, cfg: STUNetConfig, ac: torch.Tensor, x0, ids, stride: int, cond, mask,
                    gen: torch.Generator, high_noise) -> torch.Tensor:
    """Per-example diffusion loss (b,) of ``x0`` (b c t h w) with the given conditioning (as ``train.loss_fn``)."""
    dev = next(model.parameters()).device
    timesteps = sample_timesteps(cfg, x0.shape[0], gen, high_noise)
    noise = torch.randn(x0.shape, generator=gen)
    x0, noise, timesteps, cond, mask = (v.to(dev) for v in (x0, noise, timesteps, cond, mask))
    x_t = add_noise(ac, x0, noise, timesteps)
    out = model(x_t, timesteps, model.encode_text(ids.to(dev)), stride, cond, mask)
    return (out.float() - target(cfg, ac, x0, noise, timesteps)).square().flatten(1).mean(1)


def cascade_loss(model: STUNet, casc: CascadeConfig, ac: torch.Tensor, b: Batch, windows: list[tuple[int, int]],
                 rng: np.random.Generator, gen: torch.Generator, high_noise=(0.0, 1.0)) -> tuple[torch.Tensor, dict]:
    """Mean loss over the batch's keyframe examples (one per clip) and its T windows; and the parts."""
    cfg = model.config
    ac = ac.to(next(model.parameters()).device)
    S, K, W = casc.keyframe_stride, casc.keyframes, casc.window
    keys = b.x0[:, :, ::S]                                                     # b c K h w
    cond, mask, _ = make_condition(keys, rng, KEYFRAME_TASK_PROBS)
    parts = {"keyframe": _example_losses(model, cfg, ac, keys, b.ids, S, cond, mask, gen, high_noise)}
    groups = {"interp": [(i, j) for i, j in windows if j < K - 1], "extrap": [(i, j) for i, j in windows if j == K - 1]}
    for kind, rows in groups.items():
        if not rows:
            continue
        n = W if kind == "interp" else S
        x0 = torch.stack([b.x0[i, :, j * S:j * S + n] for i, j in rows])          # r c n h w
        given = [0, n - 1] if kind == "interp" else [0]
        mask = torch.zeros(len(rows), 1, n, *x0.shape[3:])
        mask[:, :, given] = 1
        level = torch.from_numpy(rng.integers(0, casc.cond_noise_max + 1, size=len(rows)))
        cond = add_noise(ac.cpu(), x0, torch.randn(x0.shape, generator=gen), level)   # conditioning augmentation
        ids = b.ids[[i for i, _ in rows]]
        parts[kind] = _example_losses(model, cfg, ac, x0, ids, 1, cond, mask, gen, high_noise)
    every = torch.cat(list(parts.values()))
    counts = {k: int(v.numel()) for k, v in parts.items()}
    return every.mean(), {"parts": {k: float(v.detach().mean()) for k, v in parts.items()}, "counts": counts}


# ---------------------------------------------------------------------------- model
def init_net(init: str | Path, cfg: STUNetConfig) -> STUNet:
    """The cascade network from ``init``: an image U-Net inflated (temporal layers as identity), or a
    cascade network's checkpoint of this config loaded as it is."""
    model, _ = load_pretrained(init)
    if model.config.temporal:
        if model.config.replace(frames=cfg.frames) != cfg:
            raise ValueError(f"--init {init}: a video model whose config is not the cascade network's")
        return model.train().requires_grad_(True)
    if model.config.replace(temporal_down=cfg.temporal_down, frames=1) != cfg.image():
        raise ValueError(f"--init {init}: the image U-Net and the cascade network differ in more than their "
                         f"temporal layers")
    image = STUNet(cfg.image())                    # the same image U-Net, under the cascade's temporal_down
    image.load_state_dict(model.state_dict(), strict=True)
    return inflate(image, cfg)


def checkpoint(step: int, model: STUNet, ema: STUNet, opt, tok: Tokenizer, casc: CascadeConfig, out: Path,
               command: Mapping, counters: dict):
    """The EMA cascade checkpoint (OUT/config.json + OUT/net/), then ``train_state/`` (as ``stunet train``)."""
    save_cascade(out, casc, ema, tok, extra={"stage": "video", "step": step})
    save_state(out / "train_state", "video", step, model, opt, {"args": dict(command), "counters": counters})


def run_video(model: STUNet, casc: CascadeConfig, stage: StageRun, run: RunConfig, tok: Tokenizer, log, *,
              clip_flops: float) -> int:
    """The cascade's video stage: each step, a batch of clips as keyframe examples and as many T windows as keep
    the cumulative FLOPs at ``clip_flops`` per clip (``training_loop.fit``); returns the step reached."""
    cfg = model.config
    device = torch.device(run.device)
    model.to(device).train()
    ac = alphas_cumprod(cfg).to(device)
    optim = Optimisation(model, OptimConfig(lr=run.lr, total=stage.total, warmup=run.warmup, ema=run.ema,
                                            weight_decay=0.01), stage.start_step, stage.opt_state, stage.ema_state)
    rng = np.random.default_rng([run.seed, 0, stage.start_step, 2])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    spec_p = world.spec_probs(run.motion_weights) if run.motion_weights else None
    high_noise = (run.high_noise_frac, run.high_noise_from)
    autocast = Precision(run.precision, "resolved in main").autocast(device.type)
    f = cascade_flops(cfg, casc)
    out = Path(run.out)
    counters = {"keyframes": 0, "windows": 0, **load_counters(out, "video", stage.start_step)}
    base, cpu0, t0 = dict(counters), time.process_time(), time.time()
    stream = batches(functools.partial(video_batch, spec_p=spec_p), rng, tok,     # = clip_batch, maybe in workers
                     cfg.replace(frames=casc.frames, strides=(1,)), run.batch, run.workers)

    def loss_at(step: int):
        b = next(stream)
        B = b.x0.shape[0]
        n = windows_this_step((counters["clips"] + B) * clip_flops, counters["flops"], B, f, casc)
        windows = allocate_windows(n, B, casc, rng)
        with autocast:
            loss, info = cascade_loss(model, casc, ac, b, windows, rng, gen, high_noise)
        c = info["counts"]
        counters["clips"] += B
        counters["keyframes"] += c["keyframe"]
        counters["windows"] += c.get("interp", 0) + c.get("extrap", 0)
        counters["flops"] += sum(c.get(k, 0) * f[k] for k in f)
        return loss, info["parts"]

    def clock() -> dict:
        counters["cpu_seconds"] = round(base["cpu_seconds"] + time.process_time() - cpu0, 1)
        counters["wall_seconds"] = round(base["wall_seconds"] + time.time() - t0, 1)
        return counters

    def save(step: int):
        checkpoint(step, model, optim.ema, optim.opt, tok, casc, out, run.command, clock())

    loop = LoopConfig(total=stage.total, deadline=run.deadline, log_every=run.log_every, ckpt_every=run.ckpt_every,
                      name="cascade", quiet=run.quiet)
    step = fit(optim, loss_at, loop, log=log, checkpoint=save, head={"stage": "video"}, extra=clock)
    stream.close()                  # ends the DataLoader workers, if any
    save(step)
    return step


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="stunet train-cascade", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="shapes", help="cascade preset (its network: the STUNet preset of the same "
                                                       "name without temporal down-sampling)")
    p.add_argument("--out", default="runs/cascade")
    p.add_argument("--init", help="image-stage checkpoint (e.g. RUN/image_unet of stunet train) to inflate, or a "
                                  "cascade network (DIR/net); skips the image stage")
    p.add_argument("--image-steps", type=int, default=1500, help="image stage, when there is no --init")
    p.add_argument("--video-steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=8, help="world clips per step (each: K's keyframes + T windows)")
    p.add_argument("--image-batch", type=int, default=64, help="frames per image step")
    p.add_argument("--windows", type=float, default=None,
                   help="T windows per clip on average (default: as many as match stunet train's FLOPs per clip)")
    add_run_args(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    add_video_data_args(p)
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader processes that draw the world's clips (as stunet train); 0: drawn in the "
                        "training process, in turn with the loss's random draws (reproducible)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    check_video_data_args(p, args)
    if args.batch < 1 or args.image_batch < 1:
        p.error("--batch and --image-batch must be >= 1")
    if args.windows is not None and not 0.0 <= args.windows <= 8:
        p.error(f"--windows must be in [0, 8], got {args.windows}")
    try:
        cascade_preset(args.preset)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda":
        args.device = "cuda:0"
    if args.device.startswith("cuda"):
        torch.cuda.set_device(args.device)
    torch.set_num_threads(args.threads or (os.cpu_count() or 1))
    torch.backends.cudnn.benchmark = args.device.startswith("cuda")
    precision = resolve_precision(args.precision, args.device)
    args.precision = precision.name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.minutes * 60
    casc, cfg = cascade_preset(args.preset), net_preset(args.preset)
    tok = tokenizer_for(cfg)
    stage, step, raw, ema_sd, opt_sd = "image", 0, None, None, None
    saved = load_state(out / "train_state") if args.resume else None
    if saved is not None:
        stage, step, raw, opt_sd = saved.stage, saved.step, saved.raw, saved.optimizer
        ema_sd = load_resume_ema(out if stage == "image" else out / casc.keyframe, stage, step)
    log = JsonLog(out / "train.log")
    run = RunConfig.from_args(args, deadline)

    torch.manual_seed(args.seed)             # weight init only; data and noise use their own generators
    log({"event": "start", "args": vars(args), "stage": stage, "step": step, "cascade": casc.to_dict()})
    log(precision_record(precision))
    f = cascade_flops(cfg, casc)
    log({"event": "flops", "stunet_clip": stride_mixture_flops(stunet_preset(args.preset)), **f,
         "parameters": estimate_parameters(cfg), "stunet_parameters": estimate_parameters(stunet_preset(args.preset))})
    if not args.quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)
    resume_at = StageRun(stage, args.image_steps if stage == "image" else args.video_steps, step, opt_sd, ema_sd)
    init = (str(args.init), lambda: init_net(args.init, cfg)) if args.init else None
    start = video_start(cfg, resume_at, raw, args.video_steps, run, tok, log, init)
    if start is None:
        log.close()
        return out
    clip_flops = (f["keyframe"] + args.windows * mean_window_flops(f, casc)) if args.windows is not None \
        else stride_mixture_flops(stunet_preset(args.preset))
    step = run_video(start[0], casc, start[1], run, tok, log, clip_flops=clip_flops)
    log({"event": "stopped" if step < args.video_steps else "done", "stage": "video", "step": step})
    log.close()
    return out


if __name__ == "__main__":
    main()
