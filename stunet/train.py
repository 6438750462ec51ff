"""Training: Lumiere's recipe at small scale (section 3 and 4).

1. Image stage: the image U-Net (``config.image()``) learns single frames of the world.
2. Inflation: its weights load into a STUNet whose temporal layers start as identity.
3. Video stage: the STUNet learns whole clips at several frame strides, under a mixture
   of conditioning tasks (none, first frame, a region, some frames), with caption
   dropout for classifier-free guidance, and a share of samples at the highest noise
   levels (``sample_timesteps``), where motion must be learned from the words.

EMA weights, precision by measurement (``--precision``: bf16 autocast only where it is faster; CPU, or CUDA with ``--device cuda``), tqdm with loss and time left, a JSON-lines log,
checkpoints as it goes (``--resume`` picks up from them, stage and step included), and
data-parallel training with ``torchrun --nproc_per_node N -m stunet.train ...``
(DDP: gloo on CPU, nccl on GPU). Nothing is pickled: the training state is safetensors + JSON.

    python -m stunet train --preset shapes --out runs/shapes --image-steps 1500 --video-steps 6000
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import ema_checkpoint_dir, load_pretrained, load_resume_ema, save_pretrained
from .config import STUNetConfig, preset
from .defaults import PRECISION, PRECISIONS
from .diffusion import add_noise, alphas_cumprod, target
from .flops import example_flops
from .model import STUNet, inflate
from .precision import Precision
from .precision import resolve as resolve_precision
from .shapes import world
from .shapes.data import Batch, image_batch, tokenizer_for, video_batch
from .text import Tokenizer
from .training_loop import (JsonLog, LoopConfig, Optimisation, OptimConfig, add_optimisation_args, fit, load_state,
                            precision_record, save_state)

TASKS = ("none", "first_frame", "region", "frames")
TASK_PROBS = (0.55, 0.15, 0.10, 0.20)


# ---------------------------------------------------------------------------- data
def make_condition(x0: torch.Tensor, rng: np.random.Generator, task_probs=TASK_PROBS):
    """Masked conditioning clip and mask for a random task per sample (Lumiere section 4)."""
    b, c, t, h, w = x0.shape
    mask = torch.zeros(b, 1, t, h, w)
    tasks = rng.choice(len(TASKS), size=b, p=task_probs)
    for i, k in enumerate(tasks):
        name = TASKS[k]
        if name == "first_frame":
            mask[i, :, 0] = 1
        elif name == "region":      # inpainting: the known pixels are outside a box
            bh, bw = rng.integers(h // 4, h // 2 + 1), rng.integers(w // 4, w // 2 + 1)
            y0, x0_ = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            mask[i] = 1
            mask[i, :, :, y0:y0 + bh, x0_:x0_ + bw] = 0
        elif name == "frames":      # keyframes every k-th frame (interpolation) or a random subset
            if t > 1 and rng.random() < 0.7:
                k_ = int(rng.choice([s for s in (2, 4, 8) if s < t] or [1]))
                mask[i, :, ::k_] = 1
            else:
                mask[i, :, rng.random(t) < 0.25] = 1
    return x0 * mask, mask, [TASKS[k] for k in tasks]


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless batches of ``batch_fn`` for DataLoader workers, worker ``i`` seeded ``[*seed, i]``.

    A batch leaves the worker as numpy arrays (pickled through a pipe, not shared memory, which
    containers often keep small) and becomes tensors again in the training process.
    """

    def __init__(self, batch_fn, seed: list[int], tok: Tokenizer, cfg: STUNetConfig, batch: int):
        super().__init__()
        self.batch_fn, self.seed, self.tok, self.cfg, self.batch = batch_fn, seed, tok, cfg, batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, info.id if info else 0])
        while True:
            b = self.batch_fn(rng, self.tok, self.cfg, self.batch)
            yield b.x0.numpy(), b.ids.numpy(), b.stride.numpy(), b.captions


def _one_thread(_worker_id: int):
    torch.set_num_threads(1)


