"""The default clip of two checkpoints, end to end, interleaved in one process: the distilled fast
model (its own steps, one forward each) against the full model (25 guided steps).

    python -m benchmarks.models_ab [--fast assets/stunet-shapes-fast] [--full assets/stunet-shapes]
                                   [--precision auto|fp32|bf16] [--rounds 5]

Each checkpoint's clip is ``Settings(prompt)``: its own defaults (``sampling.json``). Rounds
alternate the order, so a drift of the machine's speed hits both alike. Prints the CPU
capability, the precision, each clip's seconds and the medians; ``--json`` writes them. To see a
CPU without native bf16 on one that has it: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from stunet.checkpoint import DEFAULT_MODEL
from stunet.defaults import PRECISIONS
from stunet.pipeline import Pipeline, Settings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.models_ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--fast", default=str(DEFAULT_MODEL.parent / "stunet-shapes-fast"))
    p.add_argument("--full", default=str(DEFAULT_MODEL))
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--prompt", default="a red circle moving right")
    p.add_argument("--json", help="write the times here")
    args = p.parse_args(argv)
    pipes = {"fast": Pipeline.from_pretrained(args.fast, precision=args.precision)}
    pipes["full"] = Pipeline.from_pretrained(args.full, precision=pipes["fast"].precision)
    prec = pipes["fast"].precision
    cap = torch.backends.cpu.get_cpu_capability()
    print(f"CPU capability {cap}; precision {prec.name} ({prec.reason})")
    settings = {k: pipe.complete(Settings(args.prompt)) for k, pipe in pipes.items()}
    for k, pipe in pipes.items():
        pipe(Settings(args.prompt, steps=2, sampler=settings[k].sampler))          # warm-up
    times: dict[str, list[float]] = {k: [] for k in pipes}
    order = list(pipes)
    for r in range(args.rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            pipes[k](settings[k])
            times[k].append(time.perf_counter() - t0)
    out = {"cpu_capability": cap, **prec.to_dict(), "prompt": args.prompt, "models": {}}
    for k, ts in times.items():
        s = settings[k]
        med = statistics.median(ts)
        print(f"{k}: {s.steps} {s.sampler} steps, guidance {s.guidance:g}: "
              f"{' '.join(f'{t:.2f}' for t in ts)} s, median {med:.2f} s")
        out["models"][k] = {"steps": s.steps, "sampler": s.sampler, "seconds": [round(t, 3) for t in ts],
                            "median_s": round(med, 3)}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
