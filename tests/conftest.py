"""Shared test fixtures: where ``../shared/datasets`` is (and a skip when it is absent), and the x2 models the
export tests convert."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mobile_sr.models import create_model, weights_path
from mobile_sr.models.fsrcnn import init_bicubic

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "datasets"

# What each pip extra must bring for its tests (pyproject.toml's optional-dependencies).
EXTRA_MODULES = {
    "onnx": ("onnx", "onnxruntime"),
    "tflite": ("onnx", "onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert"),
    "executorch": ("executorch", "torchao"),
    "coreml": ("coremltools", "executorch"),
    "video": ("av",),
    "bench": ("matplotlib",),
    "dev": ("tree_sitter",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "extras(*names): needs these pip extras; skipped with the install line without")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``extras(...)`` before its fixtures run when an extra is not installed: a plain
    ``pip install -e .`` gives a green, smaller run, never an ImportError."""
    for mark in item.iter_markers("extras"):
        for extra in mark.args:
            missing = [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
            if missing:
                pytest.skip(f"needs the {extra} extra ({', '.join(missing)} not installed): "
                            f"pip install -e '.[{extra}]'")


def shared_or_skip(*parts: str) -> Path:
    """A path under ``../shared/datasets``, or skip: a user's clone has no shared datasets."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: these tests need ../shared/datasets beside the checkout (CI has it)")
    return path


@pytest.fixture
def shared_benchmark() -> Path:
    return shared_or_skip("benchmark")


@pytest.fixture
def shared_train() -> Path:
    return shared_or_skip("train")


def _image_like_model(name: str) -> torch.nn.Module:
    """Shipped x2 weights if present; else a deterministic image-like init (FSRCNN starts as bicubic, ELSR and
    OFA subnets as nearest-neighbour plus a small random residual), so outputs are images, not clamped noise."""
    if weights_path(name, 2).exists():
        return create_model(name, 2)
    torch.manual_seed(0)
    model = create_model(name, 2, pretrained=False)
    if name == "fsrcnn":
        init_bicubic(model)
    elif name == "elsr":
        with torch.no_grad():
            model.up.weight.mul_(0.1)
            model.up.bias.zero_()
    else:  # an OFA subnet: nearest-neighbour plus a small random residual, like ELSR's stand-in
        with torch.no_grad():
            model.upsampler.out.weight.mul_(0.1)
            model.upsampler.out.bias.zero_()
    return model.eval()


@pytest.fixture(scope="session")
def image_like_model() -> Callable[[str], torch.nn.Module]:
    """``image_like_model(name)``: an x2 model whose outputs are images (see ``_image_like_model``)."""
    return _image_like_model
