#!/usr/bin/env bash
# Reproduce the paper's leave-one-dataset-out grid with its recipe:
#   WideResNet-50-2 teacher (ImageNet weights from the timm hub, downloaded once), 128 px,
#   batch 16, 70 epochs, K in {2,4,8} during training, SSD + 0.1 TSD, Adam 1e-4 (0.5, 0.999),
# on the five-dataset benchmark (HIS, LAG, APTOS, RSNA, Brain Tumor) laid out as
#   DATA_ROOT/TASK/train/good/*, DATA_ROOT/TASK/test/good/*, DATA_ROOT/TASK/test/bad/*
# For every dataset: train on the other four (model selection on validation images carved
# from them, never on the test set), then evaluate all methods with 5 support draws per K.
# Writes OUT_DIR/results.json and the table OUT_DIR/results.md.
#
#   scripts/reproduce_paper.sh DATA_ROOT [OUT_DIR]
# Environment: PYTHON (default .venv/bin/python); LAUNCHER, e.g. "torchrun --nproc_per_node 4"
# for multi-GPU training; JOBS (folds in parallel, default 1). A GPU is strongly advised:
# on 2 CPU cores one fold takes days.
set -euo pipefail
DATA_ROOT=${1:?usage: scripts/reproduce_paper.sh DATA_ROOT [OUT_DIR]}
OUT=${2:-runs/paper}
PYTHON=${PYTHON:-.venv/bin/python}
ARGS=(--data "$DATA_ROOT" --out "$OUT" --config paper --shots 2 4 8 --draws 5 --with-ssd-only --jobs "${JOBS:-1}")
if [[ -n "${LAUNCHER:-}" ]]; then
  ARGS+=(--launcher "$LAUNCHER")
fi
"$PYTHON" -m d24fad.evaluation.leave_one_out "${ARGS[@]}" -- --allow-download
echo "table: $OUT/results.md"
