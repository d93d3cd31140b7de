"""Fixtures: a real MRML scene (slicer-core) wired with the module logics the Logic uses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "D24FADSlicer"
TESTING_DIR = REPO_ROOT / "Testing"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def _import_slicer_core():
    """Import slicer-core's ``slicer`` without Testing/ on sys.path.

    The ``slicer`` meta-package extends its path with every ``<sys.path entry>/slicer``
    folder and imports all modules found there: with Testing/ on sys.path (pytest puts it
    there for Testing/conftest.py) it would import this test folder as part of Slicer.
    """
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != TESTING_DIR]
    try:
        import slicer as slicer_module
    finally:
        sys.path[:] = saved
    return slicer_module


slicer = _import_slicer_core()


@pytest.fixture
def scene():
    """A fresh scene set as ``slicer.mrmlScene``, with colour, segmentation and SH logics."""
    from D24FADSlicerLib.mrml import wire_module_logics

    mrml_scene = slicer.vtkMRMLScene()
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = mrml_scene
    application_logic = wire_module_logics(mrml_scene)
    yield mrml_scene
    del application_logic
    mrml_scene.Clear(1)
    slicer.mrmlScene = previous


def ijk_to_ras(spacing, origin, directions) -> np.ndarray:
    """4x4 IJK-to-RAS from spacing, RAS origin and a 3x3 matrix whose columns are the IJK directions."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions, dtype=float) * np.asarray(spacing, dtype=float)
    matrix[:3, 3] = origin
    return matrix


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def add_volume(scene, array, matrix, name="volume", node_class="vtkMRMLScalarVolumeNode"):
    """Add a volume node (voxels [k, j, i]) with the given IJK-to-RAS matrix."""
    assert slicer.mrmlScene is scene
    return slicer.util.addVolumeFromArray(np.ascontiguousarray(array), matrix, name=name, nodeClassName=node_class)
