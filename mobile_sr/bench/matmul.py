"""This machine's fp32 matrix-multiply rate: the yardstick for how close a runtime gets to the hardware.

A large square matmul is the best case for a CPU's vector units (BLAS reaches near peak FMA rate),
so GMAC/s of a model divided by this rate says how much of the machine a runtime actually uses on
small convolutions. Measured once per bench run with the same thread count as the artifacts.
"""

from __future__ import annotations

import time

import torch

from .host import torch_threads


def matmul_gmacs(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` rate of an ``n`` x ``n`` x ``n`` fp32 matmul in GMAC/s (n^3 multiply-adds)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    with torch_threads(threads):
        torch.mm(a, b)  # warm-up: page in, pick the kernel
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
    return n**3 / best / 1e9
