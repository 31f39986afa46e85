"""Fixtures of the HMR / NBF component tests: one thread, and the synthetic body model."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def body():
    torch.set_num_threads(1)
    from spin.body import BodyModel

    return BodyModel.default()
