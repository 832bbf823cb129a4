"""``upscale``/``eval --runtime``: every installed runtime gives PyTorch's output to 1/255 (its figures to 0.01 dB),
a runtime that is not installed is one line naming the pip extra, and the artifact cache is reused and repaired."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import eval_cmd, main, upscale
from mobile_sr.data.images import read_rgb
from mobile_sr.export import runtime as rt
from mobile_sr.inference import at_fixed_size, fixed_tile, upscale_tiled
from mobile_sr.models import DEFAULT_MODEL, create_model, load_model
from mobile_sr.models.deploy import ExportWrapper, deploy

from .conftest import REPO

LR = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "LR"
BABY, BIRD = LR / "img_001.png", LR / "img_005.png"  # 256x256 and 172 rows x 114 columns


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory) -> Path:
    """One artifact cache for this module's tests (never the user's ~/.cache); the cache tests use their own."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOBILE_SR_CACHE", str(folder))
        yield folder


def levels(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy().astype(int)


def max_level_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int(np.abs(levels(a) - levels(b)).max())


RUNTIMES = [pytest.param("onnx", marks=pytest.mark.extras("onnx")),
            pytest.param("tflite", marks=[pytest.mark.extras("tflite"), pytest.mark.slow]),
            pytest.param("executorch", marks=[pytest.mark.extras("executorch"), pytest.mark.slow])]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_matches_torch_to_a_level(runtime):
    """ELSR on a real non-square image: tiles of 64 (windows moved inside the image at the right and bottom) and of
    256 (the image is smaller than the window: one window of its own size). Every output byte within one level."""
    torch.set_num_threads(1)
    model = load_model("elsr", 2)
    lr = read_rgb(BIRD)
    for tile in (64, 256):
        runner = rt.runtime_upscaler(model, runtime, tile=tile)
        with torch.inference_mode():
            ref = upscale_tiled(deploy(model).upscaler, lr, 2, tile=tile)
            out = runner.tiled(lr, torch.uint8)
        assert out.dtype == torch.uint8 and out.shape == ref.shape == (3, 344, 228)
        assert np.abs(out.numpy().astype(int) - levels(ref)).max() <= 1, (runtime, tile)
        assert runner.sessions.keys() == {(80, 80) if tile == 64 else (172, 114)}
        assert runner(lr[None]).shape == (1, 3, 344, 228)  # the float Upscale a Pipeline takes


def test_padding_tiles_to_the_fixed_size_would_not_match():
    """Why the runner tiles the image itself: edge-padding the border tiles to the artifact's size (at_fixed_size)
    moves border pixels far more than a level, while windows kept inside the image match (here both in PyTorch)."""
    net = ExportWrapper(deploy(load_model("elsr", 2)).upscaler).eval()
    lr = read_rgb(BIRD)
    ref = upscale_tiled(net, lr, 2, tile=64)
    padded = upscale_tiled(at_fixed_size(net, 80, 80, 2), lr, 2, tile=fixed_tile(80, 80))
    assert max_level_diff(padded, ref) > 5
    inside = rt.Runner("elsr", net, 2, "onnx", tile=64)
    inside.sessions[(80, 80)] = lambda x: net(torch.from_numpy(x)).detach().numpy()
    assert max_level_diff(inside(lr[None])[0], ref) == 0


@pytest.mark.parametrize("n", [1, 5, 79, 80, 81, 100, 160, 161, 257])
@pytest.mark.parametrize("window,overlap", [(80, 8), (32, 8), (17, 8), (10, 0)])
def test_spans_tile_the_side_with_context(n, window, overlap):
    window = min(window, n)
    spans = rt.spans(n, window, overlap)
    assert [s[1] for s in spans] == [0] + [s[2] for s in spans[:-1]] and spans[-1][2] == n  # cores tile [0, n)
    for start, top, bottom in spans:
        assert 0 <= start <= top < bottom <= start + window <= n  # a full window, inside the side
        assert top - start >= overlap or start == 0  # context before the core, or the image's own border
        assert start + window - bottom >= overlap or start + window == n


@pytest.mark.extras("onnx", "tflite", "executorch")
def test_default_model_upscales_on_the_fastest_runtime_like_torch(tmp_path, cache):
    """The user's command: the default model and runtime (auto: the one that ran a window fastest, timed once) against
    --runtime torch, PNG bytes."""
    fast = CliRunner().invoke(main, ["upscale", str(BABY), "-o", str(tmp_path / "fast.png")])
    eager = CliRunner().invoke(main, ["upscale", str(BABY), "-o", str(tmp_path / "eager.png"), "--runtime", "torch"])
    assert fast.exit_code == 0 and eager.exit_code == 0, fast.output + eager.output
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("fast", "eager"))
    assert a.shape == b.shape == (512, 512, 3) and np.abs(a - b).max() <= 1
    (kept,) = cache.glob(f"runtime/fastest_{DEFAULT_MODEL}_x2_272x272_*.json")
    doc = json.loads(kept.read_text())
    cost = {r: doc["startup_ms"].get(r, 0.0) + doc["windows"] * ms for r, ms in doc["ms"].items()}
    assert set(doc["ms"]) == set(rt.RUNTIMES) and doc["runtime"] == min(cost, key=cost.get)  # start-up included
    assert f"{rt.NAMES[doc['runtime']]} " in fast.output and "of it exporting, once" in fast.output
    again = CliRunner().invoke(main, ["upscale", str(BABY), "-o", str(tmp_path / "again.png")])
    # The choice and the artifacts came from the cache: nothing is timed or exported again, and the output is the same.
    assert "exporting" not in again.output
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "fast.png").read_bytes()


