"""The options of a benchmark run, what it measured (``Results``), and the numbers derived from it.

Cells are keyed by (model label, frames, precision); FLOPs do not depend on the precision and are
counted once per (model, frames).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

FULL_FRAMES = (16, 32, 64, 128, 256)
QUICK_FRAMES = (16, 32)
LAYOUTS = ("default", "matched")
PRECISION_CHOICES = ("both", "auto", "fp32", "bf16")
# Denoising steps of the default clip timed in the steps sweep (time only; quality: ``stunet eval``).
STEPS_SWEEP = (8, 10, 12, 15, 20, 25)


@dataclass
class Options:
    preset: str = "shapes"
    baseline: str = "vdm"                 # a preset name, or "twin" (derived from ``preset``)
    frames: tuple[int, ...] = FULL_FRAMES
    unet3d_frames: tuple[int, ...] = (32,)
    unet3d_layouts: tuple[str, ...] = LAYOUTS
    batch: int = 2
    precision: str = "both"               # "both" (fp32 and bf16), "auto" (the probe's verdict), "fp32", "bf16"
    warmup: int = 2
    repeats: int = 5
    mem_steps: int = 2                    # steps from cold over which peak memory is taken
    threads: int = 0                      # 0: torch's default
    inspect_frames: int | None = None     # default: the preset's training window
    inspect_steps: int = 6
    inspect_rounds: int = 5
    matmul_size: int = 2048
    matmul_repeats: int = 5
    clip: bool = True                     # default clip end to end, and the steps sweep
    model_dir: str | None = None          # checkpoint of the default clip (default: the shipped model)
    clip_overrides: dict = field(default_factory=dict)   # Settings overrides of the default clip (tests only)
    clip_warmup: int = 1
    clip_repeats: int = 3
    steps_sweep: tuple[int, ...] = STEPS_SWEEP
    steps_repeats: int = 3
    levers: tuple[str, ...] | None = None  # None: every lever that is not opt-in
    compile: bool = False                 # add the torch.compile lever
    lever_frames: int | None = None       # default: the preset's training window
    isolate: bool = True                  # one fresh process per cell
    quick: bool = False
    overrides: dict = field(default_factory=dict)   # config overrides (tests: tiny sizes)


def precisions_to_run(requested: str, verdict: str) -> tuple[str, ...]:
    """The precisions of the timing cells: both, the probe's ``verdict`` ("auto"), or the one asked for."""
    if requested == "both":
        return ("fp32", "bf16")
    if requested == "auto":
        return (verdict,)
    if requested in ("fp32", "bf16"):
        return (requested,)
    raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {requested!r}")


def chosen_precision(requested: str, verdict: str) -> str:
    """The one precision of the single-precision measurements (steps sweep, levers, inspection):
    the one asked for, else the probe's verdict."""
    return requested if requested in ("fp32", "bf16") else verdict


@dataclass
class Results:
    opts: Options
    threads: int
    names: tuple[str, str]
    params: dict[str, int]
    unet3d: dict[str, dict]                          # layout -> {"kwargs", "params"}
    cells: dict[tuple[str, int, str], dict]          # (model, frames, precision) -> cell result
    matmul: list[dict]                               # before and after the cells
    inspect: dict | None
    machine: dict
    command: str
    started: str
    precisions: tuple[str, ...] = ("bf16",)
    chosen: str = "bf16"
    verdict: dict = field(default_factory=dict)      # resolve("auto"): {"precision", "reason"}
    cpu_capability: str = "?"
    clips: dict[str, dict] = field(default_factory=dict)   # precision -> default-clip cell
    steps: dict | None = None                        # steps-sweep cell (chosen precision)
    levers: dict | None = None                       # levers cell (chosen precision)
    seconds: float = 0.0


def results_from_dict(d: dict) -> Results:
    """The inverse of ``results_dict``: re-render a report from a run's ``--json`` without measuring."""
    opts = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["options"].items()
                      if k in Options.__dataclass_fields__})
    cells = {}
    for key, c in d["cells"].items():
        m, t, p = key.rsplit("@", 2)
        cells[(m, int(t), p)] = c
    return Results(opts=opts, threads=d["threads"], names=tuple(d["names"]), params=d["params"],
                   unet3d=d["unet3d"], cells=cells, matmul=d["matmul"], inspect=d["inspect"],
                   machine=d["machine"], command=d["command"], started=d["started"],
                   precisions=tuple(d["precisions"]), chosen=d["chosen"], verdict=d["verdict"],
                   cpu_capability=d["cpu_capability"], clips=d["clips"], steps=d["steps"], levers=d["levers"],
                   seconds=d["seconds"])


