"""The weights that ship in the package reach the figures the README and their manifests claim."""

from __future__ import annotations

import pytest

from mobile_sr.data.datasets import load_benchmark
from mobile_sr.models import create_model, manifest, shipped_scales
from mobile_sr.train.evaluate import evaluate

# The floor to resolve the foundation issue (Set5, Set14), and ELSR's "bicubic + 2.5 dB" at x2.
FLOORS = {("fsrcnn", 2): (36.5, 32.2), ("fsrcnn", 4): (30.2, 27.1), ("elsr", 2): (33.67 + 2.5, None)}
SHIPPED = [(name, s) for name in ("fsrcnn", "elsr") for s in shipped_scales(name)]


def test_the_required_weights_ship():
    for name, scale in [("fsrcnn", 2), ("fsrcnn", 4), ("elsr", 2), ("elsr", 4)]:
        assert (name, scale) in SHIPPED, f"{name} x{scale} weights are missing from mobile_sr/models/weights"


@pytest.mark.parametrize("name,scale", SHIPPED)
def test_shipped_model_matches_manifest_on_set5(name, scale):
    man = manifest(name, scale)
    for key in ("command", "steps", "wall_minutes", "data", "eval"):
        assert key in man, key
    res = evaluate(create_model(name, scale), load_benchmark("Set5", scale), scale)
    assert res.psnr == pytest.approx(man["eval"]["Set5"]["psnr"], abs=0.01)
    assert res.ssim == pytest.approx(man["eval"]["Set5"]["ssim"], abs=1e-3)
    floor = FLOORS.get((name, scale))
    if floor:
        assert res.psnr >= floor[0]


@pytest.mark.parametrize("name,scale", [k for k in FLOORS if k in SHIPPED and FLOORS[k][1]])
def test_shipped_model_set14_floor(shared_benchmark, name, scale):
    res = evaluate(create_model(name, scale), load_benchmark("Set14", scale, shared_benchmark), scale, with_ssim=False)
    assert res.psnr >= FLOORS[(name, scale)][1]
    assert res.psnr == pytest.approx(manifest(name, scale)["eval"]["Set14"]["psnr"], abs=0.01)
