"""``stunet bench``: per-step cost of the STUNet against its baselines (issue 2, section 6).

    python -m stunet bench                      # full run, writes docs/benchmark.md
    python -m stunet bench --quick              # smoke run (few frames, few repeats)
    python -m stunet bench --fp32 --frames 16,32,64

One *denoising step* is one forward of the network on batch 2 (classifier-free guidance:
conditional + unconditional rows) at the config's height x width, under ``torch.no_grad()``
and, unless ``--fp32``, ``torch.autocast("cpu", dtype=torch.bfloat16)``. The text is encoded
once outside the step (as the sampler does). Measured, all in one run:

* time (median of ``--repeats`` after ``--warmup``) and peak memory per step of the preset
  (``shapes``) against its VDM-style twin (``vdm``: no temporal down/upsampling, temporal
  attention at every level) over ``--frames``;
* the same against diffusers' ``UNet3DConditionModel`` with widths searched to the preset's
  parameter count, in two block layouts (diffusers' default: attention at every level but the
  coarsest; and attention only where the STUNet has it);
* FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``, with CPU flash attention
  added to its table), achieved GFLOP/s, and a square matrix product timed in the same run;
* the overhead of an active ``Inspector`` recording features and attention at every step
  of a short sampling loop;
* the exponent of time per step against frames.

Timing: for each frame count, all the models measured there are built in one fresh Python
process and timed round-robin (order reversed every other round), so a drift of the machine's
speed hits them alike and the ratios hold. Memory and FLOPs: a fresh process per (model, frames)
(``--in-process`` to run everything here instead); the kernel's peak-RSS mark (``VmHWM``) is reset
through ``/proc/self/clear_refs`` once the model and inputs are built, and the peak reported is
``VmHWM - VmRSS`` at that point, over ``mem_steps`` steps from cold.

The run reports what it measured; targets are checked and printed as met / NOT met, never
used to tune anything. ``--check`` makes a missed target the exit status.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "STUNET_BENCH_RESULT "
MMAP_THRESHOLD = 128 * 1024

FULL_FRAMES = (16, 32, 64, 128, 256)
QUICK_FRAMES = (16, 32)
LAYOUTS = ("default", "matched")
# The prototype, quoted for comparison (not measured here).
PROTOTYPE = ("1.5 M-parameter prototype at 32x32, bf16, batch 2: 128 ms per step at 32 frames; "
             "1.8x faster than its VDM-style twin at 16 to 64 frames, 2.2x at 128")

# Targets of issue 2, section 6.
T_SPEEDUP_64 = 2.0
T_SPEEDUP_256 = 3.0
T_SPEEDUP_UNET3D = 4.0
T_INSPECT_OVERHEAD = 0.10
T_EXPONENT = 1.0


# ============================================================================ options
@dataclass
class Options:
    preset: str = "shapes"
    baseline: str = "vdm"                 # a preset name, or "twin" (derived from ``preset``)
    frames: tuple[int, ...] = FULL_FRAMES
    unet3d_frames: tuple[int, ...] = (32,)
    unet3d_layouts: tuple[str, ...] = LAYOUTS
    batch: int = 2
    bf16: bool = True
    warmup: int = 2
    repeats: int = 5
    mem_steps: int = 2                    # steps from cold over which peak memory is taken
    threads: int = 0                      # 0: torch's default
    inspect_frames: int | None = None     # default: the preset's training window
    inspect_steps: int = 6
    inspect_rounds: int = 5
    matmul_size: int = 2048
    matmul_repeats: int = 5
    isolate: bool = True                  # one fresh process per cell
    quick: bool = False
    overrides: dict = field(default_factory=dict)   # config overrides (tests: tiny sizes)


def _threads(opts: Options) -> int:
    if opts.threads:
        return opts.threads
    import torch
    return torch.get_num_threads()


# ============================================================================ model configs
def vdm_twin(cfg):
    """The VDM-style twin of a STUNet config: same widths, no temporal down/upsampling, no
    temporal convs, temporal attention at every level (at least one layer, the coarsest's count)."""
    L = cfg.levels
    attn = tuple(max(1, n) for n in cfg.temporal_attention)
    return cfg.replace(temporal_down=(False,) * (L - 1), temporal_conv=(False,) * L, temporal_attention=attn)


def model_configs(opts: Options):
    from .config import preset
    a = preset(opts.preset, **opts.overrides)
    b = vdm_twin(a) if opts.baseline == "twin" else preset(opts.baseline, **opts.overrides)
    return a, b


def stunet_parameters(cfg) -> int:
    from .checkpoint import estimate_parameters
    return estimate_parameters(cfg)


def unet3d_kwargs(cfg, widths: tuple[int, ...], layout: str) -> dict:
    """``UNet3DConditionModel`` arguments shaped like ``cfg`` (levels, groups, text width).

    layout "default": diffusers' own pattern, cross/self/temporal attention blocks at every
    level except the coarsest (plus the mid block); "matched": attention blocks only at the
    levels where the STUNet has cross or spatial attention (plus the mid block).
    """
    L = len(widths)
    if layout == "default":
        attn = [i < L - 1 for i in range(L)]
    elif layout == "matched":
        attn = [bool(cfg.cross_attention[i] or cfg.spatial_attention[i]) for i in range(L)]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    heads = 1
    while (widths[-1] // (2 * heads)) >= cfg.head_dim and all(w % (2 * heads) == 0 for w in widths):
        heads *= 2
    return dict(sample_size=cfg.height, in_channels=cfg.video_channels, out_channels=cfg.video_channels,
                down_block_types=tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in attn),
                up_block_types=tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(attn)),
                block_out_channels=tuple(widths), layers_per_block=cfg.blocks_per_level,
                norm_num_groups=cfg.groups, cross_attention_dim=cfg.text_dim, attention_head_dim=heads)


