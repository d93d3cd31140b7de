"""A tiny random-weight model (resnet18 teacher, 64 px) for evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Two busy threads on a shared 2-core machine spin against each other (25x slower).
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from d24fad.config import ModelConfig
    from d24fad.models.d24fad import D24FADModel

    torch.manual_seed(0)
    return D24FADModel(ModelConfig(teacher="resnet18", teacher_weights="random", image_size=64)).eval()
