"""The ``d24fad`` command line: one module per subcommand.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Heavy imports (torch, timm, SimpleITK) happen inside ``run`` so that
``d24fad --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import D24FADError, InputError, CancelledError

# Module names under d24fad.cli, in the order shown by --help.
SUBCOMMANDS: tuple[str, ...] = (
    "info",
    "score",
    "series",
    "benchmark_speed",
    "build_benchmark",
    "train",
    "evaluate",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d24fad",
        description="Few-shot anomaly detection for medical images (D2-4FAD).",
    )
    parser.add_argument("--version", action="version", version=f"d24fad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{module_name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or EXIT_OK)
    except CancelledError as exc:
        print(f"d24fad: cancelled: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except InputError as exc:
        print(f"d24fad: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except D24FADError as exc:
        print(f"d24fad: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("d24fad: interrupted", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
