"""Fixtures for the fits store tests: a seeded generator and a store in a temporary directory."""

from __future__ import annotations

import numpy as np
import pytest

from store import FitsStore


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    fits = FitsStore(tmp_path / "fits")
    yield fits
    fits.close()
