"""The demo apps, checked without an Android SDK or Xcode: every source file parses (tree-sitter), the
JSON keys the Kotlin and Swift code read and write are exactly those of the Python side's schemas, and the
build files and API uses found wrong against the real APIs (issue 12) stay fixed. The Android sources that
do not draw UI are also compiled and run on the JVM: tests/test_android_jvm.py.

Why key extraction from source: the apps cannot be built or run here, and a misspelt key ("set5_psnr"
for "set5_psnr_db") compiles fine and only shows on a phone as a missing number. The extractors look
for string literals passed to org.json calls (Kotlin) and CodingKeys raw values (Swift), so the apps
keep every JSON key in those forms.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mobile_sr.bench import remote
from mobile_sr.bundle import MODELS_SCHEMA_PATH
from mobile_sr.export.sidecar import SCHEMA_PATH as SIDECAR_SCHEMA_PATH

REPO = Path(__file__).resolve().parent.parent
ANDROID = REPO / "android_demo"
KT = ANDROID / "app/src/main/java/org/mobilesr/demo"
IOS = REPO / "ios_demo"
SWIFT = IOS / "MobileSRDemo"
RESULTS_SCHEMA_PATH = REPO / "mobile_sr/bench/results.schema.json"

KOTLIN_KEY = re.compile(
    r"\b(?:opt\w*|get(?:String|Int|Long|Double|Boolean|JSONObject|JSONArray)|has|isNull|put)\(\s*\"([^\"]+)\"")
SWIFT_CODING_KEYS = re.compile(r"enum\s+CodingKeys\s*:\s*String\s*,\s*CodingKey\s*\{(.*?)\n\s*\}", re.S)
SWIFT_CASE = re.compile(r"case\s+([^\n]+)")


def schema_properties(path: Path) -> set[str]:
    """Every property name anywhere in a schema (nested objects and $defs included)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(path.read_text()))
    return found


def kotlin_keys(text: str) -> set[str]:
    return set(KOTLIN_KEY.findall(text))


def swift_keys(text: str) -> set[str]:
    """JSON keys of every Codable type in the file: CodingKeys raw values, or the case name without one."""
    keys: set[str] = set()
    for body in SWIFT_CODING_KEYS.findall(text):
        for line in SWIFT_CASE.findall(body):
            for part in line.split(","):
                name, _, raw = part.partition("=")
                keys.add(raw.strip().strip('"') if raw.strip() else name.strip())
    return keys


# ---- parsing -------------------------------------------------------------------------------------------

def _parser(lang: str):
    tree_sitter = pytest.importorskip("tree_sitter", reason="pip install -e '.[dev]'")
    module = pytest.importorskip(f"tree_sitter_{lang}", reason="pip install -e '.[dev]'")
    return tree_sitter.Parser(tree_sitter.Language(module.language()))


def _errors(tree, source: bytes) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            out.append(f"line {row + 1}:{col + 1}: {source[node.start_byte:node.start_byte + 60]!r}")
            return
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return out


SOURCES = {
    "kotlin": sorted([*ANDROID.rglob("*.kt"), *ANDROID.rglob("*.kts")]),
    "swift": sorted(IOS.rglob("*.swift")),
}


@pytest.mark.parametrize("lang", ["kotlin", "swift"])
def test_every_source_file_parses(lang: str) -> None:
    parser = _parser(lang)
    files = SOURCES[lang]
    assert files, f"no {lang} sources found"
    bad = {}
    for f in files:
        source = f.read_bytes()
        tree = parser.parse(source)
        if tree.root_node.has_error:
            bad[str(f.relative_to(REPO))] = _errors(tree, source) or ["has_error"]
    assert not bad, bad


@pytest.mark.parametrize(("lang", "broken"), [("kotlin", b"fun f( { val x = }"), ("swift", b"func f( { let x = }")])
def test_parser_catches_a_syntax_error(lang: str, broken: bytes) -> None:
    assert _parser(lang).parse(broken).root_node.has_error


# ---- schema agreement ----------------------------------------------------------------------------------

