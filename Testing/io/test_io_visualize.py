"""Heat-map overlays and the radiological display orientation of slices."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from d24fad.io import Volume
from d24fad.slicing import get_slice, slice_count
from d24fad.visualize import MIN_PNG_SIDE, orient_for_display, overlay_rgb, save_overlay_png
from io_fixtures import AXIAL_REVERSED, CORONAL, OBLIQUE, SAGITTAL


def test_overlay_keeps_normal_tissue_and_colours_high_scores():
    image = np.full((4, 5), 0.5, dtype=np.float32)
    anomaly_map = np.zeros((4, 5), dtype=np.float32)
    anomaly_map[1, 2] = 0.6
    rgb = overlay_rgb(image, anomaly_map, vmin=0.0, vmax=1.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)
    assert (rgb[0, 0] == 128).all()  # zero score: the grey image unchanged
    red, green, blue = (int(v) for v in rgb[1, 2])
    assert red > 128 > green > blue  # a high score turns hot


def test_small_slices_are_enlarged_by_a_whole_factor(tmp_path):
    path = save_overlay_png(tmp_path / "o.png", np.zeros((30, 50)), np.zeros((30, 50)))
    with Image.open(path) as image:
        assert image.size == (50 * 6, 30 * 6) and max(image.size) >= MIN_PNG_SIDE


@pytest.mark.parametrize("direction", [np.eye(3), CORONAL, SAGITTAL, AXIAL_REVERSED, OBLIQUE])
@pytest.mark.parametrize("axis, up, image_left", [("axial", 1, 0), ("coronal", 2, 0), ("sagittal", 2, 1)])
def test_display_puts_anatomy_where_radiologists_expect_it(direction, axis, up, image_left):
    """Axial: anterior up, patient right on the image's left; coronal: superior up, right on
    the left; sagittal: superior up, anterior on the left."""
    volume = Volume(np.zeros((9, 10, 11), dtype=np.float32), direction=tuple(np.asarray(direction).reshape(-1)))
    shape_ijk = np.array(volume.shape[::-1])
    centre = volume.index_to_physical((shape_ijk - 1) / 2.0)
    ijk = np.indices(volume.shape).reshape(3, -1)[::-1].T  # every voxel's (i, j, k)
    offsets = (volume.index_to_physical_matrix[:3, :3] @ ijk.T).T + volume.origin - centre
    # Up means anterior (-y) for axial, superior (+z) otherwise; image left means right (-x)
    # for axial / coronal and anterior (-y) for sagittal.
    up_sign = -1.0 if up == 1 else 1.0
    volume.array[:] = (up_sign * offsets[:, up] + -offsets[:, image_left]).reshape(volume.shape)
    middle = slice_count(volume, axis) // 2
    shown = orient_for_display(volume, axis, get_slice(volume, axis, middle))
    # The top-left corner holds the most "up and image-left" voxel of the slice.
    assert np.unravel_index(np.argmax(shown), shown.shape) == (0, 0)
    assert np.unravel_index(np.argmin(shown), shown.shape) == (shown.shape[0] - 1, shown.shape[1] - 1)
