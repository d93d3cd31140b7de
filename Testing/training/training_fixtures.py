"""A toy benchmark (three tasks, 64 px) and a tiny random-weight model for training tests."""

from __future__ import annotations

import pytest

from d24fad.benchmarks.medfad_mini import Counts, build_medfad_mini

TOY_TASKS = ("brain_mri", "retina_fundus", "histology_ihc")
HELD_OUT = "retina_fundus"
# resnet18 with random weights at 64 px, batches of 4 episodes: seconds per run on 2 cores.
TINY_RECIPE = [
    "--teacher", "resnet18", "--teacher-weights", "random", "--image-size", "64",
    "--batch", "4", "--shots", "2", "3", "--val-fraction", "0.25", "--threads", "1", "--progress", "none",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Two busy threads on a shared 2-core machine spin against each other (25x slower).
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "bench"
    build_medfad_mini(root, seed=0, image_size=64, counts=Counts(train_good=8, test_good=3, test_bad=3), tasks=TOY_TASKS)
    return root
