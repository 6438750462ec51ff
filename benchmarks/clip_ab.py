"""Default clip, end to end, with the library's temporal layers against the old column layout.

    python -m benchmarks.clip_ab [--precision auto|fp32|bf16] [--steps 25] [--rounds 3]

Both pipelines share the shipped weights (``benchmarks.legacy.temporal_on_columns`` on a copy),
run interleaved in one process (order swapped every round), so a drift of the machine's speed
hits both alike. Prints the CPU capability, the precision, each clip's seconds and the medians.
To see a CPU without native bf16 on one that has it: ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` (AVX2 kernels only; bf16 is then emulated and ``auto`` picks fp32).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from stunet.defaults import PRECISIONS, STEPS
from stunet.pipeline import Pipeline, Settings

from .legacy import temporal_on_columns


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.clip_ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt", default="a red circle moving right")
    args = p.parse_args(argv)
    new = Pipeline.from_pretrained(precision=args.precision)
    old = Pipeline(temporal_on_columns(copy.deepcopy(new.model)), new.tokenizer, new.precision)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; precision {new.precision.name} "
          f"({new.precision.reason})")
    s = Settings(args.prompt, steps=args.steps)
    for pipe in (old, new):
        pipe(Settings(args.prompt, steps=2))                        # warm-up
    times = {"columns (before)": [], "grid (now)": []}
    pairs = [("columns (before)", old), ("grid (now)", new)]
    for r in range(args.rounds):
        for name, pipe in (pairs if r % 2 == 0 else pairs[::-1]):
            t0 = time.perf_counter()
            pipe(s)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name}: {' '.join(f'{t:.2f}' for t in ts)} s, median {statistics.median(ts):.2f} s "
              f"({args.steps} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
