"""Latency figures of one benchmarked artifact, from raw samples or from a tool's own summary.

Why one type for both: the host loop measures every run, while TFLite's ``benchmark_model`` only
prints a summary (avg, min, maybe median). Both end up in the same record and report, with the
figures a source cannot give left as None rather than guessed.

The trimmed mean is computed exactly as the ExecuTorch benchmark app does (sort, keep the middle
80%: ``latency[n/10 : n*9/10]``), so ``trimmean_inference_latency(ms)`` means the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Latency:
    """Milliseconds. ``samples_ms`` holds the measured runs (after warm-up) where they are known."""

    load_ms: float | None = None
    first_ms: float | None = None
    avg_ms: float | None = None
    trimmean_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    cpu_median_ms: float | None = None  # process CPU time per run (host only): the latency an idle core would give

    @classmethod
    def from_samples(cls, samples_ms: list[float], load_ms: float | None, first_ms: float | None) -> Latency:
        if not samples_ms:
            raise ValueError("no measured runs")
        ordered = sorted(samples_ms)
        n = len(ordered)
        trimmed = ordered[n // 10 : n * 9 // 10] or ordered  # ExecuTorch's trimmean; all samples when n < 2
        return cls(
            load_ms=load_ms,
            first_ms=first_ms,
            avg_ms=float(np.mean(ordered)),
            trimmean_ms=float(np.mean(trimmed)),
            median_ms=float(np.median(ordered)),
            p90_ms=float(np.percentile(ordered, 90)),
            min_ms=ordered[0],
            samples_ms=list(samples_ms),
        )

    @property
    def typical_ms(self) -> float | None:
        """The figure used for throughput and GMAC/s: the median, else the trimmed mean, else the mean."""
        for value in (self.median_ms, self.trimmean_ms, self.avg_ms):
            if value is not None:
                return value
        return None


@dataclass
class Measurement:
    """What one run of one artifact produced: latency, memory and who measured it."""

    latency: Latency
    runtime_version: str | None = None  # e.g. "LiteRT 2.3.0 (XNNPACK)"; None where the tool does not say
    peak_memory_mb: float | None = None  # peak resident memory the artifact added (host) or the tool's footprint
    pss_mb: float | None = None  # PSS growth over load and runs, as the ExecuTorch app's ram_pss_usage(mb)
