"""This machine's fp32 matrix-multiply rate: the yardstick for how close a runtime gets to the hardware.

A large square matmul is the best case for a CPU's vector units (BLAS reaches near peak FMA rate),
so GMAC/s of a model divided by this rate says how much of the machine a runtime actually uses on
small convolutions. Measured once per bench run with the same thread count as the artifacts.

With one thread the matmul is timed by process CPU time, which equals wall time on an idle machine
and still gives the core's real rate on a busy one (CI, a laptop compiling): the peak stays the
hardware's, and contention shows up where it belongs, in the artifacts' wall-clock latencies. With
several threads CPU time adds up over threads, so wall time is used.
"""

from __future__ import annotations

import time

import torch

from .host import torch_threads


def matmul_gmacs(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` rate of an ``n`` x ``n`` x ``n`` fp32 matmul in GMAC/s (n^3 multiply-adds)."""
    clock = time.process_time if threads == 1 else time.perf_counter
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    with torch_threads(threads):
        torch.mm(a, b)  # warm-up: page in, pick the kernel
        best = float("inf")
        for _ in range(repeats):
            t = clock()
            torch.mm(a, b)
            best = min(best, clock() - t)
    return n**3 / max(best, 1e-9) / 1e9
