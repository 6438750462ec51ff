"""Few-step distillation: a student that makes a clip in ``N`` guided steps, one forward each.

The method (guided progressive distillation, Salimans & Ho 2022 and Meng et al. 2023, done in one
stage from stored teacher trajectories):

1. **Teacher trajectories** (``generate_trajectories``). The teacher (the shipped model, with
   classifier-free guidance at a scale ``w`` drawn per clip) runs DPM-Solver++ (2M) on a fine
   grid of ``N x sub`` steps whose every ``sub``-th timestep is one of the student's ``N`` DDIM
   timesteps (``student_timesteps``: the trailing spacing the library's DDIM uses). The states at
   those timesteps and the final clip are stored (``traj-*.safetensors`` shards), with the text,
   frame stride, guidance scale and conditioning (text-to-video, first frame, a region: the
   student keeps the <noisy, conditioning, mask> input).
2. **Student** (``train_student``). Same architecture, initialised from the teacher, with the
   guidance scale as an input (``config.guidance_embedding``: an MLP added to the timestep
   embedding whose output layer starts at zero, so at initialisation the student *is* the
   teacher's conditional branch). For a stored state x_t at student timestep t and the next one
   x_s, the student learns the x0 for which one DDIM step from x_t lands exactly on the teacher's
   x_s (Salimans & Ho 2022, algorithm 2):

       x0* = (x_s - (sigma_s / sigma_t) x_t) / (alpha_s - sigma_s alpha_t / sigma_t)

   (x0* = the teacher's clip on the last step), as v-prediction: v* = (alpha_t x_t - x0*) / sigma_t.
   The teacher is paid for once, when the shards are written; training reads them.

Sampling the student is the library's DDIM with ``N`` steps and the guidance scale passed to the
model (``Denoiser``: one forward per step, no unconditional rows). Its checkpoint carries those
defaults in ``sampling.json`` (``checkpoint.SamplingDefaults``).

    python -m stunet distill --teacher assets/stunet-shapes --out runs/fast --steps 8 \\
        --trajectories 1000 --iters 2000 --minutes 120
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .checkpoint import SamplingDefaults, load_pretrained, save_pretrained
from .defaults import GUIDANCE, PRECISION, PRECISIONS
from .diffusion import alphas_cumprod, expand, make_scheduler
from .conditioning import Conditioning
from .denoiser import Denoiser, model_device
from .model import STUNet
from .precision import Precision
from .precision import resolve as resolve_precision
from .shapes.data import video_batch
from .sampling import sample_loop
from .text import Tokenizer
from .training_loop import (JsonLog, LoopConfig, Optimisation, OptimConfig, add_optimisation_args, fit,
                            precision_record, resume_into, save_state)

# conditioning tasks of the stored trajectories (as train.TASKS): text-to-video, first frame, a region
TASK_PROBS = (0.75, 0.20, 0.05, 0.0)
SHARD_GLOB = "traj-*.safetensors"


# ---------------------------------------------------------------------------- schedules
def student_timesteps(cfg, steps: int) -> list[int]:
    """The student's ``steps`` timesteps: the library's DDIM ones (trailing spacing), first to last."""
    s = make_scheduler(cfg, "ddim")
    s.set_timesteps(steps)
    return [int(t) for t in s.timesteps]


def teacher_timesteps(student: list[int], sub: int) -> list[int]:
    """A fine grid with ``sub`` teacher steps per student step; ``student`` is every ``sub``-th entry.

    Each student interval [t_k, t_{k+1}) (t_N = -1: the clean clip) is split evenly.
    """
    if sub < 1:
        raise ValueError("sub must be >= 1")
    ends = list(student) + [-1]
    grid = []
    for a, b in zip(ends[:-1], ends[1:]):
        pts = np.linspace(a, b, sub + 1)[:-1]
        grid += [int(round(p)) for p in pts]
    if len(set(grid)) != len(grid) or any(x < 0 for x in grid):
        raise ValueError(f"{sub} sub-steps do not fit between the student's timesteps {student}")
    return grid


def ddim_x0_target(ac: torch.Tensor, x_t, x_s, t: torch.Tensor, s: torch.Tensor):
    """The x0 for which a DDIM step t -> s from ``x_t`` gives ``x_s``; s < 0 means the clean clip (x_s itself)."""
    a_t, g_t = ac[t].sqrt(), (1 - ac[t]).sqrt()
    final = s < 0
    s_ = s.clamp_min(0)
    a_s = torch.where(final, torch.ones_like(a_t), ac[s_].sqrt())
    g_s = torch.where(final, torch.zeros_like(g_t), (1 - ac[s_]).sqrt())
    ratio = g_s / g_t
    denom = a_s - ratio * a_t
    return (x_s - expand(ratio, x_t) * x_t) / expand(denom, x_t)


# ---------------------------------------------------------------------------- 1. teacher trajectories
@torch.no_grad()
def teacher_shard(model: STUNet, tok: Tokenizer, rng: np.random.Generator, *, batch: int, student: list[int],
                  sub: int, precision: Precision, guidance_range=(1.0, 6.0), default_share: float = 0.5) -> dict:
    """One shard: ``batch`` teacher trajectories, their states at the student's timesteps and the clips."""
    from .train import make_condition
    cfg = model.config
    b = video_batch(rng, tok, cfg, batch, caption_dropout=0.0)
    cond, mask, tasks = make_condition(b.x0, rng, TASK_PROBS)
    w = np.where(rng.random(batch) < default_share, GUIDANCE, rng.uniform(*guidance_range, batch))
    w = torch.tensor(w, dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    dev = model_device(model)
    text = model.encode_text(b.ids.to(dev))
    uncond = model.encode_text(tok.batch([""])[0].to(dev).expand(batch, -1))
    grid = teacher_timesteps(student, sub)
    sched = make_scheduler(cfg, "dpm++")
    sched.set_timesteps(timesteps=grid)
    x = torch.randn(b.x0.shape, generator=gen) * sched.init_noise_sigma
    # the library's own guided calls (per-clip scales) and loop, on the teacher's device
    den = Denoiser(model, Conditioning(text, uncond, stride=int(b.stride[0]), cond=cond.to(dev), mask=mask.to(dev)),
                   frames=b.x0.shape[2], guidance=w, precision=precision)
    states = [x.clone()]
    for out in sample_loop(den, x.to(dev), sched, grid, config=cfg):
        if (out.step + 1) % sub == 0 and out.step + 1 < len(grid):
            states.append(out.sample.cpu().clone())
        x = out.sample.cpu()
    states.append(x.clamp(-1, 1))
    return {"states": torch.stack(states, 1).contiguous(),           # b (N+1) c t h w, float32
            "ids": b.ids, "stride": b.stride.long(), "guidance": w,
            "cond": (cond * mask).half().contiguous(), "mask": mask.to(torch.uint8).contiguous(),
            "timesteps": torch.tensor(student, dtype=torch.long),
            "_meta": {"captions": json.dumps(b.captions), "tasks": json.dumps(tasks),
                      "teacher_timesteps": json.dumps(grid), "teacher_sampler": "dpm++"}}


def shard_paths(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob(SHARD_GLOB))


def generate_trajectories(teacher: STUNet, tok: Tokenizer, out: Path, *, count: int, steps: int, sub: int,
                          batch: int, seed: int, precision: Precision, deadline: float, log, quiet=False,
                          part: tuple[int, int] = (0, 1)) -> int:
    """Write shards until ``count`` trajectories exist in ``out``; returns how many exist.

    Shard ``i`` is seeded by (seed, i) alone, so the run resumes where it stopped and ``part``
    = (k, n) splits the work between n processes (this one writes the shards i = k mod n; on a
    CPU, n single-threaded processes are not held up by each other's thread synchronisation).
    """
    out.mkdir(parents=True, exist_ok=True)
    k, n = part
    if not 0 <= k < n:
        raise ValueError(f"part must be (k, n) with 0 <= k < n, got {part}")
    student = student_timesteps(teacher.config, steps)
    shards = -(-count // batch)
    mine = [i for i in range(k, shards, n)]
    done = len(shard_paths(out)) * batch
    bar = tqdm(total=count, initial=min(done, count), desc="teacher", disable=quiet, dynamic_ncols=True,
               mininterval=5.0)
    t0 = time.time()
    for i in mine:
        if time.time() >= deadline:
            break
        path = out / f"traj-{i:05d}.safetensors"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i, 7])
        shard = teacher_shard(teacher, tok, rng, batch=batch, student=student, sub=sub, precision=precision)
        meta = shard.pop("_meta")
        save_file(shard, str(path) + ".tmp", metadata=meta)
        os.replace(str(path) + ".tmp", path)
        done = len(shard_paths(out)) * batch
        bar.update(batch)
        log({"phase": "teacher", "shard": i, "trajectories": done, "seconds": round(time.time() - t0, 1)})
    bar.close()
    return len(shard_paths(out)) * batch


