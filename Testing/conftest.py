"""Shared pytest setup: a fixed torch seed for the whole session."""

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


@pytest.fixture
def one_torch_thread():
    """Run a test with one PyTorch thread: on a busy 2-core machine two threads spin
    against other processes and tiny training steps get many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
