"""Meta-training end to end: train -> evaluate, held-out task never opened, resume, DDP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from training_fixtures import HELD_OUT, TINY_RECIPE, TOY_TASKS
from safetensors import safe_open
from safetensors.torch import load_file

from d24fad.cli import main


def _train(root, out, *extra) -> int:
    return main(["train", "--data", str(root), "--out", str(out), *TINY_RECIPE, *extra])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_train_then_evaluate_end_to_end(toy_root, tmp_path):
    run = tmp_path / "run"
    assert _train(toy_root, run, "--holdout", HELD_OUT, "--epochs", "2") == 0
    epochs = _rows(run / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    assert all(0.0 <= float(r["val_image_auroc"]) <= 1.0 and float(r["loss"]) > 0 for r in epochs)
    with safe_open(str(run / "best.safetensors"), framework="pt") as f:
        training = json.loads(f.metadata()["training"])
    assert training["held_out"] == HELD_OUT
    assert sorted(training["trained_on"]) == sorted(set(TOY_TASKS) - {HELD_OUT})
    assert "training tasks" in training["selected_on"]

    report = tmp_path / "eval"
    code = main(["evaluate", "--data", str(toy_root), "--checkpoint", str(run / "best.safetensors"),
                 "--tasks", HELD_OUT, "--shots", "1", "2", "--draws", "2", "--out", str(report),
                 "--json", str(tmp_path / "r.json"), "--threads", "1", "--progress", "none"])
    assert code == 0
    document = json.loads((tmp_path / "r.json").read_text())
    assert document == json.loads((report / "results.json").read_text())
    # Every test image is scored: 3 normal + 3 abnormal, none dropped.
    assert document["tasks"][HELD_OUT] == {"n_test": 6, "n_abnormal": 3, "has_masks": True, "seen_in_training": False}
    for method in ("d24fad", "patchcore", "tsd", "uniform"):
        cell = document["results"][method][HELD_OUT]["2"]
        assert cell["image_auroc"]["n"] == 2 and 0.0 <= cell["image_auroc"]["mean"] <= 1.0
        assert cell["pixel_auroc"]["mean"] is not None and cell["seconds_per_image"]["mean"] > 0
        assert cell["calibrated_dice"]["n"] == 2
        # K = 1 has no leave-one-out calibration.
        assert document["results"][method][HELD_OUT]["1"]["calibrated_dice"]["mean"] is None
    assert "| d24fad | 2 |" in (report / "results.md").read_text()
    for figure in (f"roc_{HELD_OUT}.png", f"heatmaps_{HELD_OUT}.png"):
        assert (report / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_OPENED: list[str] = []
_RECORDING = [False]


def _record_file_access(event, args):
    if _RECORDING[0] and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        _OPENED.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else str(args[0]))


sys.addaudithook(_record_file_access)


def test_training_never_opens_the_held_out_task(toy_root, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(toy_root, root)
    held_out = root / HELD_OUT
    # Any read of the held-out task would now fail loudly, and the audit hook sees every open.
    for path in held_out.rglob("*.png"):
        path.write_bytes(b"not an image")
    _OPENED.clear()
    _RECORDING[0] = True
    try:
        code = _train(root, tmp_path / "run", "--holdout", HELD_OUT, "--epochs", "1")
    finally:
        _RECORDING[0] = False
    assert code == 0
    assert any(str(root / "brain_mri") in p for p in _OPENED), "the audit hook saw no training reads"
    touched = [p for p in _OPENED if str(held_out) in os.path.abspath(p)]
    assert touched == []


def test_resume_gives_the_same_result_as_an_uninterrupted_run(toy_root, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(toy_root, straight, "--epochs", "2") == 0
    assert _train(toy_root, resumed, "--epochs", "1") == 0
    assert _train(toy_root, resumed, "--epochs", "2", "--resume") == 0
    for name in ("last_state.safetensors", "best.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), name
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop_time(_rows(straight / "epochs.csv")) == drop_time(_rows(resumed / "epochs.csv"))
    assert _rows(straight / "steps.csv") == _rows(resumed / "steps.csv")


def test_resume_and_output_guards(toy_root, tmp_path):
    run = tmp_path / "run"
    assert _train(toy_root, run, "--epochs", "1", "--steps-per-epoch", "1", "--val-fraction", "0") == 0
    assert _train(toy_root, run, "--epochs", "1", "--steps-per-epoch", "1") == 1  # exists, no --resume
    assert _train(toy_root, run, "--epochs", "2", "--steps-per-epoch", "1", "--lr", "0.1", "--resume") == 2
    assert _train(toy_root, tmp_path / "empty", "--epochs", "1", "--resume") == 2
    assert _train(toy_root, tmp_path / "x", "--holdout", "no_such_task") == 2
    # Resuming on training images that changed since the interruption is refused.
    changed = tmp_path / "changed"
    shutil.copytree(toy_root, changed)
    first = sorted((changed / "brain_mri" / "train" / "good").glob("*.png"))[0]
    first.write_bytes((changed / "histology_ihc" / "train" / "good" / first.name).read_bytes())
    assert _train(changed, run, "--epochs", "2", "--steps-per-epoch", "1", "--val-fraction", "0", "--resume") == 2


def test_ddp_gloo_two_processes_first_step_matches_single_process(toy_root, tmp_path):
    common = ["--epochs", "1", "--steps-per-epoch", "1", "--val-fraction", "0"]
    # Per-rank BatchNorm on CPU = a single process normalising each of 2 micro-batches on its own.
    assert _train(toy_root, tmp_path / "single", "--accumulate", "2", *common) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "d24fad", "train", "--data", str(toy_root), "--out", str(tmp_path / "ddp"), *TINY_RECIPE, *common]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    single, ddp = _rows(tmp_path / "single" / "steps.csv"), _rows(tmp_path / "ddp" / "steps.csv")
    assert len(ddp) == 1
    for column in ("loss", "ssd", "tsd"):
        assert float(ddp[0][column]) == pytest.approx(float(single[0][column]), rel=1e-5)
    a = load_file(str(tmp_path / "single" / "last_state.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "last_state.safetensors"))
    # Same gradients, same Adam step: equal weights. (BatchNorm running statistics differ by
    # design: the single process updates them once per micro-batch.)
    weights = [k for k in a if k.startswith("model.") and "running_" not in k and "num_batches" not in k]
    assert weights
    for key in weights:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-4, atol=1e-6)