def _quiet_diffusers():
    import warnings
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from diffusers.utils import logging as dlog
        dlog.set_verbosity_error()
    except Exception:   # pragma: no cover - logging is cosmetic
        pass


def unet3d_parameters(kwargs: dict) -> int:
    _quiet_diffusers()
    import torch
    from diffusers import UNet3DConditionModel
    with torch.device("meta"):
        return sum(p.numel() for p in UNet3DConditionModel(**kwargs).parameters())


def match_unet3d(cfg, target: int, layout: str) -> tuple[dict, int]:
    """Widths ``round(s * cfg.channels)`` (multiples of ``groups``) with the parameter count closest
    to ``target``; the count grows with ``s``, so a bisection over the distinct width tuples."""
    g = cfg.groups

    def widths(s):
        return tuple(max(g, int(round(s * c / g)) * g) for c in cfg.channels)

    # Distinct tuples in order of s: each width is non-decreasing in s, so is the count.
    cands = list(dict.fromkeys(widths(k / 64) for k in range(4, 257)))
    counts: dict[tuple, int] = {}

    def count(i):
        w = cands[i]
        if w not in counts:
            counts[w] = unet3d_parameters(unet3d_kwargs(cfg, w, layout))
        return counts[w]

    lo, hi = 0, len(cands) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    best = cands[min((lo, hi), key=lambda i: abs(count(i) - target))]
    # One round of refinement: one level's width one group up or down (widths stay non-decreasing).
    for i in range(len(best)):
        for d in (-g, g):
            w = best[:i] + (best[i] + d,) + best[i + 1:]
            if w[i] >= g and all(x <= y for x, y in zip(w, w[1:])) and w not in counts:
                counts[w] = unet3d_parameters(unet3d_kwargs(cfg, w, layout))
    best = min(counts, key=lambda w: (abs(counts[w] - target), w))
    return unet3d_kwargs(cfg, best, layout), counts[best]


# ============================================================================ measurement (worker side)
def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory above the current resident set, from the kernel's high-water mark."""

    def __init__(self):
        gc.collect()
        self.method = "VmHWM reset via /proc/self/clear_refs"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "ru_maxrss (high-water mark could not be reset)"
        self.base = _proc_status("VmRSS")
        if self.base is None:
            import resource
            self.method = "ru_maxrss minus ru_maxrss at baseline"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak(self) -> int:
        hwm = _proc_status("VmHWM")
        if hwm is None:
            import resource
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, hwm - self.base)


