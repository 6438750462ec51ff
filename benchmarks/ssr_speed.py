"""Time of the SSR stage (issue 34): one 32-frame base clip upscaled, per precision and window mode, with the CPU's
own kernels and with AVX2 kernels forced (``ATEN_CPU_CAPABILITY=avx2``: another machine of the same kind may lack
AVX-512, and bf16 is then emulated).

    python -m benchmarks.ssr_speed --ssr runs/ssr --rounds 5
    python -m benchmarks.ssr_speed --ssr runs/ssr --rounds 5 --out benchmarks/ssr_speed.md

Each (kernels) setting runs in a fresh Python process (the capability is read when torch loads); inside it the
precisions and window modes are timed round-robin (order reversed every other round) after one warm-up each, and
the median of ``--rounds`` is reported with the process's ``torch.backends.cpu.get_cpu_capability()``. The target
(issue 34): MultiDiffusion in bf16 at most 1 s on 2 cores. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.0
MODES = ("multidiffusion", "independent")
PRECISIONS = ("bf16", "fp32")


def time_here(ssr_dir: str | None, rounds: int, frames: int, steps: int | None) -> dict:
    """In this process: {capability, threads, seconds: {precision: {mode: median s}}}."""
    import torch

    from stunet.precision import Precision
    from stunet.ssr.checkpoint import load_ssr
    from stunet.ssr.sampling import SSR_STEPS, upscale
    model = load_ssr(ssr_dir)
    cfg = model.config
    base = torch.rand(1, 3, frames, cfg.base_size, cfg.base_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cells = [(p, m) for p in PRECISIONS for m in MODES]
    times = {c: [] for c in cells}

    def run(p, m):
        t = time.perf_counter()
        upscale(model, base, generator=torch.Generator().manual_seed(1), steps=steps or SSR_STEPS, windows=m,
                precision=Precision(p, "benchmark"))
        return time.perf_counter() - t
    for c in cells:
        run(*c)                                                   # warm-up
    for r in range(rounds):
        for c in (cells if r % 2 == 0 else cells[::-1]):
            times[c].append(run(*c))
    return {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "steps": steps or SSR_STEPS, "frames": frames,
            "seconds": {p: {m: statistics.median(times[(p, m)]) for m in MODES} for p in PRECISIONS}}


def format_md(results: dict) -> str:
    lines = ["| kernels | capability | precision | MultiDiffusion s | independent s | target (MultiDiffusion, bf16) |",
             "|---|---|---|---:|---:|---|"]
    for kernels, r in results.items():
        for p in PRECISIONS:
            s = r["seconds"][p]
            verdict = ("met" if s["multidiffusion"] <= TARGET_S else "NOT met") if p == "bf16" else ""
            lines.append(f"| {kernels} | {r['capability']} | {p} | {s['multidiffusion']:.2f} | "
                         f"{s['independent']:.2f} | {verdict} |")
    r = next(iter(results.values()))
    lines += ["", f"One {r['frames']}-frame clip, {r['steps']} DDIM steps, {r['threads']} threads; median of the "
              f"rounds, after a warm-up (`python -m benchmarks.ssr_speed`)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ssr", help="SSR model directory (default: $STUNET_SSR, else assets/stunet-ssr)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", help="write the table here too")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--here", action="store_true", help=argparse.SUPPRESS)     # the child process's role
    a = p.parse_args(argv)
    if a.rounds < 1 or a.frames < 1:
        p.error("--rounds and --frames must be >= 1")
    if a.here:
        print(json.dumps(time_here(a.ssr, a.rounds, a.frames, a.steps)))
        return 0
    results = {}
    for kernels, env in (("native", {}), ("AVX2 forced", {"ATEN_CPU_CAPABILITY": "avx2"})):
        cmd = [sys.executable, "-m", "benchmarks.ssr_speed", "--here", "--rounds", str(a.rounds), "--frames",
               str(a.frames)] + (["--ssr", a.ssr] if a.ssr else []) + (["--steps", str(a.steps)] if a.steps else [])
        out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        results[kernels] = json.loads(out.stdout.strip().splitlines()[-1])
    md = format_md(results)
    print(md)
    if a.out:
        Path(a.out).write_text(md + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
