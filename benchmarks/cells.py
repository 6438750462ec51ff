"""What one measurement (a *cell*) runs, and the worker protocol that runs it in a fresh process.

A cell is a JSON-able spec (``kind`` plus its arguments) and a JSON-able result; ``run_cell``
runs it here or in a fresh ``python -c`` worker started from the checkout root (a JSON spec on
stdin, the result on the last stdout line after ``RESULT_MARK``). Failures come back as
``{"error": ...}`` and are reported, never raised.

Kinds:

* ``memory``  - peak memory (RSS and live tensors), parameters and FLOPs of one model at one clip size
* ``timing``  - several models (and precisions) at one clip size, timed round-robin
* ``inspect`` - a short sampling loop, alternately plain and with an ``Inspector``
* ``matmul``  - a square matrix product in bf16 and fp32 (the achievable GFLOP/s)
* ``clip``    - whole clips through ``stunet.pipeline.Pipeline`` (the default clip, or a steps sweep)
* ``levers``  - each lever of ``benchmarks.levers`` off and on, timed round-robin
"""
from __future__ import annotations

import inspect as _inspect
import json
import os
import subprocess
import sys
import time

from . import ROOT
from .baselines import quiet_diffusers
from .measure import MMAP_THRESHOLD, PeakMemory, count_flops, live_tensor_peak, round_robin, time_matmul

RESULT_MARK = "STUNET_BENCH_RESULT "
# The prompt of the default clip (the studio's first example).
DEFAULT_PROMPT = "a red circle moving right"
PIPELINE_PRECISION_MISSING = (
    "stunet.pipeline.Pipeline.from_pretrained has no precision= argument: the default-clip measurement "
    "needs Pipeline.from_pretrained(directory=None, precision=None); or pass --no-clip")


