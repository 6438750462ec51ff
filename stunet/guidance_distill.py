"""Guidance distillation: one network row per step instead of two, at the teacher's own steps.

Meng et al. 2023, "On Distillation of Guided Diffusion Models", stage one. The student is the
teacher's architecture with the guidance scale ``w`` as an input (``config.guidance_embedding``:
an MLP added to the timestep embedding whose output layer starts at zero, ``model.init_weights``),
initialised from the teacher, so at step 0 it *is* the teacher's conditional branch. It learns,
at a random noisy clip x_t and scale w, the teacher's classifier-free-guided prediction there:

    target(x_t, t, c, w) = u + w (c - u),    c, u = teacher(x_t, t, text), teacher(x_t, t, empty)

in the model's own parametrisation (v). x_t is a world clip forward-noised to t (no stored
trajectories: each target is one step's, so errors do not compound along a trajectory as a
few-step student's do). t is drawn half uniformly and half from the timesteps the library's
solvers visit at 10-25 steps (where the student is used); w half at the default scale, half
uniform in ``guidance_range``. The conditioning tasks (first frame, a region, keyframes) are
drawn as in training, so the student serves the Edit tab as the teacher does.

Sampling the student is the library's sampling loop with the teacher's solver and steps
(``sampling.json`` copies the teacher's defaults): ``Denoiser`` passes w to the model and runs
one row per clip. Same cost per step as an unguided step of the teacher.

    python -m stunet distill-guidance --out runs/guided --iters 1500 --minutes 70
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_pretrained, read_sampling, save_pretrained
from .defaults import GUIDANCE, PRECISION, PRECISIONS
from .diffusion import add_noise, alphas_cumprod, expand, make_scheduler
from .distill import student_from_teacher
from .conditioning import Conditioning
from .denoiser import Denoiser
from .model import STUNet
from .precision import Precision
from .precision import resolve as resolve_precision
from .shapes.data import video_batch
from .text import Tokenizer
from .training_loop import (LoopConfig, Optimisation, OptimConfig, command_device, fit, open_run, resume_into,
                            save_state)

# conditioning tasks (as train.TASKS): text-to-video, first frame, a region, keyframes
TASK_PROBS = (0.6, 0.2, 0.15, 0.05)
SOLVER_STEPS = range(10, 26)        # the step counts whose timesteps get half of the draws


@dataclasses.dataclass(frozen=True)
class GuidanceDistillConfig:
    """One guidance-distillation run (the command line's flags, validated)."""
    out: str = "runs/guided"
    teacher: str | None = None
    iters: int = 1500
    batch: int = 6
    lr: float = 5e-5
    warmup: int = 50
    ema: float = 0.995
    seed: int = 0
    guidance_range: tuple[float, float] = (1.0, 6.0)
    default_share: float = 0.5           # share of rows at the default scale (GUIDANCE)
    solver_share: float = 0.5            # share of rows at a timestep the solvers visit
    log_every: int = 25
    ckpt_every: int = 100
    minutes: float = float("inf")
    resume: bool = False
    precision: str = PRECISION
    threads: int = 0
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        for name in ("iters", "batch", "warmup", "log_every", "ckpt_every"):
            if getattr(self, name) < (0 if name == "iters" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'iters' else 1}")
        lo, hi = self.guidance_range
        if not 1.0 <= lo <= hi <= 10.0:
            raise ValueError(f"guidance_range must satisfy 1 <= lo <= hi <= 10, got {self.guidance_range}")
        for name in ("default_share", "solver_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0.0 < self.ema < 1.0 or self.lr <= 0:
            raise ValueError("ema must be in (0, 1) and lr > 0")


def solver_timesteps(cfg, steps=SOLVER_STEPS, samplers=("dpm++", "ddim")) -> torch.Tensor:
    """Every timestep the library's solvers evaluate the model at for these step counts (sorted, unique)."""
    ts: set[int] = set()
    for sampler in samplers:
        s = make_scheduler(cfg, sampler)
        for n in steps:
            s.set_timesteps(n)
            ts.update(int(t) for t in s.timesteps)
    return torch.tensor(sorted(ts), dtype=torch.long)


def draw_timesteps(cfg, n: int, gen: torch.Generator, visited: torch.Tensor, solver_share: float) -> torch.Tensor:
    uniform = torch.randint(0, cfg.train_timesteps, (n,), generator=gen)
    solver = visited[torch.randint(0, len(visited), (n,), generator=gen)]
    return torch.where(torch.rand(n, generator=gen) < solver_share, solver, uniform)


@torch.no_grad()
def guided_target(teacher: STUNet, x_t, t, conditioning: Conditioning, w: torch.Tensor, precision) -> torch.Tensor:
    """The teacher's classifier-free-guided prediction at per-clip timesteps ``t`` and scales ``w``, fp32:
    the library's own ``Denoiser`` (one batched call, conditional rows first)."""
    den = Denoiser(teacher, conditioning, frames=x_t.shape[2], guidance=w, precision=precision)
    return den(x_t, t)


def make_rows(teacher: STUNet, tok: Tokenizer, rc: GuidanceDistillConfig, rng: np.random.Generator,
              gen: torch.Generator, visited: torch.Tensor, precision) -> dict:
    """One batch: noisy clips, their conditioning, scales and the teacher's guided targets."""
    from .train import make_condition
    cfg, dev = teacher.config, next(teacher.parameters()).device
    b = video_batch(rng, tok, cfg, rc.batch, caption_dropout=0.0)
    cond, mask, _ = make_condition(b.x0, rng, TASK_PROBS)
    n = rc.batch
    t = draw_timesteps(cfg, n, gen, visited, rc.solver_share)
    w = torch.where(torch.rand(n, generator=gen) < rc.default_share, torch.full((n,), GUIDANCE),
                    rc.guidance_range[0] + (rc.guidance_range[1] - rc.guidance_range[0]) * torch.rand(n, generator=gen))
    noise = torch.randn(b.x0.shape, generator=gen)
    ac = alphas_cumprod(cfg)
    x_t = add_noise(ac, b.x0, noise, t)
    x_t, t, cond, mask, w = (v.to(dev) for v in (x_t, t, cond, mask, w))
    stride = int(b.stride[0])
    text = teacher.encode_text(b.ids.to(dev))
    uncond = teacher.encode_text(tok.batch([""])[0].to(dev).expand(n, -1))
    target = guided_target(teacher, x_t, t, Conditioning(text, uncond, stride=stride, cond=cond, mask=mask), w,
                           precision)
    return {"x_t": x_t, "t": t, "ids": b.ids.to(dev), "stride": stride, "cond": cond, "mask": mask, "w": w,
            "target": target}


def student_loss(student: STUNet, rows: dict, autocast, per_row: bool = False) -> torch.Tensor:
    """MSE between the student's one-row prediction (scale as input) and the teacher's guided one."""
    with autocast:
        text = student.encode_text(rows["ids"])
        out = student(rows["x_t"], rows["t"], text, rows["stride"], rows["cond"], rows["mask"], guidance=rows["w"])
    err = (out.float() - rows["target"]) ** 2
    return err.flatten(1).mean(1) if per_row else err.mean()


def validation_rows(teacher, tok, rc, visited, precision, batches: int = 4) -> list[dict]:
    """Fixed held-out rows (their own seed): the same every evaluation, so losses compare across steps."""
    rng = np.random.default_rng([rc.seed, 99991])
    gen = torch.Generator().manual_seed(rc.seed + 99991)
    return [make_rows(teacher, tok, rc, rng, gen, visited, precision) for _ in range(batches)]


@torch.no_grad()
def validation_loss(student: STUNet, held: list[dict], autocast) -> float:
    return round(float(np.mean([student_loss(student, r, autocast).item() for r in held])), 6)


def train(teacher: STUNet, tok: Tokenizer, rc: GuidanceDistillConfig, precision: Precision, log) -> STUNet:
    """Fit the student (resumable from OUT/train_state); returns its EMA weights."""
    out = Path(rc.out)
    device = next(teacher.parameters()).device
    deadline = time.time() + rc.minutes * 60
    teacher = teacher.eval().requires_grad_(False)
    student = student_from_teacher(teacher.cpu()).to(device)
    teacher.to(device)
    sampling = read_sampling(rc.teacher)                       # the teacher's solver, steps and scale
    state_dir = out / "train_state"
    step, opt_sd, ema_sd = resume_into(student, out) if rc.resume else (0, None, None)
    if ema_sd is not None:
        log({"event": "resumed", "step": step})
    student.train().requires_grad_(True)
    optim = Optimisation(student, OptimConfig(lr=rc.lr, total=rc.iters, warmup=rc.warmup, ema=rc.ema), step,
                         opt_sd, ema_sd)
    ema = optim.ema.eval()
    autocast = precision.autocast(device.type)
    visited = solver_timesteps(teacher.config)
    held = validation_rows(teacher, tok, rc, visited, precision)
    rng = np.random.default_rng([rc.seed, step, 13])
    gen = torch.Generator().manual_seed(rc.seed * 1_000_003 + step)
    if step == 0:
        log({"step": 0, "val_loss": validation_loss(ema, held, autocast)})

    def loss_at(k: int):
        return student_loss(student, make_rows(teacher, tok, rc, rng, gen, visited, precision), autocast), {}

    def validate_and_save(k: int):
        log({"step": k, "val_loss": validation_loss(ema, held, autocast)})
        save_pretrained(ema, tok, out, extra={"method": "guidance-distillation", "step": k}, sampling=sampling)
        save_state(state_dir, "guidance", k, student, optim.opt, {"run": dataclasses.asdict(rc)})

    loop = LoopConfig(total=rc.iters, deadline=deadline, log_every=rc.log_every, ckpt_every=rc.ckpt_every,
                      name="guidance", smoothing=0.95, loss_digits=6, quiet=rc.quiet)
    step = fit(optim, loss_at, loop, log=log, checkpoint=validate_and_save)
    validate_and_save(step)
    log({"event": "done" if step >= rc.iters else "stopped", "step": step})
    return ema


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None) -> GuidanceDistillConfig:
    d = GuidanceDistillConfig()
    p = argparse.ArgumentParser(prog="stunet distill-guidance", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=None, help="teacher checkpoint directory (default: the shipped model)")
    p.add_argument("--out", default=d.out, help="run folder: train.log, train_state/, the student")
    for name, typ in (("iters", int), ("batch", int), ("lr", float), ("warmup", int), ("ema", float),
                      ("seed", int), ("log_every", int), ("ckpt_every", int), ("minutes", float), ("threads", int),
                      ("default_share", float), ("solver_share", float)):
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=getattr(d, name))
    p.add_argument("--guidance-range", default="%g,%g" % d.guidance_range, metavar="LO,HI")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        lo, hi = (float(v) for v in a.guidance_range.split(","))
        return GuidanceDistillConfig(**{**vars(a), "guidance_range": (lo, hi)})
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    rc = parse_args(argv)
    device = command_device(rc.device, rc.threads)
    try:
        precision = resolve_precision(rc.precision, device)
        log = open_run(rc.out, {"event": "start", "run": dataclasses.asdict(rc)}, precision, quiet=rc.quiet)
        teacher, tok = load_pretrained(rc.teacher)
        teacher = teacher.to(device, memory_format=torch.channels_last)
        train(teacher, tok, rc, precision, log)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
