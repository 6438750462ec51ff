"""The training scaffold every trainer shares: ``stunet train``, ``train-cascade``, ``distill``, ``distill-guidance``,
``stylize``, ``train-ssr``.

What a trainer brings is its loss (a callable from the step number to a loss and extra log fields) and
what it saves; the rest is here, once, as in nanoGPT's ``train.py`` loop:

* ``Optimisation``: AdamW, the learning-rate schedule (``learning_rate``: linear warm-up, then a
  cosine to a tenth), gradient clipping, and the EMA of the weights (``ema_update``, with the usual
  ramp ``min(decay, (1 + step) / (10 + step))``); ``update(loss)`` is one optimiser step.
* ``fit``: the loop: until ``total`` steps or the deadline, one update per step, a smoothed loss on
  the progress bar, a JSON-lines record every ``log_every`` steps and a checkpoint every ``ckpt_every``.
* ``train_state/`` without pickle (``save_state`` / ``load_state``): ``raw.safetensors`` (the raw
  weights), ``optimizer.safetensors`` + ``optimizer.json`` (the optimiser's tensors and the rest),
  ``config.json`` and ``state.json`` (stage, step and what the trainer adds). The EMA weights are the
  run's checkpoint, saved and found by the trainer (``checkpoint.load_resume_ema``, ``model.safetensors``).
* ``JsonLog``: the append-only ``train.log``, one JSON object a line with its time; ``command_device`` and
  ``open_run``: a command's device, threads, run folder (refusing one that holds a run) and log.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm


# ---------------------------------------------------------------------------- train_state/ (no pickle)
def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The optimiser's state as (tensors for safetensors, everything else for JSON)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(idx), {})[k] = v
    return tensors, scalars


def unflatten_optimizer(tensors: dict, scalars: dict) -> dict:
    """``flatten_optimizer``'s two halves back into an optimiser ``state_dict``."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for idx, st in scalars["state"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_state(d: Path, stage: str, step: int, model, opt, meta: dict) -> None:
    """Raw weights, optimiser, config and stage / step (+ ``meta``) in ``d``; the EMA weights are the run's
    checkpoint, saved apart."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ema.safetensors").unlink(missing_ok=True)     # an old run's copy would be stale from here on
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(d / "raw.safetensors"))
    t, s = flatten_optimizer(opt)
    save_file(t, str(d / "optimizer.safetensors"))
    (d / "optimizer.json").write_text(json.dumps(s))
    (d / "config.json").write_text(model.config.to_json())
    (d / "state.json").write_text(json.dumps({"stage": stage, "step": step, **meta}, indent=1))


@dataclass(frozen=True)
class SavedState:
    """What ``save_state`` wrote: ``info`` is ``state.json`` (stage, step and the trainer's own keys)."""
    stage: str
    step: int
    raw: dict
    optimizer: dict
    info: dict


def load_state(d: Path) -> SavedState | None:
    """``d``'s training state, or None when it has none (no ``state.json``)."""
    d = Path(d)
    if not (d / "state.json").is_file():
        return None
    info = json.loads((d / "state.json").read_text())
    return SavedState(stage=info["stage"], step=int(info["step"]), raw=load_file(str(d / "raw.safetensors")),
                      optimizer=unflatten_optimizer(load_file(str(d / "optimizer.safetensors")),
                                                    json.loads((d / "optimizer.json").read_text())),
                      info=info)


def resume_into(model: torch.nn.Module, out: Path) -> tuple[int, dict | None, dict | None]:
    """Resume a run whose EMA weights are its checkpoint, ``OUT/model.safetensors`` (the distillations): ``model``
    gets ``OUT/train_state``'s raw weights; returns (step, optimiser state, EMA state), or (0, None, None)."""
    saved = load_state(Path(out) / "train_state")
    if saved is None:
        return 0, None, None
    model.load_state_dict(saved.raw)
    return saved.step, saved.optimizer, load_file(str(Path(out) / "model.safetensors"))


# ---------------------------------------------------------------------------- command line
def add_optimisation_args(p, *, lr: float, warmup: int, ema: float, ckpt_every: int, log_every: int = 25) -> None:
    """The flags of ``OptimConfig`` and ``LoopConfig`` every trainer takes (its own defaults), and ``--seed``,
    ``--minutes``, ``--resume``."""
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--ema", type=float, default=ema)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=log_every)
    p.add_argument("--ckpt-every", type=int, default=ckpt_every)
    p.add_argument("--minutes", type=float, default=float("inf"), help="wall-clock budget for this run")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state")


def command_device(device: str, threads: int = 0) -> str:
    """A training command's device (``auto``: cuda where available, else cpu); sets torch's CPU threads
    (0: every core)."""
    torch.set_num_threads(threads or (os.cpu_count() or 1))
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def open_run(out: str | Path, start: dict, precision, *, occupied: str | None = None, what: str = "run",
             resume: bool = False, quiet: bool = False) -> "JsonLog":
    """A training command's run folder and its ``train.log``, opened with ``start`` and the precision record.
    ``occupied``: a file or folder whose presence means ``out`` already holds a run (a ``what``), refused unless
    ``resume`` (a ValueError, before anything is written)."""
    out = Path(out)
    if occupied is not None and not resume and (out / occupied).exists():
        raise ValueError(f"{out} already holds a {what}; pass --resume to continue it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    log = JsonLog(out / "train.log")
    log(start)
    log(precision_record(precision))
    if not quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)
    return log


# ---------------------------------------------------------------------------- log
class JsonLog:
    """``train.log``: appends ``{"time": ..., **record}`` a line, flushed at once; ``path`` None writes nothing
    (the other processes of a data-parallel run)."""

    def __init__(self, path: str | Path | None):
        self.file = open(path, "a") if path is not None else None

    def __call__(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def precision_record(precision) -> dict:
    """The log's ``precision`` event: what runs, why, and the CPU's vector capability."""
    return {"event": "precision", **precision.to_dict(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


# ---------------------------------------------------------------------------- one optimiser step
def learning_rate(base: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``base`` down to a tenth of it at ``total``."""
    warm = min(1.0, (step + 1) / warmup)
    decay = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(total, 1))))
    return base * warm * (0.1 + 0.9 * decay)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm.detach(), 1 - d)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up and cosine decay over ``total`` steps, clipping at ``clip``, an EMA at ``ema``."""
    lr: float
    total: int
    warmup: int
    ema: float
    weight_decay: float = 0.0
    clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.99)

    def __post_init__(self):
        if self.lr <= 0 or self.warmup < 1 or self.total < 0 or not 0.0 < self.ema < 1.0 or self.clip <= 0:
            raise ValueError(f"bad optimisation settings: {self}")


class Optimisation:
    """The model, its AdamW and its EMA copy, at ``step``; from saved states when given."""

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, step: int = 0, opt_state: dict | None = None,
                 ema_state: dict | None = None):
        self.model, self.cfg, self.step = model, cfg, step
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        if opt_state is not None:
            self.opt.load_state_dict(opt_state)
        self.ema = copy.deepcopy(model).requires_grad_(False)
        if ema_state is not None:
            self.ema.load_state_dict(ema_state)

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def update(self, loss: torch.Tensor) -> float:
        """One step: this step's learning rate, backward, clip, AdamW, EMA; returns the gradient norm."""
        for g in self.opt.param_groups:
            g["lr"] = learning_rate(self.cfg.lr, self.step, self.cfg.total, self.cfg.warmup)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        ema_update(self.ema, self.model, self.step, self.cfg.ema)
        self.step += 1
        return float(gnorm)


# ---------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class LoopConfig:
    """How ``fit`` runs: to ``total`` steps or ``deadline`` (``time.time()``), logging and checkpointing every
    so many steps; ``name`` labels the bar and the error of a non-finite loss."""
    total: int
    deadline: float = math.inf
    log_every: int = 25
    ckpt_every: int = 250
    name: str = "train"
    smoothing: float = 0.98             # the logged loss: an exponential average with this factor
    loss_digits: int = 5
    quiet: bool = False

    def __post_init__(self):
        if self.log_every < 1 or self.ckpt_every < 1 or not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"bad loop settings: {self}")


def fit(optim: Optimisation, loss_at: Callable[[int], tuple[torch.Tensor, dict]], loop: LoopConfig, *,
        log: Callable[[dict], None], checkpoint: Callable[[int], None], head: dict | None = None,
        extra: Callable[[], dict] | None = None) -> int:
    """Train from ``optim.step`` to ``loop.total`` (or the deadline); returns the step reached.

    ``loss_at(step)`` -> (loss, fields): the loss of this step's batch, and fields to smooth into the
    log (e.g. the loss's parts). Every ``log_every`` steps (and at ``total``) ``log`` gets ``head``, the step,
    the smoothed loss and fields, grad norm, learning rate, seconds and ``extra()``; every ``ckpt_every``
    steps ``checkpoint(step)`` runs. The final checkpoint is the caller's (it may differ).
    """
    bar = tqdm(total=loop.total, initial=optim.step, desc=loop.name, disable=loop.quiet, dynamic_ncols=True,
               mininterval=5.0)
    t0, smooth, parts = time.time(), None, {}
    a = loop.smoothing
    while optim.step < loop.total and time.time() < loop.deadline:
        loss, fields = loss_at(optim.step)
        gnorm = optim.update(loss)
        step = optim.step
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"non-finite {loop.name} loss at step {step}")
        smooth = lv if smooth is None else a * smooth + (1 - a) * lv
        for k, v in fields.items():
            parts[k] = v if k not in parts else a * parts[k] + (1 - a) * v
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.4f}")
        if step % loop.log_every == 0 or step == loop.total:
            log({**(head or {}), "step": step, "loss": round(smooth, loop.loss_digits),
                 **{f"loss_{k}": round(v, loop.loss_digits) for k, v in parts.items()},
                 "grad_norm": round(gnorm, 4), "lr": optim.lr, "seconds": round(time.time() - t0, 1),
                 **(extra() if extra else {})})
        if step % loop.ckpt_every == 0:
            checkpoint(step)
    bar.close()
    return optim.step