# ============================================================================ building a step
def _text_ids(cfg, batch: int):
    """Token ids for ``batch`` rows: conditional rows with a few words, the last half empty (CFG)."""
    import torch
    ids = torch.zeros(batch, 1 + cfg.max_words, dtype=torch.long)
    ids[:, 0] = 1                                           # <cls>
    n_words = min(4, cfg.max_words)
    ids[: max(1, batch // 2), 1:1 + n_words] = torch.arange(2, 2 + n_words) % cfg.vocab_size
    return ids


def build_stunet_step(spec):
    """(model, ``levers.Step``) of a STUNet from ``spec["config"]`` at ``spec["frames"]``."""
    import torch
    from stunet.config import STUNetConfig
    from stunet.model import STUNet
    from .levers import Step
    cfg = STUNetConfig.from_dict(spec["config"])
    torch.manual_seed(0)
    model = STUNet(cfg).eval()
    b, t = spec["batch"], spec["frames"]
    with torch.no_grad():
        text = model.encode_text(_text_ids(cfg, b))
    x = torch.randn(b, cfg.video_channels, t, cfg.height, cfg.width)
    ts = torch.full((b,), 500, dtype=torch.long)
    return model, Step(model, x, ts, text, precision=spec["precision"])


def build_unet3d_step(spec):
    """(model, step) of diffusers' ``UNet3DConditionModel`` from ``spec["unet3d"]`` (its kwargs)."""
    quiet_diffusers()
    import torch
    from diffusers import UNet3DConditionModel
    from stunet.precision import Precision
    kw = spec["unet3d"]
    torch.manual_seed(0)
    model = UNet3DConditionModel(**kw).eval()
    b, t = spec["batch"], spec["frames"]
    x = torch.randn(b, kw["in_channels"], t, spec["height"], spec["width"])
    ehs = torch.randn(b, spec["text_len"], kw["cross_attention_dim"])
    ts = torch.full((b,), 500, dtype=torch.long)
    amp = Precision(spec["precision"], "benchmark")

    def step():
        with torch.no_grad(), amp.autocast("cpu"):
            return model(x, ts, encoder_hidden_states=ehs, return_dict=False)[0]
    return model, step


def build(spec):
    return (build_stunet_step if spec["model"] == "stunet" else build_unet3d_step)(spec)


# ============================================================================ cells
def run_memory_cell(spec) -> dict:
    """Peak memory (over ``mem_steps`` steps from cold), parameters and, if ``flops``, FLOPs of one
    model at one clip size."""
    model, step = build(spec)
    params = sum(p.numel() for p in model.parameters())
    mem = PeakMemory()
    for _ in range(spec.get("mem_steps", 2)):
        step()
    peak = mem.peak()
    out = dict(peak_bytes=peak, tensor_peak_bytes=live_tensor_peak(step), memory_method=mem.method,
               params=params)
    if spec.get("flops", True):
        out["flops"], out["flops_by_op"] = count_flops(step)
    return out


def run_timing_cell(spec) -> dict:
    """Several models (label -> model spec, each with its precision) timed round-robin in one process."""
    steps = {label: build(m)[1] for label, m in spec["models"].items()}
    return dict(times=round_robin(steps, spec["warmup"], spec["repeats"]))


def sampling_precision(precision: str) -> dict:
    """The keyword that makes ``stunet.sampling`` run in ``precision``: ``precision=`` where the
    sampler has it, else the older ``bf16=``."""
    from stunet.sampling import iter_sample
    if "precision" in _inspect.signature(iter_sample).parameters:
        return {"precision": precision}
    return {"bf16": precision == "bf16"}


def run_inspect_cell(spec) -> dict:
    """A short sampling loop, alternately plain and with an Inspector recording everything."""
    import torch
    from stunet.config import STUNetConfig
    from stunet.inspection import Inspector
    from stunet.model import STUNet
    from stunet.sampling import sample
    cfg = STUNetConfig.from_dict(spec["config"])
    torch.manual_seed(0)
    model = STUNet(cfg).eval()
    with torch.no_grad():
        enc = model.encode_text(_text_ids(cfg, 2))
    text, uncond = enc[0:1], enc[1:2]
    frames, steps = spec["frames"], spec["steps"]

    def run(inspect: bool):
        g = torch.Generator().manual_seed(0)
        kw = dict(generator=g, steps=steps, guidance=4.0, frames=frames, **sampling_precision(spec["precision"]))
        if not inspect:
            t0 = time.perf_counter()
            sample(model, text, uncond, **kw)
            return time.perf_counter() - t0, 0, 0
        with Inspector(model, max_bytes=1 << 40) as rec:
            t0 = time.perf_counter()
            sample(model, text, uncond, inspector=rec, **kw)
            dt = time.perf_counter() - t0
        return dt, rec.recording.nbytes, rec.recording.dropped

    run(False)                                              # warm-up (both paths)
    run(True)
    plain, inspected, nbytes, dropped = [], [], 0, 0
    for _ in range(spec["rounds"]):
        plain.append(run(False)[0])
        dt, nbytes, dropped = run(True)
        inspected.append(dt)
    return dict(plain=plain, inspected=inspected, steps=steps, frames=frames, recorded_bytes=nbytes,
                dropped=dropped)


def run_matmul_cell(spec) -> dict:
    return time_matmul(spec["size"], spec["repeats"])


def load_pipeline(directory: str | None, precision: str):
    """``Pipeline.from_pretrained(directory, precision=...)``, or a clear error where the pipeline
    does not take a precision yet."""
    from stunet.pipeline import Pipeline
    if "precision" not in _inspect.signature(Pipeline.from_pretrained).parameters:
        raise RuntimeError(PIPELINE_PRECISION_MISSING)
    return Pipeline.from_pretrained(directory=directory, precision=precision)


def run_clip_cell(spec) -> dict:
    """Whole clips of ``Settings(prompt)`` (default steps, guidance, frames; ``overrides``: tests only) end
    to end, one per entry of ``spec["steps"]`` (``None``: the default steps), round-robin after ``warmup``
    clips of the first."""
    from stunet.pipeline import Settings
    pipe = load_pipeline(spec.get("directory"), spec["precision"])
    overrides = spec.get("overrides") or {}
    default = pipe.complete(Settings(spec.get("prompt", DEFAULT_PROMPT), **overrides))
    settings = {("default" if n is None else str(n)): (default if n is None else
                                                     Settings(default.prompt, **dict(overrides, steps=int(n))))
                for n in spec["steps"]}
    calls = {label: (lambda s=s: pipe(s)) for label, s in settings.items()}
    first = next(iter(calls.values()))
    for _ in range(spec["warmup"]):
        first()
    times = round_robin(calls, 0, spec["repeats"])
    cfg = pipe.config
    return dict(times=times, steps={label: s.steps for label, s in settings.items()}, settings=default.to_dict(),
                window=cfg.frames, height=cfg.height, width=cfg.width,
                precision_used=getattr(getattr(pipe, "precision", None), "name", None))


def run_levers_cell(spec) -> dict:
    """Every lever of ``spec["levers"]``: two steps built alike, the lever off in one and on in the
    other, all timed round-robin in this process. Per lever: times without / with, seconds to turn it
    on, and the first step of each (a compilation shows there)."""
    from .levers import get
    out, calls = {}, {}
    for name in spec["levers"]:
        try:
            lever = get(name)
            _, without = build_stunet_step(spec)
            if lever.off is not None:
                without = lever.off(without)
            _, with_ = build_stunet_step(spec)
            t0 = time.perf_counter()
            with_ = lever.on(with_)
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            with_()
            first_with = time.perf_counter() - t0
            t0 = time.perf_counter()
            without()
            first_without = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - reported in the table
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        out[name] = dict(setup_s=setup, first_with_s=first_with, first_without_s=first_without)
        calls[(name, "without")], calls[(name, "with")] = without, with_
    labels = {f"{n}|{k}": fn for (n, k), fn in calls.items()}
    times = round_robin(labels, spec["warmup"], spec["repeats"])
    for (name, kind) in calls:
        out[name][kind] = times[f"{name}|{kind}"]
    return dict(levers=out)


CELLS = {"memory": run_memory_cell, "timing": run_timing_cell, "inspect": run_inspect_cell,
         "matmul": run_matmul_cell, "clip": run_clip_cell, "levers": run_levers_cell}


# ============================================================================ worker protocol
def execute(spec: dict) -> dict:
    """Run one cell in this process (also what a worker process does)."""
    import torch
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    kind = spec["kind"]
    if kind not in CELLS:
        raise ValueError(f"unknown cell kind {kind!r}")
    return CELLS[kind](spec)


def worker_main() -> None:
    """Entry point of a worker process: a JSON spec on stdin, the result on stdout's last line."""
    spec = json.loads(sys.stdin.read())
    try:
        res = execute(spec)
    except Exception as e:  # noqa: BLE001 - the parent reports it in the table
        res = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(res) + "\n")
    sys.stdout.flush()


def run_cell(spec: dict, isolate: bool) -> dict:
    """One measurement, in a fresh process (from the checkout root) if ``isolate``; failures come back
    as ``{"error": ...}``."""
    if not isolate:
        try:
            return execute(spec)
        except Exception as e:  # noqa: BLE001 - reported in the table
            return {"error": f"{type(e).__name__}: {e}"}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    env.setdefault("HF_HUB_OFFLINE", "1")
    if spec.get("kind") == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    code = "from benchmarks.cells import worker_main; worker_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(spec), capture_output=True,
                          text=True, env=env, cwd=str(ROOT))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}