def live_tensor_peak(fn) -> int:
    """Peak bytes of tensor storage created by the ops of ``fn()`` and alive at once.

    A ``TorchDispatchMode`` sees every op's outputs; a storage counts from its first output to the
    death of the last tensor that the mode saw on it. Deterministic and allocator-independent, but a
    lower bound: buffers a kernel allocates internally (oneDNN scratchpads, reorders) are not tensors.
    """
    import weakref
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Live(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.refs, self.size, self.cur, self.peak = {}, {}, 0, 0

        def release(self, key):
            self.refs[key] -= 1
            if not self.refs[key]:
                del self.refs[key]
                self.cur -= self.size.pop(key)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    st = t.untyped_storage()
                    key = st.data_ptr()
                    if not key:
                        continue
                    if key not in self.refs:
                        self.refs[key], self.size[key] = 0, st.nbytes()
                        self.cur += st.nbytes()
                        self.peak = max(self.peak, self.cur)
                    self.refs[key] += 1
                    weakref.finalize(t, self.release, key)
            return out

    mode = Live()
    with mode:
        fn()
    gc.collect()
    return mode.peak


def _attention_flop(q, k, v, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(q, k, v)


def count_flops(fn) -> tuple[int, dict[str, int]]:
    """FLOPs of ``fn()`` (2 per multiply-add) by aten op; CPU flash attention is added to the
    counter's table (it only knows the CUDA attention kernels)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    extra = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        extra[op] = _attention_flop
    fc = FlopCounterMode(display=False, custom_mapping=extra)
    with fc:
        fn()
    by_op = {str(k).replace("aten.", ""): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return int(fc.get_total_flops()), by_op


def _amp(bf16: bool):
    import torch
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _time_calls(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _text_ids(cfg, batch: int):
    """Token ids for ``batch`` rows: conditional rows with a few words, the last half empty (CFG)."""
    import torch
    ids = torch.zeros(batch, 1 + cfg.max_words, dtype=torch.long)
    ids[:, 0] = 1                                           # <cls>
    n_words = min(4, cfg.max_words)
    ids[: max(1, batch // 2), 1:1 + n_words] = torch.arange(2, 2 + n_words) % cfg.vocab_size
    return ids


def _step_stunet(spec):
    import torch
    from .config import STUNetConfig
    from .model import STUNet
    cfg = STUNetConfig.from_dict(spec["config"])
    torch.manual_seed(0)
    model = STUNet(cfg).eval()
    b, t = spec["batch"], spec["frames"]
    with torch.no_grad():
        text = model.encode_text(_text_ids(cfg, b))
    x = torch.randn(b, cfg.video_channels, t, cfg.height, cfg.width)
    ts = torch.full((b,), 500, dtype=torch.long)

    def step():
        with torch.no_grad(), _amp(spec["bf16"]):
            return model(x, ts, text, 1)
    return model, step


def _step_unet3d(spec):
    _quiet_diffusers()
    import torch
    from diffusers import UNet3DConditionModel
    kw = spec["unet3d"]
    torch.manual_seed(0)
    model = UNet3DConditionModel(**kw).eval()
    b, t = spec["batch"], spec["frames"]
    x = torch.randn(b, kw["in_channels"], t, spec["height"], spec["width"])
    ehs = torch.randn(b, spec["text_len"], kw["cross_attention_dim"])
    ts = torch.full((b,), 500, dtype=torch.long)

    def step():
        with torch.no_grad(), _amp(spec["bf16"]):
            return model(x, ts, encoder_hidden_states=ehs, return_dict=False)[0]
    return model, step


def _build(spec):
    return (_step_stunet if spec["model"] == "stunet" else _step_unet3d)(spec)


def _run_memory_cell(spec) -> dict:
    """Peak memory (over ``mem_steps`` steps from cold), parameters and FLOPs of one model at one clip size."""
    model, step = _build(spec)
    params = sum(p.numel() for p in model.parameters())
    mem = PeakMemory()
    for _ in range(spec.get("mem_steps", 2)):
        step()
    peak = mem.peak()
    tensors = live_tensor_peak(step)
    flops, by_op = count_flops(step)
    return dict(peak_bytes=peak, tensor_peak_bytes=tensors, memory_method=mem.method, params=params,
                flops=flops, flops_by_op=by_op)


def _run_timing_cell(spec) -> dict:
    """Time several models at one clip size in one process, round-robin (order reversed every other
    round), so that a slow drift of the machine's speed hits every model alike and ratios hold."""
    steps = {label: _build(m)[1] for label, m in spec["models"].items()}
    labels = list(steps)
    for _ in range(spec["warmup"]):
        for label in labels:
            steps[label]()
    times = {label: [] for label in labels}
    for r in range(spec["repeats"]):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            t0 = time.perf_counter()
            steps[label]()
            times[label].append(time.perf_counter() - t0)
    return dict(times=times)


def _run_inspect_cell(spec) -> dict:
    """A short sampling loop, alternately plain and with an Inspector recording everything."""
    import torch
    from .config import STUNetConfig
    from .inspect import Inspector
    from .model import STUNet
    from .sampling import sample
    cfg = STUNetConfig.from_dict(spec["config"])
    torch.manual_seed(0)
    model = STUNet(cfg).eval()
    with torch.no_grad():
        enc = model.encode_text(_text_ids(cfg, 2))
    text, uncond = enc[0:1], enc[1:2]
    frames, steps = spec["frames"], spec["steps"]

    def run(inspect: bool):
        g = torch.Generator().manual_seed(0)
        kw = dict(generator=g, steps=steps, guidance=4.0, frames=frames, bf16=spec["bf16"])
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


def _run_matmul_cell(spec) -> dict:
    import torch
    n = spec["size"]
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(dtype)
        b = torch.randn(n, n, generator=g).to(dtype)
        times = _time_calls(lambda: torch.mm(a, b), 1, spec["repeats"])
        out[name] = dict(times=times, flops=2 * n ** 3)
    return out


def execute(spec: dict) -> dict:
    """Run one cell in this process (also what a worker process does)."""
    import torch
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    kind = spec["kind"]
    if kind == "memory":
        return _run_memory_cell(spec)
    if kind == "timing":
        return _run_timing_cell(spec)
    if kind == "inspect":
        return _run_inspect_cell(spec)
    if kind == "matmul":
        return _run_matmul_cell(spec)
    raise ValueError(f"unknown cell kind {kind!r}")


def worker_main() -> None:
    """Entry point of a worker process: a JSON spec on stdin, the result on stdout's last line."""
    spec = json.loads(sys.stdin.read())
    res = execute(spec)
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(res) + "\n")
    sys.stdout.flush()


def run_cell(spec: dict, isolate: bool) -> dict:
    """One measurement, in a fresh process if ``isolate``; failures come back as ``{"error": ...}``."""
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
        # glibc: a fixed mmap threshold, so freed tensors go back to the OS and the peak-RSS mark follows
        # live memory (with the default, adaptive threshold it varied by about 30% from run to run).
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    code = "from stunet.bench import worker_main; worker_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(spec), capture_output=True,
                          text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}


# ============================================================================ the run
@dataclass
class Results:
    opts: Options
    threads: int
    names: tuple[str, str]
    params: dict[str, int]
    unet3d: dict[str, dict]                          # layout -> {"kwargs", "params"}
    cells: dict[tuple[str, int], dict]               # (model, frames) -> cell result
    matmul: list[dict]                               # before and after the cells
    inspect: dict | None
    machine: dict
    command: str
    started: str
    seconds: float = 0.0


def _progress(msg: str, quiet: bool):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_benchmark(opts: Options, command: str = "", quiet: bool = False) -> Results:
    t_start = time.perf_counter()
    cfg_a, cfg_b = model_configs(opts)
    name_a = opts.preset
    name_b = opts.baseline if opts.baseline != "twin" else f"{opts.preset}-vdm"
    frames = sorted(set(opts.frames) | set(opts.unet3d_frames))
    for t in frames:
        cfg_a.check_frames(t)
        cfg_b.check_frames(t)
    threads = _threads(opts)
    machine = machine_info()
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    base = dict(batch=opts.batch, bf16=opts.bf16, warmup=opts.warmup, repeats=opts.repeats, threads=threads,
                height=cfg_a.height, width=cfg_a.width)
    params = {name_a: stunet_parameters(cfg_a), name_b: stunet_parameters(cfg_b)}
    unet3d = {}
    for layout in (opts.unet3d_layouts if opts.unet3d_frames else ()):
        kw, n = match_unet3d(cfg_a, params[name_a], layout)
        unet3d[layout] = {"kwargs": kw, "params": n}
        params[f"unet3d-{layout}"] = n

    models = {}                                                      # label -> model spec (no frames)
    models[name_a] = dict(model="stunet", config=cfg_a.to_dict())
    models[name_b] = dict(model="stunet", config=cfg_b.to_dict())
    for layout, u in unet3d.items():
        models[f"unet3d-{layout}"] = dict(model="unet3d", unet3d=u["kwargs"], text_len=1 + cfg_a.max_words)

    def at(t):
        return [m for m in models if not m.startswith("unet3d-") or t in opts.unet3d_frames]

    total = 2 + len(frames) + sum(len(at(t)) for t in frames) + (1 if opts.inspect_rounds else 0)
    done = 0

    def cell(label, spec):
        nonlocal done
        done += 1
        _progress(f"[bench {done}/{total}] {label} ...", quiet)
        t0 = time.perf_counter()
        res = run_cell(spec, opts.isolate)
        if "error" in res:
            _progress(f"    failed: {res['error']}", quiet)
        else:
            _progress(f"    done in {time.perf_counter() - t0:.1f} s", quiet)
        return res

    mm_spec = dict(kind="matmul", size=opts.matmul_size, repeats=opts.matmul_repeats, threads=threads)
    matmul = [cell(f"matmul {opts.matmul_size}^3 (before)", mm_spec)]
    cells = {}
    for t in frames:
        here = at(t)
        timing = cell(f"time per step at {t} frames: {', '.join(here)} (round-robin, {opts.repeats} rounds)",
                      dict(kind="timing", warmup=opts.warmup, repeats=opts.repeats, threads=threads,
                           models={m: dict(models[m], **base, frames=t) for m in here}))
        for m in here:
            mem = cell(f"memory and FLOPs of {m} at {t} frames",
                       dict(models[m], **base, kind="memory", frames=t, mem_steps=opts.mem_steps))
            c = {k: v for k, v in mem.items() if k != "error"}
            errors = [f"memory: {mem['error']}"] if "error" in mem else []
            if "times" in timing:
                c["times"] = timing["times"][m]
            else:
                errors.append(f"timing: {timing.get('error')}")
            if errors:
                c["error"] = "; ".join(errors)
            cells[(m, t)] = c
    insp = None
    if opts.inspect_rounds:
        insp = cell(f"inspection overhead ({name_a}, {opts.inspect_steps} steps x {opts.inspect_rounds})",
                    dict(kind="inspect", config=cfg_a.to_dict(), frames=opts.inspect_frames or cfg_a.frames,
                         steps=opts.inspect_steps, rounds=opts.inspect_rounds, bf16=opts.bf16, threads=threads))
    matmul.append(cell(f"matmul {opts.matmul_size}^3 (after)", mm_spec))
    machine["load_end"] = _loadavg()
    return Results(opts, threads, (name_a, name_b), params, unet3d, cells, matmul, insp, machine, command,
                   started, time.perf_counter() - t_start)


# ============================================================================ derived numbers
def med(xs) -> float:
    return statistics.median(xs)


def step_time(res: Results, model: str, t: int) -> float | None:
    c = res.cells.get((model, t))
    return med(c["times"]) if c and "times" in c else None


