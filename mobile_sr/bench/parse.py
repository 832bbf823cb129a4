"""Reading the text that on-device benchmark binaries print.

TFLite ``benchmark_model`` ends with (values in microseconds, printed by ``operator<<`` so large ones
come out in scientific notation, e.g. ``1.04176e+06``)::

    count=50 first=74456 curr=74516 min=73909 max=75323 avg=74481.6 std=268 [p5=.. median=.. p95=..]
    Inference timings in us: Init: 18738, First inference: 140706, Warmup (avg): 85791.2, Inference (avg): 74481.6

and, depending on the version, one of these memory lines (MB)::

    Peak memory footprint (MB): init=6.44141 overall=64.8633                      (up to TF 2.12 or so)
    Memory footprint delta from the start of the tool (MB): init=3.5 overall=12.3  (newer)
    Overall peak memory footprint (MB) via periodic monitoring: 20.1              (newer, --report_peak_memory_footprint)

Lines may carry an ``INFO: `` prefix (or a logcat prefix). Two ``count=`` lines appear: warm-up, then
the measured runs; the last one before the timings line is the measured one. Very old versions print
``Average inference timings in us: Warmup: .., Init: .., no stats: ..`` instead.

ExecuTorch ``executor_runner`` logs (ET_LOG, with an ``I 00:00:00.012 executorch:...] `` prefix)::

    Model loaded in 12.345 ms.                      (newer versions)
    Iteration 1 of 10: 5.123 ms                     (newer versions)
    Model executed successfully 10 time(s) in 51.23 ms.

It has no warm-up flag, so we run warm-up + measured iterations and drop the first ones.
"""

from __future__ import annotations

import re

from .stats import Latency, Measurement

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class ParseError(ValueError):
    """The tool's output does not hold the figures we need; the message quotes what it said instead."""


def _tail(text: str) -> str:
    """The most telling line of a failed run: its first error line, else its last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"\b(ERROR|Error|error|FATAL|Aborted|Segmentation fault)\b", ln):
            return ln[:200]
    return lines[-1][:200] if lines else "(no output)"


def parse_benchmark_model(text: str) -> Measurement:
    """Figures of one TFLite ``benchmark_model`` run; ParseError when its timings line is missing."""
    m = re.search(rf"Inference timings in us: Init: ({NUM}), First inference: ({NUM}), "
                  rf"Warmup \(avg\): ({NUM}), Inference \(avg\): ({NUM})", text)
    if m:
        init_us, first_us, _warm_us, avg_us = (float(g) for g in m.groups())
        before = text[: m.start()]
    else:
        old = re.search(rf"Average inference timings in us: Warmup: ({NUM}), Init: ({NUM}), no stats: ({NUM})", text)
        if not old:
            raise ParseError(f"benchmark_model printed no 'Inference timings in us' line: {_tail(text)}")
        _warm_us, init_us, avg_us = (float(g) for g in old.groups())
        first_us, before = None, text[: old.start()]
    stats = _last_count_line(before)
    to_ms = 1e-3
    latency = Latency(
        load_ms=init_us * to_ms,
        first_ms=None if first_us is None else first_us * to_ms,
        avg_ms=avg_us * to_ms,
        median_ms=stats["median"] * to_ms if "median" in stats else None,
        min_ms=stats["min"] * to_ms if "min" in stats else None,
    )
    return Measurement(latency, runtime_version=None, peak_memory_mb=_tflite_memory(text))


def _last_count_line(text: str) -> dict[str, float]:
    """``key=value`` pairs of the last ``count=`` line (the measured runs); empty when there is none."""
    lines = re.findall(r"count=\d+[^\n]*", text)
    if not lines:
        return {}
    return {k: float(v) for k, v in re.findall(rf"(\w+)=({NUM})", lines[-1])}


def _tflite_memory(text: str) -> float | None:
    """Peak memory in MB: the monitored peak where printed, else the overall footprint of either format."""
    for pattern in (rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})",
                    rf"Peak memory footprint \(MB\): init={NUM} overall=({NUM})",
                    rf"Memory footprint delta from the start of the tool \(MB\): init={NUM} overall=({NUM})"):
        m = re.search(pattern, text)
        if m:
            value = float(m.group(1))
            return value if value > 0 else None  # old versions print 0 where they cannot measure
    return None


def parse_executor_runner(text: str, warmup: int) -> Measurement:
    """Figures of one ``executor_runner --num_executions=warmup+runs`` run; the first ``warmup`` are dropped."""
    done = re.search(rf"Model executed successfully (\d+) time\(s\) in ({NUM}) ms", text)
    if not done:
        raise ParseError(f"executor_runner did not report a successful execution: {_tail(text)}")
    count, total_ms = int(done.group(1)), float(done.group(2))
    load = re.search(rf"Model loaded in ({NUM}) ms", text)
    load_ms = float(load.group(1)) if load else None
    iters = [float(v) for v in re.findall(rf"Iteration \d+ of \d+: ({NUM}) ms", text)]
    if len(iters) == count and count > warmup:
        return Measurement(Latency.from_samples(iters[warmup:], load_ms, iters[0]))
    if count < 1:
        raise ParseError("executor_runner ran the model 0 times")
    # Older runners print only the total: the mean over all executions (warm-up included) is all there is.
    return Measurement(Latency(load_ms=load_ms, avg_ms=total_ms / count))
