"""Wall time of ``mobile-sr export`` as users run it, verification included: the issue's budgets.

    python benchmarks/export_bench.py [--model fsrcnn] [--input-size 256x256] [--out export_bench]
                                      [--json export_bench.json] [--runs tflite:int8,executorch:int8,...]

Each run is a fresh ``mobile-sr export`` process (imports, conversion, verification, sidecar), timed
from outside: wall time and the CPU seconds it used. Budgets on 2 CPU cores: TFLite int8 under 60 s,
ExecuTorch int8 under 30 s; they are printed beside the figures, not asserted. The machine's load
average is recorded with them: other work on the box (e.g. training runs) stretches wall time, while
CPU seconds stay comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from mobile_sr.export import FORMATS

BUDGETS_S = {("tflite", "int8"): 60.0, ("executorch", "int8"): 30.0}
DEFAULT_RUNS = "tflite:int8,executorch:int8,tflite:fp32,executorch:fp32,onnx:int8,coreml:int8"
FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"], "int8io": ["--int8-io"]}


def one_run(target: str, precision: str, model: str, size: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "mobile_sr", "export", "--target", target, *FLAGS[precision], "--model", model,
           "--input-size", size, "-o", str(out)]
    load_before = os.getloadavg()[0]
    cpu0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    sidecars = sorted(out.glob(f"*_{size}_{precision}{FORMATS[target].suffix}.json"), key=lambda p: p.stat().st_mtime)
    doc = json.loads(sidecars[-1].read_text()) if sidecars and proc.returncode in (0, 1) else None
    row = {"target": target, "precision": precision, "exit_code": proc.returncode, "wall_s": round(wall, 1),
           "cpu_s": round(cpu, 1), "budget_s": BUDGETS_S.get((target, precision)),
           "load_avg_1min": round(load_before, 2)}
    if doc is None:
        row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no sidecar"
        return row
    v = doc["verification"]
    ops = v["ops"]
    row |= {"file": doc["artifact"]["file"], "bytes": doc["artifact"]["bytes"], "export_s": doc["export"]["seconds"],
            "status": v["status"], "parity_db": v["parity_psnr_db"], "set5_db": v["set5_psnr_db"],
            "set5_fp32_db": v["set5_fp32_psnr_db"], "delegated": f"{ops['delegated']}/{ops['total']}" if ops else None,
            "outside_delegate": ops["outside"] if ops else None}
    return row


def markdown(rows: list[dict]) -> str:
    def f(x: object) -> str:
        return "-" if x is None else str(x)

    lines = ["| target | precision | wall s (budget) | CPU s | export s | size kB | parity dB | Set5 dB (fp32) | "
             "delegated | check | load avg |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        budget = f" ({r['budget_s']:.0f})" if r.get("budget_s") else ""
        lines.append(f"| {r['target']} | {r['precision']} | {r['wall_s']}{budget} | {r['cpu_s']} | "
                     f"{f(r.get('export_s'))} | "
                     f"{f(round(r['bytes'] / 1e3, 1) if 'bytes' in r else None)} | {f(r.get('parity_db'))} | "
                     f"{f(r.get('set5_db'))} ({f(r.get('set5_fp32_db'))}) | {f(r.get('delegated'))} | "
                     f"{r.get('status', r.get('error'))} | {r['load_avg_1min']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fsrcnn")
    ap.add_argument("--input-size", default="256x256")
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="target:precision pairs, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("export_bench"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for pair in args.runs.split(","):
        target, precision = pair.split(":")
        rows.append(one_run(target, precision, args.model, args.input_size, args.out))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nmodel {args.model}, input {args.input_size}, {os.cpu_count()} CPUs\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "input_size": args.input_size,
                                         "cpus": os.cpu_count(), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