def peak_mib(res: Results, model: str, t: int, key: str = "peak_bytes") -> float | None:
    """Peak memory of a step in MiB: RSS (``peak_bytes``) or live tensors (``tensor_peak_bytes``)."""
    c = res.cells.get((model, t))
    return c[key] / 2 ** 20 if c and key in c else None


def tensor_mib(res: Results, model: str, t: int) -> float | None:
    return peak_mib(res, model, t, "tensor_peak_bytes")


def gflops(res: Results, model: str, t: int) -> tuple[float, float] | None:
    """(GFLOP per step, achieved GFLOP/s)."""
    c = res.cells.get((model, t))
    if not c or "flops" not in c:
        return None
    return c["flops"] / 1e9, c["flops"] / med(c["times"]) / 1e9


def matmul_gflops(res: Results, dtype: str) -> float | None:
    vals = [m[dtype]["flops"] / med(m[dtype]["times"]) / 1e9 for m in res.matmul if dtype in m]
    return max(vals) if vals else None


def speedup(res: Results, t: int, other: str) -> float | None:
    a, b = step_time(res, res.names[0], t), step_time(res, other, t)
    return b / a if a and b else None


def fit_exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) against log(frames)."""
    pts = [(math.log(f), math.log(s)) for f, s in points if s and s > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def local_exponent(prev, cur, i) -> float | None:
    """Exponent between two (frames, time_a, time_b) rows, for time index ``i``."""
    if prev is None or not prev[i] or not cur[i] or prev[0] == cur[0]:
        return None
    return math.log(cur[i] / prev[i]) / math.log(cur[0] / prev[0])


def exponent(res: Results, model: str) -> float | None:
    return fit_exponent([(t, step_time(res, model, t)) for t in res.opts.frames])


def inspect_overhead(res: Results) -> float | None:
    i = res.inspect
    if not i or "plain" not in i:
        return None
    return med(i["inspected"]) / med(i["plain"]) - 1.0


# ============================================================================ targets
@dataclass
class Target:
    name: str
    measured: str
    status: str            # "met", "NOT met", "not measured"


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT met")


def targets(res: Results) -> list[Target]:
    a, b = res.names
    frames = sorted(res.opts.frames)
    out = []
    s64 = speedup(res, 64, b)
    out.append(Target(f"`{a}` >= {T_SPEEDUP_64:g}x faster per step than `{b}` at 64 frames",
                      _x(s64), _status(None if s64 is None else s64 >= T_SPEEDUP_64)))
    sp = [(t, speedup(res, t, b)) for t in frames]
    sp = [(t, s) for t, s in sp if s is not None]
    grows = None if len(sp) < 2 else all(s2 >= s1 for (_, s1), (_, s2) in zip(sp, sp[1:]))
    out.append(Target(f"speed-up over `{b}` grows with frames",
                      ", ".join(f"{t}: {s:.2f}x" for t, s in sp) or "-", _status(grows)))
    s256 = speedup(res, 256, b)
    out.append(Target(f"`{a}` >= {T_SPEEDUP_256:g}x faster per step than `{b}` at 256 frames",
                      _x(s256), _status(None if s256 is None else s256 >= T_SPEEDUP_256)))
    mem = [(t, peak_mib(res, a, t), peak_mib(res, b, t), tensor_mib(res, a, t), tensor_mib(res, b, t))
           for t in frames]
    mem = [m for m in mem if None not in m]
    out.append(Target(f"`{a}` lower peak memory per step than `{b}` (RSS and live tensors, every frame count)",
                      ", ".join(f"{t}: {ra:.0f} vs {rb:.0f} MiB RSS, {ta:.0f} vs {tb:.0f} MiB tensors"
                                for t, ra, rb, ta, tb in mem) or "-",
                      _status(None if not mem else all(ra < rb and ta < tb for _, ra, rb, ta, tb in mem))))
    for layout in res.unet3d:
        for t in res.opts.unet3d_frames:
            s = speedup(res, t, f"unet3d-{layout}")
            out.append(Target(f"`{a}` >= {T_SPEEDUP_UNET3D:g}x faster per step than `UNet3DConditionModel` "
                              f"({layout} layout, {res.params[f'unet3d-{layout}'] / 1e6:.2f} M parameters against "
                              f"{res.params[a] / 1e6:.2f} M) at {t} frames",
                              _x(s), _status(None if s is None else s >= T_SPEEDUP_UNET3D)))
    ov = inspect_overhead(res)
    out.append(Target(f"inspection overhead <= {T_INSPECT_OVERHEAD:.0%}",
                      "-" if ov is None else f"{ov:+.1%}", _status(None if ov is None else ov <= T_INSPECT_OVERHEAD)))
    e = exponent(res, a)
    out.append(Target(f"`{a}` time per step grows no faster than linearly in frames (fitted exponent <= "
                      f"{T_EXPONENT:g})", "-" if e is None else f"{e:.2f}",
                      _status(None if e is None else e <= T_EXPONENT)))
    return out


def _x(v):
    return "-" if v is None else f"{v:.2f}x"


# ============================================================================ report
def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _err(res: Results, model: str, t: int) -> str | None:
    c = res.cells.get((model, t))
    return c.get("error") if c else None


def _flop_split(by_op: dict[str, int]) -> str:
    tot = sum(by_op.values()) or 1
    conv = sum(v for k, v in by_op.items() if "conv" in k)
    attn = sum(v for k, v in by_op.items() if "attention" in k)
    mm = tot - conv - attn
    return f"conv {conv / tot:.0%} / linear {mm / tot:.0%} / attention {attn / tot:.0%}"


def render(res: Results) -> str:
    o = res.opts
    a, b = res.names
    prec = "bf16 autocast" if o.bf16 else "fp32"
    cfg_a, _ = model_configs(o)
    mm_ref = "bf16" if o.bf16 else "fp32"
    ref = matmul_gflops(res, mm_ref)
    m = res.machine
    mem_method = " / ".join(sorted({c["memory_method"] for c in res.cells.values() if "memory_method" in c})) \
        or "-"
    where = "in a fresh process per model and frame count" if o.isolate else \
        "in this process (--in-process: less clean)"
    parts = ["# STUNet benchmark\n"]
    if o.quick:
        parts.append("> **Quick (smoke) run**: few frames and repeats; not the reference numbers.\n")
    busy = max(m.get("load_start") or 0, m.get("load_end") or 0)
    if busy > 0.5:
        parts.append(f"> **The CPU was not idle** (1-minute load average {m.get('load_start') or 0:.2f} at the "
                     f"start, {m.get('load_end') or 0:.2f} at the end, on {m['cpus']} CPUs): timings are disturbed "
                     f"by other processes.\n")
    parts.append(
        f"- command: `{res.command}`\n"
        f"- date: {res.started}; the run took {res.seconds:.0f} s\n"
        f"- machine: {m['cpu_model']}, {m['cpus']} CPUs ({m['cores']}); {m['platform']}\n"
        f"- software: Python {m['python']}, torch {m['torch']}, diffusers {m['diffusers']}; "
        f"{res.threads} torch thread(s)\n"
        f"- step: one forward on batch {o.batch} (classifier-free guidance: conditional + unconditional rows), "
        f"{cfg_a.height}x{cfg_a.width}, {prec}, `torch.no_grad()`; text encoded outside the step\n"
        f"- time: median of {o.repeats} steps after {o.warmup} warm-up; the models of one frame count are built "
        f"in one {'fresh process' if o.isolate else 'process'} and timed round-robin (order reversed every other "
        f"round), so a drift of the machine's speed hits them alike\n"
        f"- peak memory, {where}, above the baseline with the model and inputs built: **RSS**, the resident set's "
        f"high-water mark over {o.mem_steps} steps from cold ({mem_method}; glibc mmap threshold fixed at "
        f"{MMAP_THRESHOLD // 1024} KiB so freed tensors return to the OS); **tensors**, the most tensor storage "
        f"alive at once during a step (a dispatch-mode tracker: deterministic, but blind to kernels' internal "
        f"buffers)\n"
        f"- FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one step (2 per multiply-add: convolutions, "
        f"matrix products and scaled-dot-product attention, CPU flash attention included); GFLOP/s = FLOP / "
        f"median time\n"
        f"- parameters: `{a}` {res.params[a]:,}, `{b}` {res.params[b]:,}"
        + "".join(f", `UNet3DConditionModel` ({k} layout) {v['params']:,}" for k, v in res.unet3d.items()) + "\n")

    sweep = sorted(set(o.frames) | set(o.unet3d_frames))
    errors = [f"`{n}` at {t} frames: {e}" for t in sweep for n in [a, b] + [f"unet3d-{k}" for k in res.unet3d]
              if (e := _err(res, n, t))]

    # --- time per step
    parts.append(f"## Time per denoising step: `{a}` against `{b}`\n")
    parts.append(f"speed-up = `{b}` time / `{a}` time; exponent = growth of the time per step since the "
                 f"previous row, log(time ratio) / log(frames ratio) (1 = linear).\n")
    rows, prev = [], None
    for t in sweep:
        ta, tb = step_time(res, a, t), step_time(res, b, t)
        la, lb = local_exponent(prev, (t, ta, tb), 1), local_exponent(prev, (t, ta, tb), 2)
        prev = (t, ta, tb)
        rows.append([str(t), _f(ta and ta * 1e3), _f(ta and ta * 1e3 / t, "{:.2f}"), _f(la, "{:.2f}"),
                     _f(tb and tb * 1e3), _f(tb and tb * 1e3 / t, "{:.2f}"), _f(lb, "{:.2f}"),
                     _x(speedup(res, t, b))])
    parts.append(_table(["frames", f"`{a}` ms/step", "ms/frame", "exponent", f"`{b}` ms/step", "ms/frame",
                         "exponent", "speed-up"], rows) + "\n")
    ea, eb = exponent(res, a), exponent(res, b)
    parts.append(f"Fitted exponent of time per step against frames (log-log least squares over "
                 f"{', '.join(map(str, sorted(o.frames)))}): `{a}` {_f(ea, '{:.2f}')}, `{b}` {_f(eb, '{:.2f}')}.\n")

    # --- memory and compute
    parts.append(f"## Peak memory and compute per step: `{a}` against `{b}`\n")
    rows = []
    for t in sweep:
        ra, rb, ma, mb = peak_mib(res, a, t), peak_mib(res, b, t), tensor_mib(res, a, t), tensor_mib(res, b, t)
        ga, gb = gflops(res, a, t), gflops(res, b, t)
        rows.append([str(t), _f(ra, "{:.0f}"), _f(rb, "{:.0f}"), _f(ra / rb if ra and rb else None, "{:.2f}"),
                     _f(ma, "{:.0f}"), _f(mb, "{:.0f}"), _f(ma / mb if ma and mb else None, "{:.2f}"),
                     _f(ga and ga[0]), _f(ga and ga[1]), _f(gb and gb[0]), _f(gb and gb[1])])
    parts.append(_table(["frames", f"`{a}` RSS MiB", f"`{b}` RSS MiB", "ratio", f"`{a}` tensors MiB",
                         f"`{b}` tensors MiB", "ratio", f"`{a}` GFLOP", "GFLOP/s", f"`{b}` GFLOP", "GFLOP/s"],
                        rows) + "\n")

    # --- UNet3D
    if res.unet3d:
        parts.append("## Against diffusers' `UNet3DConditionModel` at matched parameters\n")
        parts.append("Widths searched (multiples of the group count, same number of levels) to the parameter count "
                     f"of `{a}`. `default` layout: diffusers' pattern, attention blocks (spatial self + text cross + "
                     "temporal) at every level but the coarsest, plus the mid block; `matched` layout: attention "
                     f"blocks only at the levels where `{a}` has cross or spatial attention, plus the mid block. "
                     f"Same clip and batch, text of {1 + cfg_a.max_words} tokens x {cfg_a.text_dim}.\n")
        rows = []
        for t in o.unet3d_frames:
            for model in [a] + [f"unet3d-{k}" for k in res.unet3d]:
                st, g = step_time(res, model, t), gflops(res, model, t)
                c = res.cells.get((model, t)) or {}
                desc = f"`{a}`"
                if model != a:
                    layout = model.split("-", 1)[1]
                    kw = res.unet3d[layout]["kwargs"]
                    desc = (f"`UNet3DConditionModel` {layout} (widths {kw['block_out_channels']}, "
                            f"{kw['attention_head_dim']} head(s))")
                rows.append([str(t), desc, f"{res.params[model]:,}", _f(st and st * 1e3),
                             _f(peak_mib(res, model, t), "{:.0f}"), _f(tensor_mib(res, model, t), "{:.0f}"),
                             _f(g and g[0]), _f(g and g[1]), _f(g and ref and 100 * g[1] / ref, "{:.1f}%"),
                             "-" if model == a else _x(speedup(res, t, model)),
                             _flop_split(c["flops_by_op"]) if c.get("flops_by_op") else "-"])
        parts.append(_table(["frames", "model", "parameters", "ms/step", "RSS MiB", "tensors MiB", "GFLOP",
                             "GFLOP/s", f"of {mm_ref} matmul", f"`{a}` speed-up", "FLOP split"], rows) + "\n")

    # --- compute reference
    parts.append("## Achieved compute\n")
    rows = []
    for dt in ("bf16", "fp32"):
        vals = [mm[dt]["flops"] / med(mm[dt]["times"]) / 1e9 for mm in res.matmul if dt in mm]
        rows.append([f"{dt} matmul {o.matmul_size}x{o.matmul_size}x{o.matmul_size}",
                     " / ".join(f"{v:.1f}" for v in vals) + " (before / after the models)" if vals else "-"])
    for model in (a, b):
        for t in sorted(o.frames):
            g = gflops(res, model, t)
            if g:
                rows.append([f"`{model}` step, {t} frames ({prec})",
                             f"{g[1]:.1f} ({100 * g[1] / ref:.1f}% of the {mm_ref} matmul)" if ref else f"{g[1]:.1f}"])
    parts.append(_table(["kernel", "GFLOP/s"], rows) + "\n")

    # --- inspection
    parts.append("## Inspection overhead\n")
    i = res.inspect
    if i and "plain" in i:
        n = i["steps"]
        parts.append(f"`stunet.sampling.sample` of `{a}` ({i['frames']} frames, {n} DPM-Solver++ steps, guidance 4, "
                     f"{prec}), alternately without and with an `Inspector` recording features and temporal + "
                     f"cross attention at every step; median of {len(i['plain'])} rounds after one warm-up of "
                     f"each.\n")
        parts.append(_table(["", "ms/step", "recorded MiB/step"], [
            ["plain", f"{med(i['plain']) * 1e3 / n:.1f}", "-"],
            ["with Inspector", f"{med(i['inspected']) * 1e3 / n:.1f}", f"{i['recorded_bytes'] / n / 2 ** 20:.2f}"],
            ["overhead", f"{inspect_overhead(res):+.1%}", f"dropped records: {i['dropped']}"]]) + "\n")
    else:
        parts.append(f"not measured{': ' + i['error'] if i and 'error' in i else ''}\n")

    if errors:
        parts.append("## Failed measurements\n")
        parts.append("\n".join(f"- {e}" for e in errors) + "\n")

    # --- targets
    parts.append("## Targets (issue 2, section 6)\n")
    parts.append(_table(["target", "measured", "status"],
                        [[t.name, t.measured, f"**{t.status}**" if t.status == "NOT met" else t.status]
                         for t in targets(res)]) + "\n")
    parts.append(f"For comparison, the issue's own measurement: {PROTOTYPE}.\n")
    return "\n".join(parts)


# ============================================================================ machine
def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine_info() -> dict:
    import torch
    model, cores = platform.processor() or platform.machine(), ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        kv = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in out.splitlines())}
        model = kv.get("Model name", model)
        cores = (f"{kv.get('Core(s) per socket', '?')} core(s) per socket x {kv.get('Socket(s)', '?')} socket(s), "
                 f"{kv.get('Thread(s) per core', '?')} thread(s) per core")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import importlib.metadata as md
        dver = md.version("diffusers")
    except Exception:  # noqa: BLE001
        dver = "not installed"
    return dict(cpu_model=model, cpus=os.cpu_count(), cores=cores or "?", platform=platform.platform(),
                python=platform.python_version(), torch=torch.__version__, diffusers=dver,
                load_start=_loadavg())


# ============================================================================ command line
def _ints(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("frame counts must be positive")
    return vals


def parse(argv) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="stunet bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: frames 16,32, UNet3D at 16, 1 warm-up, 2 repeats, small matmul")
    p.add_argument("--fp32", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--frames", type=_ints, help=f"frame counts (default {','.join(map(str, FULL_FRAMES))})")
    p.add_argument("--preset", default="shapes")
    p.add_argument("--baseline", default="vdm", help="preset to compare with, or 'twin' (derived VDM-style twin)")
    p.add_argument("--unet3d-frames", type=str, default=None,
                   help="frame counts for the UNet3DConditionModel comparison (default 32; 'none' to skip)")
    p.add_argument("--unet3d-layout", choices=("both",) + LAYOUTS, default="both")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--inspect-steps", type=int)
    p.add_argument("--inspect-rounds", type=int, help="0 skips the inspection measurement")
    p.add_argument("--matmul-size", type=int)
    p.add_argument("--in-process", action="store_true", help="measure in this process (memory is less clean)")
    p.add_argument("--out", default=None, help="markdown file to write (default docs/benchmark.md; '-' for none)")
    p.add_argument("--json", default=None, help="also write the raw results as JSON here")
    p.add_argument("--check", action="store_true", help="exit status 1 when a measured target is not met")
    args = p.parse_args(argv)
    q = args.quick
    o = Options(preset=args.preset, baseline=args.baseline, quick=q, bf16=not args.fp32,
                frames=args.frames or (QUICK_FRAMES if q else FULL_FRAMES),
                warmup=args.warmup if args.warmup is not None else (1 if q else 2),
                repeats=args.repeats or (2 if q else 5), threads=args.threads,
                inspect_steps=args.inspect_steps or (2 if q else 6),
                inspect_rounds=args.inspect_rounds if args.inspect_rounds is not None else (2 if q else 5),
                matmul_size=args.matmul_size or (1024 if q else 2048), matmul_repeats=3 if q else 5,
                isolate=not args.in_process,
                unet3d_layouts=LAYOUTS if args.unet3d_layout == "both" else (args.unet3d_layout,))
    if args.unet3d_frames is None:
        o.unet3d_frames = (16,) if q else (32,)
    elif args.unet3d_frames.strip().lower() in ("none", ""):
        o.unet3d_frames = ()
    else:
        o.unet3d_frames = _ints(args.unet3d_frames)
    if o.warmup < 0 or o.repeats < 1:
        p.error("--warmup must be >= 0 and --repeats >= 1")
    return o, args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, args = parse(argv)
    command = "python -m stunet bench" + ("" if not argv else " " + " ".join(shlex.quote(x) for x in argv))
    try:
        res = run_benchmark(opts, command)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(res)
    print(text)
    if args.out != "-":
        out = Path(args.out) if args.out else ROOT / "docs" / "benchmark.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results_dict(res), indent=1))
    if args.check and any(t.status == "NOT met" for t in targets(res)):
        return 1
    return 0


def results_dict(res: Results) -> dict:
    return dict(options={k: v for k, v in vars(res.opts).items()}, threads=res.threads, names=res.names,
                params=res.params, unet3d=res.unet3d,
                cells={f"{m}@{t}": c for (m, t), c in res.cells.items()}, matmul=res.matmul,
                inspect=res.inspect, machine=res.machine, command=res.command, started=res.started,
                seconds=res.seconds)


if __name__ == "__main__":
    sys.exit(main())