def batches(batch_fn, rng: np.random.Generator, tok: Tokenizer, cfg: STUNetConfig, batch: int,
            workers: int = 0):
    """Endless iterator of training batches.

    ``workers == 0``: drawn here from ``rng``, in turn with the loss's own draws (the reproducible
    default). ``workers > 0``: drawn by that many DataLoader processes, each seeded from ``rng``
    once, so the CPU can keep a GPU fed; the batch order is still fixed by the seed (the
    DataLoader takes workers in turn).
    """
    if workers <= 0:
        while True:
            yield batch_fn(rng, tok, cfg, batch)
    seed = [int(x) for x in rng.integers(2**62, size=2)]
    loader = torch.utils.data.DataLoader(_BatchStream(batch_fn, seed, tok, cfg, batch), batch_size=None,
                                         num_workers=workers, worker_init_fn=_one_thread, prefetch_factor=4)
    for x0, ids, stride, captions in loader:
        yield Batch(torch.as_tensor(x0), torch.as_tensor(ids), torch.as_tensor(stride), captions)


# ---------------------------------------------------------------------------- one step
def sample_timesteps(cfg: STUNetConfig, batch: int, gen: torch.Generator,
                     high_noise: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Diffusion steps (``timesteps``) for a batch: uniform, except that a fraction ``high_noise[0]``
    of the samples is drawn from the last part of diffusion time, step >= high_noise[1] * train_timesteps.

    That is where nothing of the clip is left to read in the noise and the prediction must come
    from the words: where the path of the object (the motion) is decided when sampling. A clip
    has so many pixels that, even under the shifted schedule, the object's path can be read from
    the noise until the last few percent of diffusion time, so uniform sampling gives the motion
    words almost no training signal. (Importance sampling of noise levels, as in Choi et al. 2022
    "perception prioritized training" and Esser et al. 2024's logit-normal timesteps.)
    """
    T = cfg.train_timesteps
    timesteps = torch.randint(0, T, (batch,), generator=gen)
    frac, start = high_noise
    if frac > 0:
        lo = min(int(start * T), T - 1)
        high = torch.randint(lo, T, (batch,), generator=gen)
        pick = torch.rand(batch, generator=gen) < frac
        timesteps = torch.where(pick, high, timesteps)
    return timesteps


def loss_fn(model, cfg: STUNetConfig, ac: torch.Tensor, b: Batch, rng: np.random.Generator,
            gen: torch.Generator, task_probs=TASK_PROBS, high_noise: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    # Randomness is drawn on the CPU (same numbers on any device), then moved.
    net = model.module if hasattr(model, "module") else model
    dev = next(net.parameters()).device
    timesteps = sample_timesteps(cfg, b.x0.shape[0], gen, high_noise)
    noise = torch.randn(b.x0.shape, generator=gen)
    cond, mask, _ = make_condition(b.x0, rng, task_probs)
    x0, noise, timesteps, cond, mask = (v.to(dev) for v in (b.x0, noise, timesteps, cond, mask))
    ac = ac.to(dev)
    x_t = add_noise(ac, x0, noise, timesteps)
    text = net.encode_text(b.ids.to(dev))
    out = model(x_t, timesteps, text, b.stride.to(dev), cond, mask)
    return torch.nn.functional.mse_loss(out.float(), target(cfg, ac, x0, noise, timesteps))


# ---------------------------------------------------------------------------- state
def add_new_parameters(model: STUNet, state: dict) -> dict:
    """``state`` completed with ``model``'s own values for the parameters it lacks (upgrades only).

    Only frame-time MLP parameters may be missing; its zero-initialised output layer keeps the
    loaded model's function as it was.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if any(not k.startswith("frame_mlp.") for k in missing) or set(state) - set(own):
        raise ValueError(f"cannot upgrade: missing {missing[:5]}, unexpected {sorted(set(state) - set(own))[:5]}")
    return {**state, **{k: own[k] for k in missing}}


# ---------------------------------------------------------------------------- loop
def load_counters(out: Path, stage: str, step: int) -> dict:
    """The run's cumulative counters (``clips`` or ``images``, ``flops``, ``cpu_seconds``, ``wall_seconds``) of
    ``stage`` up to ``step``, from ``train_state/state.json`` when it is at that point; zeros otherwise."""
    zero = {"clips" if stage == "video" else "images": 0, "flops": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    path = Path(out) / "train_state" / "state.json"
    if step > 0 and path.is_file():
        st = json.loads(path.read_text())
        if (st.get("stage"), st.get("step")) == (stage, step) and isinstance(st.get("counters"), dict):
            return {**zero, **st["counters"]}
    return zero


@dataclass(frozen=True)
class RunConfig:
    """What ``run_stage`` needs of a run (the flags ``stunet train`` and ``train-cascade`` share), resolved:
    ``device`` and ``precision`` as they run, ``deadline`` a ``time.time()``, this process's ``rank`` of
    ``world_size``. ``command``: the command line's flags, as ``state.json`` records them."""
    out: str
    device: str = "cpu"
    precision: str = "fp32"
    lr: float = 5e-4
    image_lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 250
    deadline: float = math.inf
    batch: int = 8
    image_batch: int = 64
    workers: int = 0
    high_noise_frac: float = 0.25
    high_noise_from: float = 0.94
    motion_weights: Mapping[str, float] = field(default_factory=dict)
    quiet: bool = False
    rank: int = 0
    world_size: int = 1
    command: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.batch < 1 or self.image_batch < 1 or self.workers < 0:
            raise ValueError("batch and image_batch must be >= 1, workers >= 0")
        if not (0.0 <= self.high_noise_frac <= 1.0 and 0.0 <= self.high_noise_from < 1.0):
            raise ValueError("high_noise_frac must be in [0, 1] and high_noise_from in [0, 1)")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} of {self.world_size} processes")

    @classmethod
    def from_args(cls, args: argparse.Namespace, deadline: float = math.inf, rank: int = 0,
                  world_size: int = 1) -> "RunConfig":
        """The run of a parsed command line (its flags of these names; the rest only in ``command``)."""
        names = {f.name for f in fields(cls)} - {"deadline", "rank", "world_size", "command"}
        return cls(**{k: v for k, v in vars(args).items() if k in names}, deadline=deadline, rank=rank,
                   world_size=world_size, command=dict(vars(args)))


@dataclass(frozen=True)
class StageRun:
    """One stage to train: ``name`` (image or video) to ``total`` steps from ``start_step``, resuming the saved
    optimiser and EMA states when given."""
    name: str
    total: int
    start_step: int = 0
    opt_state: dict | None = None
    ema_state: dict | None = None


def run_stage(model: STUNet, stage: StageRun, run: RunConfig, tok: Tokenizer, log) -> tuple[STUNet, int]:
    """Train ``model`` through one stage (``training_loop.fit``); returns its EMA copy and the step reached."""
    cfg = model.config
    ac = alphas_cumprod(cfg)
    video = stage.name == "video"
    ddp = run.world_size > 1
    device = torch.device(run.device)
    model.to(device)
    net = model
    if ddp:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optim = Optimisation(model, OptimConfig(lr=run.lr if video else run.image_lr, total=stage.total,
                                            warmup=run.warmup, ema=run.ema, weight_decay=0.01),
                         stage.start_step, stage.opt_state, stage.ema_state)
    rng = np.random.default_rng([run.seed, run.rank, stage.start_step, 1 if video else 0])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    spec_p = world.spec_probs(run.motion_weights) if video and run.motion_weights else None
    batch_fn = functools.partial(video_batch, spec_p=spec_p) if video else image_batch
    task_probs = TASK_PROBS if video else (0.8, 0.0, 0.2, 0.0)
    high_noise = (run.high_noise_frac, run.high_noise_from) if video else (0.0, 1.0)
    autocast = Precision(run.precision, "resolved in main").autocast(device.type)
    stream = batches(batch_fn, rng, tok, cfg, run.batch if video else run.image_batch, run.workers)
    out = Path(run.out)
    # cumulative compute of this stage (all processes): examples seen, FLOPs (``stunet.flops``), seconds
    counters, seen = load_counters(out, stage.name, stage.start_step), "clips" if video else "images"
    base, cpu0, t0 = dict(counters), time.process_time(), time.time()

    def loss_at(step: int):
        b = next(stream)
        with autocast:
            loss = loss_fn(net, cfg, ac, b, rng, gen, task_probs, high_noise)
        n = b.x0.shape[0] * run.world_size
        counters[seen] += n
        counters["flops"] += n * example_flops(cfg, b.x0.shape[2], int(b.stride[0]))
        return loss, {}

    def clock() -> dict:
        counters["cpu_seconds"] = round(base["cpu_seconds"] + (time.process_time() - cpu0) * run.world_size, 1)
        counters["wall_seconds"] = round(base["wall_seconds"] + time.time() - t0, 1)
        return counters

    def save(step: int):
        if run.rank == 0:
            checkpoint(stage.name, step, model, optim.ema, optim.opt, tok, out, run.command, clock())

    loop = LoopConfig(total=stage.total, deadline=run.deadline, log_every=run.log_every, ckpt_every=run.ckpt_every,
                      name=stage.name, quiet=run.quiet or run.rank != 0)
    step = fit(optim, loss_at, loop, log=log if run.rank == 0 else (lambda record: None), checkpoint=save,
               head={"stage": stage.name}, extra=clock)
    stream.close()                  # ends the DataLoader workers, if any
    save(step)
    if ddp:
        dist.barrier()
    return optim.ema, step


def image_stage(cfg: STUNetConfig, raw: dict | None, stage: StageRun, run: RunConfig, tok: Tokenizer,
                log) -> STUNet | None:
    """Lumiere's first stage: the image U-Net of ``cfg`` (from ``raw`` weights, or new) trained to ``stage.total``,
    then its EMA weights inflated into the video model of ``cfg``; None when the run stopped before the end."""
    image = STUNet(cfg.image())
    if raw is not None:
        image.load_state_dict(raw)
    ema, step = run_stage(image, stage, run, tok, log)
    if step < stage.total:
        log({"event": "stopped", "stage": "image", "step": step})
        return None
    video = inflate(ema.cpu(), cfg)          # the EMA image weights seed the video model
    log({"event": "inflated"})
    return video


def video_start(cfg: STUNetConfig, saved: StageRun, raw: dict | None, video_steps: int, run: RunConfig,
                tok: Tokenizer, log, init: tuple[str, Callable[[], STUNet]] | None = None) -> tuple[STUNet, StageRun] | None:
    """The video model and its stage, from where the run is: ``saved`` (stage, total, step and states; ``raw`` its raw
    weights, None for a new run). A new run with ``init`` (a path and its loader) starts from that network; a run in
    the image stage trains it first (``image_stage``, unless its total is 0: a new video model); a run in the video
    stage resumes it. None: the run stopped in the image stage."""
    if init is not None and raw is None:
        net = init[1]()
        log({"event": "inflated", "from": init[0]})
    elif saved.name == "image" and saved.total > 0:
        net = image_stage(cfg, raw, saved, run, tok, log)
        if net is None:
            return None
    elif saved.name == "image":
        net = STUNet(cfg)
    else:
        net = STUNet(cfg)
        net.load_state_dict(raw)
        return net, saved
    return net, StageRun("video", video_steps)


def checkpoint(stage, step, model, ema, opt, tok, out: Path, command: Mapping, counters: dict | None = None):
    """The EMA checkpoint first (resume reads it, checking its stage and step), then ``train_state/``."""
    save_pretrained(ema, tok, ema_checkpoint_dir(out, stage), extra={"stage": stage, "step": step})
    save_state(out / "train_state", stage, step, model, opt, {"args": dict(command), "counters": counters or {}})


def _motion_weights(text: str) -> dict[str, float]:
    """'bouncing=2,spinning=3' -> {'bouncing': 2.0, 'spinning': 3.0}, checked against the world's motions."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, value = item.rpartition("=")
        try:
            w = float(value)
        except ValueError:
            w = None
        if not sep or w is None:
            raise argparse.ArgumentTypeError(f"expected MOTION=WEIGHT, got {item!r}")
        out[name.strip()] = w
    try:
        world.spec_probs(out)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return out


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The optimisation and run flags ``stunet train`` and ``stunet train-cascade`` share (same defaults)."""
    add_optimisation_args(p, lr=5e-4, warmup=200, ema=0.999, ckpt_every=250)
    p.add_argument("--image-lr", type=float, default=1e-3)
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISION,
                   help="compute precision: auto (bf16 only where a probe measures it faster), fp32, bf16")
    p.add_argument("--no-bf16", dest="precision", action="store_const", const="fp32", help="same as --precision fp32")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")


def add_video_data_args(p: argparse.ArgumentParser) -> None:
    """How the video stage draws its examples (shared with ``stunet train-cascade``); checked by
    ``check_video_data_args``."""
    p.add_argument("--high-noise-frac", type=float, default=0.25,
                   help="video stage: fraction of samples drawn from the last part of diffusion time")
    p.add_argument("--high-noise-from", type=float, default=0.94,
                   help="where that last part starts, as a fraction of train_timesteps")
    p.add_argument("--motion-weights", type=_motion_weights, default={}, metavar="MOTION=W,...",
                   help="video stage: draw clip kinds of these motions W times as often as the rest, e.g. "
                        "'bouncing=2,orbiting=2,spinning=3' (default: every clip kind equally often)")


def check_video_data_args(p: argparse.ArgumentParser, args) -> None:
    if not 0.0 <= args.high_noise_frac <= 1.0:
        p.error(f"--high-noise-frac must be in [0, 1], got {args.high_noise_frac}")
    if not 0.0 <= args.high_noise_from < 1.0:
        p.error(f"--high-noise-from must be in [0, 1), got {args.high_noise_from}")
    if getattr(args, "workers", 0) < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="stunet train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="shapes")
    p.add_argument("--out", default="runs/shapes")
    p.add_argument("--init", help="image-stage checkpoint (an image U-Net, e.g. RUN/image_unet) to inflate into the "
                                  "video model; skips the image stage (ignored on --resume of a started run)")
    p.add_argument("--image-steps", type=int, default=1500)
    p.add_argument("--video-steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=8, help="clips per step (per process)")
    p.add_argument("--image-batch", type=int, default=64, help="frames per image step (per process)")
    add_run_args(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: cores / processes)")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader processes that draw the world's clips (per training process); 0: drawn "
                        "in the training process, in turn with the loss's random draws (reproducible)")
    p.add_argument("--noise-shift", type=float, default=None,
                   help="shift of the noise schedule (config.noise_shift); default: the preset's, or the "
                        "resumed run's. Changing it on --resume fine-tunes the model to the new schedule")
    p.add_argument("--add-frame-embedding", action="store_true",
                   help="on --resume of a run without it: add the frame-time MLP (config.frame_embedding; its "
                        "output starts at zero, so the model's function is unchanged) and restart the optimizer")
    add_video_data_args(p)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    check_video_data_args(p, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda":
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(args.device)
    if world_size > 1:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world_size))
    torch.backends.cudnn.benchmark = args.device.startswith("cuda")   # fixed shapes per stride: pick fast kernels once
    precision = resolve_precision(args.precision, args.device)
    args.precision = precision.name                                    # what runs (logged with the reason)
    out = Path(args.out)
    deadline = time.time() + args.minutes * 60
    cfg = preset(args.preset)
    tok = tokenizer_for(cfg)
    state_dir = out / "train_state"
    stage, step, raw, ema_sd, opt_sd = "image", 0, None, None, None
    saved = load_state(state_dir) if args.resume else None
    if saved is not None:
        stage, step, raw, opt_sd = saved.stage, saved.step, saved.raw, saved.optimizer
        ema_sd = load_resume_ema(out, stage, step)
        cfg = STUNetConfig.from_dict(json.loads((state_dir / "config.json").read_text()))
        if stage == "image":
            cfg = cfg.replace(temporal=True, frames=preset(args.preset).frames)
    upgrade = args.add_frame_embedding and stage == "video" and raw is not None and not cfg.frame_embedding
    if upgrade:
        cfg = cfg.replace(frame_embedding=True)
    shift_changed = args.noise_shift is not None and args.noise_shift != cfg.noise_shift
    if args.noise_shift is not None:
        cfg = cfg.replace(noise_shift=args.noise_shift)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    log = JsonLog(out / "train.log" if rank == 0 else None)
    run = RunConfig.from_args(args, deadline, rank, world_size)
    torch.manual_seed(args.seed)  # weight init only; data and noise use their own generators
    log({"event": "start", "args": vars(args), "world_size": world_size, "stage": stage, "step": step})
    log(precision_record(precision))
    if rank == 0 and not args.quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)
    if shift_changed:
        log({"event": "noise_shift", "value": cfg.noise_shift})
    if upgrade:
        log({"event": "frame_embedding", "note": "frame-time MLP added at zero output; optimizer restarted"})
    if args.motion_weights:
        shares = world.motion_shares(world.spec_probs(args.motion_weights))
        log({"event": "motion_weights", "weights": args.motion_weights,
             "shares": {m: round(q, 4) for m, q in shares.items()}})

    if upgrade:
        fresh = STUNet(cfg)                 # the new parameters' own initial values (the rest is overwritten)
        raw, ema_sd, opt_sd = add_new_parameters(fresh, raw), add_new_parameters(fresh, ema_sd), None
    resume_at = StageRun(stage, args.image_steps if stage == "image" else args.video_steps, step, opt_sd, ema_sd)
    init = (str(args.init), lambda: inflate(load_pretrained(args.init)[0], cfg)) if args.init else None
    start = video_start(cfg, resume_at, raw, args.video_steps, run, tok, log, init)
    if start is None:
        log.close()
        return out
    _, step = run_stage(*start, run, tok, log)
    log({"event": "stopped" if step < args.video_steps else "done", "stage": "video", "step": step})
    log.close()
    if world_size > 1:
        dist.destroy_process_group()
    return out


if __name__ == "__main__":
    main()
