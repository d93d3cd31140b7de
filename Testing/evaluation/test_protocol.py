"""The evaluation harness: same maps as the product's detector, no image dropped, no
leakage between images, identical support draws for every method, report layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from d24fad.data.datasets import EvaluationImages
from d24fad.detector import FewShotDetector
from d24fad.errors import InputError
from d24fad.evaluation import protocol
from d24fad.evaluation.baselines import L2WMaps, PatchCoreMaps, TeacherStudentMaps, extract_features, standard_methods
from d24fad.evaluation.metrics import support_threshold
from d24fad.evaluation.report import markdown_tables, results_document


def _images(n, seed, size=64):
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


@pytest.mark.parametrize("mode", ["ssd", "uniform", "tsd"])
def test_harness_maps_and_threshold_match_the_detector(tiny_model, mode):
    supports, queries = _images(3, 1), _images(5, 2)
    detector = FewShotDetector(tiny_model, device="cpu", dtype="fp32", mode=mode)
    detector.set_support(supports)
    expected = detector.score(queries, batch_size=2)
    method = {"ssd": L2WMaps(tiny_model), "uniform": L2WMaps(tiny_model, "uniform", uniform=True),
              "tsd": TeacherStudentMaps(tiny_model)}[mode]
    support_features = extract_features(tiny_model, supports)
    maps = method.maps(extract_features(tiny_model, queries), support_features)
    np.testing.assert_allclose(maps.numpy(), expected.maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(method.scores(maps).numpy(), expected.scores, rtol=1e-4, atol=1e-5)
    threshold = support_threshold(method.leave_one_out_maps(support_features).numpy())
    assert threshold == pytest.approx(detector.calibrate_threshold(), rel=1e-4)


def test_patchcore_is_zero_on_a_support_and_positive_elsewhere(tiny_model):
    supports = _images(2, 3)
    method = PatchCoreMaps(tiny_model)
    support_features = extract_features(tiny_model, supports)
    same = method.maps(extract_features(tiny_model, supports[:1]), support_features)
    other = method.maps(extract_features(tiny_model, _images(1, 4)), support_features)
    assert same.abs().max() < 1e-4
    assert other.min() > 0


def test_tsd_maps_do_not_depend_on_the_supports(tiny_model):
    method = TeacherStudentMaps(tiny_model)
    query = extract_features(tiny_model, _images(2, 5))
    a = method.maps(query, extract_features(tiny_model, _images(2, 6)))
    b = method.maps(query, extract_features(tiny_model, _images(3, 7)))
    assert torch.equal(a, b)


def _toy_test_set(n_good=7, n_bad=6, size=64):
    images = _images(n_good + n_bad, 8, size)
    masks = np.zeros((n_good + n_bad, size, size), dtype=bool)
    for i in range(n_good, n_good + n_bad):
        images[i, :, 20:30, 20:30] = 1.0
        masks[i, 20:30, 20:30] = True
    labels = np.r_[np.zeros(n_good, np.int64), np.ones(n_bad, np.int64)]
    return EvaluationImages("toy", images, labels, [f"{i}" for i in range(n_good + n_bad)], masks)


def test_every_test_image_is_scored_and_batching_does_not_leak(tiny_model, monkeypatch):
    monkeypatch.setattr(protocol, "QUERY_CHUNK", 4)  # 13 images: chunks of 4, 4, 4, 1
    test_set = _toy_test_set()
    settings = protocol.ProtocolSettings(shots=(1, 2), draws=2, example_shots=2)
    evaluation = protocol.evaluate_task(standard_methods(tiny_model), _images(6, 9), test_set, settings)
    assert evaluation.n_test == 13
    for method, (labels, scores) in evaluation.roc_inputs.items():
        assert len(labels) == len(scores) == 13, method
    assert set(evaluation.per_draw) == {"d24fad", "patchcore", "tsd", "uniform"}
    assert all(len(draws) == 2 for by_k in evaluation.per_draw.values() for draws in by_k.values())
    # A map computed in a batch equals the map of the image scored alone (per-image smoothing).
    method = L2WMaps(tiny_model)
    support = extract_features(tiny_model, _images(2, 10))
    batch = protocol.maps_in_chunks(method, extract_features(tiny_model, test_set.images), support)
    alone = method.maps(extract_features(tiny_model, test_set.images[5:6]), support)
    np.testing.assert_allclose(batch[5].numpy(), alone[0].numpy(), rtol=1e-5, atol=1e-6)


def test_support_draws_are_deterministic_distinct_and_checked():
    a = protocol.draw_supports(10, 4, 5, seed=0, task="brain")
    b = protocol.draw_supports(10, 4, 5, seed=0, task="brain")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(len(set(x.tolist())) == 4 for x in a)
    assert any(not np.array_equal(x, y) for x, y in zip(a, protocol.draw_supports(10, 4, 5, seed=0, task="retina")))
    with pytest.raises(InputError, match="K=11"):
        protocol.draw_supports(10, 11, 1, seed=0, task="brain")


def test_results_document_layout_and_markdown():
    evaluation = protocol.TaskEvaluation("brain", 4)
    evaluation.per_draw = {"d24fad": {2: [{"image_auroc": 0.8, "calibrated_dice": float("nan")},
                                         {"image_auroc": 0.6, "calibrated_dice": float("nan")}]}}
    document = results_document([evaluation], {"protocol": {}})
    cell = document["results"]["d24fad"]["brain"]["2"]
    assert cell["image_auroc"] == {"mean": pytest.approx(0.7), "std": pytest.approx(np.std([0.8, 0.6], ddof=1)), "n": 2}
    assert cell["calibrated_dice"] == {"mean": None, "std": None, "n": 0}
    assert document["task_means"]["d24fad"]["2"]["image_auroc"] == pytest.approx(0.7)
    table = markdown_tables(document)
    assert "| d24fad | 2 | 70.0 ± 14.1 | **70.0** |" in table


def test_teacher_mean_diagnostic_is_zero_on_its_own_support_and_not_a_default(tiny_model):
    from d24fad.evaluation.baselines import TeacherMeanMaps
    from d24fad.evaluation.run import DEFAULT_METHODS, METHOD_NAMES

    image = _images(1, 11)
    method = TeacherMeanMaps(tiny_model)
    features = extract_features(tiny_model, image)
    assert method.maps(features, features).abs().max() < 1e-5
    assert "teacher_mean" in METHOD_NAMES and "teacher_mean" not in DEFAULT_METHODS
