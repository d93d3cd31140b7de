"""Shared pytest setup: small thread count so parallel CI jobs stay predictable."""

import os

import pytest

os.environ.setdefault("D24FAD_TEST", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # suites that test the torch-free Slicer module path
        yield
        return
    torch.manual_seed(0)
    yield