def results_dict(res: Results) -> dict:
    """Everything measured, JSON-able."""
    return dict(options=dict(vars(res.opts)), threads=res.threads, names=res.names, params=res.params,
                unet3d=res.unet3d, cells={f"{m}@{t}@{p}": c for (m, t, p), c in res.cells.items()},
                matmul=res.matmul, inspect=res.inspect, machine=res.machine, command=res.command,
                started=res.started, seconds=res.seconds, precisions=res.precisions, chosen=res.chosen,
                verdict=res.verdict, cpu_capability=res.cpu_capability, clips=res.clips, steps=res.steps,
                levers=res.levers)


# ============================================================================ derived numbers
def med(xs) -> float:
    return statistics.median(xs)


def step_time(res: Results, model: str, t: int, prec: str) -> float | None:
    c = res.cells.get((model, t, prec))
    return med(c["times"]) if c and c.get("times") else None


def peak_mib(res: Results, model: str, t: int, prec: str, key: str = "peak_bytes") -> float | None:
    """Peak memory of a step in MiB: RSS (``peak_bytes``) or live tensors (``tensor_peak_bytes``)."""
    c = res.cells.get((model, t, prec))
    return c[key] / 2 ** 20 if c and key in c else None


def tensor_mib(res: Results, model: str, t: int, prec: str) -> float | None:
    return peak_mib(res, model, t, prec, "tensor_peak_bytes")


def flop_cell(res: Results, model: str, t: int) -> dict | None:
    """The cell of (model, frames) that counted FLOPs (any precision)."""
    for p in res.precisions:
        c = res.cells.get((model, t, p))
        if c and "flops" in c:
            return c
    return None


def step_flops(res: Results, model: str, t: int) -> int | None:
    c = flop_cell(res, model, t)
    return c["flops"] if c else None


def gflops(res: Results, model: str, t: int, prec: str) -> tuple[float, float] | None:
    """(GFLOP per step, achieved GFLOP/s in ``prec``)."""
    f, s = step_flops(res, model, t), step_time(res, model, t, prec)
    if not f or not s:
        return None
    return f / 1e9, f / s / 1e9


def matmul_gflops(res: Results, dtype: str) -> float | None:
    """The best matmul GFLOP/s in ``dtype`` (of the runs before and after the models)."""
    vals = [m[dtype]["flops"] / med(m[dtype]["times"]) / 1e9 for m in res.matmul if dtype in m]
    return max(vals) if vals else None


def matmul_fraction(res: Results, model: str, t: int, prec: str) -> float | None:
    """Achieved GFLOP/s of a step as a fraction of the matmul's in the same precision."""
    g, ref = gflops(res, model, t, prec), matmul_gflops(res, prec)
    return g[1] / ref if g and ref else None


def speedup(res: Results, t: int, other: str, prec: str) -> float | None:
    a, b = step_time(res, res.names[0], t, prec), step_time(res, other, t, prec)
    return b / a if a and b else None


def flop_ratio(res: Results, t: int, other: str | None = None) -> float | None:
    """FLOPs of ``other`` (default: the baseline) over FLOPs of the preset, per step at ``t`` frames."""
    fa, fb = step_flops(res, res.names[0], t), step_flops(res, other or res.names[1], t)
    return fb / fa if fa and fb else None


def within_parity(speed_up: float, ratio: float, tolerance: float) -> bool:
    """Efficiency parity or better: the speed-up is at most ``tolerance`` (relative) below the FLOP ratio,
    i.e. the STUNet achieves at least about the baseline's GFLOP/s (more is not a miss)."""
    return speed_up / ratio >= 1.0 - tolerance


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


def exponent(res: Results, model: str, prec: str) -> float | None:
    return fit_exponent([(t, step_time(res, model, t, prec)) for t in res.opts.frames])


def inspect_overhead(res: Results) -> float | None:
    i = res.inspect
    if not i or "plain" not in i:
        return None
    return med(i["inspected"]) / med(i["plain"]) - 1.0


def clip_seconds(res: Results, prec: str) -> float | None:
    """Median seconds of the default clip end to end in ``prec``."""
    c = res.clips.get(prec)
    return med(c["times"]["default"]) if c and c.get("times", {}).get("default") else None


def steps_seconds(res: Results) -> list[tuple[int, float]]:
    """(steps, median seconds of the default clip at that many steps) of the steps sweep."""
    c = res.steps
    if not c or "times" not in c:
        return []
    return sorted((c["steps"][label], med(ts)) for label, ts in c["times"].items() if ts)


@dataclass
class LeverRow:
    name: str
    without_s: float | None = None
    with_s: float | None = None
    first_with_s: float | None = None
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        return self.without_s / self.with_s if self.without_s and self.with_s else None


def lever_rows(res: Results) -> list[LeverRow]:
    c = res.levers
    if not c or "levers" not in c:
        return []
    rows = []
    for name, r in c["levers"].items():
        if "error" in r or not r.get("with") or not r.get("without"):
            rows.append(LeverRow(name, error=r.get("error", "not timed")))
        else:
            rows.append(LeverRow(name, med(r["without"]), med(r["with"]), r["first_with_s"] + r["setup_s"]))
    return rows
