"""``d24fad build-benchmark``: write the offline MedFAD-mini benchmark (synthetic anomalies)."""

from __future__ import annotations

import argparse

NAME = "build-benchmark"
HELP = "build MedFAD-mini, an offline multi-organ benchmark (real normal images, synthetic lesions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--image-size", type=int, default=128, help="side of the square PNG images in pixels")
    parser.add_argument("--train", type=int, default=40, help="normal training images per task")
    parser.add_argument("--test-good", type=int, default=20, help="normal test images per task")
    parser.add_argument("--test-bad", type=int, default=20, help="abnormal (synthetic lesion) test images per task")
    parser.add_argument("--tasks", nargs="+", default=None, help="subset of tasks (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar")


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.medfad_mini import Counts, build_medfad_mini

    counts = Counts(train_good=args.train, test_good=args.test_good, test_bad=args.test_bad)
    manifest = build_medfad_mini(
        args.out, seed=args.seed, image_size=args.image_size, counts=counts, tasks=args.tasks,
        overwrite=args.overwrite, progress=args.progress,
    )
    print(f"MedFAD-mini written to {args.out}: {len(manifest['tasks'])} tasks "
          f"({', '.join(manifest['tasks'])}); anomalies are synthetic")
    return 0