def test_android_models_index_keys_are_the_schema() -> None:
    assert kotlin_keys((KT / "ModelIndex.kt").read_text()) == schema_properties(MODELS_SCHEMA_PATH)


def test_android_sidecar_keys_exist_in_the_schema() -> None:
    keys = kotlin_keys((KT / "ModelSpec.kt").read_text())
    assert keys <= schema_properties(SIDECAR_SCHEMA_PATH), keys - schema_properties(SIDECAR_SCHEMA_PATH)
    # what feeding a model needs: the app must read these from the sidecar, not guess them
    assert {"inputs", "outputs", "shape", "layout", "dtype", "quantization", "scale", "zero_point", "format"} <= keys


def test_android_benchmark_writes_exactly_the_results_schema() -> None:
    assert kotlin_keys((KT / "BenchmarkResults.kt").read_text()) == schema_properties(RESULTS_SCHEMA_PATH)


def test_ios_models_index_keys_are_the_schema() -> None:
    assert swift_keys((SWIFT / "ModelIndex.swift").read_text()) == schema_properties(MODELS_SCHEMA_PATH)


def test_ios_sidecar_keys_exist_in_the_schema() -> None:
    keys = swift_keys((SWIFT / "Sidecar.swift").read_text())
    assert keys <= schema_properties(SIDECAR_SCHEMA_PATH), keys - schema_properties(SIDECAR_SCHEMA_PATH)
    assert {"inputs", "outputs", "shape", "layout", "dtype", "scale", "format"} <= keys


def test_ios_benchmark_writes_exactly_the_results_schema() -> None:
    assert swift_keys((SWIFT / "BenchmarkResults.swift").read_text()) == schema_properties(RESULTS_SCHEMA_PATH)


def test_ios_project_bundles_the_model_folder() -> None:
    """`mobile-sr bundle --app ios` writes MobileSRDemo/Models/, which the XcodeGen spec copies as a folder."""
    from mobile_sr.bundle import APPS

    assert APPS["ios"][1] == "MobileSRDemo/Models"
    assert re.search(r"- path: MobileSRDemo/Models\n\s+type: folder", (IOS / "project.yml").read_text())
    assert 'static let folder = "Models"' in (SWIFT / "ModelIndex.swift").read_text()


def test_key_check_can_fail() -> None:
    """A misspelt key in the Kotlin source must break the agreement."""
    text = (KT / "ModelIndex.kt").read_text().replace('"set5_psnr_db"', '"set5_psnr"')
    assert kotlin_keys(text) != schema_properties(MODELS_SCHEMA_PATH)
    assert swift_keys('enum CodingKeys: String, CodingKey {\n case a, b = "bee"\n case c\n }') == {"a", "bee", "c"}


def test_android_benchmark_contract_matches_bench() -> None:
    """Package, activity and intent extras are the ones `mobile-sr bench --runner app` sends."""
    sent = set(re.findall(r'"--e[si]", "(\w+)"', (REPO / "mobile_sr/bench/remote.py").read_text()))
    activity = (KT / "BenchmarkActivity.kt").read_text()
    read = set(re.findall(r'extras\.get(?:String|Int)\("(\w+)"', activity))
    assert sent == read == {"model", "backend", "threads", "warmup", "runs", "output"}
    assert f'applicationId = "{remote.APP_PACKAGE}"' in (ANDROID / "app/build.gradle.kts").read_text()
    manifest = (ANDROID / "app/src/main/AndroidManifest.xml").read_text()
    assert re.search(rf'android:name="\{remote.APP_ACTIVITY}"\s+android:exported="true"', manifest)
    assert (ANDROID / "README.md").read_text().count(f"{remote.APP_PACKAGE}/{remote.APP_ACTIVITY}") >= 1


# ---- build files and platform APIs (issue 12, "The apps, read against the real APIs") ----------------

ANDROID_NS = "{http://schemas.android.com/apk/res/android}"


def code(text: str) -> str:
    """Kotlin or Swift source without its comments, so a comment naming an old API does not count as a use."""
    return re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", text), flags=re.S)


