"""Leave-one-task-out grid: for every task, train on the others, evaluate on it; one table.

    python -m d24fad.evaluation.leave_one_out --data ROOT --out DIR [--config default|paper]
        [--epochs N] [--with-ssd-only] [--jobs 2] [--launcher 'torchrun --nproc_per_node 4']
        [--markdown docs/RESULTS.md] [-- extra train args]

Each fold runs the ``d24fad train`` and ``d24fad evaluate`` commands in subprocesses
(logged in DIR/TASK/*.log), so a fold can be inspected or rerun by hand. A finished fold
(its results.json exists) is skipped; an interrupted training resumes. The merged
results go to DIR/results.json and DIR/results.md (layout: d24fad.evaluation.report).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from ..data.datasets import discover_tasks
from ..errors import D24FADError
from ..io.atomic import write_text_atomic
from .report import machine_description, markdown_tables, task_means

D24FAD = [sys.executable, "-m", "d24fad"]
# Text after this line in an existing Markdown report is written by people: it is kept.
KEPT_SECTION_MARKER = "<!-- hand-written analysis below: kept when the tables are regenerated -->"


def _run_logged(command: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as stream:
        stream.write("$ " + " ".join(command) + "\n")
        stream.flush()
        finished = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise D24FADError(f"command failed ({finished.returncode}), see {log}: {' '.join(command)}")


def _train_command(args, task: str, out: Path, extra: Sequence[str], loss_lambda: Optional[float]) -> list[str]:
    launcher = [*shlex.split(args.launcher), "-m", "d24fad"] if args.launcher else D24FAD
    command = [*launcher, "train", "--data", args.data, "--out", str(out), "--holdout", task, "--config", args.config,
               "--seed", str(args.seed), "--progress", "none", *extra]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if loss_lambda is not None:
        command += ["--loss-lambda", str(loss_lambda)]
    if (out / "last_state.safetensors").is_file():
        command.append("--resume")
    return command


def run_fold(args, task: str, extra: Sequence[str]) -> dict:
    folder = Path(args.out) / task
    results = folder / "eval" / "results.json"
    if results.is_file():
        return json.loads(results.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _run_logged(_train_command(args, task, folder / "model", extra, None), folder / "train.log")
    evaluate = [*D24FAD, "evaluate", "--data", args.data, "--tasks", task, "--out", str(folder / "eval"),
                "--checkpoint", str(folder / "model" / "best.safetensors"), "--draws", str(args.draws),
                "--seed", str(args.seed), "--progress", "none", "--shots", *map(str, args.shots)]
    if args.with_ssd_only:
        _run_logged(_train_command(args, task, folder / "ssd_only", extra, 0.0), folder / "train_ssd_only.log")
        evaluate += ["--ssd-only-checkpoint", str(folder / "ssd_only" / "best.safetensors")]
    if args.threads:
        evaluate += ["--threads", str(args.threads)]
    _run_logged(evaluate, folder / "evaluate.log")
    document = json.loads(results.read_text(encoding="utf-8"))
    document["fold_seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(results, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return document


def training_seconds(out: Path, task: str) -> float:
    """Sum of the epoch times logged by a fold's trainings (right also for resumed runs)."""
    total = 0.0
    for run in ("model", "ssd_only"):
        log = out / task / run / "epochs.csv"
        if log.is_file():
            with open(log, newline="", encoding="utf-8") as f:
                total += sum(float(row["seconds"] or 0) for row in csv.DictReader(f))
    return total


def merge(folds: dict[str, dict]) -> dict:
    """One document: results[method][task] from each task's own fold."""
    results: dict = {}
    for task, document in folds.items():
        for method, by_task in document["results"].items():
            results.setdefault(method, {})[task] = by_task[task]
    first = next(iter(folds.values()))
    return {
        "format": first["format"],
        "protocol": first["protocol"],
        "leave_one_task_out": True,
        "folds": {
            task: {"checkpoint": d["checkpoint"], "ssd_only_checkpoint": d.get("ssd_only_checkpoint"),
                   "tasks": d["tasks"], "fold_seconds": d.get("fold_seconds"), "evaluation_seconds": d["seconds"]}
            for task, d in folds.items()
        },
        "results": results,
        "task_means": task_means(results),
    }


