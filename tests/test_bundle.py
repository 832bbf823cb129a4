"""``mobile-sr bundle``: round trip into temporary copies of both apps, every refusal, idempotence, atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobile_sr import bundle as bundle_mod
from mobile_sr.bundle import INDEX_NAME, BundleError, bundle, digest, load_models_schema, models_dir
from mobile_sr.cli import main
from mobile_sr.export.sidecar import validate

REPO = Path(__file__).resolve().parent.parent
STEM = "elsr_x2_64x64_fp32"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real, small export (.tflite and .pte with sidecars); verification is not the point here."""
    out = tmp_path_factory.mktemp("exports")
    res = CliRunner().invoke(main, ["export", "--target", "tflite,executorch", "--model", "elsr", "--input-size",
                                    "64x64", "--no-verify", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def arts(exported: Path, tmp_path: Path) -> Path:
    """A private copy of the export, so a test may break a sidecar."""
    dst = tmp_path / "arts"
    shutil.copytree(exported, dst)
    return dst


def app_copy(tmp_path: Path, app: str) -> Path:
    """A temporary copy of the real app folder, without any models bundled in the checkout."""
    src = REPO / bundle_mod.APPS[app][0]
    dst = tmp_path / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("models", "Models", "build", ".gradle"))
    models_dir(app, dst).parent.mkdir(parents=True, exist_ok=True)
    return dst


def fake_mlpackage(arts: Path) -> Path:
    """A .mlpackage folder with a schema-valid Core ML sidecar (Core ML cannot be exported off macOS in a test)."""
    pkg = arts / f"{STEM}.mlpackage"
    (pkg / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x00" * 64)
    doc = json.loads((arts / f"{STEM}.tflite.json").read_text())
    doc["artifact"].update(file=pkg.name, format="coreml", sha256=digest(pkg), bytes=64 + 2)
    for t in doc["inputs"] + doc["outputs"]:
        n, h, w, c = t["shape"]
        t.update(shape=[n, c, h, w], layout="NCHW")
    (arts / f"{pkg.name}.json").write_text(json.dumps(doc))
    return pkg


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_sidecar(artifact: Path, **verification) -> None:
    side = artifact.with_name(artifact.name + ".json")
    doc = json.loads(side.read_text())
    doc["verification"].update(verification)
    side.write_text(json.dumps(doc))


def test_android_round_trip_and_idempotent(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "android")
    tfl, pte = arts / f"{STEM}.tflite", arts / f"{STEM}.pte"
    res = CliRunner().invoke(main, ["bundle", str(tfl), str(pte), "--app", "android", "--app-dir", str(app),
                                    "--default", f"{STEM}.pte"])
    assert res.exit_code == 0, res.output
    folder = app / "app/src/main/assets/models"
    index = json.loads((folder / INDEX_NAME).read_text())
    assert validate(index, load_models_schema()) == []
    assert index["default"] == f"{STEM}-executorch"
    assert {e["backend"] for e in index["models"]} == {"litert", "executorch"}
    for e in index["models"]:
        assert (folder / e["file"]).read_bytes() == (arts / e["file"]).read_bytes()
        side = json.loads((folder / e["sidecar"]).read_text())
        assert side["artifact"]["file"] == e["file"] and e["input_size"] == [64, 64] and e["output_size"] == [128, 128]
    before = snapshot(folder)
    res = CliRunner().invoke(main, ["bundle", str(tfl), str(pte), "--app", "android", "--app-dir", str(app)])
    assert res.exit_code == 0, res.output
    assert snapshot(folder) == before  # same bytes, default kept, no staging left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted([INDEX_NAME, tfl.name, pte.name, tfl.name + ".json",
                                                                pte.name + ".json"])


