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
import copy
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

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
from ..train import (TASK_PROBS, _unflatten_optimizer, add_run_args, add_video_data_args, batches,
                     check_video_data_args, ema_update, learning_rate, load_counters, make_condition, run_stage,
                     sample_timesteps, save_state)
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


def checkpoint(step: int, model: STUNet, ema: STUNet, opt, tok: Tokenizer, casc: CascadeConfig, out: Path, args,
               counters: dict):
    """The EMA cascade checkpoint (OUT/config.json + OUT/net/), then ``train_state/`` (as ``stunet train``)."""
    save_cascade(out, casc, ema, tok, extra={"stage": "video", "step": step})
    save_state(out / "train_state", "video", step, model, opt, {"args": vars(args), "counters": counters})


def run_video(model: STUNet, casc: CascadeConfig, args, tok: Tokenizer, out: Path, start_step: int,
              opt_state: dict | None, ema_state: dict | None, log, deadline: float) -> int:
    cfg = model.config
    device = torch.device(args.device)
    model.to(device).train()
    ac = alphas_cumprod(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ema = copy.deepcopy(model).requires_grad_(False)
    if ema_state is not None:
        ema.load_state_dict(ema_state)
    rng = np.random.default_rng([args.seed, 0, start_step, 2])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    spec_p = world.spec_probs(args.motion_weights) if args.motion_weights else None
    high_noise = (args.high_noise_frac, args.high_noise_from)
    autocast = Precision(args.precision, "resolved in main").autocast(device.type)
    f = cascade_flops(cfg, casc)
    per_clip = (f["keyframe"] + args.windows * mean_window_flops(f, casc)) if args.windows is not None \
        else stride_mixture_flops(stunet_preset(args.preset))
    counters = {"keyframes": 0, "windows": 0, **load_counters(out, "video", start_step)}
    base, cpu0, t0 = dict(counters), time.process_time(), time.time()
    stream = batches(functools.partial(video_batch, spec_p=spec_p), rng, tok,     # = clip_batch, maybe in workers
                     cfg.replace(frames=casc.frames, strides=(1,)), args.batch, args.workers)
    bar = tqdm(total=args.video_steps, initial=start_step, desc="cascade", disable=args.quiet, dynamic_ncols=True,
               mininterval=5.0)
    smooth, parts, step = None, {}, start_step
    while step < args.video_steps and time.time() < deadline:
        for g in opt.param_groups:
            g["lr"] = learning_rate(args.lr, step, args.video_steps, args.warmup)
        b = next(stream)
        B = b.x0.shape[0]
        n = windows_this_step((counters["clips"] + B) * per_clip, counters["flops"], B, f, casc)
        windows = allocate_windows(n, B, casc, rng)
        with autocast:
            loss, info = cascade_loss(model, casc, ac, b, windows, rng, gen, high_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, step, args.ema)
        step += 1
        c = info["counts"]
        counters["clips"] += B
        counters["keyframes"] += c["keyframe"]
        counters["windows"] += c.get("interp", 0) + c.get("extrap", 0)
        counters["flops"] += sum(c.get(k, 0) * f[k] for k in f)
        counters["cpu_seconds"] = round(base["cpu_seconds"] + time.process_time() - cpu0, 1)
        counters["wall_seconds"] = round(base["wall_seconds"] + time.time() - t0, 1)
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"non-finite loss at cascade step {step}")
        smooth = lv if smooth is None else 0.98 * smooth + 0.02 * lv
        for k, v in info["parts"].items():
            parts[k] = v if k not in parts else 0.98 * parts[k] + 0.02 * v
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.4f}")
        if step % args.log_every == 0 or step == args.video_steps:
            log({"stage": "video", "step": step, "loss": round(smooth, 5),
                 **{f"loss_{k}": round(v, 5) for k, v in parts.items()}, "grad_norm": round(float(gnorm), 4),
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1), **counters})
        if step % args.ckpt_every == 0:
            checkpoint(step, model, ema, opt, tok, casc, out, args, counters)
    bar.close()
    stream.close()                  # ends the DataLoader workers, if any
    checkpoint(step, model, ema, opt, tok, casc, out, args, counters)
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
    state_dir = out / "train_state"
    stage, step, raw, ema_sd, opt_sd = "image", 0, None, None, None
    if args.resume and (state_dir / "state.json").is_file():
        st = json.loads((state_dir / "state.json").read_text())
        stage, step = st["stage"], st["step"]
        raw = load_file(str(state_dir / "raw.safetensors"))
        ema_sd = load_resume_ema(out if stage == "image" else out / casc.keyframe, stage, step)
        opt_sd = _unflatten_optimizer(load_file(str(state_dir / "optimizer.safetensors")),
                                      json.loads((state_dir / "optimizer.json").read_text()))
    logf = open(out / "train.log", "a")

    def log(rec):
        logf.write(json.dumps({"time": round(time.time(), 1), **rec}) + "\n")
        logf.flush()

    torch.manual_seed(args.seed)             # weight init only; data and noise use their own generators
    log({"event": "start", "args": vars(args), "stage": stage, "step": step, "cascade": casc.to_dict()})
    log({"event": "precision", **precision.to_dict(), "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    f = cascade_flops(cfg, casc)
    log({"event": "flops", "stunet_clip": stride_mixture_flops(stunet_preset(args.preset)), **f,
         "parameters": estimate_parameters(cfg), "stunet_parameters": estimate_parameters(stunet_preset(args.preset))})
    if not args.quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)
    if args.init and raw is None:
        net, stage, step = init_net(args.init, cfg), "video", 0
        log({"event": "inflated", "from": str(args.init)})
    elif stage == "image" and args.image_steps > 0:
        image = STUNet(cfg.image())
        if raw is not None:
            image.load_state_dict(raw)
        ema, step = run_stage("image", image, args, tok, out, step, args.image_steps, opt_sd, ema_sd,
                              0, 1, log, deadline)
        if step < args.image_steps:
            log({"event": "stopped", "stage": "image", "step": step})
            logf.close()
            return out
        net, stage, step, ema_sd, opt_sd = inflate(ema.cpu(), cfg), "video", 0, None, None
        log({"event": "inflated"})
    elif stage == "image":
        net, stage, step = STUNet(cfg), "video", 0
    else:
        net = STUNet(cfg)
        net.load_state_dict(raw)
    step = run_video(net, casc, args, tok, out, step, opt_sd, ema_sd, log, deadline)
    log({"event": "stopped" if step < args.video_steps else "done", "stage": "video", "step": step})
    logf.close()
    return out


if __name__ == "__main__":
    main()
