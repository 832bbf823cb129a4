"""The export stage's pieces without converters: calibration set, argument parsing, sidecar schema,
range equalization."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mobile_sr.data.calib import CALIB_DIR, CalibError, cut_crops, fit, load_calib
from mobile_sr.data.images import read_rgb
from mobile_sr.export import FORMATS, ExportError, parse_size, parse_targets, precision_for
from mobile_sr.export.dfq import correct_bias
from mobile_sr.export.sidecar import SCHEMA_PATH, load_schema, validate
from mobile_sr.models import create_model
from mobile_sr.models.fsrcnn import init_bicubic
from mobile_sr.models.quant import _chains, equalize, fake_quant_weight

# --- calibration ------------------------------------------------------------------------------------


def test_shipped_calibration_set_is_small_real_and_spans_the_input_range():
    calib = load_calib()
    assert calib.builtin and 16 <= len(calib.names) <= 32
    assert sum(p.stat().st_size for p in CALIB_DIR.iterdir()) < 1_000_000
    assert (CALIB_DIR / "README.md").exists()
    assert all(n.startswith(("t91_", "bsd200_")) for n in calib.names)  # training sets only, no benchmark image
    pixels = torch.stack(calib.images)
    assert pixels.dtype == torch.uint8 and pixels.min() == 0 and pixels.max() == 255  # int8 inputs get 1/255
    assert calib.sha256 == load_calib(CALIB_DIR).sha256


def test_a_large_calibration_photo_is_kept_as_8_bit_centre_crop(tmp_path):
    """A phone photo is kept as its centre 2048 px square in uint8 (12.6 MB), not whole in float32, and the
    batch cut from it is the one the whole image gives."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2500, 3000, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    calib = load_calib(tmp_path)
    (kept,) = calib.images
    assert kept.dtype == torch.uint8 and tuple(kept.shape) == (3, 2048, 2048)
    whole = read_rgb(tmp_path / "photo.png")
    assert torch.allclose(calib.batch(256, 192)[0], fit(whole, 256, 192), atol=1e-6)


def test_calibration_hash_changes_with_any_image(tmp_path):
    for p in sorted(CALIB_DIR.glob("*.png"))[:3]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    before = load_calib(tmp_path).sha256
    img = np.asarray(Image.open(tmp_path / sorted(CALIB_DIR.glob("*.png"))[0].name)).copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(tmp_path / sorted(CALIB_DIR.glob("*.png"))[0].name)
    assert load_calib(tmp_path).sha256 != before


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt"])
def test_bad_calibration_folders_fail_with_a_fix(tmp_path, case):
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "corrupt":
        (folder / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(CalibError, match="calib"):
        load_calib(folder)


def test_fit_crops_large_and_mirrors_small_images():
    img = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12)
    assert torch.equal(fit(img, 4, 6), img[:, 3:7, 3:9])
    big = fit(img, 30, 40)
    assert big.shape == (3, 30, 40)
    assert torch.equal(big[:, 10:20, 14:26], img)  # the original sits in the middle
    assert torch.equal(big[:, 9, 14:26], img[:, 0])  # mirrored: the first padded row repeats the edge row


def test_native_calibration_holds_each_pixel_once(tmp_path):
    """PT2E calibrates on ``native``: the batch's pixels without the mirrored repeats, nothing cropped away."""
    calib = load_calib()
    native, batch = calib.native(256, 256), calib.batch(256, 256)
    assert len(native) == len(batch) and all(x.shape == (3, 96, 96) for x in native)
    assert all(torch.equal(x, b[:, 80:176, 80:176]) for x, b in zip(native, batch, strict=True))  # the mirror centre
    assert [x.shape for x in calib.native(64, 200)] == [(3, 64, 96)] * len(batch)  # cropped where the batch crops
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 280, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    big = load_calib(tmp_path)
    assert torch.equal(torch.stack(big.native(256, 256)), big.batch(256, 256))  # large enough: the batch itself
    assert big.native(4, 4)[0].shape == (3, 4, 4)


def test_shipped_crops_are_reproducible(shared_train, tmp_path):
    """cut_crops really is how the shipped set was made (names and pixels)."""
    made = cut_crops([shared_train / "T91", shared_train / "BSD200"], tmp_path)
    assert sorted(p.name for p in made) == load_calib().names
    for p in made:
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(CALIB_DIR / p.name)))


