"""``d24fad benchmark-speed``: query images per second against the in-run roofline."""

from __future__ import annotations

import argparse
import json

NAME = "benchmark-speed"
HELP = "measure scoring speed (images/s, support cached) against the machine's matmul roofline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="wide_resnet50_2", help="timm teacher name (default: the paper's)")
    p.add_argument("--weights", default="random", choices=["random", "offline", "hub"], help="teacher weights")
    p.add_argument("--checkpoint", help="benchmark a trained checkpoint instead of a fresh network")
    p.add_argument("--shots", type=int, default=8, help="support images K")
    p.add_argument("--batch", type=int, default=16, help="query batch size")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="bf16", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--seconds", type=float, default=10.0, help="minimum timed duration")
    p.add_argument("--allow-download", action="store_true", help="allow fetching hub weights")
    p.add_argument("--json", action="store_true", help="print one JSON object only")


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.speed import run_speed_benchmark

    report = run_speed_benchmark(
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        shots=args.shots,
        batch=args.batch,
        device=args.device,
        dtype=args.dtype,
        min_seconds=args.seconds,
        allow_download=args.allow_download,
        checkpoint=args.checkpoint,
    )
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for key, value in report.to_dict().items():
            print(f"{key:>24}: {value}")
    return 0