def results_markdown(document: dict, command: str, seconds: float, notes: str = "") -> str:
    machine = document["machine"]
    training = document.get("training_seconds", 0.0) / 60
    evaluation = sum(f["evaluation_seconds"] for f in document["folds"].values()) / 60
    lines = [
        "# Results: leave-one-task-out on MedFAD-mini",
        "",
        "**The anomalies in MedFAD-mini are synthetic** (lesions added to real normal images, "
        "see docs/MEDFAD_MINI.md); these numbers say how well methods find such lesions, not how they "
        "perform on real disease.",
        "",
        f"Produced by: `{command}`",
        "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPU cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads per process), GPU: {machine['cuda'] or 'none'}. "
        f"Time: {training:.1f} min of training (sum of the logged epoch times of all folds' models), "
        f"{evaluation:.1f} min of evaluation (sum over folds); this invocation took {seconds / 60:.1f} min "
        "(finished folds are reused, not recomputed).",
        "",
        f"Protocol: K in {document['protocol']['shots']}, {document['protocol']['draws']} support draws per K "
        f"(seed {document['protocol']['seed']}), mean ± std over draws, in %; 'mean' = mean over tasks. "
        "Each task is scored by the model trained without it (its own fold).",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines.append(markdown_tables(document))
    return "\n".join(lines) + "\n"


def kept_section(path: Path) -> str:
    """The hand-written part of an existing report (from the marker on), or nothing."""
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    return "\n" + text[text.index(KEPT_SECTION_MARKER):] if KEPT_SECTION_MARKER in text else ""


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m d24fad.evaluation.leave_one_out", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default="default", choices=("default", "paper"))
    parser.add_argument("--tasks", nargs="+", default=None, help="held-out tasks (default: every task)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="folds run in parallel")
    parser.add_argument("--launcher", default=None,
                        help="how to start training, e.g. 'torchrun --nproc_per_node 4' (default: this Python)")
    parser.add_argument("--with-ssd-only", action="store_true", help="also train lambda=0 models (SSD-only baseline)")
    parser.add_argument("--markdown", default=None, help="also write the Markdown report here (e.g. docs/RESULTS.md)")
    parser.add_argument("--notes", default="", help="paragraph added to the Markdown report")
    if argv is None:
        argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        cut = list(argv).index("--")
        argv, extra = list(argv[:cut]), list(argv[cut + 1 :])
    return parser.parse_args(argv), extra


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, extra = parse_args(argv)
    started = time.perf_counter()
    tasks = args.tasks or discover_tasks(args.data)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        documents = dict(zip(tasks, pool.map(lambda t: run_fold(args, t, extra), tasks)))
    document = merge(documents)
    seconds = time.perf_counter() - started
    document["machine"] = machine_description()
    if args.threads:
        document["machine"]["torch_threads"] = args.threads
    document["seconds"] = round(seconds, 1)
    out = Path(args.out)
    document["training_seconds"] = round(sum(training_seconds(out, task) for task in tasks), 1)
    write_text_atomic(out / "results.json", json.dumps(document, indent=2, sort_keys=True) + "\n")
    command = "python -m d24fad.evaluation.leave_one_out " + " ".join(sys.argv[1:] if argv is None else argv)
    markdown = results_markdown(document, command, seconds, args.notes)
    write_text_atomic(out / "results.md", markdown)
    if args.markdown:
        write_text_atomic(args.markdown, markdown + kept_section(Path(args.markdown)))
    print(markdown_tables(document, metrics=("image_auroc", "pixel_auroc")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
