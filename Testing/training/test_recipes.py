"""`d24fad train --config paper` is the paper's recipe; overrides apply on top of a recipe."""

from __future__ import annotations

import argparse

from d24fad.cli import train as train_cli


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return parser.parse_args(["--data", "D", "--out", "O", *argv])


def test_paper_recipe_is_wrn50_128px_batch16_70_epochs_k_248():
    args = _args("--config", "paper")
    config = train_cli.model_config_from_args(args)
    assert (config.teacher, config.teacher_weights, config.image_size, config.loss_lambda) == ("wide_resnet50_2", "hub", 128, 0.1)
    assert train_cli.RECIPES["paper"] == {"epochs": 70, "batch": 16, "shots": (2, 4, 8), "lr": 1e-4, "loss_lambda": 0.1}


def test_default_recipe_uses_the_offline_teacher_and_overrides_apply():
    config = train_cli.model_config_from_args(_args())
    assert (config.teacher, config.teacher_weights, config.loss_lambda) == ("tf_efficientnet_lite0", "offline", 10.0)
    assert train_cli.RECIPES["default"]["lr"] == 1e-3
    tiny = train_cli.model_config_from_args(_args("--teacher", "resnet18", "--teacher-weights", "random",
                                                  "--image-size", "64", "--loss-lambda", "0"))
    assert (tiny.teacher, tiny.teacher_weights, tiny.image_size, tiny.loss_lambda) == ("resnet18", "random", 64, 0.0)
