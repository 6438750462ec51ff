"""Per-step and per-clip cost of the STUNet against its baselines (speed, memory, FLOPs, precision, levers).

    python -m benchmarks.run --out bench.md --json bench.json     # full run, from the checkout root
    python -m benchmarks.run --quick --out /tmp/quick.md          # smoke run (few frames, few repeats)
    python -m benchmarks.run --precision bf16 --frames 16,32,64 --compile

One *denoising step* is one forward of the network on batch 2 (classifier-free guidance:
conditional + unconditional rows) at the config's height x width, under ``torch.no_grad()``
in fp32 or under bf16 autocast (``--precision``: both by default; "auto" takes the verdict of
``stunet.precision.resolve("auto")``, which the report states either way). The text is encoded
once outside the step (as the sampler does). Measured, all in one run:

* the default clip end to end (``Pipeline.from_pretrained(precision=...)`` on the shipped model,
  ``Settings("a red circle moving right")``), per precision, and at 8 to 25 steps;
* levers (``benchmarks/levers.py``): one step without and with each, round-robin;
* time (median of ``--repeats`` after ``--warmup``) and peak memory per step of the preset
  (``shapes``) against its VDM-style twin (``vdm``: no temporal down/upsampling, temporal
  attention at every level) over ``--frames``, per precision, and the exponent of time per
  step against frames;
* the same against diffusers' ``UNet3DConditionModel`` with widths searched to the preset's
  parameter count, in two block layouts;
* FLOPs of one step, achieved GFLOP/s as a fraction of a square matrix product's in the same
  precision (fp32 and bf16 matmuls timed in the same run);
* the overhead of an active ``Inspector`` in a short sampling loop.

Timing: for each frame count, all the models and precisions measured there are built in one fresh
Python process and timed round-robin (order reversed every other round), so a drift of the
machine's speed hits them alike and the ratios hold. Memory and FLOPs: a fresh process per
(model, frames, precision) (``--in-process`` to run everything here instead).

Targets are checked and printed as met / NOT met, never used to tune anything; ``--check`` makes a
missed target the exit status. Nothing is written unless asked: ``--out FILE.md``, ``--json FILE``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):          # ``python benchmarks/run.py``: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baselines import match_unet3d, model_configs, stunet_parameters  # noqa: E402
from benchmarks.cells import run_cell  # noqa: E402
from benchmarks.levers import select as select_levers  # noqa: E402
from benchmarks.report import render, targets  # noqa: E402
from benchmarks.results import (FULL_FRAMES, LAYOUTS, PRECISION_CHOICES, QUICK_FRAMES, STEPS_SWEEP,  # noqa: E402
                                Options, Results, chosen_precision, precisions_to_run, results_dict,
                                results_from_dict)

PROG = "python -m benchmarks.run"


def _threads(opts: Options) -> int:
    if opts.threads:
        return opts.threads
    import torch
    return torch.get_num_threads()


def _progress(msg: str, quiet: bool):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# ============================================================================ the run
def run_benchmark(opts: Options, command: str = "", quiet: bool = False) -> Results:
    """Every measurement of ``opts``; cells that fail are recorded with their error, not raised."""
    import torch
    from stunet.precision import resolve
    t_start = time.perf_counter()
    cfg_a, cfg_b = model_configs(opts.preset, opts.baseline, opts.overrides)
    name_a = opts.preset
    name_b = opts.baseline if opts.baseline != "twin" else f"{opts.preset}-vdm"
    frames = sorted(set(opts.frames) | set(opts.unet3d_frames))
    for t in frames:
        cfg_a.check_frames(t)
        cfg_b.check_frames(t)
    lever_frames = opts.lever_frames or cfg_a.frames
    cfg_a.check_frames(lever_frames)
    levers = select_levers(opts.levers, opts.compile)
    threads = _threads(opts)
    machine = machine_info()
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")

    verdict = resolve("auto")                      # the probe (cached in this process)
    precisions = precisions_to_run(opts.precision, verdict.name)
    chosen = chosen_precision(opts.precision, verdict.name)

    base = dict(batch=opts.batch, warmup=opts.warmup, repeats=opts.repeats, threads=threads,
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

    total = (2 + len(frames) + len(precisions) * sum(len(at(t)) for t in frames) + (1 if opts.inspect_rounds else 0)
             + (len(precisions) + (1 if opts.steps_sweep else 0) if opts.clip else 0) + (1 if levers else 0))
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

    clips, steps = {}, None
    if opts.clip:
        clip_spec = dict(kind="clip", directory=opts.model_dir, warmup=opts.clip_warmup, threads=threads,
                         overrides=opts.clip_overrides)
        for p in precisions:
            clips[p] = cell(f"default clip end to end, {p} ({opts.clip_repeats} clips)",
                            dict(clip_spec, precision=p, steps=[None], repeats=opts.clip_repeats))
        if opts.steps_sweep:
            steps = cell(f"default clip at {', '.join(map(str, opts.steps_sweep))} steps, {chosen}",
                         dict(clip_spec, precision=chosen, steps=list(opts.steps_sweep), repeats=opts.steps_repeats))

    lever_cell = None
    if levers:
        lever_cell = cell(f"levers at {lever_frames} frames, {chosen}: {', '.join(levers)}",
                          dict(models[name_a], **base, kind="levers", frames=lever_frames, precision=chosen,
                               levers=levers))

    cells = {}
    for t in frames:
        here = at(t)
        timing = cell(f"time per step at {t} frames: {', '.join(here)} x {', '.join(precisions)} (round-robin, "
                      f"{opts.repeats} rounds)",
                      dict(kind="timing", warmup=opts.warmup, repeats=opts.repeats, threads=threads,
                           models={f"{m}|{p}": dict(models[m], **base, frames=t, precision=p)
                                   for m in here for p in precisions}))
        for m in here:
            for i, p in enumerate(precisions):
                mem = cell(f"memory{' and FLOPs' if i == 0 else ''} of {m} at {t} frames, {p}",
                           dict(models[m], **base, kind="memory", frames=t, precision=p, mem_steps=opts.mem_steps,
                                flops=i == 0))
                c = {k: v for k, v in mem.items() if k != "error"}
                errors = [f"memory: {mem['error']}"] if "error" in mem else []
                if "times" in timing:
                    c["times"] = timing["times"][f"{m}|{p}"]
                else:
                    errors.append(f"timing: {timing.get('error')}")
                if errors:
                    c["error"] = "; ".join(errors)
                cells[(m, t, p)] = c
    insp = None
    if opts.inspect_rounds:
        insp = cell(f"inspection overhead ({name_a}, {opts.inspect_steps} steps x {opts.inspect_rounds}, {chosen})",
                    dict(kind="inspect", config=cfg_a.to_dict(), frames=opts.inspect_frames or cfg_a.frames,
                         steps=opts.inspect_steps, rounds=opts.inspect_rounds, precision=chosen, threads=threads))
    matmul.append(cell(f"matmul {opts.matmul_size}^3 (after)", mm_spec))
    machine["load_end"] = _loadavg()
    return Results(opts, threads, (name_a, name_b), params, unet3d, cells, matmul, insp, machine, command,
                   started, precisions=precisions, chosen=chosen,
                   verdict={"precision": verdict.name, "reason": verdict.reason},
                   cpu_capability=str(torch.backends.cpu.get_cpu_capability()), clips=clips, steps=steps,
                   levers=lever_cell, seconds=time.perf_counter() - t_start)


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
        raise argparse.ArgumentTypeError("values must be positive")
    return vals


def _ints_or_none(s: str) -> tuple[int, ...]:
    return () if s.strip().lower() in ("none", "") else _ints(s)


def _names_or_none(s: str) -> tuple[str, ...]:
    return () if s.strip().lower() in ("none", "") else tuple(x.strip() for x in s.split(",") if x.strip())


def parse(argv, prog: str = PROG) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: frames 16,32, UNet3D at 16, 1 warm-up, 2 repeats, small matmul, 1 clip per "
                        "precision, steps sweep 8,12 once")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="both",
                   help="precision of the timing cells: both (fp32 and bf16, default), auto (the probe's verdict), "
                        "fp32 or bf16; single-precision measurements use the one given, else the probe's verdict")
    p.add_argument("--frames", type=_ints, help=f"frame counts (default {','.join(map(str, FULL_FRAMES))})")
    p.add_argument("--preset", default="shapes")
    p.add_argument("--baseline", default="vdm", help="preset to compare with, or 'twin' (derived VDM-style twin)")
    p.add_argument("--unet3d-frames", type=_ints_or_none, default=None,
                   help="frame counts for the UNet3DConditionModel comparison (default 32; 'none' to skip)")
    p.add_argument("--unet3d-layout", choices=("both",) + LAYOUTS, default="both")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--inspect-steps", type=int)
    p.add_argument("--inspect-rounds", type=int, help="0 skips the inspection measurement")
    p.add_argument("--matmul-size", type=int)
    p.add_argument("--no-clip", action="store_true", help="skip the default clip end to end and the steps sweep")
    p.add_argument("--model", default=None, help="checkpoint of the default clip (default: the shipped model)")
    p.add_argument("--clip-repeats", type=int, help="clips timed per precision (default 3; quick 1)")
    p.add_argument("--steps-sweep", type=_ints_or_none, default=None,
                   help=f"step counts of the default clip (default {','.join(map(str, STEPS_SWEEP))}; 'none' to skip)")
    p.add_argument("--levers", type=_names_or_none, default=None,
                   help="comma-separated lever names (default: every lever that is not opt-in; 'none' to skip)")
    p.add_argument("--compile", action="store_true", help="add the torch.compile lever (compile time is reported)")
    p.add_argument("--in-process", action="store_true", help="measure in this process (memory is less clean)")
    p.add_argument("--out", default=None, help="markdown file to write (default: none, printed only)")
    p.add_argument("--json", default=None, help="also write the raw results as JSON here")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="measure nothing: render the report of an earlier run's --json (after a change of targets "
                        "or layout)")
    p.add_argument("--check", action="store_true", help="exit status 1 when a measured target is not met")
    args = p.parse_args(argv)
    q = args.quick
    o = Options(preset=args.preset, baseline=args.baseline, quick=q, precision=args.precision,
                frames=args.frames or (QUICK_FRAMES if q else FULL_FRAMES),
                warmup=args.warmup if args.warmup is not None else (1 if q else 2),
                repeats=args.repeats or (2 if q else 5), threads=args.threads,
                inspect_steps=args.inspect_steps or (2 if q else 6),
                inspect_rounds=args.inspect_rounds if args.inspect_rounds is not None else (2 if q else 5),
                matmul_size=args.matmul_size or (1024 if q else 2048), matmul_repeats=3 if q else 5,
                clip=not args.no_clip, model_dir=args.model,
                clip_repeats=args.clip_repeats or (1 if q else 3),
                steps_sweep=args.steps_sweep if args.steps_sweep is not None else ((8, 12) if q else STEPS_SWEEP),
                steps_repeats=1 if q else 3, levers=args.levers, compile=args.compile,
                isolate=not args.in_process,
                unet3d_layouts=LAYOUTS if args.unet3d_layout == "both" else (args.unet3d_layout,))
    o.unet3d_frames = args.unet3d_frames if args.unet3d_frames is not None else ((16,) if q else (32,))
    if o.warmup < 0 or o.repeats < 1 or o.clip_repeats < 1:
        p.error("--warmup must be >= 0, --repeats and --clip-repeats >= 1")
    return o, args


def main(argv=None, prog: str = PROG) -> int:
    """The command line (``prog`` names it in the report's command line: ``stunet bench`` calls it too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, args = parse(argv, prog)
    command = prog + ("" if not argv else " " + " ".join(shlex.quote(x) for x in argv))
    try:
        if args.render:
            res = results_from_dict(json.loads(Path(args.render).read_text()))
        else:
            res = run_benchmark(opts, command)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(res)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results_dict(res), indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.check and any(t.status == "NOT met" for t in targets(res)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
