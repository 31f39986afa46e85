"""Shared fixtures: the synthetic body model and its GMM, loaded once per test session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def body_files():
    from spin.body.files import resolve_body_files

    return resolve_body_files()


@pytest.fixture(scope="session")
def body(body_files):
    from spin.body import BodyModel

    torch.set_num_threads(1)  # small batches: one thread avoids sync overhead on a busy box
    return BodyModel.from_files(body_files)
