"""scripts/demo.py builds its input deterministically: a real template, a lesion in a few
slices, supports away from it. (Scoring itself is covered by the CLI tests.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("d24fad_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template(demo, tmp_path_factory):
    return demo.template_volume(tmp_path_factory.mktemp("demo"))


def test_template_geometry_is_the_mni_grid(template):
    # MNI152 2 mm: 99 x 117 x 95 voxels; RAS origin (-98, -134, -72) is LPS (98, 134, -72).
    assert template.shape == (95, 117, 99)
    np.testing.assert_allclose(template.spacing, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(template.origin, (98.0, 134.0, -72.0))
    np.testing.assert_allclose(template.direction, (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-9)


def test_lesion_is_deterministic_and_supports_avoid_it(demo, template):
    first, mask = demo.add_lesion(template)
    again, mask_again = demo.add_lesion(template)
    np.testing.assert_array_equal(first.array, again.array)
    np.testing.assert_array_equal(mask.array, mask_again.array)
    lesion_slices = np.flatnonzero(mask.array.any(axis=(1, 2)))
    assert 3 <= len(lesion_slices) <= 12
    changed = np.flatnonzero((first.array != np.clip(template.array, 0, 1)).any(axis=(1, 2)))
    assert set(changed) <= set(lesion_slices)
    supports = demo.choose_supports(first, lesion_slices)
    assert len(supports) == demo.SUPPORT_COUNT
    assert min(abs(s - k) for s in supports for k in lesion_slices) > demo.SUPPORT_MARGIN_SLICES
    # References show brain (air-only slices are no reference), spread over the brain's extent.
    from d24fad.preprocess import body_mask

    body = body_mask(first.array, first.modality)
    assert all(body[s].mean() >= demo.SUPPORT_MIN_BODY_FRACTION for s in supports)
    brain_slices = [k for k in range(first.shape[0]) if body[k].mean() >= demo.SUPPORT_MIN_BODY_FRACTION]
    assert supports[0] == brain_slices[0] and supports[-1] == brain_slices[-1]
