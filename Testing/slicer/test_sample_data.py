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
    voxels = sitk.GetArrayFromImage(volume)
    # Normal references show brain, not empty background.
    assert all((voxels[k] > BRAIN_MIN_VALUE).mean() > 0.2 for k in NORMAL_SUPPORT_SLICES)
