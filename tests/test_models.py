"""Model shapes, cost accounting and safe checkpoint loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from mobile_sr.models import MODELS, ModelError, create_model, load_model, profile
from mobile_sr.models.fsrcnn import FSRCNN, init_bicubic
from mobile_sr.train.trainer import write_weights


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_models_map_rgb_to_scaled_rgb(name, scale):
    if name.startswith("ofa") and scale == 3:  # PixelShuffle stages of 2: x2 and x4 only, said plainly
        with pytest.raises(ValueError, match="scale must be one of"):
            create_model(name, scale, pretrained=False)
        return
    model = create_model(name, scale, pretrained=False)
    out = model(torch.rand(1, 3, 17, 23))
    assert out.shape == (1, 3, 17 * scale, 23 * scale)


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
    from mobile_sr.train.evaluate import evaluate

    torch.manual_seed(0)  # the non-routed channels are random and add a little noise
    res = evaluate(init_bicubic(FSRCNN(2)).eval(), load_benchmark("Set5", 2), 2, with_ssim=False)
    assert 33.4 < res.psnr < 33.8  # bicubic itself is 33.67


def test_unknown_model_and_missing_weights_are_clear():
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        create_model("nope", 2)
    with pytest.raises(ModelError, match="no shipped weights for fsrcnn-s x3"):
        create_model("fsrcnn-s", 3)
    with pytest.raises(ModelError, match="neither a built-in model"):
        load_model("no/such/file.pt")


def test_checkpoint_round_trip_and_scale_check(tmp_path):
    model = create_model("elsr", 3, pretrained=False)
    write_weights(model, {"model": "elsr", "scale": 3, "config": model.config()}, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
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
