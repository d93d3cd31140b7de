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
def _one_torch_thread(one_torch_thread):
    """Every test here runs single-threaded (see Testing/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "bench"
    build_medfad_mini(root, seed=0, image_size=64, counts=Counts(train_good=8, test_good=3, test_bad=3), tasks=TOY_TASKS)
    return root
