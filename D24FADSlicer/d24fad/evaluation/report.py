"""Evaluation outputs: the JSON document, Markdown tables, ROC curves and heat-map figures.

JSON layout (``format: d24fad-evaluation/1``)::

    {
      "format": "d24fad-evaluation/1",
      "checkpoint": {"path", "sha256", "trained_on", "held_out"},
      "protocol": {"shots", "draws", "seed", "calibration_quantile", "aupro_fpr_limit", ...},
      "machine": {...}, "seconds": <wall time of the evaluation>,
      "tasks": {TASK: {"n_test": N, "n_abnormal": M, "has_masks": bool, "seen_in_training": bool}},
      "results": {METHOD: {TASK: {"K": {METRIC: {"mean": float|null, "std": float|null, "n": draws}}}}},
      "task_means": {METHOD: {"K": {METRIC: mean over tasks of the per-task means}}}
    }

K keys are strings ("1", "2", "4", "8"). Metrics: image_auroc, image_ap, pixel_auroc,
aupro, best_dice, calibrated_dice, calibrated_sensitivity, calibrated_specificity,
seconds_per_image (the pixel metrics only for tasks with masks; calibrated_* are null at
K = 1, which has no leave-one-out). ``std`` is over support draws (ddof = 1).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..io.atomic import write_text_atomic, write_with
from .protocol import TaskEvaluation, summarise

FORMAT = "d24fad-evaluation/1"
METRIC_LABELS = {
    "image_auroc": "Image AUROC (%)",
    "image_ap": "Image AP (%)",
    "pixel_auroc": "Pixel AUROC (%)",
    "aupro": "AUPRO@0.3 (%)",
    "best_dice": "Dice at the best threshold (%)",
    "calibrated_dice": "Dice at the support-calibrated threshold (%)",
    "calibrated_sensitivity": "Sensitivity at the support-calibrated threshold (%)",
    "calibrated_specificity": "Specificity at the support-calibrated threshold (%)",
    "seconds_per_image": "Milliseconds per image",
}
# Line colours of the methods in figures (RGB).
PALETTE = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def machine_description() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def results_document(evaluations: Sequence[TaskEvaluation], header: dict) -> dict:
    results: dict = {}
    for evaluation in evaluations:
        for method, by_shots in evaluation.per_draw.items():
            for shots, draws in by_shots.items():
                results.setdefault(method, {}).setdefault(evaluation.task, {})[str(shots)] = summarise(draws)
    document = dict(header, format=FORMAT, results=results, task_means=task_means(results))
    return json.loads(json.dumps(document))  # plain JSON types only (numpy scalars become floats)


def task_means(results: dict) -> dict:
    """METHOD -> K -> METRIC -> mean over the tasks that have the metric (None if none)."""
    means: dict = {}
    for method, by_task in results.items():
        shots_keys = sorted({k for per_task in by_task.values() for k in per_task}, key=int)
        for shots in shots_keys:
            metrics_seen = {m for per_task in by_task.values() for m in per_task.get(shots, {})}
            for metric in sorted(metrics_seen):
                values = [
                    per_task[shots][metric]["mean"]
                    for per_task in by_task.values()
                    if shots in per_task and metric in per_task[shots] and per_task[shots][metric]["mean"] is not None
                ]
                means.setdefault(method, {}).setdefault(shots, {})[metric] = float(np.mean(values)) if values else None
    return means


def _cell(entry: Optional[dict], metric: str) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    scale = 1000.0 if metric == "seconds_per_image" else 100.0
    return f"{entry['mean'] * scale:.1f} ± {entry['std'] * scale:.1f}"


def markdown_tables(document: dict, metrics: Sequence[str] = tuple(METRIC_LABELS)) -> str:
    """One table per metric: rows method x K, columns tasks and their mean (mean ± std over draws)."""
    results = document["results"]
    tasks = sorted({t for by_task in results.values() for t in by_task})
    lines = []
    for metric in metrics:
        if not any(metric in per_k for by_task in results.values() for per_task in by_task.values() for per_k in per_task.values()):
            continue
        lines += [f"#### {METRIC_LABELS.get(metric, metric)}", ""]
        lines.append("| method | K | " + " | ".join(tasks) + " | mean |")
        lines.append("|---|---|" + "---|" * (len(tasks) + 1))
        for method, by_task in results.items():
            shots_keys = sorted({k for per_task in by_task.values() for k in per_task}, key=int)
            for shots in shots_keys:
                cells = [_cell(by_task.get(t, {}).get(shots, {}).get(metric), metric) for t in tasks]
                mean = document["task_means"].get(method, {}).get(shots, {}).get(metric)
                scale = 1000.0 if metric == "seconds_per_image" else 100.0
                mean_text = "n/a" if mean is None else f"**{mean * scale:.1f}**"
                lines.append(f"| {method} | {shots} | " + " | ".join(cells) + f" | {mean_text} |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures


def _colormap(values01: np.ndarray) -> np.ndarray:
    """Black -> purple -> orange -> yellow (an 'inferno'-like ramp), [..] -> [.., 3] uint8."""
    anchors = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    v = np.clip(values01, 0.0, 1.0)
    rgb = np.stack([np.interp(v, positions, anchors[:, c]) for c in range(3)], axis=-1)
    return rgb.astype(np.uint8)


def _to_rgb8(image_chw: np.ndarray) -> np.ndarray:
    return (np.clip(np.moveaxis(image_chw, 0, -1), 0, 1) * 255).astype(np.uint8)


def save_heatmaps(path: Path, evaluation: TaskEvaluation, images: np.ndarray, masks: Optional[np.ndarray]) -> None:
    """Rows: example abnormal test images; columns: image (mask outline in green), then one
    heat map per method (scaled per method over the examples)."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    methods = list(evaluation.example_maps)
    indices = evaluation.example_indices
    if indices is None or len(indices) == 0 or not methods:
        return
    size = images.shape[-1]
    label_height = 16
    canvas = Image.new("RGB", (size * (1 + len(methods)), label_height + size * len(indices)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(["image + mask", *methods]):
        draw.text((column * size + 3, 2), title, fill=(0, 0, 0))
    ranges = {m: (float(evaluation.example_maps[m].min()), float(evaluation.example_maps[m].max())) for m in methods}
    for row, index in enumerate(indices):
        picture = _to_rgb8(images[index]).copy()
        if masks is not None:
            outline = masks[index] & ~ndimage.binary_erosion(masks[index])
            picture[outline] = (0, 255, 0)
        top = label_height + row * size
        canvas.paste(Image.fromarray(picture), (0, top))
        for column, method in enumerate(methods, start=1):
            low, high = ranges[method]
            scaled = (evaluation.example_maps[method][row] - low) / (high - low + 1e-12)
            canvas.paste(Image.fromarray(_colormap(scaled)), (column * size, top))
    write_with(path, lambda tmp: canvas.save(tmp, format="PNG"))


def save_roc_curves(path: Path, evaluation: TaskEvaluation, size: int = 420) -> None:
    """Image-level ROC curves of every method (first support draw at the example K)."""
    from PIL import Image, ImageDraw
    from sklearn.metrics import roc_auc_score, roc_curve

    margin = 40
    canvas = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(canvas)
    side = size - 2 * margin

    def point(fpr: float, tpr: float) -> tuple[float, float]:
        return margin + fpr * side, size - margin - tpr * side

    draw.rectangle([point(0, 1), point(1, 0)], outline=(0, 0, 0))
    draw.line([point(0, 0), point(1, 1)], fill=(180, 180, 180))
    for tick in (0.0, 0.5, 1.0):
        draw.text((point(tick, 0)[0] - 8, size - margin + 4), f"{tick:.1f}", fill=(0, 0, 0))
        draw.text((4, point(0, tick)[1] - 6), f"{tick:.1f}", fill=(0, 0, 0))
    draw.text((margin, 6), f"{evaluation.task}: ROC, K={evaluation.example_shots} (first draw)", fill=(0, 0, 0))
    draw.text((size // 2 - 10, size - 16), "FPR", fill=(0, 0, 0))
    for i, (method, (labels, scores)) in enumerate(evaluation.roc_inputs.items()):
        if labels.min() == labels.max():
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        colour = PALETTE[i % len(PALETTE)]
        draw.line([point(f, t) for f, t in zip(fpr, tpr)], fill=colour, width=2)
        draw.text((point(0.45, 0.05 + 0.07 * i)), f"{method}: {roc_auc_score(labels, scores):.3f}", fill=colour)
    write_with(path, lambda tmp: canvas.save(tmp, format="PNG"))


def write_report(out_dir: Path, document: dict) -> tuple[Path, Path]:
    """results.json and results.md in ``out_dir``."""
    json_path = write_text_atomic(out_dir / "results.json", json.dumps(document, indent=2, sort_keys=True) + "\n")
    md_path = write_text_atomic(out_dir / "results.md", markdown_tables(document) + "\n")
    return json_path, md_path
