"""Latency model of OFA subnets: a lookup table of per-layer latencies, summed, plus a measured overhead.

Every convolution of a subnet is one :class:`LayerConfig` (the bench module exports and times it
alone with the target runtime on the target device). What the table cannot see (PixelShuffle, the
residual adds, the runtime's per-call cost) is one constant per scale: the measured latency of the
smallest subnet minus its table sum. :func:`check` measures whole random subnets to report how
far the model can be trusted (rank correlation and mean error).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..bench.latency_table import LayerConfig, lookup, measure_layers, time_module
from ..bench.run import AdbPlan, host_device
from ..models.deploy import deploy_subnet
from ..models.ofa import DEPTHS, EXPANDS, KERNELS, OFASR, SCALES, WIDTH, Arch, sample, smallest


def arch_layers(arch: Arch, height: int, width: int, channels: int = WIDTH) -> list[LayerConfig]:
    """The convolutions of ``arch``'s subnet for an LR input of ``height`` x ``width``, in order."""
    h, w = height, width
    layers = [LayerConfig(3, channels, 3, h, w)]
    for i in arch.active_slots():
        hidden = channels * arch.expand[i]
        layers += [LayerConfig(channels, hidden, 1, h, w, activation="relu"),
                   LayerConfig(hidden, hidden, arch.kernel[i], h, w, groups=hidden, activation="relu"),
                   LayerConfig(hidden, channels, 1, h, w)]
    for _ in range(arch.scale.bit_length() - 2):  # extra PixelShuffle stages (x4): conv W->4W, then 2x size
        layers += [LayerConfig(channels, 4 * channels, 3, h, w), LayerConfig(3, 12, 1, h, w)]
        h, w = 2 * h, 2 * w
    layers += [LayerConfig(channels, 12, 3, h, w), LayerConfig(3, 12, 1, h, w)]  # output conv and anchor
    return layers


def all_layers(height: int, width: int, scales=SCALES) -> list[LayerConfig]:
    """Every distinct layer any subnet uses: what a table must hold."""
    seen: dict[str, LayerConfig] = {}
    for scale in scales:
        n = len(smallest(scale).kernel)
        for k in KERNELS:
            for e in EXPANDS:
                arch = Arch(scale, (DEPTHS[-1],) * (n // DEPTHS[-1]), (k,) * n, (e,) * n)
                for layer in arch_layers(arch, height, width):
                    seen.setdefault(layer.key, layer)
    return list(seen.values())


@dataclass
class LatencyModel:
    """Predicts subnet latency (ms) from a layer table and a per-scale overhead."""

    table: dict
    height: int
    width: int
    overhead_ms: dict  # str(scale) -> ms

    def layers_ms(self, arch: Arch) -> float:
        return sum(lookup(self.table, layer) for layer in arch_layers(arch, self.height, self.width))

    def predict(self, arch: Arch) -> float:
        return self.layers_ms(arch) + self.overhead_ms.get(str(arch.scale), 0.0)

    def to_dict(self) -> dict:
        return {"input_size": [self.height, self.width], "overhead_ms": self.overhead_ms, "table": self.table}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyModel:
        return cls(d["table"], int(d["input_size"][0]), int(d["input_size"][1]), dict(d["overhead_ms"]))


def measure_subnet(supernet: OFASR, arch: Arch, height: int, width: int, *, runtime: str, plan: AdbPlan | None,
                   threads: int, warmup: int = 3, runs: int = 10) -> float:
    """Measured latency (ms) of ``arch``'s static subnet, exported and timed whole."""
    return time_module(deploy_subnet(supernet, arch), (1, 3, height, width), runtime=runtime, plan=plan,
                       threads=threads, warmup=warmup, runs=runs)


def build(supernet: OFASR, height: int, width: int, *, runtime: str, plan: AdbPlan | None = None, threads: int = 1,
          scales=SCALES, progress: bool = False, smallest_ms: dict[str, float] | None = None) -> LatencyModel:
    """Measure every layer, then each scale's overhead from its smallest subnet (measured here unless
    ``smallest_ms`` already holds it: a search measures it first, to refuse an impossible budget in seconds)."""
    table = measure_layers(all_layers(height, width, scales), runtime=runtime, plan=plan, threads=threads,
                           progress=progress)
    model = LatencyModel(table, height, width, {})
    for scale in scales:
        arch = smallest(scale)
        measured = (smallest_ms or {}).get(str(scale))
        if measured is None:
            measured = measure_subnet(supernet, arch, height, width, runtime=runtime, plan=plan, threads=threads)
        model.overhead_ms[str(scale)] = round(max(measured - model.layers_ms(arch), 0.0), 4)
    return model


def check(model: LatencyModel, supernet: OFASR, n: int = 20, seed: int = 0, *, runtime: str,
          plan: AdbPlan | None = None, threads: int = 1, scales=SCALES) -> dict:
    """Predicted against measured latency of ``n`` random subnets per scale: Spearman rank correlation, errors."""
    rng = random.Random(seed)
    report = {}
    for scale in scales:
        rows = []
        for _ in range(n):
            arch = sample(rng, scale)
            measured = measure_subnet(supernet, arch, model.height, model.width, runtime=runtime, plan=plan,
                                      threads=threads)
            rows.append({"arch": arch.to_dict(), "predicted_ms": round(model.predict(arch), 3),
                         "measured_ms": round(measured, 3)})
        pred = np.array([r["predicted_ms"] for r in rows])
        meas = np.array([r["measured_ms"] for r in rows])
        report[str(scale)] = {"n": n, "spearman": round(spearman(pred, meas), 4),
                              "mean_abs_error_ms": round(float(np.mean(np.abs(pred - meas))), 3),
                              "mean_rel_error": round(float(np.mean(np.abs(pred - meas) / meas)), 4),
                              "subnets": rows}
    return report


def host_cpu() -> str:
    return str(host_device().get("model"))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])