# ---------------------------------------------------------------------------- 2. the student
HOLDOUT_EVERY = 50      # shard i with i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 is held out (validation loss)


class TrajectoryRows:
    """Random (state, next state) rows from the shards, a batch at a time, one frame stride per batch.

    A row is trajectory j of a shard at student step k: x_t = states[j, k], x_s = states[j, k + 1].
    Shards written after the start are picked up by ``refresh`` (training may run beside phase 1).
    """

    def __init__(self, directory: Path, holdout: bool = False):
        self.dir, self.holdout = Path(directory), holdout
        self.by_stride: dict[int, list[tuple[Path, int]]] = {}
        self.seen: set[Path] = set()
        self.timesteps: list[int] | None = None
        self.refresh()

    def _keep(self, path: Path) -> bool:
        i = int(path.stem.split("-")[1])
        return (i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1) == self.holdout

    def refresh(self) -> int:
        for path in shard_paths(self.dir):
            if path in self.seen or not self._keep(path):
                continue
            self.seen.add(path)
            with safe_open(str(path), framework="pt") as f:
                strides = f.get_tensor("stride").tolist()
                ts = f.get_tensor("timesteps").tolist()
            if self.timesteps is None:
                self.timesteps = ts
            elif ts != self.timesteps:
                raise ValueError(f"{path.name}: student timesteps {ts} differ from {self.timesteps}")
            for j, st in enumerate(strides):
                self.by_stride.setdefault(int(st), []).append((path, j))
        return self.trajectories

    @property
    def trajectories(self) -> int:
        return sum(len(v) for v in self.by_stride.values())

    def rows(self, picks: list[tuple[Path, int, int]]) -> dict:
        xt, xs, ids, w, cond, mask, k = [], [], [], [], [], [], []
        stride = None
        for path, j, step in picks:
            with safe_open(str(path), framework="pt") as f:
                pair = f.get_slice("states")[j:j + 1, step:step + 2]
                xt.append(pair[:, 0]), xs.append(pair[:, 1])
                ids.append(f.get_slice("ids")[j:j + 1])
                w.append(f.get_slice("guidance")[j:j + 1])
                cond.append(f.get_slice("cond")[j:j + 1].float())
                mask.append(f.get_slice("mask")[j:j + 1].float())
                stride = int(f.get_slice("stride")[j:j + 1][0])
            k.append(step)
        return {"x_t": torch.cat(xt), "x_s": torch.cat(xs), "ids": torch.cat(ids), "guidance": torch.cat(w),
                "cond": torch.cat(cond), "mask": torch.cat(mask), "k": torch.tensor(k), "stride": stride}

    def sample(self, rng: np.random.Generator, batch: int, step_p: np.ndarray | None = None) -> dict:
        """``batch`` random rows of one stride; student step k drawn uniformly, or with probabilities ``step_p``."""
        strides = sorted(self.by_stride)
        p = np.array([len(self.by_stride[s]) for s in strides], dtype=float)
        stride = strides[int(rng.choice(len(strides), p=p / p.sum()))]
        pool = self.by_stride[stride]
        n = len(self.timesteps)
        if step_p is not None and len(step_p) != n:
            raise ValueError(f"{len(step_p)} step weights for {n} student steps")

        def step() -> int:
            return int(rng.integers(n)) if step_p is None else int(rng.choice(n, p=step_p))
        picks = [(*pool[int(rng.integers(len(pool)))], step()) for _ in range(batch)]
        return self.rows(picks)

    def all_rows(self):
        """Every (trajectory, step) row, grouped by stride, in batches of up to 16 (validation)."""
        n = len(self.timesteps or [])
        for stride in sorted(self.by_stride):
            picks = [(p, j, k) for p, j in self.by_stride[stride] for k in range(n)]
            for i in range(0, len(picks), 16):
                yield self.rows(picks[i:i + 16])


