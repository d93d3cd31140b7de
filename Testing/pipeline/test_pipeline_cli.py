"""``d24fad score`` / ``d24fad series`` end to end with a tiny model; bad inputs leave nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from d24fad.checkpoint import read_checkpoint_info
from d24fad.cli import EXIT_BAD_INPUT, main
from d24fad.io import read_slice_scores_csv, read_volume
from d24fad.slicing import slice_positions
from d24fad.visualize import MIN_PNG_SIDE
from io_fixtures import OBLIQUE, copy_real_series, files_in, phantom, write_dicom_series, write_sr


@pytest.fixture(scope="module")
def dicom_input(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mr") / "series"
    write_dicom_series(folder, phantom((7, 24, 30)) * 5, direction=OBLIQUE, spacing=(0.9, 0.7, 2.2))
    return folder


def enlarged(width: int, height: int) -> tuple[int, int]:
    """PNG size of a width x height slice: enlarged by the whole factor reaching MIN_PNG_SIDE."""
    factor = -(-MIN_PNG_SIDE // max(width, height))
    return width * factor, height * factor


def input_fingerprint(folder: Path) -> dict[str, tuple[float, str]]:
    """Modification time and content digest of every file under ``folder``."""
    import hashlib

    return {str(p): (p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def score(*args: str) -> int:
    return main(["score", *args])


def test_volume_mode_writes_map_scores_mask_dicom_and_run_record(dicom_input, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "result"
    before = input_fingerprint(dicom_input)
    code = score("--input", str(dicom_input), "--support-slices", "0,1,5", "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--progress", "none",
                 "--threshold", "auto", "--mask", "--dicom-seg", "--dicom-pmap", "--batch-size", "3")
    assert code == 0
    assert files_in(out) == ["anomaly_map.nii.gz", "anomaly_mask.nii.gz", "anomaly_pmap.dcm", "anomaly_seg.dcm",
                             "run.json", "scores.csv"]
    assert str(out.resolve()) in capsys.readouterr().out
    source = read_volume(dicom_input)
    anomaly_map = read_volume(out / "anomaly_map.nii.gz")
    assert anomaly_map.same_geometry(source, atol=1e-4)
    indices, positions, scores = read_slice_scores_csv(out / "scores.csv")
    np.testing.assert_array_equal(indices, np.arange(7))
    np.testing.assert_allclose(positions, slice_positions(source, "acquisition"), atol=1e-3)
    # The score of a slice is the max of its map (at model resolution, so at least the resampled max).
    assert np.all(scores >= anomaly_map.array.max(axis=(1, 2)) - 1e-3)
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["checkpoint_sha256"] == read_checkpoint_info(tiny_checkpoint).sha256
    assert record["supports"] == [{"source": str(dicom_input), "indices": [0, 1, 5], "same_as_input": True}]
    assert record["threshold"] > 0 and record["threshold_source"].startswith("auto")
    assert record["l2w_weights"]["supports"] == ["input:0", "input:1", "input:5"]
    assert sum(record["l2w_weights"]["top_support_counts"].values()) == 7
    assert record["versions"]["torch"] and record["intensity"]["mode"] == "percentile_foreground"
    assert record["input"]["geometry_missing"] is False
    mask = read_volume(out / "anomaly_mask.nii.gz")
    np.testing.assert_array_equal(mask.array, (anomaly_map.array >= record["threshold"]).astype(np.float32))
    seg = pydicom.dcmread(out / "anomaly_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.metadata["series_uid"]
    assert input_fingerprint(dicom_input) == before  # the input series is never modified


def test_nrrd_axis_window_other_support_volume_and_json_progress(dicom_input, tiny_checkpoint, tmp_path, capfd):
    other = tmp_path / "other"
    write_dicom_series(other, phantom((4, 24, 30)), seed=5)
    out = tmp_path / "result"
    code = score("--input", str(dicom_input), "--support-slices", "2", "--support-input", str(other),
                 "--support-slices-other", "1,3", "--axis", "sagittal", "--window", "minmax", "--map-format", "nrrd",
                 "--png-top", "2",
                 "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--progress", "json")
    assert code == 0
    top = json.loads((out / "run.json").read_text())["top_slices"][:2]
    assert files_in(out) == ["anomaly_map.nrrd", "run.json", "scores.csv"] + sorted(
        f"top_slices/slice_{t['index']:04d}.png" for t in top)
    with Image.open(out / f"top_slices/slice_{top[0]['index']:04d}.png") as overlay:
        # A sagittal slice of the 7 x 24 x 30 series (k rows, j columns), enlarged for legibility.
        assert overlay.size == enlarged(24, 7)
    captured = capfd.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == read_volume(out / "anomaly_map.nrrd").shape[2]
    assert events[-1] == {"event": "done", "stage": "scoring"}
    assert json.loads(captured.out.strip().splitlines()[-1])["event"] == "outputs"
    record = json.loads((out / "run.json").read_text())
    assert record["axis"] == "sagittal" and record["l2w_weights"]["supports"] == ["input:2", "other:1", "other:3"]


def test_supports_from_several_other_scans_only(dicom_input, tiny_checkpoint, tmp_path):
    """References may come from normal scans alone, one --support-input per scan."""
    first, second = tmp_path / "normal1", tmp_path / "normal2"
    write_dicom_series(first, phantom((4, 24, 30)), seed=5)
    write_dicom_series(second, phantom((5, 24, 30)), seed=6)
    out = tmp_path / "result"
    code = score("--input", str(dicom_input), "--support-input", str(first), "--support-slices-other", "1,2",
                 "--support-input", str(second), "--support-slices-other", "4",
                 "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--progress", "none")
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert [s["indices"] for s in record["supports"]] == [[1, 2], [4]]
    assert not any(s["same_as_input"] for s in record["supports"])


@pytest.mark.parametrize("extra,message", [
    ((), "no support set"),
    (("--support-input", "X", "--support-slices-other", "1", "--support-slices-other", "2"), "one list of slice"),
])
def test_support_option_mistakes_are_named(dicom_input, tiny_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "result"
    code = score("--input", str(dicom_input), *extra, "--out", str(out), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--progress", "none")
    assert code == EXIT_BAD_INPUT and message in capsys.readouterr().err
    assert not out.exists()


def write_pngs(folder: Path, count: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for n in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 30), dtype=np.uint8)).save(folder / f"case{n}.png")


def test_folder_mode_writes_scores_and_heatmaps(tmp_path, tiny_checkpoint):
    write_pngs(tmp_path / "normal", 3, 0)
    write_pngs(tmp_path / "query", 2, 1)
    out = tmp_path / "result"
    assert score("--support", str(tmp_path / "normal"), "--query", str(tmp_path / "query"), "--shots", "2",
                 "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                 "--progress", "none") == 0
    assert files_in(out) == ["heatmaps/0000_case0.png", "heatmaps/0001_case1.png", "run.json", "scores.csv"]
    lines = (out / "scores.csv").read_text().splitlines()
    assert lines[0] == "image,score" and [line.split(",")[0] for line in lines[1:]] == ["case0.png", "case1.png"]
    with Image.open(out / "heatmaps/0000_case0.png") as overlay:
        assert overlay.size == enlarged(30, 24) and overlay.mode == "RGB"
    assert len(json.loads((out / "run.json").read_text())["support"]) == 2


def unknown_teacher_checkpoint(tiny_checkpoint: Path, folder: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    config = json.loads(metadata["config"])
    config["teacher"] = "no_such_teacher_net"
    metadata["config"] = json.dumps(config)
    path = folder / "unknown_teacher.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


BAD_CASES = {
    "empty DICOM folder": (lambda t: ["--input", str(t / "empty"), "--support-slices", "0"], "no DICOM series"),
    "only a report": (lambda t: ["--input", str(t / "sr"), "--support-slices", "0"], "only non-image"),
    "support slice out of range": (lambda t: ["--input", str(t / "mr"), "--support-slices", "0,99"],
                                   "index 99 is out of range"),
    "mask without threshold": (lambda t: ["--input", str(t / "mr"), "--support-slices", "0", "--mask"],
                               "--threshold"),
    "DICOM SEG from NIfTI": (lambda t: ["--input", str(t / "v.nii.gz"), "--support-slices", "0", "--threshold",
                                        "0.5", "--dicom-seg"], "need a DICOM input"),
    "bad threshold": (lambda t: ["--input", str(t / "mr"), "--support-slices", "0", "--threshold", "high"],
                      "--threshold 'high'"),
    "auto threshold with one support": (lambda t: ["--input", str(t / "mr"), "--support-slices", "1", "--threshold",
                                                   "auto"], "at least 2 support slices"),
    "bad window": (lambda t: ["--input", str(t / "mr"), "--support-slices", "0", "--window", "wide"], "--window"),
    "bad slice list": (lambda t: ["--input", str(t / "mr"), "--support-slices", "1,x"], "--support-slices"),
    "empty support folder": (lambda t: ["--support", str(t / "empty"), "--query", str(t / "pngs")],
                             "contains no images"),
    "unreadable image": (lambda t: ["--support", str(t / "pngs"), "--query", str(t / "broken")], "broken.png"),
    "K larger than the support folder": (lambda t: ["--support", str(t / "pngs"), "--query", str(t / "pngs"),
                                                    "--shots", "9"], "--shots 9 is larger"),
    "nothing to score": (lambda t: [], "nothing to score"),
    "volume option in folder mode": (lambda t: ["--support", str(t / "pngs"), "--query", str(t / "pngs"),
                                                "--mask"], "--mask cannot be used in folder"),
    "folder option in volume mode": (lambda t: ["--input", str(t / "mr"), "--support-slices", "0", "--shots", "2"],
                                     "--shots cannot be used in volume"),
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    import SimpleITK as sitk

    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    write_sr(root / "sr")
    write_dicom_series(root / "mr", phantom((3, 10, 12)))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 10, 12), dtype=np.float32)), str(root / "v.nii.gz"))
    write_pngs(root / "pngs", 2, 0)
    (root / "broken").mkdir()
    (root / "broken" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_exit_non_zero_and_write_nothing(case, bad_inputs, tiny_checkpoint, tmp_path, capsys):
    arguments, message = BAD_CASES[case]
    out = tmp_path / "result"
    code = score(*arguments(bad_inputs), "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device",
                 "cpu", "--progress", "none")
    assert code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_teacher_is_a_clear_error(bad_inputs, tiny_checkpoint, tmp_path, capsys):
    checkpoint = unknown_teacher_checkpoint(tiny_checkpoint, tmp_path)
    out = tmp_path / "result"
    code = score("--input", str(bad_inputs / "mr"), "--support-slices", "0", "--out", str(out),
                 "--checkpoint", str(checkpoint), "--progress", "none")
    assert code != 0
    assert "no_such_teacher_net" in capsys.readouterr().err
    assert not out.exists()


def test_modality_option_selects_the_ct_window_for_nifti(bad_inputs, tiny_checkpoint, tmp_path):
    out = tmp_path / "result"
    assert score("--input", str(bad_inputs / "v.nii.gz"), "--support-slices", "0,1", "--modality", "ct",
                 "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                 "--progress", "none") == 0
    intensity = json.loads((out / "run.json").read_text())["intensity"]
    assert (intensity["mode"], intensity["low"], intensity["high"]) == ("window", -160.0, 240.0)


def test_existing_output_needs_overwrite(bad_inputs, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "result"
    out.mkdir()
    (out / "keep.txt").write_text("earlier run")
    arguments = ["--input", str(bad_inputs / "mr"), "--support-slices", "0,2", "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--progress", "none"]
    assert score(*arguments) != 0
    assert "--overwrite" in capsys.readouterr().err and files_in(out) == ["keep.txt"]
    assert score(*arguments, "--overwrite") == 0
    assert files_in(out) == ["anomaly_map.nii.gz", "run.json", "scores.csv"]


def test_series_command_lists_series(bad_inputs, capsys):
    assert main(["series", str(bad_inputs), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert sorted((s["modality"], s["is_image"]) for s in listing["series"]) == [("MR", True), ("SR", False)]
    assert main(["series", str(bad_inputs)]) == 0
    assert "3 slices" in capsys.readouterr().out


def test_python_dash_m_entry_point_reports_errors(tmp_path):
    """The Slicer module runs `python -m d24fad`: errors reach stderr with exit status 2."""
    result = subprocess.run([sys.executable, "-m", "d24fad", "score", "--input", str(tmp_path / "missing"),
                             "--support-slices", "0", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT and "does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it with apt-get")
def test_real_ct_series_to_valid_dicom_outputs(tiny_checkpoint, tmp_path):
    """Real scanner headers (pydicom's 5-slice gated CT) in, SEG + Parametric Map out, both valid."""
    source = copy_real_series("SmartScore - Gated 0.5 sec", tmp_path / "ct")
    out = tmp_path / "result"
    assert score("--input", str(source), "--support-slices", "0,1", "--out", str(out), "--checkpoint",
                 str(tiny_checkpoint), "--device", "cpu", "--progress", "none", "--threshold", "auto",
                 "--dicom-seg", "--dicom-pmap") == 0
    for name in ("anomaly_seg.dcm", "anomaly_pmap.dcm"):
        report = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{name}: {errors}"
        assert pydicom.dcmread(out / name).StudyInstanceUID == read_volume(source).metadata["study_uid"]
