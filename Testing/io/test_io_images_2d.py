"""2D images: Pillow formats and single-frame DICOM (CR MONOCHROME1, RGB, palette)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from d24fad.io import list_images, load_image_2d, read_image_2d
from d24fad.errors import ImageReadError
from io_fixtures import pydicom_data_file, pydicom_test_file


@pytest.mark.parametrize("suffix", ["png", "tif", "bmp"])
def test_lossless_formats_round_trip_grey_and_rgb(tmp_path, suffix):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / f"grey.{suffix}")
    Image.fromarray(rgb).save(tmp_path / f"rgb.{suffix}")
    np.testing.assert_array_equal(read_image_2d(tmp_path / f"grey.{suffix}"), grey.astype(np.float32))
    np.testing.assert_array_equal(read_image_2d(tmp_path / f"rgb.{suffix}"), rgb.astype(np.float32))


def test_16_bit_png_keeps_its_range(tmp_path):
    values = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500)
    Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_image_2d(tmp_path / "deep.png"), values.astype(np.float32))


def test_jpeg_and_rgba(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_image_2d(tmp_path / "a.png").shape == (8, 8, 3)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "b.jpg")
    jpeg = read_image_2d(tmp_path / "b.jpg")
    assert jpeg.shape == (8, 8, 3) and abs(jpeg[..., 0].mean() - 200) < 3


def test_cr_monochrome1_is_inverted():
    path = pydicom_data_file("RG1_UNCR.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    image = load_image_2d(path)
    assert image.modality == "CR" and image.metadata["photometric_interpretation"] == "MONOCHROME1"
    np.testing.assert_array_equal(image.array, raw.max() + raw.min() - raw)


def test_real_ct_slice_gets_hounsfield_units():
    path = pydicom_test_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    np.testing.assert_array_equal(read_image_2d(path), expected.astype(np.float32))


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_rgb_jpeg_dcmd.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_dicom_is_rgb(name):
    path = pydicom_data_file(name) if name == "SC_ybr_full_uncompressed.dcm" else pydicom_test_file(name)
    array = read_image_2d(path)
    assert array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.float32


def test_sc_rgb_colours_are_the_stored_ones():
    path = pydicom_test_file("SC_rgb.dcm")
    np.testing.assert_array_equal(read_image_2d(path), pydicom.dcmread(path).pixel_array.astype(np.float32))


def test_palette_colour_ultrasound_becomes_rgb():
    array = read_image_2d(pydicom_data_file("OBXXXX1A.dcm"))
    assert array.shape == (600, 800, 3)
    assert np.ptp(array) > 0


def test_list_images_filters_and_sorts(tmp_path):
    for name in ["b.png", "a.dcm", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.dcm", "b.png"]
    with pytest.raises(ImageReadError, match="contains no images"):
        list_images(tmp_path / "sub")
