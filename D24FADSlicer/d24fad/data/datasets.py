"""Task folders in the reference layout, loaded through the product's I/O and preprocessing.

Layout (the reference implementation's, plus optional masks)::

    ROOT/TASK/train/good/*     normal training images (support pool, training queries)
    ROOT/TASK/test/good/*      normal test images
    ROOT/TASK/test/bad/*       abnormal test images
    ROOT/TASK/test/mask/*      optional: one mask per abnormal image, same file name up to
                               the first dot (any suffix), non-zero = abnormal

Files are 2D images (PNG, JPEG, TIFF, BMP, single-frame DICOM) or volumes (NIfTI, NRRD,
MHA, multi-frame DICOM); a volume contributes its acquisition slices. In ``test/bad`` a
volume with a mask contributes only the slices where its mask is non-empty.

Images go through d24fad.io (reading) and d24fad.preprocess (intensity -> [0, 1] ->
square -> model size): the same path the CLI and the Slicer module use.
Listing a task never opens files of another task: leave-one-task-out training relies on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError

VOLUME_AXIS = "acquisition"


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def list_task_images(folder: Path) -> tuple[Path, ...]:
    """Image and volume files of one folder, sorted by name; an empty tuple if there are none."""
    from ..io.images import IMAGE_SUFFIXES
    from ..io.readers import has_itk_volume_suffix

    if not folder.is_dir():
        raise InputError(f"missing folder {folder}")
    return tuple(
        sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
            and (p.suffix.lower() in IMAGE_SUFFIXES or has_itk_volume_suffix(p))
        )
    )


def discover_tasks(root: str | os.PathLike) -> list[str]:
    """Names of the sub-folders of ``root`` that have a ``train/good`` folder, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data root {root} is not a folder")
    tasks = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
    if not tasks:
        raise InputError(f"data root {root} has no TASK/train/good folders")
    return tasks


def check_task_names(root: str | os.PathLike, names: Sequence[str], what: str) -> list[str]:
    available = discover_tasks(root)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"{what}: unknown task(s) {', '.join(unknown)} in {root} (available: {', '.join(available)})")
    return list(names)


@dataclass(frozen=True)
class TaskFiles:
    """The files of one task; ``test_masks[i]`` belongs to ``test_bad[i]`` (None: no mask)."""

    name: str
    root: Path
    train_good: tuple[Path, ...]
    test_good: tuple[Path, ...] = ()
    test_bad: tuple[Path, ...] = ()
    test_masks: tuple[Optional[Path], ...] = ()

    @property
    def has_masks(self) -> bool:
        return bool(self.test_bad) and all(m is not None for m in self.test_masks)


def task_files(root: str | os.PathLike, task: str, with_test: bool = True) -> TaskFiles:
    """List one task's files. ``with_test=False`` lists only ``train/good`` (training needs
    nothing else, and then never even lists the test folders)."""
    folder = Path(root) / task
    train_good = list_task_images(folder / "train" / "good")
    if not train_good:
        raise InputError(f"task {task}: no images in {folder / 'train' / 'good'}")
    if not with_test:
        return TaskFiles(task, folder, train_good)
    test_good = list_task_images(folder / "test" / "good")
    test_bad = list_task_images(folder / "test" / "bad")
    if not test_good or not test_bad:
        raise InputError(f"task {task}: evaluation needs images in both {folder / 'test' / 'good'} and test/bad")
    mask_folder = folder / "test" / "mask"
    masks: tuple[Optional[Path], ...] = (None,) * len(test_bad)
    if mask_folder.is_dir():
        by_stem = {_stem(p): p for p in list_task_images(mask_folder)}
        masks = tuple(by_stem.get(_stem(p)) for p in test_bad)
        missing = [p.name for p, m in zip(test_bad, masks) if m is None]
        if missing:
            raise InputError(f"task {task}: no mask in {mask_folder} for {', '.join(missing[:5])}")
    return TaskFiles(task, folder, train_good, test_good, test_bad, masks)


# ----------------------------------------------------------------------------- reading


def _is_volume(path: Path) -> bool:
    from ..io.readers import has_itk_volume_suffix

    if has_itk_volume_suffix(path):
        return True
    if path.suffix.lower() in (".dcm", ".dicom", ".ima", ""):
        from ..io.dicom import read_header

        return int(read_header(path).get("NumberOfFrames", 1) or 1) > 1
    return False


