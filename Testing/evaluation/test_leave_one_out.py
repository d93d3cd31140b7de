"""Leave-one-task-out driver: fold commands, merging folds into one table, the report text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from d24fad.evaluation import leave_one_out
from d24fad.evaluation.protocol import TaskEvaluation
from d24fad.evaluation.report import results_document

REPO = Path(__file__).resolve().parents[2]


def _fold(task: str, auroc: float) -> dict:
    evaluation = TaskEvaluation(task, 6)
    evaluation.per_draw = {"d24fad": {4: [{"image_auroc": auroc}, {"image_auroc": auroc}]},
                           "patchcore": {4: [{"image_auroc": 0.5}, {"image_auroc": 0.7}]}}
    header = {"protocol": {"shots": [4], "draws": 2, "seed": 0}, "checkpoint": {"trained_on": ["other"]},
              "tasks": {task: {"n_test": 6}}, "seconds": 1.0}
    return results_document([evaluation], header)


def test_folds_merge_into_one_table_of_held_out_results():
    merged = leave_one_out.merge({"brain": _fold("brain", 0.9), "retina": _fold("retina", 0.7)})
    assert merged["results"]["d24fad"]["brain"]["4"]["image_auroc"]["mean"] == pytest.approx(0.9)
    assert merged["results"]["d24fad"]["retina"]["4"]["image_auroc"]["mean"] == pytest.approx(0.7)
    assert merged["task_means"]["d24fad"]["4"]["image_auroc"] == pytest.approx(0.8)
    assert merged["task_means"]["patchcore"]["4"]["image_auroc"] == pytest.approx(0.6)
    assert set(merged["folds"]) == {"brain", "retina"}
    merged["machine"] = {"processor": "x86_64", "cpu_count": 2, "torch": "2", "torch_threads": 1, "cuda": None}
    text = leave_one_out.results_markdown(merged, "python -m d24fad.evaluation.leave_one_out --data D", 120.0)
    assert "synthetic" in text and "--data D" in text and "2.0 min" in text
    assert "| d24fad | 4 | 90.0 ± 0.0 | 70.0 ± 0.0 | **80.0** |" in text


def test_fold_training_command_holds_the_task_out_and_resumes(tmp_path):
    args, extra = leave_one_out.parse_args(["--data", "D", "--out", str(tmp_path), "--epochs", "3",
                                            "--launcher", "torchrun --nproc_per_node 2", "--", "--batch", "8"])
    assert extra == ["--batch", "8"]
    out = tmp_path / "brain" / "model"
    command = leave_one_out._train_command(args, "brain", out, extra, None)
    assert command[:5] == ["torchrun", "--nproc_per_node", "2", "-m", "d24fad"]
    assert command[command.index("--holdout") + 1] == "brain" and "--resume" not in command
    out.mkdir(parents=True)
    (out / "last_state.safetensors").write_bytes(b"")
    assert leave_one_out._train_command(args, "brain", out, extra, 0.0)[-3:] == ["--loss-lambda", "0.0", "--resume"]


def test_reproduce_paper_script_is_valid_bash_and_needs_a_data_root():
    script = REPO / "scripts" / "reproduce_paper.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    finished = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PYTHON": sys.executable})
    assert finished.returncode != 0 and "usage" in finished.stderr


def test_hand_written_analysis_survives_regeneration(tmp_path):
    report = tmp_path / "RESULTS.md"
    assert leave_one_out.kept_section(report) == ""
    report.write_text("old tables\n" + leave_one_out.KEPT_SECTION_MARKER + "\nwhy PatchCore wins\n")
    kept = leave_one_out.kept_section(report)
    assert kept.startswith("\n" + leave_one_out.KEPT_SECTION_MARKER) and "why PatchCore wins" in kept
    assert "old tables" not in kept


def test_training_time_is_summed_from_the_epoch_logs_of_both_models(tmp_path):
    for run, seconds in (("model", ("1.5", "2.5")), ("ssd_only", ("3",))):
        folder = tmp_path / "brain" / run
        folder.mkdir(parents=True)
        (folder / "epochs.csv").write_text("epoch,seconds\n" + "".join(f"{i},{s}\n" for i, s in enumerate(seconds)))
    assert leave_one_out.training_seconds(tmp_path, "brain") == 7.0
    assert leave_one_out.training_seconds(tmp_path, "retina") == 0.0
