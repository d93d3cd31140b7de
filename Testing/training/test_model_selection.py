"""Model selection on validation metrics of the training tasks."""

from __future__ import annotations

from d24fad.training.trainer import _is_better


def test_higher_image_auroc_wins_then_pixel_auroc_breaks_ties_and_ties_keep_the_earlier():
    best = {"epoch": 1, "val_image_auroc": 0.6, "val_pixel_auroc": 0.7}
    assert _is_better({"val_image_auroc": 0.61, "val_pixel_auroc": 0.1}, best)
    assert _is_better({"val_image_auroc": 0.6, "val_pixel_auroc": 0.71}, best)
    assert not _is_better({"val_image_auroc": 0.6, "val_pixel_auroc": 0.7}, best)
    assert not _is_better({"val_image_auroc": float("nan"), "val_pixel_auroc": 0.9}, best)


def test_without_validation_data_the_latest_epoch_is_the_model():
    assert _is_better({"epoch": 2, "loss": 0.5}, {"epoch": 1, "loss": 0.4})
    assert _is_better({"epoch": 1}, None)