def read_slices01(path: Path, window="auto") -> list[np.ndarray]:
    """The 2D image(s) of a file in [0, 1]: one for an image, every slice for a volume.

    A volume is normalised as a whole (one intensity plan for all its slices)."""
    from ..io.images import load_image_2d
    from ..preprocess import normalize_intensity
    from ..slicing import get_slice, slice_count

    if _is_volume(path):
        from ..io.readers import read_volume

        volume = read_volume(path)
        scaled = normalize_intensity(volume.array, volume.modality, window, volume.metadata)
        return [get_slice(volume, VOLUME_AXIS, i, scaled) for i in range(slice_count(volume, VOLUME_AXIS))]
    image = load_image_2d(path)
    return [normalize_intensity(image.array, image.modality, window, image.metadata)]


def read_mask_slices(path: Path) -> list[np.ndarray]:
    """A mask file as boolean 2D slice(s) (non-zero = abnormal; for colour, any channel)."""
    from ..io.images import read_image_2d
    from ..io.readers import read_volume
    from ..slicing import get_slice, slice_count

    if not _is_volume(path):
        mask = read_image_2d(path) > 0
        return [mask.any(axis=-1) if mask.ndim == 3 else mask]
    volume = read_volume(path)
    return [get_slice(volume, VOLUME_AXIS, i) > 0 for i in range(slice_count(volume, VOLUME_AXIS))]


def model_inputs(images01: Sequence[np.ndarray], size: int) -> np.ndarray:
    """[0, 1] images -> float32 [N, 3, size, size] (d24fad.preprocess.to_model_input)."""
    from ..preprocess import batch_to_model_input

    return batch_to_model_input(list(images01), size)[0]


def mask_to_model_grid(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask on an image's grid -> boolean [size, size] on the model grid, with the
    same square fit (padding, resizing) as the image."""
    from ..preprocess import SquareFit

    return SquareFit.for_shape(mask.shape, size).forward(mask.astype(np.float32)) >= 0.5


def load_normal_images(paths: Sequence[Path], size: int, window="auto") -> np.ndarray:
    """All slices of all files as model inputs: float32 [N, 3, size, size]."""
    slices = [s for p in paths for s in read_slices01(Path(p), window)]
    return model_inputs(slices, size)


@dataclass
class EvaluationImages:
    """A task's test images on the model grid, in a fixed order: good first, then bad."""

    task: str
    images: np.ndarray  # float32 [N, 3, S, S]
    labels: np.ndarray  # int64 [N], 1 = abnormal
    names: list[str]  # file name (and slice) of each image
    masks: Optional[np.ndarray]  # bool [N, S, S] (all False for good images) or None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_test_set(files: TaskFiles, size: int, window="auto") -> EvaluationImages:
    images, labels, names, masks = [], [], [], []
    for path in files.test_good:
        for i, image in enumerate(read_slices01(path, window)):
            images.append(image)
            labels.append(0)
            names.append(_slice_name(path, i))
            masks.append(np.zeros(image.shape[:2], dtype=bool))
    for path, mask_path in zip(files.test_bad, files.test_masks):
        slices = read_slices01(path, window)
        slice_masks = read_mask_slices(mask_path) if mask_path is not None else [None] * len(slices)
        if len(slice_masks) != len(slices):
            raise InputError(f"mask {mask_path} has {len(slice_masks)} slices but {path} has {len(slices)}")
        for i, (image, mask) in enumerate(zip(slices, slice_masks)):
            if mask is not None and mask.shape != image.shape[:2]:
                raise InputError(f"mask {mask_path} has shape {mask.shape}, its image {path} {image.shape[:2]}")
            if mask is not None and len(slices) > 1 and not mask.any():
                continue  # a volume's slices without lesion are not abnormal test images
            images.append(image)
            labels.append(1)
            names.append(_slice_name(path, i) if len(slices) > 1 else path.name)
            masks.append(mask)
    grid_masks = None
    if files.has_masks:
        grid_masks = np.stack([mask_to_model_grid(m, size) for m in masks])
    return EvaluationImages(files.name, model_inputs(images, size), np.asarray(labels, dtype=np.int64), names, grid_masks)


def _slice_name(path: Path, index: int) -> str:
    return f"{path.name}#{index}" if _is_volume(path) else path.name
