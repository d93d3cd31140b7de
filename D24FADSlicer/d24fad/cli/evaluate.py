"""``d24fad evaluate``: few-shot evaluation of a checkpoint and the baselines on test tasks."""

from __future__ import annotations

import argparse
import json

NAME = "evaluate"
HELP = ("evaluate a checkpoint and the baselines (PatchCore, TSD, uniform weights, SSD-only) with R support "
        "draws per K on TASK/test folders: image AUROC/AP, pixel AUROC, AUPRO, Dice, timing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data root holding TASK/{train/good,test/good,test/bad[,test/mask]}")
    parser.add_argument("--out", required=True, help="folder for results.json, results.md, ROC curves and heat maps")
    parser.add_argument("--checkpoint", default=None, help="model to evaluate (default: the shipped default model)")
    parser.add_argument("--ssd-only-checkpoint", default=None,
                        help="a model trained with --loss-lambda 0, evaluated as the 'ssd_only' baseline")
    parser.add_argument("--tasks", nargs="+", default=None, help="test tasks (default: all in --data)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="subset of d24fad patchcore tsd uniform ssd_only teacher_mean "
                             "(default: all but the teacher_mean diagnostic)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8], help="K values")
    parser.add_argument("--draws", type=int, default=5, help="support draws per K")
    parser.add_argument("--seed", type=int, default=0, help="seed of the support draws")
    parser.add_argument("--json", default=None, help="also write the JSON results to this file")
    parser.add_argument("--no-figures", action="store_true", help="skip ROC curves and heat maps")
    parser.add_argument("--window", default="auto", help="intensity window (see d24fad score --help)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import ProtocolSettings
    from ..evaluation.run import evaluate_benchmark
    from ..io.atomic import write_text_atomic
    from .train import set_threads

    set_threads(args.threads)
    settings = ProtocolSettings(shots=tuple(args.shots), draws=args.draws, seed=args.seed)
    document = evaluate_benchmark(
        args.data, args.out, checkpoint=args.checkpoint, ssd_only_checkpoint=args.ssd_only_checkpoint,
        tasks=args.tasks, methods=args.methods, settings=settings, window=args.window,
        figures=not args.no_figures, progress=args.progress,
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(document, indent=2, sort_keys=True) + "\n")
    for method, by_shots in document["task_means"].items():
        row = ", ".join(
            f"K={k}: {v['image_auroc']:.3f}" for k, v in by_shots.items() if v.get("image_auroc") is not None
        )
        print(f"{method:10s} mean image AUROC  {row}")
    return 0