# --- arguments --------------------------------------------------------------------------------------


def test_targets_parse_repeated_comma_and_all():
    assert parse_targets(["onnx", "tflite,onnx"]) == ["tflite", "onnx"]  # table order, no duplicates
    assert parse_targets(["all"]) == list(FORMATS)
    with pytest.raises(ExportError, match="unknown target tfjs.*tflite, executorch, coreml, onnx, all"):
        parse_targets(["tfjs"])


@pytest.mark.parametrize("text,expected", [("256x256", (256, 256)), ("128", (128, 128)), ("96X160", (96, 160))])
def test_input_size_parses(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0x0", "8x8", "abc", "64x", "64x64x3", "-64x64", "9000x64"])
def test_input_sizes_the_export_cannot_take_are_rejected(text):
    with pytest.raises(ExportError, match="--input-size"):
        parse_size(text)


def test_precisions_follow_the_flags_and_the_format():
    assert precision_for(FORMATS["tflite"], False, False, False) == "fp32"
    assert precision_for(FORMATS["coreml"], False, False, False) == "fp16"  # Core ML's default
    assert precision_for(FORMATS["tflite"], True, False, True) == "int8io"
    assert precision_for(FORMATS["executorch"], True, False, False) == "int8"
    with pytest.raises(ExportError, match="onnx cannot export fp16"):
        precision_for(FORMATS["onnx"], False, True, False)
    with pytest.raises(ExportError, match="executorch cannot export int8io"):
        precision_for(FORMATS["executorch"], True, False, True)
    with pytest.raises(ExportError, match="exclude each other"):
        precision_for(FORMATS["tflite"], True, True, False)


# --- sidecar schema ---------------------------------------------------------------------------------


def _valid_doc() -> dict:
    tensor = {"name": "input", "shape": [1, 3, 64, 64], "layout": "NCHW", "dtype": "float32", "color_order": "RGB",
              "value_range": [0.0, 1.0], "quantization": None}
    return {
        "schema_version": 1,
        "artifact": {"file": "m.tflite", "format": "tflite", "precision": "int8io", "bytes": 10, "sha256": "a" * 64},
        "model": {"name": "elsr", "arch": "ELSR", "config": {"width": 6}, "scale": 2, "source": "elsr",
                  "clamp_output": True},
        "inputs": [dict(tensor, dtype="int8", quantization={"scale": 1 / 255, "zero_point": -128})],
        "outputs": [dict(tensor, shape=[1, 3, 128, 128])],
        "export": {"seconds": 1.5, "created": "2026-01-01T00:00:00+00:00", "tools": {"torch": "2.13.0"},
                   "min_runtime": None},
        "calibration": {"source": "builtin", "images": ["a.png"], "sha256": "b" * 64, "fitted_to": [64, 64],
                        "normalisation": "RGB / 255", "preparation": "equalization+bias-correction"},
        "verification": {"status": "passed", "verified": True, "runtime": "LiteRT", "parity_psnr_db": 45.0,
                         "set5_psnr_db": 36.0, "set5_fp32_psnr_db": 36.1,
                         "thresholds": {"parity_min_db": None, "int8_max_loss_db": 0.3},
                         "ops": {"total": 3, "delegated": 2, "outside": ["PRELU"], "source": "runtime"},
                         "problems": []},
    }


def test_schema_is_one_json_file_and_accepts_a_valid_sidecar():
    assert json.loads(SCHEMA_PATH.read_text())["title"] == "mobile-sr export sidecar"
    assert validate(_valid_doc()) == []


@pytest.mark.parametrize("path,value,message", [
    (("artifact", "precision"), "int4", "is not one of"),
    (("artifact", "sha256"), "xyz", "does not match"),
    (("inputs", 0, "layout"), "CHW", "is not one of"),
    (("inputs", 0, "quantization"), {"scale": 0.0, "zero_point": 0}, "not valid under any of the given schemas"),
    (("outputs", 0, "shape"), [1, 3, 128], "is too short"),
    (("model", "scale"), "2", "is not of type 'integer'"),
    (("verification", "verified"), 1, "is not of type 'boolean'"),
    (("verification", "ops"), {"total": 1}, "not valid under any of the given schemas"),
    (("calibration",), [], "not valid under any of the given schemas"),
    (("calibration", "preparation"), "dfq", "not valid under any of the given schemas"),
    (("schema_version",), 2, "1 was expected"),
    (("schema_version",), True, "1 was expected"),  # JSON's true is not 1, whatever Python's True == 1 says
])
def test_schema_rejects_broken_sidecars(path, value, message):
    doc = _valid_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = validate(doc)
    assert errors and any(message in e for e in errors), errors


def test_schema_rejects_missing_and_unknown_keys():
    doc = _valid_doc()
    del doc["verification"]["runtime"]
    doc["model"]["color"] = "RGB"
    errors = validate(doc)
    assert "$.verification: 'runtime' is a required property" in errors
    assert "$.model: Additional properties are not allowed ('color' was unexpected)" in errors


def test_every_schema_is_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    from mobile_sr.bench.report import SCHEMA_PATH as RESULTS
    from mobile_sr.bundle import MODELS_SCHEMA_PATH

    for path in (SCHEMA_PATH, RESULTS, MODELS_SCHEMA_PATH):
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path
        Draft202012Validator.check_schema(schema)
    broken = copy.deepcopy(load_schema())
    broken["properties"]["artifact"]["properties"]["bytes"]["minimum"] = "zero"  # not a number: a broken schema
    with pytest.raises(Exception, match="is not of type 'number'"):
        validate(_valid_doc(), broken)


# --- range equalization -----------------------------------------------------------------------------


def _conv_ranges(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    ranges = []
    hooks = [a.register_forward_hook(lambda m, i, o: ranges.append(o.abs().amax(dim=(0, 2, 3))))
             for a, _ in _chains(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return ranges


def test_equalization_keeps_the_function_and_evens_out_channel_ranges():
    torch.manual_seed(0)
    model = init_bicubic(create_model("fsrcnn", 2, pretrained=False))
    calib = torch.rand(4, 3, 24, 24)
    eq = equalize(model, calib)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(eq(x), model(x), atol=1e-5)
    before, after = _conv_ranges(model, calib), _conv_ranges(eq, calib)
    assert len(after) == 7  # FSRCNN: every conv -> PReLU -> conv(transpose) chain
    spread = [float(r.min() / r.max()) for r in before]
    assert min(spread) < 0.5  # channels differ before...
    assert all(torch.allclose(r, r.max().expand_as(r), rtol=1e-4) for r in after)  # ...not after
    assert model.body[0].weight.data_ptr() != eq.body[0].weight.data_ptr()  # the original is untouched


def test_equalization_leaves_skip_connections_alone():
    model = create_model("elsr", 2, pretrained=False)
    assert [(a, b) for a, b in _chains(model)] == [(model.conv1, model.conv2)]  # head feeds the skip: never scaled


def test_bias_correction_cancels_the_mean_shift_of_int8_weights():
    torch.manual_seed(0)
    float_net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ConvTranspose2d(8, 3, 4, stride=2))
    calib = torch.rand(6, 3, 20, 20) * 0.5 + 0.4  # a mean far from 0: rounding errors shift outputs

    def int8_weights(net: torch.nn.Module) -> torch.nn.Module:
        q = copy.deepcopy(net)
        with torch.no_grad():
            q[0].weight.copy_(fake_quant_weight(q[0].weight, 0))
            q[1].weight.copy_(fake_quant_weight(q[1].weight, 1))  # ConvTranspose2d: output channels are axis 1
        return q

    corrected = copy.deepcopy(float_net)
    correct_bias(corrected, calib)
    with torch.no_grad():
        ref = float_net[0](calib).mean(dim=(0, 2, 3))
        plain, fixed = int8_weights(float_net), int8_weights(corrected)
        assert torch.allclose(fixed[0](calib).mean(dim=(0, 2, 3)), ref, atol=1e-5)  # a conv: exact in the mean
        assert not torch.allclose(plain[0](calib).mean(dim=(0, 2, 3)), ref, atol=1e-5)
        # End to end (through the strided transposed conv, corrected on average over its phases):
        err_plain = (plain(calib).mean(dim=(0, 2, 3)) - float_net(calib).mean(dim=(0, 2, 3))).abs().max()
        err_fixed = (fixed(calib).mean(dim=(0, 2, 3)) - float_net(calib).mean(dim=(0, 2, 3))).abs().max()
    assert err_fixed < 0.2 * err_plain
    # On the converters' grid: re-rounding a rounded weight changes nothing.
    w = fake_quant_weight(float_net[0].weight, 0)
    assert torch.equal(fake_quant_weight(w, 0), w)
