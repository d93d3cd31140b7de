"""FewShotDetector behaviour on real brain MRI slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from d24fad.config import ModelConfig
from d24fad.data.lesions import synthesize_lesion
from d24fad.detector import FewShotDetector
from d24fad.errors import CancelledError, InputError, SupportSetError
from d24fad.models.d24fad import D24FADModel

from engine_fixtures import tiny_config, train_steps


class TeacherEchoModel(D24FADModel):
    """A student fitted to be the identity of the teacher: S_s(x) = T_s(x).

    It isolates what this test is about (L2W choice, map arithmetic, per-image smoothing,
    localisation) from how well a briefly trained student reconstructs the teacher.
    """

    def encode(self, images01):
        self._last_teacher = super().encode(images01)
        return self._last_teacher

    def decode(self, deepest):
        return [f.clone() for f in self._last_teacher[:-1]]


def _prep(img, size=128):
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)


@pytest.mark.parametrize("kind,center", [("hyper", (50, 40)), ("hypo", (70, 60)), ("texture", (40, 65))])
def test_lesion_scores_higher_than_identical_normal_and_map_peaks_inside(brain_slices, kind, center):
    import torch.nn.functional as F
    from scipy import ndimage

    det = FewShotDetector(TeacherEchoModel(ModelConfig(image_size=128)), device="cpu", dtype="fp32")
    supports = brain_slices[[6, 9, 12]]
    query = supports[1]
    with_lesion, mask = synthesize_lesion(query, np.random.default_rng(3), kind=kind, center=center, radius=12)
    det.set_support(torch.cat([_prep(s) for s in supports]))
    normal = det.score(_prep(query))
    abnormal = det.score(_prep(with_lesion))
    assert (normal.weights[0].argmax(-1) == 1).all()  # L2W relies on the identical support
    assert normal.scores[0] < 1e-3
    assert abnormal.scores[0] > 10 * max(normal.scores[0], 1e-4)
    mask128 = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=(128, 128)).numpy()[0, 0] > 0
    near_lesion = ndimage.binary_dilation(mask128, iterations=3)  # sigma-4 smoothing spreads the peak
    peak = np.unravel_index(np.argmax(abnormal.maps[0]), abnormal.maps[0].shape)
    assert near_lesion[peak], f"map peak {peak} is outside the {kind} lesion"


def test_batch_scoring_equals_one_by_one(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu", dtype="fp32")
    det.set_support(brain_images64[:3])
    queries = brain_images64[5:11]
    batched = det.score(queries, batch_size=6)
    single = [det.score(q[None], batch_size=1) for q in queries]
    np.testing.assert_allclose(batched.maps, np.concatenate([s.maps for s in single]), atol=1e-5)
    np.testing.assert_allclose(batched.scores, np.concatenate([s.scores for s in single]), atol=1e-5)


def test_same_inputs_give_same_outputs_on_cpu(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu", dtype="fp32")
    det.set_support(brain_images64[:4])
    a = det.score(brain_images64[8:12], batch_size=2)
    b = det.score(brain_images64[8:12], batch_size=2)
    assert np.array_equal(a.maps, b.maps) and np.array_equal(a.weights, b.weights)


def test_every_query_is_scored_and_progress_reported(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu")
    det.set_support(brain_images64[:2])
    calls = []
    result = det.score(brain_images64[:7], batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert result.maps.shape == (7, 64, 64) and result.scores.shape == (7,)
    assert result.weights.shape == (7, 3, 2)
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_cancel_between_batches(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu")
    det.set_support(brain_images64[:2])
    seen = []
    with pytest.raises(CancelledError):
        det.score(brain_images64[:9], batch_size=3, progress=lambda d, t: seen.append(d), should_cancel=lambda: len(seen) >= 1)
    assert seen == [3]


def test_bad_inputs_are_typed_errors(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu")
    with pytest.raises(SupportSetError):
        det.score(brain_images64[:1])
    with pytest.raises(InputError, match="support images"):
        det.set_support(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(SupportSetError):
        det.set_support(np.zeros((0, 3, 64, 64), np.float32))
    bad = brain_images64[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        det.set_support(bad)


def test_calibrated_threshold_from_supports(tiny_model, brain_images64):
    det = FewShotDetector(tiny_model, device="cpu")
    det.set_support(brain_images64[:4])
    loo = det.leave_one_out_maps()
    assert loo.shape == (4, 64, 64)
    assert det.calibrate_threshold(1.0) == pytest.approx(float(loo.max()))
    det.set_support(brain_images64[:1])
    with pytest.raises(SupportSetError, match="at least 2"):
        det.calibrate_threshold()


@pytest.mark.parametrize("mode", ["uniform", "tsd"])
def test_ablation_modes_produce_maps(mode, brain_images64):
    torch.manual_seed(0)
    det = FewShotDetector(D24FADModel(tiny_config()), device="cpu", mode=mode)
    det.set_support(brain_images64[:3])
    result = det.score(brain_images64[4:6])
    assert result.maps.shape == (2, 64, 64) and np.isfinite(result.maps).all()
    if mode == "uniform":
        assert np.allclose(result.weights, 1 / 3)


def test_bf16_scores_close_to_fp32(tiny_model, brain_images64):
    exact = FewShotDetector(tiny_model, device="cpu", dtype="fp32")
    exact.set_support(brain_images64[:3])
    fast = FewShotDetector(tiny_model, device="cpu", dtype="bf16")
    fast.set_support(brain_images64[:3])
    a = exact.score(brain_images64[5:9]).scores
    b = fast.score(brain_images64[5:9]).scores
    np.testing.assert_allclose(a, b, rtol=0.1, atol=0.02)
