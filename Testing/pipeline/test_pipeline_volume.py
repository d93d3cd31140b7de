"""score_volume / score_image_folder: geometry of the returned maps, supports, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from d24fad import slicing
from d24fad.detector import ScoreResult
from d24fad.errors import CancelledError, SupportSetError
from d24fad.io import Volume
from d24fad.pipeline import SupportRef, score_image_folder, score_volume
from io_fixtures import OBLIQUE, SAGITTAL


class EchoDetector:
    """Stands in for the network where only geometry matters: the 'anomaly map' of a query
    is its own input image, so the returned map must reproduce the normalised volume."""

    image_size = 64

    def __init__(self):
        self.supports = None

    def set_support(self, images):
        self.supports = np.asarray(images)

    def score(self, images, batch_size=16, progress=None, should_cancel=None):
        maps = np.asarray(images).mean(axis=1)
        k = len(self.supports)
        return ScoreResult(maps=maps.astype(np.float32), scores=maps.max(axis=(1, 2)).astype(np.float32),
                           weights=np.full((len(maps), 3, k), 1.0 / k, dtype=np.float32))

    def calibrate_threshold(self):
        return 0.5


def brainlike_volume(direction=np.eye(3), shape=(9, 30, 44)) -> Volume:
    """A smooth blob volume (MR-like), with non-square slices and non-unit spacing."""
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    # Off-centre, so that a flipped or transposed map would move its centre of mass.
    values = 1000.0 * np.exp(-((k - 0.3) ** 2 + (j + 0.2) ** 2 + (i - 0.4) ** 2) * 3.0) + 50.0
    return Volume(values.astype(np.float32), spacing=(0.8, 0.6, 3.0), origin=(5.0, -7.0, 20.0),
                  direction=tuple(np.asarray(direction, dtype=float).reshape(-1)), modality="MR", source="blob")


def centre_of_mass(values: np.ndarray) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij")
    return np.array([(g * values).sum() / values.sum() for g in grids])


@pytest.mark.parametrize("axis", slicing.AXES)
@pytest.mark.parametrize("direction", [np.eye(3), SAGITTAL, OBLIQUE])
def test_map_lands_on_the_source_voxels(axis, direction):
    volume = brainlike_volume(direction)
    # Pure geometry: keep the whole map (the body restriction is tested on its own below).
    result = score_volume(volume, [SupportRef(volume, [0, 1])], EchoDetector(), axis=axis, body_only=False)
    assert result.anomaly_map.shape == volume.shape and result.anomaly_map.dtype == np.float32
    assert result.map_volume.same_geometry(volume)
    normalized = result.anomaly_map  # echo: map = normalised input put back on the grid
    from d24fad.preprocess import normalize_intensity

    expected = normalize_intensity(volume.array, "MR")
    error = np.abs(normalized - expected)
    assert error.mean() < 0.01
    # The blob's centre of mass stays where it was (no shift, flip or transposition).
    assert np.abs(centre_of_mass(normalized) - centre_of_mass(expected)).max() < 0.1
    np.testing.assert_allclose(result.slice_positions_mm, slicing.slice_positions(volume, axis))
    np.testing.assert_array_equal(result.slice_indices, np.arange(slicing.slice_count(volume, axis)))


def test_tiny_model_scores_every_slice(tiny_detector):
    volume = brainlike_volume()
    progress = []
    result = score_volume(volume, [SupportRef(volume, [0, 1, 8])], tiny_detector, batch_size=4,
                          progress=lambda done, total: progress.append((done, total)), threshold="auto")
    n = volume.shape[0]
    assert result.slice_scores.shape == (n,) and result.slice_scores.dtype == np.float32
    assert result.weights.shape == (n, 3, 3)
    np.testing.assert_allclose(result.weights.sum(axis=-1), 1.0, atol=1e-5)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1] == (n, n)
    assert isinstance(result.threshold, float) and np.isfinite(result.threshold)
    mask = result.mask_volume()
    assert mask.array.dtype == np.uint8 and mask.same_geometry(volume)
    np.testing.assert_array_equal(mask.array, (result.anomaly_map >= result.threshold).astype(np.uint8))
    top = result.top_slices(3)
    assert [s for _, _, s in top] == sorted(result.slice_scores, reverse=True)[:3]
    again = score_volume(volume, [SupportRef(volume, [0, 1, 8])], tiny_detector, batch_size=2)
    np.testing.assert_allclose(again.slice_scores, result.slice_scores, rtol=1e-5)  # batch size does not matter


def test_supports_from_another_volume(tiny_detector):
    volume = brainlike_volume()
    other = brainlike_volume(shape=(5, 22, 22))
    result = score_volume(volume, [SupportRef(volume, [0]), SupportRef(other, [1, 3])], tiny_detector)
    assert result.weights.shape[-1] == 3
    assert [s["indices"] for s in result.supports] == [[0], [1, 3]]
    assert [s["same_as_input"] for s in result.supports] == [True, False]


@pytest.mark.parametrize("indices, message", [([0, 9], r"index 9 .*0\.\.8"), ([-1], r"index -1 .*0\.\.8"),
                                              ([], "no support slices")])
def test_bad_support_indices(indices, message):
    volume = brainlike_volume()
    with pytest.raises(SupportSetError, match=message):
        score_volume(volume, [SupportRef(volume, indices)], EchoDetector())
    with pytest.raises(SupportSetError, match="empty"):
        score_volume(volume, [], EchoDetector())


def test_cancel_stops_between_batches(tiny_detector):
    volume = brainlike_volume()
    with pytest.raises(CancelledError):
        score_volume(volume, [SupportRef(volume, [0])], tiny_detector, batch_size=2, should_cancel=lambda: True)


def write_pngs(folder, count, seed, size=(20, 28)):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for n in range(count):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"img{n}.png")


def test_image_folder_scoring(tmp_path, tiny_detector):
    write_pngs(tmp_path / "normal", 4, 0)
    write_pngs(tmp_path / "query", 3, 1, size=(31, 17))
    result = score_image_folder(tmp_path / "normal", tmp_path / "query", tiny_detector, shots=2)
    assert [p.name for p in result.support_paths] == ["img0.png", "img1.png"]
    assert result.scores.shape == (3,) and result.weights.shape == (3, 3, 2)
    assert all(m.shape == (31, 17) for m in result.maps)
    with pytest.raises(SupportSetError, match="--shots 5 is larger than the 4 images"):
        score_image_folder(tmp_path / "normal", tmp_path / "query", tiny_detector, shots=5)


def ct_phantom() -> Volume:
    """Axial CT-like volume: air (-1000 HU) around an elliptic body (40 HU) holding two lungs
    (-800 HU); the first two and last two slices show air only (beyond the patient)."""
    shape = (10, 40, 48)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = ((j - 20) / 16.0) ** 2 + ((i - 24) / 20.0) ** 2 <= 1.0
    body &= (k >= 2) & (k <= 7)
    hu[body] = 40.0
    for centre in (14, 34):
        lung = ((j - 20) / 9.0) ** 2 + ((i - centre) / 6.0) ** 2 <= 1.0
        hu[body & lung] = -800.0
    return Volume(hu, spacing=(1.0, 1.0, 2.5), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).reshape(-1)),
                  modality="CT", source="phantom")


def test_body_mask_keeps_enclosed_lungs_and_drops_air():
    from d24fad.preprocess import body_mask

    volume = ct_phantom()
    mask = body_mask(volume.array, "CT")
    assert not mask[0].any() and not mask[9].any()  # air-only slices
    assert mask[5, 20, 14] and mask[5, 20, 34]  # lungs are inside the body
    assert mask[5, 20, 24] and not mask[5, 1, 1]  # mediastinum in, corner air out


def test_maps_and_slice_scores_are_restricted_to_the_body():
    volume = ct_phantom()
    result = score_volume(volume, [SupportRef(volume, [3, 4])], EchoDetector(), window="lung")
    # Air-only slices cannot hold a finding: zero score, zero map.
    assert result.slice_scores[0] == 0 and result.slice_scores[9] == 0
    assert result.anomaly_map[[0, 1, 8, 9]].max() == 0
    assert (result.slice_scores[2:8] > 0).all()
    assert result.anomaly_map[5, 1, 1] == 0 and result.anomaly_map[5, 20, 24] > 0
    assert result.slice_body_fraction[0] == 0 and result.slice_body_fraction[5] > 0.3
    # A slice's score is the maximum of its map, body restriction included.
    np.testing.assert_allclose(result.slice_scores, result.anomaly_map.max(axis=(1, 2)), atol=1e-6)
    unrestricted = score_volume(volume, [SupportRef(volume, [3, 4])], EchoDetector(), window="lung", body_only=False)
    assert unrestricted.slice_body_fraction is None
