"""Model shapes, cost accounting and safe checkpoint loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from mobile_sr.core.weights import write_weights
from mobile_sr.data.datasets import load_benchmark
from mobile_sr.evaluation import evaluate, pipeline_for
from mobile_sr.models import DEFAULT_MODEL, MODELS, ROLES, ModelError, create_model, load_model
from mobile_sr.models.deploy import deploy, profile
from mobile_sr.models.fsrcnn import FSRCNN, init_bicubic

PAIR_CONFIG = {"downscaler": {"model": "bicubic"}, "upscaler": {"model": "elsr", "config": {"width": 16}}}


def _build(name: str, scale: int) -> torch.nn.Module:
    return create_model(name, scale, pretrained=False, **(PAIR_CONFIG if MODELS[name].role == "pair" else {}))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_models_map_rgb_to_scaled_rgb(name, scale):
    """Every MODELS entry does what its declared role says, at every scale it can take."""
    if name.startswith("ofa") and scale == 3:  # PixelShuffle stages of 2: x2 and x4 only, said plainly
        with pytest.raises(ValueError, match="scale must be one of"):
            create_model(name, scale, pretrained=False)
        return
    model = _build(name, scale)
    x = torch.rand(1, 3, 17 * scale, 23 * scale)
    role = MODELS[name].role
    if role == "upscaler":
        assert model(x[..., :17, :23]).shape == (1, 3, 17 * scale, 23 * scale)
    elif role == "downscaler":
        assert model(x).shape == (1, 3, 17, 23)
    else:  # a pair: its downscaler's LR is what its upscaler restores
        assert model.upscaler(model.downscaler(x)).shape == x.shape


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_declares_its_role_config_and_weights(name):
    spec = MODELS[name]
    assert spec.name == name and spec.role in ROLES and spec.description
    model = _build(name, 2)
    assert isinstance(model.config(), dict) and model.scale == 2
    rebuilt = create_model(name, 2, pretrained=False, **model.config())  # the config rebuilds the same module
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    for scale in spec.shipped_scales():  # shipped weights: a manifest that says what they are
        man = spec.manifest(scale)
        assert man is not None and man["model"] == name, (name, scale)
        assert man.get("scale", scale) == scale or scale in man.get("scales", [])
        declared = load_model(name, scale)
        assert (declared.name, declared.role, declared.scale) == (name, spec.role, scale)
        deployed = deploy(declared)
        assert deployed.deployed and deploy(deployed) is deployed
    if spec.weights == "none":
        assert spec.shipped_scales() == [] and spec.manifest(2) is None


def test_a_downscaler_takes_a_fractional_factor():
    down = create_model("bicubic", 2.5)
    assert down(torch.rand(1, 3, 50, 40)).shape == (1, 3, 20, 16)
    with pytest.raises(ValueError, match=">= 1"):
        create_model("bicubic", 0.5)


def test_a_pair_round_trips_through_one_manifest_and_is_evaluated_as_a_pipeline(tmp_path):
    """bicubic down + the shipped ELSR x2: one file, one manifest; scored HR -> 8-bit LR -> SR. Its LR matches
    the published MATLAB LR (MATLAB rounds between the passes, so not exactly) and its SR stays within
    0.05 dB of ELSR on the published LR files."""
    pair = _build("pair", 2)
    pair.upscaler.load_state_dict(create_model("elsr", 2).state_dict())
    write_weights(pair, {"model": "pair", "scale": 2, "config": pair.config()}, tmp_path / "p.safetensors")
    loaded = load_model(tmp_path / "p.safetensors")
    assert loaded.role == "pair" and loaded.downscaler is not None
    res = evaluate(pipeline_for(loaded), load_benchmark("Set5", 2))
    published = evaluate(pipeline_for(load_model("elsr", 2)), load_benchmark("Set5", 2))
    assert res.lr_psnr > 50 and published.lr_psnr is None
    assert abs(res.psnr - published.psnr) < 0.05
    with pytest.raises(ModelError, match="brings its own downscaler"):
        pipeline_for(loaded, downscaler="bicubic")


def test_fsrcnn_settings_and_profile_match_hand_count():
    m = create_model("fsrcnn", 2, pretrained=False)
    assert (m.d, m.s, m.m) == (56, 12, 4)
    s = create_model("fsrcnn-s", 2, pretrained=False)
    assert (s.d, s.s, s.m) == (32, 5, 1)
    # Per LR pixel: 5x5x3x56 + 56x12 + 4 x 3x3x12x12 + 12x56 + 9x9x56x3 (deconv scatter), / 4 HR pixels.
    per_lr = 25 * 3 * 56 + 56 * 12 + 4 * 9 * 144 + 12 * 56 + 81 * 56 * 3
    assert profile(m, 2).macs_per_output_pixel == pytest.approx(per_lr / 4)
    prelu = 56 + 12 + 4 * 12 + 56
    weights = 25 * 3 * 56 + 56 + 56 * 12 + 12 + 4 * (9 * 144 + 12) + 12 * 56 + 56 + 81 * 56 * 3 + 3
    assert profile(m, 2).params == weights + prelu


def test_elsr_has_six_layers_five_with_weights():
    m = create_model("elsr", 4, pretrained=False)
    layers = [m.head, m.conv1, m.act, m.conv2, m.up, m.shuffle]
    assert sum(1 for layer in layers if any(True for _ in layer.parameters())) == 5
    assert m.up.out_channels == 3 * 16


def test_bicubic_init_starts_near_bicubic():
    from mobile_sr.data.datasets import load_benchmark
    from mobile_sr.evaluation import Pipeline, evaluate

    torch.manual_seed(0)  # the non-routed channels are random and add a little noise
    res = evaluate(Pipeline(init_bicubic(FSRCNN(2)).eval(), 2), load_benchmark("Set5", 2), with_ssim=False)
    assert 33.4 < res.psnr < 33.8  # bicubic itself is 33.67


def test_unknown_model_and_missing_weights_are_clear():
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        create_model("nope", 2)
    with pytest.raises(ModelError, match="no shipped weights for fsrcnn-s x3"):
        create_model("fsrcnn-s", 3)
    # The default model serves x2 and x4; at x3 the message names the upscaler that ships x3.
    x3 = rf"no shipped weights for {DEFAULT_MODEL} x3 .*x3 ships for: fsrcnn \(--model fsrcnn\)"
    with pytest.raises(ModelError, match=x3):
        create_model(DEFAULT_MODEL, 3)
    with pytest.raises(ModelError, match="neither a built-in model"):
        load_model("no/such/file.pt")


def test_checkpoint_round_trip_and_scale_check(tmp_path):
    model = create_model("elsr", 3, pretrained=False)
    write_weights(model, {"model": "elsr", "scale": 3, "config": model.config()}, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.rand(1, 3, 8, 8)
    assert loaded.name == "elsr" and loaded.role == "upscaler" and loaded.scale == 3
    assert torch.equal(loaded.module(x), model.eval()(x))
    with pytest.raises(ModelError, match="x3 model"):
        load_model(tmp_path / "m.safetensors", scale=2)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoints_are_never_unpickled(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"model": {}, "meta": {"model": "elsr", "scale": 2}, "x": _Evil()}, bad)
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_model(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(ModelError):
        load_model(junk)


def _run_folder(tmp_path: Path, doc: object) -> Path:
    """A run folder with real ELSR weights and ``doc`` as its model.json (valid JSON, possibly the wrong shape)."""
    folder = tmp_path / "run"
    model = create_model("elsr", 2, pretrained=False)
    write_weights(model, {"model": "elsr", "scale": 2, "config": model.config()}, folder.with_suffix(".tmp"))
    folder.mkdir()
    folder.with_suffix(".tmp").rename(folder / "model.safetensors")
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


ELSR_META = {"model": "elsr", "scale": 2, "config": {"width": 16}}


@pytest.mark.parametrize("doc,message", [
    ([1, 2], "its metadata is not a mobile-sr model description"),
    ("elsr", "its metadata is not a mobile-sr model description"),
    ({**ELSR_META, "scale": "two"}, "scale 'two' in its metadata is not a number"),
    ({**ELSR_META, "scale": None}, "scale None in its metadata is not a number"),
    ({**ELSR_META, "scale": True}, "scale True in its metadata is not a number"),
    ({**ELSR_META, "scale": 0}, "scale 0 in its metadata is not a scale"),
    ({**ELSR_META, "scale": -2}, "scale -2 in its metadata is not a scale"),
    ({**ELSR_META, "model": ["elsr"]}, "unknown model ['elsr']"),
    ({**ELSR_META, "model": {"name": "elsr"}}, "unknown model {'name': 'elsr'}"),
    ({**ELSR_META, "config": [16]}, "its metadata is not a mobile-sr model description"),
    ({**ELSR_META, "config": {"width": -1}}, "its config does not build elsr"),
    ({**ELSR_META, "config": {"width": "wide"}}, "its config does not build elsr"),
    ({**ELSR_META, "config": {"depth": 3}}, "its config does not build elsr"),
])
def test_a_wrong_model_json_is_one_model_error(tmp_path, doc, message):
    """Issue 12 item 12: valid JSON of the wrong shape gave a traceback (a list, "scale": "two", a list as the
    model name, a negative width); every such file is a ModelError naming it, in every loader."""
    from mobile_sr.models import load_supernet

    folder = _run_folder(tmp_path, doc)
    with pytest.raises(ModelError) as e:
        load_model(folder)
    assert str(e.value).startswith(f"{folder / 'model.safetensors'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError):
        load_supernet(folder)


SET5 = Path(__file__).resolve().parent.parent / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2"
LOADERS = {  # every command that loads a model (MODEL is the run folder, OUT a path it must not create)
    "eval": ["eval", "--model", "MODEL", "--json", "OUT"],
    "upscale": ["upscale", str(SET5 / "LR" / "img_001.png"), "-o", "OUT.png", "--model", "MODEL"],
    "export": ["export", "--target", "onnx", "--model", "MODEL", "-o", "OUT"],
    "bench": ["bench", "MODEL", "--no-psnr", "--runs", "1", "--warmup", "0", "--json", "OUT"],
    "search": ["search", "--scale", "2", "--latency-ms", "50", "--supernet", "MODEL", "-o", "OUT"],
    "train": ["train", "--model", "elsr", "--data", str(SET5 / "HR"), "--init-from", "MODEL", "--out", "OUT",
              "--steps", "1", "--no-progress"],
}


@pytest.mark.parametrize("doc", [[1, 2], {**ELSR_META, "scale": "two"}])
@pytest.mark.parametrize("command", list(LOADERS))
def test_every_cli_that_loads_a_model_says_so_in_one_line(tmp_path, doc, command):
    from click.testing import CliRunner

    from mobile_sr.cli import main

    folder = _run_folder(tmp_path, doc)
    args = [{"MODEL": str(folder), "OUT": str(tmp_path / "out"), "OUT.png": str(tmp_path / "out.png")}.get(a, a)
            for a in LOADERS[command]]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {folder / 'model.safetensors'}: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out.png").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_malicious_pickle_is_refused_without_advice_to_unpickle_it(tmp_path):
    """Issue 12 item 12: torch's message says to retry with weights_only=False, which would run the file's code;
    the error line names what the pickle imports and never passes that advice on. The code never runs."""
    from click.testing import CliRunner

    from mobile_sr.cli import main

    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pt"
    torch.save({"model": _Mkdir(str(marker)), "meta": {"model": "elsr", "scale": 2}}, bad)
    r = CliRunner().invoke(main, ["eval", "--model", str(bad)])
    assert r.exit_code == 2
    assert r.stderr == (f"error: {bad}: cannot read checkpoint: refused, it is a pickle that imports posix.mkdir, "
                        "which could run code; mobile-sr loads checkpoints as data only (tensors, numbers, text)\n")
    assert "weights_only" not in r.output and not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ModelError, match=r"cannot read checkpoint \(corrupt, or not a PyTorch file\)$"):
        load_model(junk)


class _Mkdir:
    """Unpickling this runs os.mkdir(path): the proof that a loader ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))
