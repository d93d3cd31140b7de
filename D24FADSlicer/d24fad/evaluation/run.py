"""Evaluate a checkpoint (and the baselines) on the test tasks of a data root."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from ..data.datasets import check_task_names, discover_tasks, load_normal_images, load_test_set, task_files
from ..errors import InputError
from ..progress import Progress, ProgressMode
from .baselines import diagnostic_methods, standard_methods
from .metrics import AUPRO_FPR_LIMIT
from .protocol import ProtocolSettings, TaskEvaluation, evaluate_task
from .report import machine_description, results_document, save_heatmaps, save_roc_curves, write_report

log = logging.getLogger(__name__)

METHOD_NAMES = ("d24fad", "patchcore", "tsd", "uniform", "ssd_only", "teacher_mean")
DEFAULT_METHODS = ("d24fad", "patchcore", "tsd", "uniform", "ssd_only")  # ssd_only needs its checkpoint


def _checkpoint_summary(info) -> dict:
    return {
        "path": str(info.path),
        "sha256": info.sha256,
        "trained_on": info.training.get("trained_on"),
        "held_out": info.training.get("held_out"),
        "teacher": info.config.teacher,
        "image_size": info.config.image_size,
    }


def evaluate_benchmark(
    data_root: str,
    out_dir: str | Path,
    checkpoint: Optional[str] = None,
    ssd_only_checkpoint: Optional[str] = None,
    tasks: Optional[Sequence[str]] = None,
    methods: Optional[Sequence[str]] = None,
    settings: ProtocolSettings = ProtocolSettings(),
    window: str = "auto",
    figures: bool = True,
    progress: ProgressMode = "bar",
) -> dict:
    """Run the protocol on every test task; write results.json, results.md and figures to
    ``out_dir``; return the JSON document."""
    from ..checkpoint import load_checkpoint

    started = time.perf_counter()
    names = check_task_names(data_root, tasks, "--tasks") if tasks else discover_tasks(data_root)
    wanted = list(methods) if methods else [m for m in DEFAULT_METHODS if m != "ssd_only" or ssd_only_checkpoint]
    unknown = [m for m in wanted if m not in METHOD_NAMES]
    if unknown:
        raise InputError(f"--methods: unknown {', '.join(unknown)} (choose among {', '.join(METHOD_NAMES)})")
    if "ssd_only" in wanted and not ssd_only_checkpoint:
        raise InputError("--methods ssd_only needs --ssd-only-checkpoint (a model trained with --loss-lambda 0)")
    model, info = load_checkpoint(checkpoint)
    ssd_model, ssd_info = load_checkpoint(ssd_only_checkpoint) if ssd_only_checkpoint else (None, None)
    if ssd_model is not None and ssd_model.config.teacher != model.config.teacher:
        raise InputError("--ssd-only-checkpoint must use the same teacher as --checkpoint")
    all_methods = [m for m in standard_methods(model, ssd_model) + diagnostic_methods(model) if m.name in wanted]
    size = model.config.image_size
    trained_on = set(info.training.get("trained_on") or [])
    out_dir = Path(out_dir)
    evaluations: list[TaskEvaluation] = []
    task_records = {}
    steps_per_task = len(settings.shots) * settings.draws * len(all_methods)
    with Progress(len(names) * steps_per_task, "evaluating", progress) as bar:
        for index, name in enumerate(names):
            if name in trained_on:
                log.warning("task %s was used to train %s: its results are not few-shot results on an unseen task",
                            name, info.path)
            files = task_files(data_root, name)
            pool = load_normal_images(files.train_good, size, window)
            test_set = load_test_set(files, size, window)
            offset = index * steps_per_task
            evaluation = evaluate_task(all_methods, pool, test_set, settings,
                                       progress=lambda done, total: bar.update(offset + done))
            evaluations.append(evaluation)
            task_records[name] = {
                "n_test": len(test_set),
                "n_abnormal": int(test_set.labels.sum()),
                "has_masks": test_set.masks is not None,
                "seen_in_training": name in trained_on,
            }
            if figures:
                save_roc_curves(out_dir / f"roc_{name}.png", evaluation)
                save_heatmaps(out_dir / f"heatmaps_{name}.png", evaluation, test_set.images, test_set.masks)
    header = {
        "data_root": str(data_root),
        "checkpoint": _checkpoint_summary(info),
        "ssd_only_checkpoint": _checkpoint_summary(ssd_info) if ssd_info else None,
        "protocol": dict(asdict(settings), aupro_fpr_limit=AUPRO_FPR_LIMIT, smoothing_sigma=model.config.smoothing_sigma,
                         window=window),
        "machine": machine_description(),
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": task_records,
        "anomalies": "as in the data root (MedFAD-mini: synthetic lesions on real normal images)",
    }
    document = results_document(evaluations, header)
    write_report(out_dir, document)
    return document
