"""The Android app compiled with a real Kotlin compiler, and its pure logic run on the JVM against Python's.

Why: tree-sitter (tests/test_apps.py) checks syntax only; an unassigned `val` or a wrong type only shows
when compiling, and the app's tiling, latency statistics and sidecar / models.json reading must agree with
the Python code that `mobile-sr bench` and `mobile-sr bundle` use. No Android SDK can be had here, so every
`.kt` file that does not draw UI is compiled (Kotlin 2.x from the `kotlin-jupyter-kernel` wheel, `-Werror`)
against small Java stubs of exactly the Android API 35, LiteRT 1.0.1 and ExecuTorch 0.6.0 API it calls
(android_demo/jvm/stubs), plus a driver (android_demo/jvm/JvmCheck.kt) that prints what the app computes.

Python names these tests rely on: mobile_sr.inference.{upscale_tiled, at_fixed_size, fixed_tile, OVERLAP},
mobile_sr.data.imresize.imresize, mobile_sr.bench.stats.Latency.from_samples, mobile_sr.bundle.{bundle, hw,
models_dir}, the `mobile-sr export` command (mobile_sr.cli.main), the `<artifact>.json` sidecar name and
mobile_sr/bench/results.schema.json.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch
from click.testing import CliRunner

from mobile_sr.bench.stats import Latency
from mobile_sr.bundle import bundle, hw, models_dir
from mobile_sr.cli import main
from mobile_sr.data.imresize import imresize
from mobile_sr.inference import OVERLAP, at_fixed_size, fixed_tile, upscale_tiled

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ANDROID = REPO / "android_demo"
KT = ANDROID / "app/src/main/java/org/mobilesr/demo"
JVM = ANDROID / "jvm"
STUBS = JVM / "stubs"
# Files that draw UI: they need AndroidX and coroutines, which no stub here provides; tree-sitter parses them.
UI_FILES = {"MainActivity.kt", "CompareView.kt"}
ORG_JSON = Path("/usr/share/java/com.android.json.jar")  # Debian's libandroid-json-java: Android's org.json
KOTLIN_DIST = "kotlin-jupyter-kernel"  # the dev extra pins it; its wheel bundles a Kotlin 2.x compiler
KOTLINC_FLAGS = ["-no-stdlib", "-no-reflect", "-language-version", "2.0", "-api-version", "2.0", "-jvm-target", "17",
                 "-Xsuppress-version-warnings", "-Werror"]  # the app is written for Kotlin 2.0.21 (android_demo/README.md)
MAIN = "org.mobilesr.demo.JvmCheckKt"
STEM = "elsr_x2_64x48"
RESULTS_SCHEMA = json.loads((REPO / "mobile_sr/bench/results.schema.json").read_text())


def sidecar_path(artifact: Path) -> Path:
    """`<artifact>.json`, the sidecar name every app reads (README, "The sidecar")."""
    return artifact.with_name(artifact.name + ".json")


def validate_results(doc: object) -> list[str]:
    """Every way ``doc`` breaks results.schema.json, the schema `mobile-sr bench` checks the app's file against."""
    validator = jsonschema.validators.validator_for(RESULTS_SCHEMA)(RESULTS_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kotlin_jars() -> tuple[Path, Path]:
    """(compiler jar, kotlin-stdlib jar) from the installed kotlin-jupyter-kernel wheel, or skip."""
    try:
        dist = importlib.metadata.distribution(KOTLIN_DIST)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"no Kotlin compiler: pip install -e '.[dev]' installs {KOTLIN_DIST}")
    jars = [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name.endswith(".jar")]
    compiler = [j for j in jars if re.fullmatch(r"kotlin-jupyter-kernel-.*-all\.jar", j.name)]
    stdlib = [j for j in jars if re.fullmatch(r"kotlin-stdlib-\d[\w.-]*\.jar", j.name)]
    if len(compiler) != 1 or len(stdlib) != 1 or not compiler[0].is_file() or not stdlib[0].is_file():
        pytest.skip(f"{KOTLIN_DIST} {dist.version} holds no single compiler and stdlib jar: {[j.name for j in jars]}")
    return compiler[0], stdlib[0]


