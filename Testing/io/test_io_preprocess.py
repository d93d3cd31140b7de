"""Intensity normalisation rules and the square fit / its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from d24fad.errors import InputError
from d24fad.preprocess import (SquareFit, batch_to_model_input, normalize_intensity, parse_window, plan_intensity,
                               to_model_input)


@pytest.mark.parametrize("window, low, high", [("brain", 0.0, 80.0), ("soft", -160.0, 240.0),
                                               ("lung", -1350.0, 150.0), ("bone", -500.0, 1300.0),
                                               ("400/40", -160.0, 240.0), ((80, 40), 0.0, 80.0)])
def test_ct_windows(window, low, high):
    assert parse_window(window) == ("window", (low, high))
    hu = np.array([low - 100, low, (low + high) / 2, high, high + 100], dtype=np.float32)
    np.testing.assert_allclose(normalize_intensity(hu, "CT", window), [0, 0, 0.5, 1, 1], atol=1e-6)


@pytest.mark.parametrize("body_part, expected", [("HEAD", "brain"), ("CHEST", "lung"), ("ABDOMEN", "soft"),
                                                 (None, "soft")])
def test_ct_auto_window_follows_body_part(body_part, expected):
    plan = plan_intensity(np.zeros(4), "CT", "auto", {"body_part": body_part} if body_part else {})
    assert plan.mode == "window" and expected in plan.reason


def test_mr_percentiles_ignore_background():
    rng = np.random.default_rng(0)
    volume = np.zeros((10, 40, 40), dtype=np.float32)  # air around the head
    volume[:, 10:30, 10:30] = rng.uniform(500, 1500, (10, 20, 20))
    plan = plan_intensity(volume, "MR")
    foreground = volume[volume > 0]
    assert plan.mode == "percentile_foreground"
    assert plan.low == pytest.approx(np.percentile(foreground, 0.5))
    assert plan.high == pytest.approx(np.percentile(foreground, 99.5))
    # With the background counted, the low percentile would be 0.
    assert plan.low > 500
    normalized = normalize_intensity(volume, "MR")
    assert normalized.dtype == np.float32 and normalized.min() == 0.0 and normalized.max() == 1.0
    assert np.mean(normalized[volume > 0] > 0) > 0.99


def test_xray_photo_and_overrides():
    values = np.concatenate([np.linspace(0, 100, 1000), [10000.0]]).astype(np.float32)
    xray = normalize_intensity(values, "CR")
    assert xray[-1] == 1.0 and xray[500] > 0.45  # the outlier does not squash the rest
    photo = normalize_intensity(values, None)  # min-max
    assert photo[-1] == 1.0 and photo[500] < 0.01
    assert normalize_intensity(values, "CT", "minmax")[-1] == 1.0
    np.testing.assert_array_equal(normalize_intensity(np.array([-1, 0.5, 2.0]), None, "none"), [0, 0.5, 1])
    assert normalize_intensity(np.full((3, 3), 7.0), "MR").max() == 0.0  # constant image: no contrast


def test_dicom_window_from_metadata():
    plan = plan_intensity(np.zeros(3), "CT", "dicom", {"window_center": 50, "window_width": 100})
    assert (plan.low, plan.high) == (0.0, 100.0)
    with pytest.raises(InputError, match="WindowCenter"):
        plan_intensity(np.zeros(3), "CT", "dicom", {})


@pytest.mark.parametrize("bad", ["wide", "0/40", "-5/10", "40", "abc/def"])
def test_bad_window_names_the_option(bad):
    with pytest.raises(InputError, match="--window"):
        parse_window(bad)


def test_nan_input_is_refused():
    with pytest.raises(InputError, match="NaN"):
        normalize_intensity(np.array([1.0, np.nan]))


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (31, 31), (7, 64), (65, 3)])
def test_square_fit_places_a_marker_back_on_its_pixel(shape):
    fit = SquareFit.for_shape(shape, 32)
    image = np.zeros(shape, dtype=np.float32)
    marker = (shape[0] * 2 // 3, shape[1] // 3)
    image[marker] = 1.0
    square = fit.forward(image)
    assert square.shape == (32, 32)
    back = fit.inverse(square)
    assert back.shape == shape
    found = np.unravel_index(np.argmax(back), shape)
    # Exact when the model grid is finer than the slice; within a pixel when it is coarser.
    tolerance = 0 if fit.side <= 32 else 1
    assert np.abs(np.subtract(found, marker)).max() <= tolerance


def test_square_fit_keeps_aspect_without_distortion():
    fit = SquareFit.for_shape((20, 40), 40)  # side 40: no resize, only padding
    image = np.arange(800, dtype=np.float32).reshape(20, 40)
    square = fit.forward(image)
    np.testing.assert_array_equal(square[10:30], image)  # centred vertically
    assert not square[:10].any() and not square[30:].any()
    np.testing.assert_array_equal(fit.inverse(square), image)


def test_square_fit_inverse_of_smooth_map_is_close():
    y, x = np.mgrid[0:45, 0:70]
    smooth = (np.sin(y / 9.0) + np.cos(x / 11.0)).astype(np.float32)
    fit = SquareFit.for_shape(smooth.shape, 64)
    error = np.abs(fit.inverse(fit.forward(smooth)) - smooth)
    # Only the outermost rows blend with the zero padding when the grid is reduced.
    assert error[2:-2, 2:-2].max() < 0.05 and error.mean() < 0.02


def test_to_model_input_grey_and_rgb():
    grey = np.random.default_rng(0).random((30, 20), dtype=np.float32)
    chw, fit = to_model_input(grey, 32)
    assert chw.shape == (3, 32, 32) and chw.dtype == np.float32
    np.testing.assert_array_equal(chw[0], chw[1])
    assert chw.min() >= 0 and chw.max() <= 1
    rgb = np.zeros((10, 12, 3), dtype=np.float32)
    rgb[..., 1] = 1.0
    chw_rgb, _ = to_model_input(rgb, 32)
    assert chw_rgb[1, 16, 16] == pytest.approx(1.0) and chw_rgb[0].max() == 0.0
    batch, fits = batch_to_model_input([grey, rgb], 32)
    assert batch.shape == (2, 3, 32, 32) and [f.height for f in fits] == [30, 10]
    assert fit == fits[0]
