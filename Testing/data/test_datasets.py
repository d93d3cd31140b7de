"""Task folders: listing, validation errors naming the path, 2D files and volumes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from d24fad.data.datasets import discover_tasks, load_normal_images, load_test_set, task_files
from d24fad.errors import InputError


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _nifti(path, array):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    task = tmp_path / "organ"
    for split, count in (("train/good", 3), ("test/good", 2), ("test/bad", 2)):
        for i in range(count):
            _png(task / split / f"{i}.png", rng.integers(0, 255, (40, 30)))
    for i in range(2):
        mask = np.zeros((40, 30))
        mask[10:20, 5:15] = 255
        _png(task / "test" / "mask" / f"{i}.png", mask)
    (tmp_path / "notes").mkdir()  # a folder without train/good is not a task
    return tmp_path


def test_lists_tasks_and_loads_model_grids(root):
    assert discover_tasks(root) == ["organ"]
    files = task_files(root, "organ")
    assert files.has_masks and [p.name for p in files.test_bad] == ["0.png", "1.png"]
    train = load_normal_images(files.train_good, 32)
    assert train.shape == (3, 3, 32, 32) and train.dtype == np.float32 and 0 <= train.min() and train.max() <= 1
    test = load_test_set(files, 32)
    assert test.labels.tolist() == [0, 0, 1, 1] and test.names == ["0.png", "1.png", "0.png", "1.png"]
    # Masks follow the image's square fit (40x30 padded to 40x40, then 32x32).
    assert test.masks.shape == (4, 32, 32) and not test.masks[:2].any() and test.masks[2:].any()
    assert test.masks[2].sum() == pytest.approx(100 * (32 / 40) ** 2, rel=0.25)


def test_training_listing_never_lists_test_folders(root):
    files = task_files(root, "organ", with_test=False)
    assert files.test_good == () and files.test_bad == ()


def test_missing_mask_and_missing_folders_name_the_path(root):
    (root / "organ" / "test" / "mask" / "1.png").unlink()
    with pytest.raises(InputError, match="1.png"):
        task_files(root, "organ")
    with pytest.raises(InputError, match="nowhere"):
        discover_tasks(root / "nowhere")
    with pytest.raises(InputError, match="train"):
        task_files(root, "notes")


def test_volumes_contribute_slices_and_abnormal_slices_follow_the_mask(tmp_path):
    rng = np.random.default_rng(1)
    task = tmp_path / "brain"
    _nifti(task / "train" / "good" / "a.nii.gz", rng.random((4, 24, 24)).astype(np.float32) * 100)
    _nifti(task / "test" / "good" / "b.nii.gz", rng.random((3, 24, 24)).astype(np.float32) * 100)
    _nifti(task / "test" / "bad" / "c.nii.gz", rng.random((5, 24, 24)).astype(np.float32) * 100)
    mask = np.zeros((5, 24, 24), dtype=np.uint8)
    mask[[1, 3], 5:10, 5:10] = 1
    _nifti(task / "test" / "mask" / "c.nii.gz", mask)
    files = task_files(tmp_path, "brain")
    assert load_normal_images(files.train_good, 32).shape[0] == 4
    test = load_test_set(files, 32)
    assert test.labels.tolist() == [0, 0, 0, 1, 1]
    assert test.names[-2:] == ["c.nii.gz#1", "c.nii.gz#3"]
    assert test.masks[-2:].any(axis=(1, 2)).all()