def tool_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name}: a JDK is needed (Debian: apt-get install default-jdk-headless)")
    return path


@dataclass
class Jvm:
    """The compiled app classes and how to run the driver; [gpu_api] is the litert-gpu-api stub's classes."""

    java: str
    classes: Path
    stubs: Path
    gpu_api: Path
    stdlib: Path
    compile_seconds: float

    def run(self, *args: str, stdin: str | None = None, gpu_api: bool = True) -> object:
        parts = [self.classes, self.stubs, *([self.gpu_api] if gpu_api else []), self.stdlib, ORG_JSON]
        res = subprocess.run([self.java, "-cp", ":".join(map(str, parts)), MAIN, *args], input=stdin,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout)


def compiled_sources() -> list[Path]:
    return sorted(f for f in KT.glob("*.kt") if f.name not in UI_FILES)


def kotlinc(compiler: Path, classpath: list[Path], out: Path, sources: list[Path]) -> subprocess.CompletedProcess:
    cmd = [tool_or_skip("java"), "-cp", str(compiler), "org.jetbrains.kotlin.cli.jvm.K2JVMCompiler", *KOTLINC_FLAGS,
           "-cp", ":".join(map(str, classpath)), "-d", str(out), *map(str, sources)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=540)


@pytest.fixture(scope="module")
def jvm(tmp_path_factory) -> Jvm:
    """javac the stubs (litert-gpu-api apart, so a run can leave it out), then kotlinc the app and the driver."""
    import time

    compiler, stdlib = kotlin_jars()
    java, javac = tool_or_skip("java"), tool_or_skip("javac")
    if not ORG_JSON.is_file():
        pytest.skip(f"no {ORG_JSON}: apt-get install libandroid-json-java (Android's org.json)")
    root = tmp_path_factory.mktemp("jvm")
    stubs, gpu_api, classes = root / "stubs", root / "gpu-api", root / "classes"
    api_src = sorted((STUBS / "litert-gpu-api").rglob("*.java"))
    rest = sorted(f for f in STUBS.rglob("*.java") if f not in api_src)
    for out, files, cp in ((gpu_api, api_src, []), (stubs, rest, [gpu_api])):
        res = subprocess.run([javac, "--release", "17", "-d", str(out), *(["-cp", ":".join(map(str, cp))] if cp else []),
                              *map(str, files)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    start = time.monotonic()
    res = kotlinc(compiler, [stubs, gpu_api, stdlib, ORG_JSON], classes, [*compiled_sources(), JVM / "JvmCheck.kt"])
    assert res.returncode == 0, res.stderr or res.stdout
    return Jvm(java, classes, stubs, gpu_api, stdlib, time.monotonic() - start)


# ---- compiling -----------------------------------------------------------------------------------------

def test_every_non_ui_source_compiles(jvm: Jvm) -> None:
    """The fixture compiled them with -Werror; every app class is there, UI files aside and nothing else."""
    names = {f.name for f in KT.glob("*.kt")}
    assert UI_FILES < names, "a UI file was renamed: update UI_FILES"
    built = {p.name for p in (jvm.classes / "org/mobilesr/demo").glob("*.class")}
    for cls in ("LiteRtEngine", "ExecuTorchEngine", "EngineCache", "Tiler", "ModelSpec", "ModelIndex",
                "BenchmarkResults", "Benchmark", "BenchmarkActivity", "Stats"):
        assert f"{cls}.class" in built, cls
    assert "MainActivity.class" not in built and "CompareView.class" not in built


def test_compiler_rejects_reassigning_a_constructor_parameter(jvm: Jvm, tmp_path: Path) -> None:
    """The bug this compile exists for (issue 12): `spec = spec.copy(...)` in an init block."""
    compiler, stdlib = kotlin_jars()
    src = tmp_path / "Broken.kt"
    src.write_text("class Engine(spec: String) {\n    val spec: String\n    init { spec = spec + \"!\" }\n}\n")
    res = kotlinc(compiler, [stdlib], tmp_path / "out", [src])
    assert res.returncode != 0
    assert "'val' cannot be reassigned" in res.stderr and "must be initialized" in res.stderr, res.stderr


# ---- tiling --------------------------------------------------------------------------------------------

REACH = 5  # how far the probe model looks (within OVERLAP, so every read stays inside the tile's context)


def python_probe_upscale(w: int, h: int, in_h: int, in_w: int, s: int) -> torch.Tensor:
    """What mobile_sr.inference makes of the driver's probe model (JvmCheck.kt `Probe`) on the same image."""
    calls = [0]

    def probe(x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape) == (1, 3, in_h, in_w)  # a fixed-size model
        rows = torch.clamp(torch.arange(in_h) + REACH, max=in_h - 1)
        cols = torch.clamp(torch.arange(in_w) + REACH, max=in_w - 1)
        r, g = x[0, 0][rows, :], x[0, 1][:, cols]
        b = torch.full_like(r, calls[0]) / 255
        calls[0] += 1
        return torch.stack([r, g, b]).repeat_interleave(s, 1).repeat_interleave(s, 2)[None]

    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    lr = torch.stack([ys, xs, torch.zeros_like(ys)]).float() / 255
    out = upscale_tiled(at_fixed_size(probe, in_h, in_w, s), lr, s, tile=fixed_tile(in_h, in_w), out_dtype=torch.uint8)
    return out.permute(1, 2, 0).reshape(-1)


@pytest.mark.parametrize(("w", "h", "in_h", "in_w", "s"), [
    (200, 150, 48, 64, 2),  # many tiles, a non-square model input
    (113, 97, 40, 40, 4),  # ragged last tiles
    (64, 48, 64, 64, 3),  # one dimension fits in a core, the other does not
    (30, 20, 48, 64, 2),  # one pass: smaller than a core
    (1, 1, 32, 32, 2),
])
def test_tiling_matches_python(jvm: Jvm, w: int, h: int, in_h: int, in_w: int, s: int) -> None:
    """Tiler.upscale and upscale_tiled(at_fixed_size(...)) agree on every output byte of a probe model whose
    output names the LR pixel it read (offset by REACH, so edge padding shows) and the tile it came from."""
    got = jvm.run("tiles", *map(str, (w, h, in_h, in_w, s, REACH)))
    assert got["overlap"] == OVERLAP
    assert (got["width"], got["height"]) == (w * s, h * s)
    want = python_probe_upscale(w, h, in_h, in_w, s)
    assert got["calls"] == got["timed_tiles"] == int(want[2::3].max()) + 1
    diff = torch.nonzero(torch.tensor(got["rgb"], dtype=torch.uint8) != want)
    assert diff.numel() == 0, f"{diff.numel()} bytes differ, first at pixel {int(diff[0]) // 3}"


def test_oversized_photo_is_refused_and_fit_keeps_the_cap(jvm: Jvm) -> None:
    """An x2-sized photo upscaled at x4 must fail with a message before any tile runs (issue 12, item 3)."""
    got = jvm.run("oversize")
    assert got["calls"] == 0 and "over 16 MP" in got["refused"]
    for w, h, s in [(4000, 3000, 2), (4000, 3000, 4), (9000, 100, 3), (100, 100, 4), (1, 50_000_000, 1)]:
        fw, fh = jvm.run("fit", str(w), str(h), str(s))
        assert fw * fh * s * s <= 16_000_000 and fw <= w and fh <= h
        if w * h * s * s <= 16_000_000:
            assert (fw, fh) == (w, h)
        else:  # as large as the cap allows, same aspect ratio
            assert (fw + 1) * (fh + 1) * s * s > 16_000_000
            assert abs(fw / fh - w / h) / (w / h) < 0.02 or min(fw, fh) == 1


@pytest.mark.parametrize(("w", "h", "s"), [(23, 17, 2), (9, 12, 3), (16, 16, 4), (1, 5, 2)])
def test_bicubic_baseline_is_matlab_imresize(jvm: Jvm, w: int, h: int, s: int) -> None:
    """Issue 12, item 7: the baseline beside the model is MATLAB's bicubic (Keys a = -0.5, mirror padding), the
    one mobile_sr/data/imresize.py computes. float32 (app) against float64 (here): at most one level, rarely."""
    got = torch.tensor(jvm.run("bicubic", str(w), str(h), str(s)), dtype=torch.int16).reshape(h * s, w * s, 3)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    lr = torch.stack([(xs * 73 + ys * 151 + c * 89 + xs * ys * 7) % 256 for c in range(3)]).double() / 255  # JvmCheck testPixel
    want = (imresize(lr, s).clamp(0, 1) * 255).round().to(torch.int16).permute(1, 2, 0)
    diff = (got - want).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01, (int(diff.max()), float((diff > 0).float().mean()))


# ---- latency statistics --------------------------------------------------------------------------------

def test_latency_statistics_match_python(jvm: Jvm) -> None:
    rng = random.Random(12)
    lists = [[4.0], [3.0, 1.0], [2.5, 2.5, 9.0]]
    lists += [[rng.lognormvariate(2, 0.5) for _ in range(n)] for n in (9, 10, 11, 19, 50, 101)]
    got = jvm.run("stats", stdin=json.dumps(lists))
    for samples, k in zip(lists, got, strict=True):
        py = Latency.from_samples(samples, None, None)
        want = {"avg": py.avg_ms, "trimmean": py.trimmean_ms, "median": py.median_ms, "p90": py.p90_ms, "min": py.min_ms}
        for key, value in want.items():
            assert math.isclose(k[key], value, rel_tol=1e-12), (len(samples), key, k[key], value)


# ---- sidecars and models.json, as Python writes them ---------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """Real exports: fp32 .tflite and .pte, and an int8io .tflite (quantized input and output)."""
    out = tmp_path_factory.mktemp("exports")
    for extra in ([], ["--int8-io"]):
        target = "tflite" if extra else "tflite,executorch"
        res = CliRunner().invoke(main, ["export", "--target", target, "--model", "elsr", "--input-size", "64x48",
                                        "--no-verify", "-o", str(out), *extra])
        assert res.exit_code == 0, res.output
    return out


def artifacts(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.suffix in (".tflite", ".pte"))
    assert {p.name for p in found} >= {f"{STEM}_fp32.tflite", f"{STEM}_fp32.pte", f"{STEM}_int8io.tflite"}, found
    return found


def expected_tensor(t: dict) -> dict:
    q = t["quantization"]
    return {"shape": t["shape"], "layout": t["layout"], "dtype": t["dtype"], "height": hw(t)[0], "width": hw(t)[1],
            "quant": None if q is None else {"scale": q["scale"], "zero_point": q["zero_point"]}}


def assert_same_tensor(got: dict, t: dict) -> None:
    want = expected_tensor(t)
    gq, wq = got.pop("quant"), want.pop("quant")
    assert got == want
    assert (gq is None) == (wq is None)
    if wq is not None:  # the app keeps the scale as a float
        assert gq["zero_point"] == wq["zero_point"] and math.isclose(gq["scale"], wq["scale"], rel_tol=1e-6)


@pytest.mark.extras("tflite", "executorch")
def test_sidecars_read_as_python_wrote_them(jvm: Jvm, exported: Path) -> None:
    for art in artifacts(exported):
        doc = json.loads(sidecar_path(art).read_text())
        got = jvm.run("sidecar", str(sidecar_path(art)))
        assert {k: got[k] for k in ("file", "format", "precision", "name", "scale", "verified", "set5_psnr_db")} == {
            "file": doc["artifact"]["file"], "format": doc["artifact"]["format"],
            "precision": doc["artifact"]["precision"], "name": doc["model"]["name"], "scale": doc["model"]["scale"],
            "verified": doc["verification"]["verified"], "set5_psnr_db": doc["verification"]["set5_psnr_db"]}
        assert_same_tensor(got["input"], doc["inputs"][0])
        assert_same_tensor(got["output"], doc["outputs"][0])
    int8io = json.loads(sidecar_path(exported / f"{STEM}_int8io.tflite").read_text())
    assert int8io["inputs"][0]["quantization"] is not None  # the quantized path was exercised


@pytest.mark.extras("tflite", "executorch")
def test_spec_from_a_bare_file_name_matches_its_sidecar(jvm: Jvm, exported: Path, tmp_path: Path) -> None:
    """`mobile-sr bench --runner app` pushes the artifact alone: the name-only spec must agree with the sidecar
    on layout, shape and scale (LiteRT then reads dtype and quantization from the interpreter)."""
    for art in artifacts(exported):
        alone = tmp_path / art.name
        shutil.copy(art, alone)
        doc = json.loads(sidecar_path(art).read_text())
        got = jvm.run("for-file", str(alone))
        assert (got["format"], got["precision"], got["scale"], got["name"]) == (
            doc["artifact"]["format"], doc["artifact"]["precision"], doc["model"]["scale"], doc["model"]["name"])
        for side, t in (("input", doc["inputs"][0]), ("output", doc["outputs"][0])):
            assert (got[side]["shape"], got[side]["layout"]) == (t["shape"], t["layout"])
        assert jvm.run("for-file", str(art))["verified"] == doc["verification"]["verified"]  # sidecar beside it wins


@pytest.mark.extras("tflite", "executorch")
def test_models_json_reads_as_bundle_wrote_it(jvm: Jvm, exported: Path, tmp_path: Path) -> None:
    app = tmp_path / "android_demo"
    models_dir("android", app).parent.mkdir(parents=True)
    arts = artifacts(exported)
    folder, index = bundle(arts, "android", app_dir=app, default=arts[-1].name, force=True)  # --no-verify exports
    got = jvm.run("index", str(folder / "models.json"))
    assert got["default"] == index["default"]
    labels = [m.pop("label") for m in got["models"]]
    assert got["models"] == index["models"]
    assert all(m["name"] in label and m["precision"] in label for m, label in zip(index["models"], labels, strict=True))


# ---- the benchmark activity's document -----------------------------------------------------------------

@pytest.mark.extras("tflite", "executorch")
def test_benchmark_failures_still_write_a_valid_document(jvm: Jvm, exported: Path, tmp_path: Path) -> None:
    """Issue 12, item 2: GPU without litert-gpu-api is a NoClassDefFoundError (an Error); the benchmark must
    still write a schema-valid failed document. Run with the litert-gpu-api classes left off the classpath."""
    tflite = tmp_path / f"{STEM}_fp32.tflite"
    shutil.copy(exported / tflite.name, tflite)
    cases = [
        (jvm.run("bench", str(tflite), "gpu", gpu_api=False), "NoClassDefFoundError"),
        (jvm.run("bench", str(tflite), "nnapi"), "LiteRT backend nnapi is not in this app"),
        (jvm.run("bench", str(tmp_path / "gone" / tflite.name), "xnnpack"), "missing or empty"),
        (jvm.run("bench", str(tflite), "xnnpack"), "LiteRT cannot load"),  # the stub Interpreter has no runtime
    ]
    for doc, reason in cases:
        assert validate_results(doc) == [], validate_results(doc)
        rec = doc["results"][0]
        assert rec["status"] == "failed" and rec["load_status"] == 1 and reason in rec["error"], rec["error"]
        assert rec["runner"] == "app" and rec["latencies(ms)"] == [] and rec["median_inference_latency(ms)"] is None
    gpu = cases[0][0]["results"][0]
    assert "GPU delegate is not in this build" in gpu["error"] and gpu["scale"] == 2 and gpu["input_size"] == [64, 48]


@pytest.mark.extras("tflite", "executorch")
def test_engine_cache_builds_once_per_model_and_backend(jvm: Jvm, exported: Path) -> None:
    """Issue 12, item 9: the main screen must not rebuild the engine (and GPU delegate) for every photo."""
    events = jvm.run("cache", str(exported / f"{STEM}_fp32.tflite"))
    assert events == ["build 1 xnnpack", "use xnnpack", "use xnnpack", "close 1", "build 2 gpu", "use gpu", "use gpu",
                      "close 2", "build 3 xnnpack", "use xnnpack", "close 3", "closed"]
