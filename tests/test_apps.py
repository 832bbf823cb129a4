"""The demo apps, checked without an Android SDK or Xcode: every source file parses (tree-sitter), and the
JSON keys the Kotlin and Swift code read and write are exactly those of the Python side's schemas.

Why key extraction from source: the apps cannot be built or run here, and a misspelt key ("set5_psnr"
for "set5_psnr_db") compiles fine and only shows on a phone as a missing number. The extractors look
for string literals passed to org.json calls (Kotlin) and CodingKeys raw values (Swift), so the apps
keep every JSON key in those forms.
"""

from __future__ import annotations

import json
import re
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
