"""A tiny random-weight model (resnet18 teacher, 64 px) for evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs single-threaded (see Testing/conftest.py)."""
    yield


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from d24fad.config import ModelConfig
    from d24fad.models.d24fad import D24FADModel

    torch.manual_seed(0)
    return D24FADModel(ModelConfig(teacher="resnet18", teacher_weights="random", image_size=64)).eval()
