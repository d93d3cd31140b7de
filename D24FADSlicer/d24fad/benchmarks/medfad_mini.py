"""MedFAD-mini: an offline multi-organ few-shot anomaly-detection benchmark.

Built in seconds from real images that ship inside installed packages (no download):

=============  ===========  ==========  ==============================================
task           organ        modality    source (package, licence)
=============  ===========  ==========  ==============================================
brain_mri      brain        MRI T1      MNI152 2009a template, axial slices (nilearn, BSD-3)
head_ct        head         CT          NEMA sample head CT slice 693 (pydicom-data, MIT)
chest_xray     chest        CR          NEMA sample chest PA radiograph RG1 (pydicom-data, MIT)
retina_fundus  retina       fundus      retina.jpg, normal left eye (scikit-image, CC0)
histology_ihc  colon        IHC         ihc.png, colonic glands (scikit-image, no known restrictions)
=============  ===========  ==========  ==============================================

Normal images are slices or views of those sources with mild, realistic variation: whole-organ
views with small shifts, scale changes and rotations for the radiology and fundus sources (as
real acquisitions are framed), tiles for histology, flips where anatomy allows, gamma /
contrast, faint noise. Abnormal
test images are normal images with a SYNTHETIC lesion (d24fad.data.lesions, the four kinds
in turn) and its exact mask. Every number comes from ``numpy.random.default_rng([seed, task])``,
so a seed gives the same PNG files on any machine, and one task's content does not depend
on which other tasks are built. docs/MEDFAD_MINI.md is the datasheet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..data.lesions import LESION_KINDS, synthesize_lesion
from ..errors import ImageReadError, InputError
from ..io.atomic import atomic_directory
from ..progress import Progress, ProgressMode

FORMAT = "medfad-mini/1"
MANIFEST_NAME = "medfad_mini.json"


@dataclass(frozen=True)
class Counts:
    """Images per split and task."""

    train_good: int = 40
    test_good: int = 20
    test_bad: int = 20

    def __post_init__(self) -> None:
        if self.train_good < 2 or self.test_good < 1 or self.test_bad < 1:
            raise InputError(f"counts {self} : need train_good >= 2, test_good >= 1 and test_bad >= 1")

    @property
    def total(self) -> int:
        return self.train_good + self.test_good + self.test_bad


@dataclass(frozen=True)
class ViewStyle:
    """How a normal image is cut from a source image.

    ``crop_fraction``: side of the (square) crop relative to the source's smaller side;
    ``max_rotation_deg``: rotations are uniform in +/- this; ``flips``: mirror images are
    anatomically plausible (not for a chest film: the heart is on one side).
    """

    crop_fraction: tuple[float, float]
    max_rotation_deg: float
    flips: bool
    one_source_per_view: bool = False  # each view uses its own source (volume slices)


@dataclass(frozen=True)
class TaskRecipe:
    name: str
    organ: str
    modality: str
    source: str
    licence: str
    load_sources: Callable[[], list[np.ndarray]]
    style: ViewStyle


# ----------------------------------------------------------------------------- sources


def _package_file(package: str, *parts: str) -> Path:
    try:
        path = Path(str(resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError as exc:
        raise ImageReadError(
            f"MedFAD-mini needs the package {package!r} (see requirements/dev.txt): {exc}"
        ) from exc
    if not path.is_file():
        raise ImageReadError(f"MedFAD-mini source file {path} is missing from package {package!r}")
    return path


def _window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((array.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def _percentile_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    low, high = np.percentile(array, [low_pct, high_pct])
    return _window(array, float(low), float(high))


def _load_brain_mri() -> list[np.ndarray]:
    from ..io.readers import read_volume

    volume = read_volume(_package_file("nilearn", "datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    array = volume.array  # [k=inferior->superior, j, i]
    scaled = _window(array, 0.0, float(np.percentile(array[array > 0], 99.5)))
    # Axial slices from the lower temporal lobes to the upper convexity: every one shows brain.
    return [scaled[k] for k in range(40, 141)]


def _load_dicom_2d(*names: str, window: Optional[tuple[float, float]] = None) -> list[np.ndarray]:
    from ..io.images import read_image_2d

    images = []
    for name in names:
        pixels = read_image_2d(_package_file("data_store", "data", name))
        images.append(_window(pixels, *window) if window else _percentile_window(pixels))
    return images


def _load_skimage(name: str) -> list[np.ndarray]:
    from ..io.images import read_image_2d

    return [read_image_2d(_package_file("skimage", "data", name)) / 255.0]


TASKS: dict[str, TaskRecipe] = {
    recipe.name: recipe
    for recipe in (
        TaskRecipe(
            "brain_mri", "brain", "MRI (T1)",
            "MNI152 ICBM 2009a symmetric T1 template, axial slices 40-140 (nilearn package data)",
            "nilearn BSD-3-Clause; template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, "
            "Montreal Neurological Institute, McGill University; use, copy and distribution permitted with this notice",
            _load_brain_mri, ViewStyle((0.92, 1.0), 6.0, flips=True, one_source_per_view=True),
        ),
        TaskRecipe(
            "head_ct", "head", "CT",
            "NEMA WG16 sample head CT slice 693_UNCR.dcm, brain window 40/80 HU (pydicom-data package)",
            "MIT (pydicom-data); NEMA sample images, free for any use",
            partial(_load_dicom_2d, "693_UNCR.dcm", window=(0.0, 80.0)), ViewStyle((0.78, 0.9), 8.0, flips=True),
        ),
        TaskRecipe(
            "chest_xray", "chest", "CR (radiograph)",
            "NEMA sample chest PA computed radiograph RG1_UNCR.dcm, MONOCHROME1 inverted (pydicom-data package)",
            "MIT (pydicom-data); NEMA sample images, free for any use",
            partial(_load_dicom_2d, "RG1_UNCR.dcm"), ViewStyle((0.8, 0.95), 3.0, flips=False),
        ),
        TaskRecipe(
            "retina_fundus", "retina", "fundus photograph",
            "retina.jpg, fundus photograph of a normal left eye (scikit-image data)",
            "CC0 1.0 (M. Haggstrom, Fundus photograph of normal left eye, Wikimedia Commons; via scikit-image data)",
            partial(_load_skimage, "retina.jpg"), ViewStyle((0.85, 1.0), 12.0, flips=True),
        ),
        TaskRecipe(
            "histology_ihc", "colon tissue", "histology (IHC stain)",
            "ihc.png, colonic glands, FHL2 immunohistochemistry (DAB) with hematoxylin counterstain (scikit-image data)",
            "no known copyright restrictions (Center for Microscopy And Molecular Imaging; via scikit-image data)",
            partial(_load_skimage, "ihc.png"), ViewStyle((0.22, 0.34), 180.0, flips=True),
        ),
    )
}


# ----------------------------------------------------------------------------- views


def _render_view(source: np.ndarray, style: ViewStyle, size: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop of ``source`` with a random position, rotation and flip, at ``size`` px,
    then a mild photometric change (gamma, contrast, brightness, faint noise)."""
    from skimage.transform import AffineTransform, warp

    height, width = source.shape[:2]
    side = min(height, width) * rng.uniform(*style.crop_fraction)
    angle = np.deg2rad(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    # Keep the rotated crop inside the source where possible: its half extent along an axis.
    half_extent = 0.5 * side * (abs(np.cos(angle)) + abs(np.sin(angle)))
    center = [
        rng.uniform(min(half_extent, n / 2), max(n - half_extent, n / 2)) for n in (width, height)
    ]
    scale = side / size
    flip = -1.0 if style.flips and rng.random() < 0.5 else 1.0
    # Output pixel (col, row) -> source (x, y): centre, flip and scale, rotate, move.
    # skimage composes "a + b" as: apply a, then b.
    to_source = (
        AffineTransform(translation=(-size / 2 + 0.5, -size / 2 + 0.5))
        + AffineTransform(scale=(scale * flip, scale))
        + AffineTransform(rotation=angle)
        + AffineTransform(translation=center)
    )
    view = warp(source, to_source, output_shape=(size, size), order=1, mode="reflect", preserve_range=True)
    return _photometric_variation(view, rng)


def _photometric_variation(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = rng.uniform(0.9, 1.1)
    contrast = rng.uniform(0.95, 1.05)
    brightness = rng.uniform(-0.03, 0.03)
    varied = np.clip(view, 0.0, 1.0) ** gamma
    varied = (varied - 0.5) * contrast + 0.5 + brightness
    varied = varied + rng.normal(0.0, 0.006, size=view.shape)
    return np.clip(varied, 0.0, 1.0).astype(np.float32)


def _views(recipe: TaskRecipe, sources: list[np.ndarray], count: int, size: int, rng) -> list[np.ndarray]:
    if recipe.style.one_source_per_view:
        if len(sources) < count:
            raise InputError(
                f"task {recipe.name}: {count} images requested but the source has only {len(sources)} slices"
            )
        chosen = rng.permutation(len(sources))[:count]
        return [_render_view(sources[i], recipe.style, size, rng) for i in chosen]
    picks = rng.integers(len(sources), size=count)
    return [_render_view(sources[i], recipe.style, size, rng) for i in picks]


# ----------------------------------------------------------------------------- writing


def _save_png(path: Path, image01: np.ndarray) -> None:
    from PIL import Image

    pixels = np.round(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", optimize=False)


def _build_task(recipe: TaskRecipe, folder: Path, counts: Counts, size: int, seed: int, task_index: int) -> dict:
    rng = np.random.default_rng([seed, task_index])
    views = _views(recipe, recipe.load_sources(), counts.total, size, rng)
    train, test_good, to_damage = (
        views[: counts.train_good],
        views[counts.train_good : counts.train_good + counts.test_good],
        views[counts.train_good + counts.test_good :],
    )
    for sub in ("train/good", "test/good", "test/bad", "test/mask"):
        (folder / sub).mkdir(parents=True)
    for i, image in enumerate(train):
        _save_png(folder / "train" / "good" / f"{i:03d}.png", image)
    for i, image in enumerate(test_good):
        _save_png(folder / "test" / "good" / f"{i:03d}.png", image)
    lesion_kinds = {}
    for i, image in enumerate(to_damage):
        kind = LESION_KINDS[i % len(LESION_KINDS)]
        damaged, mask = synthesize_lesion(image, rng, kind=kind)
        name = f"{i:03d}.png"
        _save_png(folder / "test" / "bad" / name, damaged)
        _save_png(folder / "test" / "mask" / name, mask.astype(np.float32))
        lesion_kinds[name] = kind
    return {
        "organ": recipe.organ,
        "modality": recipe.modality,
        "source": recipe.source,
        "licence": recipe.licence,
        "counts": {"train_good": counts.train_good, "test_good": counts.test_good, "test_bad": counts.test_bad},
        "synthetic_lesions": lesion_kinds,
    }


def build_medfad_mini(
    out_dir: str | os.PathLike,
    seed: int = 0,
    image_size: int = 128,
    counts: Counts = Counts(),
    tasks: Optional[Sequence[str]] = None,
    overwrite: bool = False,
    progress: ProgressMode = "none",
) -> dict:
    """Write the benchmark to ``out_dir`` (all of it or nothing) and return its manifest."""
    names = list(TASKS) if tasks is None else list(tasks)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise InputError(f"tasks {unknown or names}: choose among {', '.join(TASKS)}")
    if not 32 <= int(image_size) <= 1024:
        raise InputError(f"image_size={image_size}: must be between 32 and 1024 pixels")
    manifest = {
        "format": FORMAT,
        "name": "MedFAD-mini",
        "anomalies": "synthetic (d24fad.data.lesions); normal images are real",
        "seed": int(seed),
        "image_size": int(image_size),
        "tasks": {},
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp, Progress(len(names), "building MedFAD-mini", progress) as bar:
        for done, name in enumerate(names, start=1):
            # The task's index in the full list, not in the selection: a task's images do
            # not depend on which other tasks are built.
            task_index = list(TASKS).index(name)
            manifest["tasks"][name] = _build_task(TASKS[name], tmp / name, counts, int(image_size), int(seed), task_index)
            bar.update(done)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest
