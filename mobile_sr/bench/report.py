"""Results: one record per artifact (``results.schema.json``), and the table, JSON, CSV and plot made from them.

Every file is written to a temporary name in the target folder and renamed into place, so a crash
or Ctrl-C never leaves a half-written report under the name the user asked for.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core import schema
from ..core.files import atomic_write
from .artifact import Artifact
from .stats import Measurement

SCHEMA_PATH = Path(__file__).resolve().parent / "results.schema.json"
SCHEMA_VERSION = 1
LATENCY_KEYS = ("model_load_time(ms)", "first_inference_latency(ms)", "avg_inference_latency(ms)",
                "trimmean_inference_latency(ms)", "median_inference_latency(ms)", "p90_inference_latency(ms)",
                "min_inference_latency(ms)")


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def record(artifact: Artifact, *, runner: str, threads: int, warmup: int, runs: int,
           measurement: Measurement | None, status: str, error: str | None, psnr: float | None,
           matmul_gmacs: float | None) -> dict[str, Any]:
    """The result record of one artifact; derived figures (throughput, GMAC/s, ratio) are computed here only."""
    lat = measurement.latency if measurement else None
    typical = lat.typical_ms if lat else None
    gmac = artifact.macs / 1e9 if artifact.macs is not None else None
    achieved = gmac / (typical / 1e3) if gmac is not None and typical else None
    return {
        "artifact": artifact.name,
        "model": artifact.model,
        "scale": artifact.scale,
        "format": artifact.format,
        "precision": artifact.precision,
        "runtime": measurement.runtime_version if measurement else None,
        "runner": runner,
        "input_size": list(artifact.input_size),
        "output_size": list(artifact.output_size),
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "status": status,
        "error": error,
        "load_status": 0 if status == "ok" else None,
        "model_load_time(ms)": _r(lat.load_ms) if lat else None,
        "first_inference_latency(ms)": _r(lat.first_ms) if lat else None,
        "avg_inference_latency(ms)": _r(lat.avg_ms) if lat else None,
        "trimmean_inference_latency(ms)": _r(lat.trimmean_ms) if lat else None,
        "median_inference_latency(ms)": _r(lat.median_ms) if lat else None,
        "p90_inference_latency(ms)": _r(lat.p90_ms) if lat else None,
        "min_inference_latency(ms)": _r(lat.min_ms) if lat else None,
        "median_cpu_time(ms)": _r(lat.cpu_median_ms) if lat else None,
        "latencies(ms)": [round(v, 4) for v in lat.samples_ms] if lat else [],
        "throughput(mpix/s)": _r(artifact.output_megapixels / (typical / 1e3)) if typical else None,
        "frames_per_second": _r(1e3 / typical, 2) if typical else None,  # at --input-size = a video's frame size
        "peak_memory(mb)": _r(measurement.peak_memory_mb, 2) if measurement else None,
        "ram_pss_usage(mb)": _r(measurement.pss_mb, 2) if measurement else None,
        "set5_psnr(db)": _r(psnr),
        "gmac_per_inference": _r(gmac, 6),
        "achieved(gmac/s)": _r(achieved),
        "matmul_peak_ratio": _r(achieved / matmul_gmacs, 4) if achieved and matmul_gmacs else None,
    }


def document(device: dict, matmul_gmacs: float | None, bicubic: list[dict], results: list[dict]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"mobile-sr {metadata.version('mobile-sr')}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "matmul_peak(gmac/s)": _r(matmul_gmacs, 2),
        "bicubic": bicubic,
        "results": results,
    }


def load_schema() -> dict[str, Any]:
    return schema.load_schema(SCHEMA_PATH)


def validate(doc: Any) -> list[str]:
    """Every way ``doc`` breaks ``results.schema.json``."""
    return schema.validate(doc, SCHEMA_PATH)


# ---- files ---------------------------------------------------------------------------------------------


def write_json(doc: dict, path: Path) -> None:
    errors = validate(doc)
    if errors:  # a bug in this package, never a user error
        raise AssertionError("results do not match results.schema.json: " + "; ".join(errors[:5]))
    data = (json.dumps(doc, indent=2) + "\n").encode()
    atomic_write(path, data)


CSV_COLUMNS = [k for k in load_schema()["$defs"]["result"]["required"] if k != "latencies(ms)"]


def write_csv(results: list[dict], path: Path) -> None:
    """One row per artifact; sizes as HxW, missing figures empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rec in results:
        writer.writerow([_cell(rec[k]) for k in CSV_COLUMNS])
    data = buf.getvalue().encode()
    atomic_write(path, data)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


# ---- table ---------------------------------------------------------------------------------------------

RUNTIME_SHORT = {"tflite": "litert", "executorch": "executorch", "onnx": "onnxruntime", "coreml": "coreml",
                 "pytorch": "pytorch"}


