"""Synthetic lesions: determinism, exact masks, kinds behave as named, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from d24fad.data.lesions import LESION_KINDS, synthesize_lesion
from d24fad.errors import InputError


def _tissue_like(shape, seed=0, has_channels=False):
    """Mid-grey textured 'tissue' with structure (edges) everywhere, values in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    field = 0.5 + 0.3 * field / np.abs(field).max()
    if has_channels:
        field = np.stack([field, 0.9 * field, 0.8 * field], axis=-1)
    return field.astype(np.float32)


LAYOUTS = {
    "grey": ((64, 72), False),
    "colour": ((64, 72), True),
    "volume": ((24, 32, 30), False),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", LESION_KINDS)
def test_mask_covers_every_changed_pixel(kind, layout):
    shape, has_channels = LAYOUTS[layout]
    image = _tissue_like(shape, has_channels=has_channels)
    original = image.copy()
    out, mask = synthesize_lesion(image, np.random.default_rng(5), kind=kind)

    assert np.array_equal(image, original), "input was modified"
    assert out.shape == image.shape and out.dtype == image.dtype
    assert mask.shape == shape and mask.dtype == bool
    assert 0.0 <= out.min() and out.max() <= 1.0
    changed = out != image
    if has_channels:
        changed = changed.any(axis=-1)
    assert changed.any()
    assert not (changed & ~mask).any(), "pixels changed outside the mask"
    # The mask is the lesion, not a loose box: most of it really changed.
    assert changed[mask].mean() > 0.6


@pytest.mark.parametrize("kind", ["auto", *LESION_KINDS])
def test_same_generator_state_gives_same_lesion(kind):
    image = _tissue_like((48, 48), seed=1)
    first = synthesize_lesion(image, np.random.default_rng(42), kind=kind)
    second = synthesize_lesion(image, np.random.default_rng(42), kind=kind)
    other = synthesize_lesion(image, np.random.default_rng(43), kind=kind)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_hyper_brightens_and_hypo_darkens_the_masked_region():
    image = _tissue_like((64, 64), seed=2)
    for kind, sign in (("hyper", 1.0), ("hypo", -1.0)):
        out, mask = synthesize_lesion(image, np.random.default_rng(0), kind=kind, center=(32, 32), radius=8)
        shift = float((out[mask] - image[mask]).mean())
        assert sign * shift > 0.08, (kind, shift)


def test_texture_change_keeps_mean_but_changes_pixels():
    image = _tissue_like((64, 64), seed=3)
    out, mask = synthesize_lesion(image, np.random.default_rng(0), kind="texture", center=(32, 32), radius=10)
    assert abs(float(out[mask].mean() - image[mask].mean())) < 0.05
    assert float(np.abs(out[mask] - image[mask]).mean()) > 0.03


def test_center_and_radius_are_respected():
    image = _tissue_like((96, 96), seed=4)
    out, mask = synthesize_lesion(image, np.random.default_rng(7), kind="hyper", center=(30, 60), radius=10)
    centroid = np.argwhere(mask).mean(axis=0)
    assert np.allclose(centroid, (30, 60), atol=4)
    # Semi-axes are 0.7-1.3 x radius with a lobulated outline: the area stays near pi r^2.
    assert 0.3 * np.pi * 100 < mask.sum() < 2.2 * np.pi * 100


def test_lesions_land_in_tissue_not_in_background():
    image = np.zeros((96, 96), dtype=np.float32)
    yy, xx = np.mgrid[:96, :96]
    disk = (yy - 60) ** 2 + (xx - 40) ** 2 < 25**2
    image[disk] = _tissue_like((96, 96), seed=5)[disk]
    for seed in range(6):
        _, mask = synthesize_lesion(image, np.random.default_rng(seed), kind="hyper", radius=6)
        assert disk[mask].mean() > 0.95


def test_auto_draws_a_kind_from_the_generator_then_makes_that_lesion():
    image = _tissue_like((48, 48), seed=6)
    seen = set()
    for seed in range(12):
        rng_for_kind = np.random.default_rng(seed)
        kind = LESION_KINDS[int(rng_for_kind.integers(len(LESION_KINDS)))]
        # After the kind is drawn, rng_for_kind is in the state "auto" continues from.
        explicit = synthesize_lesion(image, rng_for_kind, kind=kind)
        automatic = synthesize_lesion(image, np.random.default_rng(seed), kind="auto")
        assert np.array_equal(explicit[0], automatic[0]) and np.array_equal(explicit[1], automatic[1])
        seen.add(kind)
    assert seen == set(LESION_KINDS)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"image": np.zeros((32, 32), dtype=np.uint8)}, "image"),
        ({"image": np.full((32, 32), 1.5, dtype=np.float32)}, "image"),
        ({"image": np.full((32, 32), np.nan, dtype=np.float32)}, "image"),
        ({"image": np.zeros((4, 32, 32, 3), dtype=np.float32)}, "image"),
        ({"image": np.zeros((5, 5), dtype=np.float32)}, "image"),
        ({"kind": "tumour"}, "kind"),
        ({"radius": 1.0}, "radius"),
        ({"radius": 100.0}, "radius"),
        ({"center": (40, 3)}, "center"),
        ({"center": (3,)}, "center"),
        ({"rng": 3}, "rng"),
    ],
)
def test_bad_inputs_raise_typed_errors_naming_the_parameter(kwargs, word):
    arguments = {"image": _tissue_like((32, 32)), "rng": np.random.default_rng(0)}
    arguments.update(kwargs)
    with pytest.raises(InputError, match=word):
        synthesize_lesion(**arguments)