def test_ios_swift_version_is_a_language_mode() -> None:
    """Xcode takes SWIFT_VERSION 4.0, 4.2, 5.0 or 6.0 (the language mode); "5.9" fails the build."""
    versions = re.findall(r'SWIFT_VERSION:\s*"?([\d.]+)"?', (IOS / "project.yml").read_text())
    assert versions and set(versions) <= {"4.0", "4.2", "5.0", "6.0"}, versions


def test_android_gpu_delegate_ships_with_its_api() -> None:
    """litert-gpu without litert-gpu-api: new GpuDelegate() throws NoClassDefFoundError (GpuDelegateFactory$Options)."""
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    deps = dict(re.findall(r'"com\.google\.ai\.edge\.litert:([\w-]+):([\w.]+)"', gradle))
    assert deps.get("litert-gpu") and deps.get("litert-gpu-api") == deps["litert-gpu"] == deps["litert"], deps


def test_android_manifest_reaches_the_opencl_driver_and_storage() -> None:
    """targetSdk >= 31 needs uses-native-library for the vendor's libOpenCL.so (else the GPU delegate runs on
    OpenGL ES); API 28 needs WRITE_EXTERNAL_STORAGE to save, asked for at runtime."""
    target = int(re.search(r"targetSdk\s*=\s*(\d+)", (ANDROID / "app/build.gradle.kts").read_text()).group(1))
    root = ET.parse(ANDROID / "app/src/main/AndroidManifest.xml").getroot()
    native = {e.get(f"{ANDROID_NS}name"): e.get(f"{ANDROID_NS}required") for e in root.iter("uses-native-library")}
    in_application = {e.get(f"{ANDROID_NS}name") for e in root.find("application").findall("uses-native-library")}
    assert target < 31 or (native.get("libOpenCL.so") == "false" and "libOpenCL.so" in in_application), native
    storage = [e for e in root.iter("uses-permission") if e.get(f"{ANDROID_NS}name").endswith("WRITE_EXTERNAL_STORAGE")]
    assert [e.get(f"{ANDROID_NS}maxSdkVersion") for e in storage] == ["28"]
    main = code((KT / "MainActivity.kt").read_text())
    assert "RequestPermission()" in main and "askWrite.launch(Manifest.permission.WRITE_EXTERNAL_STORAGE)" in main


def test_android_main_screen_threads_and_zoom() -> None:
    """Views are read on the main thread only, the engine is cached, the zoom is not smoothed."""
    main = code((KT / "MainActivity.kt").read_text())
    engine_block = main[main.index("withContext(engineDispatcher)"):main.index("result = sr")]
    assert "isChecked" not in engine_block and "SrEngine.create" not in main and "engines.get(" in engine_block
    assert "isFilterBitmap = false" in main
    assert "Tiler.fitInput(" in main and "scale != photoScale" in main  # a new scale decodes the photo again


def test_ios_apis_checked_against_the_sdk() -> None:
    """Bicubic is Keys a = -0.5 like Android and MATLAB; saving reports failure; no NSNumber per element in the
    timed prediction; the benchmark loop and the photo decode leave the main actor."""
    engine = code((SWIFT / "SREngine.swift").read_text())
    assert "bicubicScaleTransform" not in engine and "let a: Float = -0.5" in engine
    assert "val a = -0.5f" in code((KT / "Tiler.kt").read_text())
    run = engine[engine.index("func run("):engine.index("static let overlap")]
    assert "NSNumber" not in run.replace("t.shape.map { NSNumber(value: $0) }", "")
    upscale = code((SWIFT / "UpscaleView.swift").read_text())
    assert "UIImageWriteToSavedPhotosAlbum" not in upscale and "performChanges" in upscale
    assert re.search(r"Task\.detached[^{]*\{\s*try SREngine\.decode\(", upscale)
    bench = code((SWIFT / "BenchmarkView.swift").read_text())
    view = bench[bench.index("struct BenchmarkView"):bench.index("enum Benchmark")]
    assert "func measure(" not in view and "await Benchmark.measure(" in view