# (header, width, digits or None for text, how to get the cell from a result record)
COLUMNS: list[tuple[str, int, int | None, Callable[[dict], Any]]] = [
    ("model", -10, None, lambda r: (r["model"] or "?")[:10]),
    ("x", 2, None, lambda r: r["scale"]),
    ("runtime", -12, None, lambda r: RUNTIME_SHORT[r["format"]] + ("" if r["runner"] == "host" else f"/{r['runner']}")),
    ("prec", -6, None, lambda r: r["precision"]),
    ("input", 9, None, lambda r: "x".join(map(str, r["input_size"]))),
    ("thr", 3, None, lambda r: r["threads"]),
    ("load", 8, 1, lambda r: r["model_load_time(ms)"]),
    ("first", 8, 2, lambda r: r["first_inference_latency(ms)"]),
    ("median", 8, 2, lambda r: r["median_inference_latency(ms)"] or r["avg_inference_latency(ms)"]),
    ("p90", 8, 2, lambda r: r["p90_inference_latency(ms)"]),
    ("min", 8, 2, lambda r: r["min_inference_latency(ms)"]),
    ("cpu", 8, 2, lambda r: r["median_cpu_time(ms)"]),
    ("MP/s", 7, 2, lambda r: r["throughput(mpix/s)"]),
    ("fps", 7, 1, lambda r: r.get("frames_per_second")),
    ("mem MB", 7, 1, lambda r: r["peak_memory(mb)"]),
    ("PSNR", 6, 2, lambda r: r["set5_psnr(db)"]),
    ("GMAC/s", 7, 1, lambda r: r["achieved(gmac/s)"]),
    ("%peak", 6, 1, lambda r: None if r["matmul_peak_ratio"] is None else 100 * r["matmul_peak_ratio"]),
]


def _cell_text(value: Any, width: int, digits: int | None) -> str:
    if value is None:
        text = "-" if digits is not None else ""
    elif digits is None or isinstance(value, str):
        text = str(value)[: abs(width)]
    else:
        text = f"{value:.{digits}f}"
    return f"{text:<{-width}}" if width < 0 else f"{text:>{width}}"


def table(doc: dict) -> str:
    """The printed report: one row per artifact and per bicubic reference, then one line per artifact that
    did not run."""
    lines = [" ".join(_cell_text(h, w, None) for h, w, _, _ in COLUMNS)]
    lines.append("-" * len(lines[0]))
    notes = []
    for r in doc["results"]:
        lines.append(" ".join(_cell_text(get(r), w, d) for _, w, d, get in COLUMNS))
        if r["status"] != "ok":
            notes.append(f"{r['artifact']}: {'skipped' if r['status'] == 'unsupported' else 'FAILED'}: {r['error']}")
    for b in doc["bicubic"]:
        known = {"model": "bicubic", "x": b["scale"], "runtime": "pytorch", "prec": "fp32",
                 "input": "x".join(map(str, b["input_size"])), "median": b["median_inference_latency(ms)"],
                 "PSNR": b["set5_psnr(db)"]}
        lines.append(" ".join(_cell_text(known.get(h, ""), w, d) for h, w, d, _ in COLUMNS).rstrip())
    dev = doc["device"]
    where = " ".join(x for x in (dev.get("manufacturer"), dev.get("model"), dev.get("soc"), dev.get("os")) if x)
    peak = doc["matmul_peak(gmac/s)"]
    footer = [f"device: {where or dev['kind']}" + (f"; fp32 matmul peak {peak:.1f} GMAC/s" if peak else "") +
              "; times in ms (cpu: process CPU time per run)"]
    return "\n".join(lines + footer + notes)


# ---- plot ----------------------------------------------------------------------------------------------


def plot_available() -> bool:
    """matplotlib (the ``bench`` extra) is installed; checked before a run, not after it."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(doc: dict, path: Path) -> None:
    """PSNR against latency, one point per artifact that has both, bicubic as the reference per scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    markers = {"tflite": "o", "executorch": "s", "onnx": "^", "pytorch": "D", "coreml": "v"}
    for fmt, marker in markers.items():
        pts = [r for r in doc["results"] if r["format"] == fmt and r["set5_psnr(db)"] is not None
               and (r["median_inference_latency(ms)"] or r["avg_inference_latency(ms)"])]
        if not pts:
            continue
        xs = [r["median_inference_latency(ms)"] or r["avg_inference_latency(ms)"] for r in pts]
        ax.scatter(xs, [r["set5_psnr(db)"] for r in pts], marker=marker, s=40, label=RUNTIME_SHORT[fmt], zorder=3)
        for x, r in zip(xs, pts, strict=True):
            ax.annotate(f"{r['model']} x{r['scale']} {r['precision']}", (x, r["set5_psnr(db)"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    for b in doc["bicubic"]:
        if b["set5_psnr(db)"] is None:
            continue
        ax.axhline(b["set5_psnr(db)"], color="grey", linestyle="--", linewidth=0.8, zorder=1)
        if b["median_inference_latency(ms)"]:
            ax.scatter([b["median_inference_latency(ms)"]], [b["set5_psnr(db)"]], marker="x", color="black", zorder=3)
        ax.annotate(f"bicubic x{b['scale']}", (b["median_inference_latency(ms)"] or 0, b["set5_psnr(db)"]),
                    xycoords=("data" if b["median_inference_latency(ms)"] else "axes fraction", "data"),
                    fontsize=7, color="grey", xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("median latency per inference (ms, log)")
    ax.set_ylabel("Set5 PSNR (dB, Y channel)")
    dev = doc["device"]
    ax.set_title(f"mobile-sr bench on {dev.get('model') or dev['kind']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    atomic_write(path, data)