def test_ios_round_trip(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "ios")
    pkg = fake_mlpackage(arts)
    folder, index = bundle([pkg], "ios", app_dir=app)
    assert folder == app / "MobileSRDemo/Models"
    assert digest(folder / pkg.name) == digest(pkg)
    assert index["default"] == f"{STEM}-coreml" and index["models"][0]["input_size"] == [64, 64]
    folder2, _ = bundle([pkg], "ios", app_dir=app)  # replacing an .mlpackage folder
    assert digest(folder2 / pkg.name) == digest(pkg) and not list(folder.glob(".*"))


def test_refuses_missing_sidecar(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "android")
    (arts / f"{STEM}.tflite.json").unlink()
    with pytest.raises(BundleError, match="no sidecar"):
        bundle([arts / f"{STEM}.tflite"], "android", app_dir=app)


def test_refuses_failed_verification_unless_forced(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "android")
    tfl = arts / f"{STEM}.tflite"
    edit_sidecar(tfl, status="failed", verified=False, problems=["parity 20.1 dB < 50 dB"])
    with pytest.raises(BundleError, match="verification failed .parity 20.1 dB"):
        bundle([tfl], "android", app_dir=app)
    _, index = bundle([tfl], "android", app_dir=app, force=True)
    assert index["models"][0]["verified"] is False


def test_refuses_format_the_app_cannot_run(arts: Path, tmp_path: Path) -> None:
    android, ios = app_copy(tmp_path, "android"), app_copy(tmp_path, "ios")
    with pytest.raises(BundleError, match="android app cannot run coreml"):
        bundle([fake_mlpackage(arts)], "android", app_dir=android)
    with pytest.raises(BundleError, match="ios app cannot run tflite"):
        bundle([arts / f"{STEM}.tflite"], "ios", app_dir=ios)


@pytest.mark.parametrize("bad", ["../evil.tflite", "/etc/evil.tflite", "sub/evil.tflite", ".."])
def test_refuses_names_that_escape(arts: Path, tmp_path: Path, bad: str) -> None:
    app = app_copy(tmp_path, "android")
    tfl = arts / f"{STEM}.tflite"
    side = tfl.with_name(tfl.name + ".json")
    doc = json.loads(side.read_text())
    doc["artifact"]["file"] = bad
    side.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="escape the model folder"):
        bundle([tfl], "android", app_dir=app)
    with pytest.raises(BundleError, match="escape the model folder"):
        bundle([arts / ".."], "android", app_dir=app)
    assert not models_dir("android", app).exists()


def test_refuses_changed_artifact(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "android")
    tfl = arts / f"{STEM}.tflite"
    tfl.write_bytes(tfl.read_bytes()[:-1])
    with pytest.raises(BundleError, match="sha256"):
        bundle([tfl], "android", app_dir=app)


def test_nothing_half_copied(arts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_copy(tmp_path, "android")
    tfl, pte = arts / f"{STEM}.tflite", arts / f"{STEM}.pte"
    folder, _ = bundle([tfl], "android", app_dir=app)
    before = snapshot(folder)
    (pte.with_name(pte.name + ".json")).unlink()  # second artifact refused: the first must not be copied either
    with pytest.raises(BundleError):
        bundle([tfl, pte], "android", app_dir=app)
    assert snapshot(folder) == before
    (arts / f"{STEM}.tflite.json").write_text((folder / f"{STEM}.tflite.json").read_text())
    calls = []

    def flaky_copy(src, dst, *a, **k):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        return shutil.copyfile(src, dst)

    monkeypatch.setattr(bundle_mod.shutil, "copy2", flaky_copy)
    tfl.write_bytes(tfl.read_bytes())
    with pytest.raises(OSError, match="disk full"):
        bundle([tfl], "android", app_dir=app, default=f"{STEM}-litert")
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_cli_refusal_is_one_line_exit_2(arts: Path, tmp_path: Path) -> None:
    app = app_copy(tmp_path, "android")
    res = CliRunner().invoke(main, ["bundle", str(arts / f"{STEM}.tflite"), "--app", "android", "--app-dir", str(app),
                                    "--default", "nope"])
    assert res.exit_code == 2 and "--default nope: no such model" in res.output
