"""Shared test fixtures: where ``../shared/datasets`` is, and a skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "datasets"


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
