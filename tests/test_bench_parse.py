"""Bench building blocks without any runtime: parsing tool output, statistics, thermal state, schema, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mobile_sr.bench.adb import parse_thermal
from mobile_sr.bench.parse import ParseError, parse_benchmark_model, parse_executor_runner
from mobile_sr.bench.report import CSV_COLUMNS, load_schema, validate, write_csv, write_json
from mobile_sr.bench.stats import Latency
from mobile_sr.core.files import atomic_write

from . import fake_adb

NEW_TFLITE = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/data/local/tmp/mobile_sr/m.tflite]
INFO: Initialized session in 143.669ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=12 first=72635 curr=42240 min=42134 max=72635 avg=43536.2 std=4813 p5=42168 median=42430 p95=49447

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=42142 curr=42232 min=4.1142e+04 max=42763 avg=42435.4 std=147 p5=42232 median=42405 p95=42729

INFO: Inference timings in us: Init: 143669, First inference: 72635, Warmup (avg): 4.35362e+04, Inference (avg): 42435.4
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE ...
INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=12.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 20.5
"""

OLD_TFLITE = """count=6 first=140706 curr=74599 min=74599 max=140706 avg=85791.2 std=24559

count=50 first=74456 curr=74516 min=73909 max=75323 avg=74481.6 std=268

Inference timings in us: Init: 18738, First inference: 140706, Warmup (avg): 85791.2, Inference (avg): 1.04176e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE ...
Peak memory footprint (MB): init=6.44141 overall=64.8633
"""


def test_benchmark_model_new_format_with_scientific_notation():
    m = parse_benchmark_model(NEW_TFLITE)
    lat = m.latency
    assert lat.load_ms == pytest.approx(143.669)
    assert lat.first_ms == pytest.approx(72.635)
    assert lat.avg_ms == pytest.approx(42.4354)
    assert lat.median_ms == pytest.approx(42.405)  # from the measured-runs count line, not the warm-up one
    assert lat.min_ms == pytest.approx(41.142)
    assert lat.p90_ms is None and lat.samples_ms == []  # benchmark_model prints no p90 and no samples
    assert m.peak_memory_mb == pytest.approx(20.5)  # the monitored peak wins over the footprint delta


def test_benchmark_model_old_format():
    m = parse_benchmark_model(OLD_TFLITE)
    assert m.latency.avg_ms == pytest.approx(1041.76)
    assert m.latency.min_ms == pytest.approx(73.909)
    assert m.latency.median_ms is None
    assert m.peak_memory_mb == pytest.approx(64.8633)


def test_benchmark_model_footprint_delta_and_logcat_prefix():
    text = "\n".join("10:04:31.319  2638-2638  tflite  org.tensorflow.lite.benchmark  I  " + ln
                     for ln in NEW_TFLITE.splitlines() if "periodic" not in ln)
    m = parse_benchmark_model(text)
    assert m.latency.avg_ms == pytest.approx(42.4354)
    assert m.peak_memory_mb == pytest.approx(12.25)


def test_benchmark_model_very_old_average_line():
    m = parse_benchmark_model("Average inference timings in us: Warmup: 135310, Init: 12123, no stats: 150988\n")
    assert (m.latency.load_ms, m.latency.avg_ms, m.latency.first_ms) == (pytest.approx(12.123), pytest.approx(150.988), None)


def test_benchmark_model_errors_quote_the_tool():
    with pytest.raises(ParseError, match="ERROR: Could not open"):
        parse_benchmark_model("INFO: STARTING!\nERROR: Could not open 'x.tflite'.\nERROR: Benchmarking failed.\n")
    with pytest.raises(ParseError, match="no 'Inference timings in us' line: weird"):
        parse_benchmark_model("hello\nweird\n")