def test_auto_with_only_pytorch_installed_times_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(rt, "installed", lambda: ["torch"])
    runner = rt.runtime_upscaler(load_model("elsr", 2), "auto")
    assert runner.runtime == "auto" and runner.describe() == "auto (no image ran)"  # picked at the first image
    runner.tiled(read_rgb(BIRD), torch.uint8)
    assert runner.runtime == "torch" and runner.choice is not None and runner.choice.ms == {}
    assert "auto" not in runner.describe()


@pytest.mark.slow
@pytest.mark.extras("tflite", "executorch")
@pytest.mark.parametrize("runtime", ["tflite", "executorch"])
def test_default_model_on_the_other_runtimes(runtime):
    torch.set_num_threads(1)
    model = load_model(DEFAULT_MODEL, 2)
    lr = read_rgb(BABY)[:, :200, :]  # 200 rows: the last window is moved inside the image
    with torch.inference_mode():
        ref = upscale_tiled(deploy(model).upscaler, lr, 2, tile=128)
        out = rt.runtime_upscaler(model, runtime, tile=128).tiled(lr, torch.uint8)
    assert np.abs(out.numpy().astype(int) - levels(ref)).max() <= 1


def _eval(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"e{len(list(tmp_path.iterdir()))}.json"
    r = CliRunner().invoke(main, ["eval", *args, "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[-1].startswith("runtime: ")
    return json.loads(out.read_text())


@pytest.mark.extras("onnx")
@pytest.mark.parametrize("spec", ["elsr", "PAIR"])
def test_eval_figures_on_onnx_equal_torch(tmp_path, pair_ckpt, spec):
    spec = str(pair_ckpt) if spec == "PAIR" else spec
    onnx, eager = (_eval(tmp_path, "--model", spec, "--runtime", r) for r in ("onnx", "torch"))
    for a, b in zip(onnx["images"], eager["images"], strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=0.01) and a["ssim"] == pytest.approx(b["ssim"], abs=1e-4)
    assert onnx["mean_psnr"] == pytest.approx(eager["mean_psnr"], abs=0.01)


def test_a_runtime_that_is_not_installed_is_one_line(monkeypatch, tmp_path):
    real = rt.importlib.util.find_spec
    monkeypatch.setattr(rt.importlib.util, "find_spec", lambda name, package=None: None if name in ("onnxruntime", "tensorflow",
                                                                                        "executorch") else real(name, package))
    assert rt.installed() == ["torch"]
    for cmd, extra in [(["upscale", str(BABY), "-o", str(tmp_path / "o.png")], "onnx"), (["eval"], "tflite")]:
        runtime = "onnx" if extra == "onnx" else "tflite"
        r = CliRunner().invoke(main, [*cmd, "--runtime", runtime])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.output, r.output
        assert r.stderr.startswith("error: --runtime ") and f"pip install 'mobile-sr[{extra}]'" in r.stderr, r.stderr
    assert not (tmp_path / "o.png").exists()
    r = CliRunner().invoke(main, ["eval", "--model", "bicubic", "--runtime", "onnx"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --runtime onnx: 'bicubic'"), r.output
    assert CliRunner().invoke(main, ["eval", "--model", "bicubic", "--runtime", "torch"]).exit_code == 0


def test_the_cli_offers_every_runtime():
    for cmd in (upscale, eval_cmd):
        (opt,) = [p for p in cmd.params if p.name == "runtime"]
        assert tuple(opt.type.choices) == ("auto", *rt.RUNTIMES) and opt.default == "auto"


@pytest.mark.extras("onnx")
def test_the_cache_is_reused_and_a_corrupt_entry_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBILE_SR_CACHE", str(tmp_path))
    model = load_model("elsr", 2)
    lr = read_rgb(BIRD)[:, :60, :70]

    def run() -> tuple[rt.Runner, torch.Tensor]:
        runner = rt.runtime_upscaler(model, "onnx", tile=48)
        return runner, runner.tiled(lr, torch.uint8)

    first, want = run()
    (artifact,) = (tmp_path / "runtime").glob("*.onnx")
    assert first.exports == 1 and artifact.name.startswith("elsr_x2_60x64_fp32_")
    second, out = run()
    assert second.exports == 0 and torch.equal(out, want)  # a second call does not export again
    artifact.write_bytes(artifact.read_bytes()[:100])  # truncated: the digest no longer matches
    third, out = run()
    assert third.exports == 1 and torch.equal(out, want)
    artifact.write_bytes(b"not an onnx file")  # with a digest that vouches for it: its runtime rejects it
    (tmp_path / "runtime" / (artifact.name + ".sha256")).write_text(rt.sha256(artifact))
    fourth, out = run()
    assert fourth.exports == 1 and torch.equal(out, want)
    assert sorted(p.name for p in (tmp_path / "runtime").iterdir()) == [artifact.name, artifact.name + ".sha256"]


def test_the_cache_key_follows_the_weights_and_the_size():
    a, b = create_model("elsr", 2, pretrained=False), create_model("elsr", 2, pretrained=False)
    b.load_state_dict(a.state_dict())
    assert rt.model_hash(a, 2, "onnx") == rt.model_hash(b, 2, "onnx") != rt.model_hash(a, 2, "tflite")
    with torch.no_grad():
        next(b.parameters())[0].flatten()[0] += 1e-6
    assert rt.model_hash(a, 2, "onnx") != rt.model_hash(b, 2, "onnx")


@pytest.mark.extras("onnx")
def test_an_unwritable_cache_falls_back_to_a_temporary_folder(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MOBILE_SR_CACHE", str(tmp_path / "file"))  # its runtime/ folder cannot be made
    runner = rt.runtime_upscaler(load_model("elsr", 2), "onnx", tile=None)
    assert runner.tiled(read_rgb(BIRD)[:, :40, :40], torch.uint8).shape == (3, 80, 80) and runner.exports == 1
