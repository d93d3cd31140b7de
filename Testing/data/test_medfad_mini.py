"""MedFAD-mini builder: layout, determinism, independence of tasks, masks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d24fad.benchmarks.medfad_mini import MANIFEST_NAME, TASKS, Counts, build_medfad_mini
from d24fad.data.lesions import LESION_KINDS
from d24fad.errors import InputError, OutputError

SMALL = Counts(train_good=3, test_good=2, test_bad=4)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("medfad") / "mini"
    build_medfad_mini(root, seed=3, image_size=64, counts=SMALL)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_counts_and_manifest(built):
    manifest = json.loads((built / MANIFEST_NAME).read_text())
    assert set(manifest["tasks"]) == set(TASKS) and len(TASKS) >= 4
    assert "synthetic" in manifest["anomalies"]
    organs = {TASKS[t].organ for t in TASKS}
    modalities = {TASKS[t].modality for t in TASKS}
    assert len(organs) >= 4 and len(modalities) >= 4
    for task in TASKS:
        folder = built / task
        assert len(list((folder / "train" / "good").glob("*.png"))) == SMALL.train_good
        assert len(list((folder / "test" / "good").glob("*.png"))) == SMALL.test_good
        bad = sorted(p.name for p in (folder / "test" / "bad").glob("*.png"))
        assert bad == sorted(p.name for p in (folder / "test" / "mask").glob("*.png"))
        assert len(bad) == SMALL.test_bad
        # The lesion kinds take turns, so every kind appears in every task.
        assert sorted(manifest["tasks"][task]["synthetic_lesions"].values()) == sorted(LESION_KINDS)
        for name in bad:
            image = np.asarray(Image.open(folder / "test" / "bad" / name))
            mask = np.asarray(Image.open(folder / "test" / "mask" / name))
            assert image.shape[:2] == mask.shape == (64, 64)
            assert set(np.unique(mask)) <= {0, 255} and (mask > 0).any()


def test_same_seed_same_bytes_other_seed_other_images(built, tmp_path):
    again = tmp_path / "again"
    build_medfad_mini(again, seed=3, image_size=64, counts=SMALL)
    assert _files(again) == _files(built)
    other = tmp_path / "other"
    build_medfad_mini(other, seed=4, image_size=64, counts=SMALL, tasks=["retina_fundus"])
    assert _files(other / "retina_fundus") != _files(built / "retina_fundus")


def test_a_task_does_not_depend_on_which_other_tasks_are_built(built, tmp_path):
    alone = tmp_path / "alone"
    build_medfad_mini(alone, seed=3, image_size=64, counts=SMALL, tasks=["chest_xray"])
    assert _files(alone / "chest_xray") == _files(built / "chest_xray")


def test_normal_images_vary_and_are_not_blank(built):
    for task in TASKS:
        images = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted((built / task / "train" / "good").glob("*.png"))]
        assert all(im.std() > 5 for im in images), task
        assert not np.array_equal(images[0], images[1]), task


def test_refuses_non_empty_output_and_bad_parameters(built, tmp_path):
    with pytest.raises(OutputError, match="not empty"):
        build_medfad_mini(built, seed=3, image_size=64, counts=SMALL)
    with pytest.raises(InputError, match="lung_ct"):
        build_medfad_mini(tmp_path / "x", tasks=["lung_ct"])
    with pytest.raises(InputError, match="image_size"):
        build_medfad_mini(tmp_path / "y", image_size=8)
    with pytest.raises(InputError, match="train_good"):
        Counts(train_good=1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_build_benchmark_cli(tmp_path):
    from d24fad.cli import main

    out = tmp_path / "cli"
    code = main(["build-benchmark", "--out", str(out), "--seed", "1", "--image-size", "64",
                 "--train", "2", "--test-good", "1", "--test-bad", "1", "--tasks", "head_ct", "histology_ihc",
                 "--progress", "none"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["head_ct", "histology_ihc"]
    assert main(["build-benchmark", "--out", str(out), "--progress", "none"]) == 1  # not empty, no --overwrite
    assert main(["build-benchmark", "--out", str(tmp_path / "z"), "--tasks", "nope", "--progress", "none"]) == 2
