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

# Every test bundles a real export (about 20 s on two busy cores, once per module).
pytestmark = [pytest.mark.slow, pytest.mark.extras("tflite", "executorch")]

REPO = Path(__file__).resolve().parent.parent
STEM = "elsr_x2_64x64_fp32"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real, small, verified export (.tflite and .pte with sidecars), as a user bundles it."""
    out = tmp_path_factory.mktemp("exports")
    res = CliRunner().invoke(main, ["export", "--target", "tflite,executorch", "--model", "elsr", "--input-size",
                                    "64x64", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def unverified(tmp_path_factory) -> Path:
    """The same .tflite exported with --no-verify (its sidecar says status "skipped")."""
    out = tmp_path_factory.mktemp("unverified")
    res = CliRunner().invoke(main, ["export", "--target", "tflite", "--model", "elsr", "--input-size", "64x64",
                                    "--no-verify", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out / f"{STEM}.tflite"


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


def test_a_boolean_schema_version_is_refused_exit_2(arts: Path, tmp_path: Path) -> None:
    """JSON's true is not the integer 1 (Python's True == 1 is): the schema check refuses it, and nothing is written."""
    side = arts / f"{STEM}.tflite.json"
    doc = json.loads(side.read_text())
    doc["schema_version"] = True
    side.write_text(json.dumps(doc))
    app = app_copy(tmp_path, "android")
    before = snapshot(app)
    res = CliRunner().invoke(main, ["bundle", str(arts / f"{STEM}.tflite"), "--app", "android", "--app-dir", str(app)])
    assert res.exit_code == 2, res.output
    assert res.stderr == f"error: {STEM}.tflite: sidecar {side.name} does not match sidecar.schema.json: " \
                         "$.schema_version: 1 was expected\n"
    assert snapshot(app) == before


def test_refuses_an_unverified_artifact_unless_forced_and_never_makes_it_the_default(
        arts: Path, unverified: Path, tmp_path: Path) -> None:
    """Issue 12 item 11: a --no-verify artifact (status "skipped") went in without --force, as the app's default."""
    app = app_copy(tmp_path, "android")
    folder = models_dir("android", app)
    res = CliRunner().invoke(main, ["bundle", str(unverified), "--app", "android", "--app-dir", str(app)])
    assert res.exit_code == 2
    assert res.stderr == (f"error: {STEM}.tflite: not verified (exported with --no-verify); export it again without "
                          "--no-verify, or pass --force to bundle it anyway\n")
    assert not folder.exists() or not any(folder.iterdir())
    pte = arts / f"{STEM}.pte"  # verified
    _, index = bundle([unverified, pte], "android", app_dir=app, force=True)
    assert index["default"] == f"{STEM}-executorch", "the verified model is the default, not the forced one"
    assert {e["name"]: e["verified"] for e in index["models"]} == {f"{STEM}-litert": False,
                                                                     f"{STEM}-executorch": True}
    alone = app_copy(tmp_path / "alone", "android")
    _, index = bundle([unverified], "android", app_dir=alone, force=True)
    assert index["default"] == f"{STEM}-litert"  # the only model there is: forced, and so chosen


def test_refuses_a_folder_or_links_where_a_file_belongs(arts: Path, tmp_path: Path) -> None:
    """Issue 12 item 12: a symlinked folder named x.tflite (its sidecar forged to match) was copied into the app,
    with whatever it pointed at; an .mlpackage must hold no links either."""
    app, ios = app_copy(tmp_path, "android"), app_copy(tmp_path, "ios")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("private")
    link = arts / "evil.tflite"
    link.symlink_to(secret, target_is_directory=True)
    doc = json.loads((arts / f"{STEM}.tflite.json").read_text())
    doc["artifact"].update(file=link.name, sha256=digest(link))
    (arts / f"{link.name}.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["bundle", str(link), "--app", "android", "--app-dir", str(app)])
    assert res.exit_code == 2
    assert res.stderr == "error: evil.tflite: a folder (or a link to one), not a tflite file\n"
    assert not models_dir("android", app).exists() or not any(models_dir("android", app).iterdir())
    pkg = fake_mlpackage(arts)
    (pkg / "Data" / "key").symlink_to(secret / "id_rsa")
    side = arts / f"{pkg.name}.json"
    doc = json.loads(side.read_text())
    doc["artifact"]["sha256"] = digest(pkg)
    side.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"holds a symbolic link \(Data/key\)"):
        bundle([pkg], "ios", app_dir=ios)
    (pkg / "Data" / "key").unlink()
    linked = arts / f"linked_{pkg.name}"
    linked.symlink_to(pkg, target_is_directory=True)
    doc["artifact"].update(file=linked.name, sha256=digest(pkg))
    (arts / f"{linked.name}.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="not a .mlpackage folder"):
        bundle([linked], "ios", app_dir=ios)
    assert not models_dir("ios", ios).exists() or not any(models_dir("ios", ios).iterdir())


def test_cli_write_failure_is_one_line_exit_1(arts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while copying into the app is one `error:` line with exit code 1, and the app is unchanged."""
    app = app_copy(tmp_path, "android")

    def full(src, dst, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_mod.shutil, "copy2", full)
    res = CliRunner().invoke(main, ["bundle", str(arts / f"{STEM}.tflite"), "--app", "android", "--app-dir", str(app)])
    assert res.exit_code == 1
    assert res.stderr == "error: cannot write into the android app: [Errno 28] No space left on device\n"
    folder = models_dir("android", app)
    assert not folder.exists() or not any(folder.iterdir())
