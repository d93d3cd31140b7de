"""The module's sample volume: small, rebuilt bit for bit by its script, constants right."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from slicer_fixtures import REPO_ROOT
from D24FADSlicerLib.sample_data import BRAIN_MIN_VALUE, LESION_SLICES, MASK_FILE, NORMAL_SUPPORT_SLICES, VOLUME_FILE


def test_sample_script_rebuilds_the_committed_files_exactly(tmp_path):
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_sample_data.py"), "--out",
                                str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    for committed in (VOLUME_FILE, MASK_FILE):
        assert (tmp_path / committed.name).read_bytes() == committed.read_bytes(), committed.name
    assert f"lesion on acquisition slices {LESION_SLICES[0]}..{LESION_SLICES[1]}" in completed.stdout


def test_sample_is_small_and_its_constants_match_the_mask():
    assert VOLUME_FILE.stat().st_size + MASK_FILE.stat().st_size < 1_000_000
    volume = sitk.ReadImage(str(VOLUME_FILE))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(MASK_FILE))).astype(bool)
    assert mask.shape == sitk.GetArrayFromImage(volume).shape
    lesion_slices = np.flatnonzero(mask.any(axis=(1, 2)))
    assert (lesion_slices.min(), lesion_slices.max()) == LESION_SLICES
    assert not mask[list(NORMAL_SUPPORT_SLICES)].any()
    # The support rule: six slices spread evenly over the slices that show brain (a quarter
    # of the largest brain section or more), at least 4 slices (12 mm) from any lesion slice.
    brain_voxels = (sitk.GetArrayFromImage(volume) > BRAIN_MIN_VALUE).sum(axis=(1, 2))
    brain_slices = np.flatnonzero(brain_voxels >= 0.25 * brain_voxels.max())
    far = [k for k in brain_slices if np.min(np.abs(lesion_slices - k)) > 4]
    picks = np.linspace(0, len(far) - 1, 6).round().astype(int)
    assert NORMAL_SUPPORT_SLICES == tuple(int(far[p]) for p in picks)


def test_navigation_visits_the_lesion_and_skips_air_above_the_head():
    from D24FADSlicerLib.outputs import tissue_slices

    voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(VOLUME_FILE)))
    eligible = tissue_slices(voxels)
    assert set(range(LESION_SLICES[0], LESION_SLICES[1] + 1)) <= eligible
    assert set(NORMAL_SUPPORT_SLICES) <= eligible
    assert not eligible & set(range(voxels.shape[0] - 8, voxels.shape[0]))  # the top slices are air