def student_from_teacher(teacher: STUNet) -> STUNet:
    """The teacher's weights in a STUNet that takes the guidance scale (its embedding starts at zero)."""
    student = STUNet(teacher.config.replace(guidance_embedding=True))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_mlp.") for k in missing):
        raise ValueError(f"teacher and student differ beyond the guidance embedding: {missing[:5]} {unexpected[:5]}")
    return student


def student_from_checkpoint(teacher: STUNet, directory: str | Path) -> STUNet:
    """A student to start from: another student's checkpoint (strict), with the teacher's architecture.

    A warm start (``--init``): e.g. a student of a different step count, whose guidance embedding
    and few-step behaviour are already trained, instead of the teacher's conditional branch.
    """
    student, _ = load_pretrained(directory)
    want = teacher.config.replace(guidance_embedding=True)
    if student.config != want:
        diff = {f.name: (getattr(student.config, f.name), getattr(want, f.name)) for f in dataclasses.fields(want)
                if getattr(student.config, f.name) != getattr(want, f.name)}
        raise ValueError(f"{directory}: not a student of this teacher (config differs: {diff})")
    return student


def distill_loss(student: STUNet, ac: torch.Tensor, timesteps: torch.Tensor, rows: dict, autocast,
                 per_row: bool = False) -> torch.Tensor:
    """v-prediction MSE against the target that makes one DDIM step land on the teacher's next state."""
    dev = next(student.parameters()).device
    k = rows["k"]
    ends = torch.cat([timesteps, timesteps.new_tensor([-1])])
    t, s = ends[k], ends[k + 1]
    x_t, x_s = rows["x_t"].to(dev), rows["x_s"].to(dev)
    x0 = ddim_x0_target(ac, x_t, x_s, t.to(dev), s.to(dev))
    a, g = expand(ac[t].sqrt(), x_t).to(dev), expand((1 - ac[t]).sqrt(), x_t).to(dev)
    v = (a * x_t - x0) / g
    with autocast:
        text = student.encode_text(rows["ids"].to(dev))
        out = student(x_t, t.to(dev), text, rows["stride"], rows["cond"].to(dev), rows["mask"].to(dev),
                      guidance=rows["guidance"].to(dev))
    err = (out.float() - v) ** 2
    return err.flatten(1).mean(1) if per_row else err.mean()


@torch.no_grad()
def validation_loss(student: STUNet, ac, timesteps, rows: TrajectoryRows, autocast) -> dict:
    """Mean loss over the held-out shards, overall and per student step."""
    per_k: dict[int, list[float]] = {}
    for batch in rows.all_rows():
        losses = distill_loss(student, ac, timesteps, batch, autocast, per_row=True)
        for k, l in zip(batch["k"].tolist(), losses.tolist()):
            per_k.setdefault(k, []).append(l)
    if not per_k:
        return {}
    allv = [l for v in per_k.values() for l in v]
    return {"val_loss": round(float(np.mean(allv)), 5),
            "val_loss_per_step": [round(float(np.mean(per_k[k])), 5) for k in sorted(per_k)]}


def step_probabilities(weights: list[float] | None, steps: int) -> np.ndarray | None:
    """How often each student step (noisiest first) is drawn: ``weights`` normalised, None = uniform."""
    if weights is None:
        return None
    if len(weights) != steps:
        raise ValueError(f"--step-weights needs one weight per student step ({steps}), got {len(weights)}")
    w = np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"--step-weights must be non-negative and not all zero, got {weights}")
    return w / w.sum()


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """One few-step distillation run (``stunet distill``'s flags, validated; ``device`` and ``precision`` as
    given: ``run`` resolves "auto")."""
    out: str = "runs/fast"
    teacher: str | None = None
    steps: int = 8                       # the student's sampling steps (N)
    sub: int = 3                         # teacher DPM-Solver++ steps per student step
    trajectories: int = 1000
    teacher_batch: int = 4
    part: tuple[int, int] = (0, 1)       # phase 1: this process writes the shards k mod n
    iters: int = 2000
    batch: int = 8
    lr: float = 2e-4
    warmup: int = 100
    ema: float = 0.998
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 200
    minutes: float = float("inf")
    resume: bool = False
    init: str | None = None              # a student checkpoint to start from (default: the teacher)
    step_weights: tuple[float, ...] | None = None
    precision: str = PRECISION
    threads: int = 0
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        for name in ("steps", "sub", "teacher_batch", "batch", "warmup", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("trajectories", "iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0")
        k, n = self.part
        if not 0 <= k < n:
            raise ValueError(f"--part must be K/N with 0 <= K < N, got {k}/{n}")
        if self.step_weights is not None:
            step_probabilities(list(self.step_weights), self.steps)


def train_student(teacher: STUNet, tok: Tokenizer, traj_dir: Path, out: Path, rc: DistillConfig,
                  precision: Precision, deadline: float, log) -> STUNet:
    """Phase 2: fit the student to the stored trajectories (resumable from OUT/train_state)."""
    device = torch.device(rc.device)
    rows, held = TrajectoryRows(traj_dir), TrajectoryRows(traj_dir, holdout=True)
    if not rows.trajectories:
        raise ValueError(f"no trajectories in {traj_dir}")
    timesteps = torch.tensor(rows.timesteps)
    sampling = SamplingDefaults(steps=len(rows.timesteps), guidance=GUIDANCE, sampler="ddim")
    student = (student_from_checkpoint(teacher.cpu(), rc.init) if rc.init
               else student_from_teacher(teacher.cpu())).to(device)
    state_dir = out / "train_state"
    step, opt_sd, ema_sd = resume_into(student, out) if rc.resume else (0, None, None)
    if ema_sd is not None:
        log({"event": "resumed", "phase": "student", "step": step})
    elif rc.init:
        log({"event": "init", "phase": "student", "from": str(rc.init)})
    student.train().requires_grad_(True)
    optim = Optimisation(student, OptimConfig(lr=rc.lr, total=rc.iters, warmup=rc.warmup, ema=rc.ema), step,
                         opt_sd, ema_sd)
    ema = optim.ema.eval()
    ac = alphas_cumprod(student.config).to(device)
    autocast = precision.autocast(device.type)
    rng = np.random.default_rng([rc.seed, step, 11])
    step_p = step_probabilities(list(rc.step_weights) if rc.step_weights else None, len(rows.timesteps))
    if step_p is not None:
        log({"event": "step_weights", "weights": list(rc.step_weights), "shares": [round(float(v), 4) for v in step_p],
             "step": step})
    if ema_sd is not None and step < rc.iters:   # resumed: the held-out loss where it starts (the set may have grown)
        log({"phase": "student", "step": step, **validation_loss(ema, ac, timesteps, held, autocast)})

    def loss_at(k: int):
        if k % 100 == 0:
            rows.refresh()
        return distill_loss(student, ac, timesteps, rows.sample(rng, rc.batch, step_p), autocast), {}

    def save(k: int):
        save_pretrained(ema, tok, out, extra={"phase": "student", "step": k}, sampling=sampling)
        save_state(state_dir, "student", k, student, optim.opt, {"args": dataclasses.asdict(rc)})

    def validate_and_save(k: int):
        held.refresh()
        log({"phase": "student", "step": k, **validation_loss(ema, ac, timesteps, held, autocast)})
        save(k)

    loop = LoopConfig(total=rc.iters, deadline=deadline, log_every=rc.log_every, ckpt_every=rc.ckpt_every,
                      name="student", smoothing=0.95, quiet=rc.quiet)
    step = fit(optim, loss_at, loop, log=log, checkpoint=validate_and_save, head={"phase": "student"},
               extra=lambda: {"trajectories": rows.trajectories})
    validate_and_save(step)
    log({"event": "done" if step >= rc.iters else "stopped", "phase": "student", "step": step})
    return ema


# ---------------------------------------------------------------------------- command line
def parse_args(argv=None) -> DistillConfig:
    p = argparse.ArgumentParser(prog="stunet distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=None, help="teacher checkpoint directory (default: the shipped model)")
    p.add_argument("--out", default="runs/fast", help="run folder: trajectories/, train.log, train_state/, the student")
    p.add_argument("--steps", type=int, default=8, help="the student's sampling steps (N)")
    p.add_argument("--sub", type=int, default=3, help="teacher DPM-Solver++ steps per student step")
    p.add_argument("--trajectories", type=int, default=1000, help="teacher trajectories to store (phase 1)")
    p.add_argument("--teacher-batch", type=int, default=4, help="trajectories per shard")
    p.add_argument("--part", default="0/1", metavar="K/N",
                   help="phase 1 only: write shards K mod N (run N processes with --threads 1 and K = 0..N-1, "
                        "then one without --part to train)")
    p.add_argument("--iters", type=int, default=2000, help="student optimisation steps (phase 2)")
    p.add_argument("--batch", type=int, default=8, help="student rows (stored states) per step")
    d = DistillConfig()
    add_optimisation_args(p, lr=d.lr, warmup=d.warmup, ema=d.ema, ckpt_every=d.ckpt_every, log_every=d.log_every)
    p.add_argument("--init", default=None, metavar="DIR",
                   help="start a new student from this student checkpoint (default: from the teacher); "
                        "ignored when --resume finds a train_state")
    p.add_argument("--step-weights", default=None, metavar="W1,...,WN",
                   help="how often each student step is drawn, noisiest first (default: uniform), e.g. 3,2,1,1,1,1,1,1")
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISION,
                   help="compute precision: auto (bf16 only where a probe measures it faster), fp32, bf16")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        k, n = (int(v) for v in a.part.split("/"))
    except ValueError:
        p.error(f"--part must be K/N with 0 <= K < N, got {a.part!r}")
    weights = None
    if a.step_weights is not None:
        try:
            weights = tuple(float(v) for v in a.step_weights.split(","))
        except ValueError:
            p.error(f"--step-weights must be comma-separated numbers, got {a.step_weights!r}")
    try:
        return DistillConfig(**{**vars(a), "part": (k, n), "step_weights": weights})
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    rc = parse_args(argv)
    try:
        return run(rc)
    except (ValueError, OSError) as e:       # a bad teacher checkpoint, no trajectories, an unreadable shard
        print(f"error: {e}", file=sys.stderr)
        return 1


def run(rc: DistillConfig) -> int:
    device = rc.device if rc.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(rc.threads or (os.cpu_count() or 1))
    precision = resolve_precision(rc.precision, device)
    rc = dataclasses.replace(rc, device=device, precision=precision.name)       # as it runs (logged)
    out = Path(rc.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + rc.minutes * 60
    log = JsonLog(out / "train.log")
    log({"event": "start", "args": dataclasses.asdict(rc)})
    log(precision_record(precision))
    if not rc.quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)
    teacher, tok = load_pretrained(rc.teacher)
    teacher = teacher.to(rc.device, memory_format=torch.channels_last)
    traj_dir = out / "trajectories"
    done = generate_trajectories(teacher, tok, traj_dir, count=rc.trajectories, steps=rc.steps, sub=rc.sub,
                                 batch=rc.teacher_batch, seed=rc.seed, precision=precision, deadline=deadline,
                                 log=log, quiet=rc.quiet, part=rc.part)
    if done < rc.trajectories or rc.part[1] > 1:
        log({"event": "stopped", "phase": "teacher", "trajectories": done})
        return 0
    if rc.iters > 0:
        train_student(teacher, tok, traj_dir, out, rc, precision, deadline, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
