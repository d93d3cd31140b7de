"""Random bytes and truncated real files only ever raise d24fad's typed errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from d24fad.errors import D24FADError
from d24fad.io import read_image_2d, read_volume
from io_fixtures import pydicom_test_file

SUFFIXES = ["dcm", "nii", "nii.gz", "nrrd", "mha", "png", "jpg", "tif", "noext"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def real_file_bytes() -> dict[str, bytes]:
    """Small real files of every supported kind (DICOM from pydicom, the rest written here)."""
    folder = Path(tempfile.mkdtemp(prefix="d24fad-fuzz-"))
    volume = sitk.GetImageFromArray(np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5))
    volume.SetSpacing((0.5, 0.7, 2.0))
    for suffix in ("nii.gz", "nrrd", "mha"):
        sitk.WriteImage(volume, str(folder / f"v.{suffix}"))
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(folder / "i.png")
    Image.fromarray(np.full((8, 8, 3), 90, dtype=np.uint8)).save(folder / "i.jpg")
    files = {f"v.{s}": (folder / f"v.{s}").read_bytes() for s in ("nii.gz", "nrrd", "mha")}
    files.update({"i.png": (folder / "i.png").read_bytes(), "i.jpg": (folder / "i.jpg").read_bytes()})
    for name in ("CT_small.dcm", "MR_small.dcm"):
        files[name] = pydicom_test_file(name).read_bytes()
    return files


REAL_FILES = real_file_bytes()


def read_both(path: Path) -> None:
    """Both readers either succeed or raise a D24FADError (anything else fails the test)."""
    for reader in (read_volume, read_image_2d):
        try:
            reader(path)
        except D24FADError:
            pass


@FUZZ
@given(data=st.binary(min_size=0, max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_raise_only_typed_errors(tmp_path, data, suffix):
    path = tmp_path / ("blob" if suffix == "noext" else f"blob.{suffix}")
    path.write_bytes(data)
    read_both(path)


@FUZZ
@given(name=st.sampled_from(sorted(REAL_FILES)), fraction=st.floats(0.0, 0.999))
def test_truncated_real_files_raise_only_typed_errors(tmp_path, name, fraction):
    content = REAL_FILES[name]
    path = tmp_path / f"cut_{name}"
    path.write_bytes(content[: int(len(content) * fraction)])
    read_both(path)


@FUZZ
@given(name=st.sampled_from(sorted(REAL_FILES)), position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_corrupted_real_files_raise_only_typed_errors(tmp_path, name, position, value):
    content = bytearray(REAL_FILES[name])
    content[position % len(content)] = value
    path = tmp_path / f"bad_{name}"
    path.write_bytes(bytes(content))
    read_both(path)


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_intact_real_files_read(tmp_path, name):
    """The fuzz seeds themselves are valid (so the fuzz tests exercise real decoders)."""
    path = tmp_path / name
    path.write_bytes(REAL_FILES[name])
    if name.startswith("v."):
        assert read_volume(path).shape == (4, 6, 5)
    else:
        assert read_image_2d(path).size > 0
