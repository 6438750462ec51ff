"""Measurement primitives: wall time (round-robin), peak memory, FLOPs, the matmul reference.

Nothing here knows about models: each function takes the work as a callable.
"""
from __future__ import annotations

import gc
import time
from typing import Callable

# glibc: a fixed mmap threshold for memory workers, so freed tensors go back to the OS and the
# peak-RSS mark follows live memory (with the default, adaptive threshold it varied by about 30 %).
MMAP_THRESHOLD = 128 * 1024


# ============================================================================ time
def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def round_robin(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of several workloads timed in turn, the order reversed every other round,
    so that a slow drift of the machine's speed hits every workload alike and their ratios hold."""
    labels = list(fns)
    for _ in range(warmup):
        for label in labels:
            fns[label]()
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(repeats):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            t0 = time.perf_counter()
            fns[label]()
            times[label].append(time.perf_counter() - t0)
    return times


def time_matmul(size: int, repeats: int) -> dict[str, dict]:
    """A square ``size``^3 matrix product in bf16 and fp32: {dtype: {"times", "flops"}}."""
    import torch
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g).to(dtype)
        b = torch.randn(size, size, generator=g).to(dtype)
        out[name] = dict(times=time_calls(lambda: torch.mm(a, b), 1, repeats), flops=2 * size ** 3)
    return out


# ============================================================================ memory
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


# ============================================================================ FLOPs
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