ET_LOG = """I 00:00:00.000100 executorch:executor_runner.cpp:120] Resetting threadpool with num threads = 4
I 00:00:00.001139 executorch:executor_runner.cpp:180] Model file m.pte is loaded.
I 00:00:00.012000 executorch:executor_runner.cpp:260] Model loaded in 11.500000 ms.
I 00:00:00.100000 executorch:executor_runner.cpp:300] Iteration 1 of 4: 50.000000 ms
I 00:00:00.100000 executorch:executor_runner.cpp:300] Iteration 2 of 4: 31.000000 ms
I 00:00:00.100000 executorch:executor_runner.cpp:300] Iteration 3 of 4: 30.000000 ms
I 00:00:00.100000 executorch:executor_runner.cpp:300] Iteration 4 of 4: 32.000000 ms
I 00:00:01.000000 executorch:executor_runner.cpp:310] Model executed successfully 4 time(s) in 143.000000 ms.
OutputX 0: tensor(sizes=[1, 3, 64, 64], [0.5, ..., 0.5])
"""


def test_executor_runner_drops_warmup_iterations():
    m = parse_executor_runner(ET_LOG, warmup=1)
    lat = m.latency
    assert lat.samples_ms == [31.0, 30.0, 32.0]
    assert (lat.first_ms, lat.load_ms, lat.median_ms, lat.min_ms) == (50.0, 11.5, 31.0, 30.0)
    assert lat.avg_ms == pytest.approx(31.0)


def test_executor_runner_total_only():
    m = parse_executor_runner("I 00:00:01.0 executorch:executor_runner.cpp:1] Model executed successfully 4 time(s) "
                              "in 1.2e+02 ms.\n", warmup=1)
    assert m.latency.avg_ms == pytest.approx(30.0) and m.latency.median_ms is None and m.latency.load_ms is None


def test_executor_runner_failure():
    with pytest.raises(ParseError, match="FileDataLoader"):
        parse_executor_runner("E 00:00:00.0002 executorch:executor_runner.cpp:140] FileDataLoader::from() failed: "
                              "0x22\n", warmup=0)


def test_trimmean_matches_executorch_app():
    # ExecuTorch: sort, keep latency[n/10 : n*9/10], average. n = 20 drops 2 at each end.
    samples = [float(v) for v in range(1, 19)] + [1000.0, 0.5]
    lat = Latency.from_samples(samples, None, None)
    kept = sorted(samples)[2:18]
    assert lat.trimmean_ms == pytest.approx(sum(kept) / len(kept))
    assert lat.median_ms == pytest.approx(9.5) and lat.min_ms == 0.5
    assert lat.p90_ms == pytest.approx(17.1)
    assert Latency.from_samples([3.0], None, None).trimmean_ms == 3.0  # a single run keeps itself


def test_thermal_parsing():
    t = parse_thermal(fake_adb.THERMAL)
    assert t == {"status": 1, "status_name": "light", "max_cpu_c": 42.25}  # battery (type 2) is not a CPU
    assert parse_thermal("Can't find service: thermalservice\n") is None


def _doc(result_overrides: dict | None = None) -> dict:
    extras = {"output": "o.json", "model": "/x/m.tflite", "runs": "3", "threads": "2", "warmup": "1", "backend": "xnnpack"}
    doc = fake_adb.app_results(extras)
    doc["results"][0].update(result_overrides or {})
    return doc


def test_results_schema_accepts_app_document_and_rejects_broken_ones():
    assert validate(_doc()) == []
    assert any("'latency' was unexpected" in e for e in validate(_doc({"latency": 3})))
    broken = _doc()
    del broken["results"][0]["avg_inference_latency(ms)"]
    assert any("$.results[0]: 'avg_inference_latency(ms)' is a required property" in e for e in validate(broken))
    assert any("is not one of" in e for e in validate(_doc({"runner": "cloud"})))
    negative = _doc({"median_inference_latency(ms)": -1.0})
    assert validate(negative)


def test_schema_uses_executorch_metric_names():
    names = load_schema()["$defs"]["result"]["required"]
    for metric in ("avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "model_load_time(ms)", "load_status",
                   "ram_pss_usage(mb)"):
        assert metric in names


def test_json_and_csv_files(tmp_path: Path):
    doc = _doc()
    write_json(doc, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == doc
    write_csv(doc["results"], tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert list(rows[0]) == CSV_COLUMNS and rows[0]["input_size"] == "32x32" and rows[0]["set5_psnr(db)"] == ""
    with pytest.raises(AssertionError, match="results.schema.json"):
        write_json({"schema_version": 1}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
