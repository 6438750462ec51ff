"""Compute precision chosen by measurement, not assumed.

CPUs of the same kind differ: with native bf16 (AVX-512-BF16 / AMX) a bf16 convolution runs
about twice as fast as fp32; without it, bf16 is emulated and runs tens of times *slower*
(0.6 against 42 GFLOP/s for a matmul was seen on an AVX2 machine). So ``resolve("auto")`` times
the model's dominant kind of work (a 3x3 channels-last convolution and a matrix product, both
sized like the shipped model's finest level) in fp32 and under bf16 autocast, once per process
and device, and takes bf16 only where it is clearly faster. An explicit "fp32" / "bf16" wins.

    prec = resolve("auto")            # Precision(name="bf16", reason="probe: bf16 0.61x fp32 time ...")
    with prec.autocast("cpu"):
        out = model(...)
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import torch

from .defaults import PRECISION, PRECISION_ENV, PRECISIONS

log = logging.getLogger("stunet.precision")

# bf16 is taken only if the probe's bf16 time is below this fraction of fp32's (a margin for noise:
# a shared machine can swing a single timing by 10-20 %).
BF16_MAX_RATIO = 0.85


@dataclass(frozen=True)
class Probe:
    """Best-of-n seconds for the same work in fp32 and under bf16 autocast."""
    fp32_s: float
    bf16_s: float

    @property
    def ratio(self) -> float:
        return self.bf16_s / self.fp32_s


@dataclass(frozen=True)
class Precision:
    name: str           # "fp32" or "bf16": what runs
    reason: str         # why (the user's choice, or the probe's figures)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    def autocast(self, device_type: str = "cpu"):
        """The context that runs a forward pass in this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=torch.bfloat16)

    def to_dict(self) -> dict:
        return {"precision": self.name, "precision_reason": self.reason}


def _interleaved(fns, reps: int) -> list[float]:
    """Best-of-``reps`` seconds of each function, timed in turn (a drift of the machine hits all alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


@torch.no_grad()
def probe_cpu(reps: int = 5) -> Probe:
    """Time fp32 against bf16 autocast on CPU for the model's kind of work (~10-100 ms in all).

    The work: a 3x3 conv, 32 -> 32 channels, channels-last, on 8 frames of 32x32 (the finest
    level, where most of a clip's FLOPs are), and a 256x128 @ 128x384 matrix product (attention
    projections). Best of ``reps``, fp32 and bf16 in turn, after one warm-up of each. Where bf16
    is emulated its warm-up call alone settles it: the probe stops early rather than spending
    seconds proving it.
    """
    g = torch.Generator().manual_seed(0)          # its own generator: the global RNG is not touched
    x = torch.randn(8, 32, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    k = (torch.randn(32, 32, 3, 3, generator=g) * 0.05).contiguous(memory_format=torch.channels_last)
    a = torch.randn(256, 128, generator=g)
    w = torch.randn(384, 128, generator=g) * 0.05

    def work():
        torch.nn.functional.conv2d(x, k, padding=1)
        torch.nn.functional.linear(a, w)

    def work_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            work()

    work()
    (fp32_first,) = _interleaved([work], 1)
    (bf16_first,) = _interleaved([work_bf16], 1)       # includes bf16 kernel set-up
    if bf16_first > 20 * fp32_first:                   # emulated: no need to time it again
        return Probe(fp32_first, bf16_first)
    fp32, bf16 = _interleaved([work, work_bf16], reps)
    return Probe(min(fp32, fp32_first), bf16)


def _cuda_native_bf16() -> bool:
    """Whether the CUDA device computes bf16 natively (compute capability 8.0+), not emulated (slow)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:                       # torch before 2.3 has no including_emulation
        return torch.cuda.get_device_capability()[0] >= 8


_cache: dict[str, Precision] = {}
_lock = threading.Lock()


def _auto(device_type: str) -> Precision:
    if device_type == "cuda":
        if _cuda_native_bf16():
            return Precision("bf16", "auto: CUDA device supports bf16")
        return Precision("fp32", "auto: CUDA device without native bf16")
    if device_type != "cpu":
        return Precision("fp32", f"auto: fp32 on {device_type}")
    p = probe_cpu()
    figures = (f"probe on CPU capability {torch.backends.cpu.get_cpu_capability()}: fp32 {p.fp32_s * 1e3:.1f} ms, "
               f"bf16 {p.bf16_s * 1e3:.1f} ms ({p.ratio:.2f}x)")
    if p.ratio < BF16_MAX_RATIO:
        return Precision("bf16", f"auto: bf16 is faster here ({figures})")
    return Precision("fp32", f"auto: bf16 is not faster here ({figures})")


def resolve(precision: str | None = None, device: str | torch.device = "cpu") -> Precision:
    """The precision to run in: ``precision`` if "fp32"/"bf16", else measured ("auto", cached).

    ``None`` means $STUNET_PRECISION if set, else the default (``defaults.PRECISION``).
    """
    if precision is None:
        precision = os.environ.get(PRECISION_ENV, "").strip().lower() or PRECISION
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return Precision(precision, "chosen explicitly")
    device_type = torch.device(device).type
    with _lock:
        if device_type not in _cache:
            _cache[device_type] = _auto(device_type)
            log.info("precision %s (%s)", _cache[device_type].name, _cache[device_type].reason)
        return _cache[device_type]


def clear_cache() -> None:
    """Forget measured choices (tests)."""
    with _lock:
        _cache.clear()
