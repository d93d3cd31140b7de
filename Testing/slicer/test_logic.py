"""The module's Logic end to end on a real MRML scene, with a stand-in engine CLI."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk

from slicer_fixtures import add_volume, ijk_to_ras, rotation
from D24FADSlicer import D24FADSlicerLogic
from D24FADSlicerLib import outputs as outputslib
from D24FADSlicerLib.geometry import ijk_to_ras_array
from D24FADSlicerLib.mrml import node_ids, segmentations_logic
from d24fad.errors import CancelledError, D24FADError, GeometryError, InputError, SupportSetError

FAKE_CLI = Path(__file__).with_name("fake_d24fad_cli.py")
MATRIX = ijk_to_ras((0.9, 1.1, 2.5), (-20.0, 35.5, 12.0), rotation((0.3, 1, 0.2), 14.0) @ np.diag([-1.0, -1, 1]))


@pytest.fixture
def logic(scene):
    return D24FADSlicerLogic(engineCommand=[sys.executable, str(FAKE_CLI)])


@pytest.fixture
def volume(scene):
    voxels = np.random.default_rng(5).integers(0, 1000, size=(6, 7, 8)).astype(np.int16)
    return add_volume(scene, voxels, MATRIX, name="patient CT")


@pytest.fixture(autouse=True)
def fake_mode(monkeypatch):
    def set_mode(mode, **extra):
        monkeypatch.setenv("FAKE_D24FAD_MODE", mode)
        for key, value in extra.items():
            monkeypatch.setenv(key, str(value))
    set_mode("ok")
    return set_mode


@pytest.fixture(autouse=True)
def no_leftover_work_dirs(tmp_path, monkeypatch):
    """Every run must delete its temporary NRRD copies and outputs.

    Temporary folders go to a folder of this test only, so that other test runs sharing
    /tmp cannot disturb the check.
    """
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    yield
    assert list(private_tmp.iterdir()) == []


def known_map(volume_node) -> np.ndarray:
    """The map the stand-in CLI computes: input / max."""
    voxels = slicer.util.arrayFromVolume(volume_node).astype(np.float32)
    return voxels / voxels.max()


def segment_voxels(scene, segmentation_node, reference_node) -> np.ndarray:
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentation_node.GetSegmentation().GetNthSegmentID(0))
    assert segmentations_logic(scene).ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node)
    voxels = np.array(slicer.util.arrayFromVolume(labelmap))
    scene.RemoveNode(labelmap)
    return voxels


def snapshot(volume_node):
    return (np.array(slicer.util.arrayFromVolume(volume_node)), ijk_to_ras_array(volume_node),
            volume_node.GetName(), tuple(volume_node.GetAttributeNames() or ()))


def test_score_volume_end_to_end(scene, logic, volume):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "CT study")
    hierarchy.CreateItem(study, volume)
    before_input = snapshot(volume)
    before_nodes = node_ids(scene)
    reports = []

    outputs = logic.scoreVolume(volume, [0, 2, 5], progress=lambda done, total: reports.append((done, total)))

    # Map: same geometry, bit for bit; values are the CLI's map.
    assert np.array_equal(ijk_to_ras_array(outputs.map_node), ijk_to_ras_array(volume))
    assert outputs.map_node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    expected = known_map(volume)
    assert np.allclose(slicer.util.arrayFromVolume(outputs.map_node), expected, atol=1e-6)
    display = outputs.map_node.GetDisplayNode()
    assert display.GetColorNodeID() == outputs.color_node.GetID()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)  # the map's maximum is 1
    # Segmentation: exactly the voxels at or above the run's threshold (0.5 for "auto" here).
    segmentation = outputs.segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetName() == "Anomaly"
    assert np.array_equal(segment_voxels(scene, outputs.segmentation_node, volume), (expected >= 0.5).astype(np.uint8))
    # Table: one row per slice with the CLI's scores; a chart plots it.
    rows = outputslib.read_score_table(outputs.table_node)
    assert [r.index for r in rows] == list(range(6))
    assert np.allclose([r.score for r in rows], expected.max(axis=(1, 2)))
    assert np.allclose([r.position_mm for r in rows], [(MATRIX @ [0, 0, k, 1])[2] for k in range(6)])
    assert outputs.chart_node.GetNumberOfPlotSeriesNodes() == 1
    # Provenance on every output.
    for node in outputs.nodes():
        assert node.GetAttribute("D24FAD.ModelSHA256") == "f" * 64
        assert node.GetAttribute("D24FAD.Threshold") == "0.5"
        assert [s["index"] for s in json.loads(node.GetAttribute("D24FAD.SupportSet"))] == [0, 2, 5]
        assert json.loads(node.GetAttribute("D24FAD.Versions"))["torch"] == "fake"
    # Under the input's study, in one folder.
    for node in outputs.nodes():
        folder = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node))
        assert hierarchy.GetItemParent(folder) == study
    # Progress reached the end; the input is untouched; only new nodes were added.
    assert reports[-1] == (6, 6) and reports == sorted(reports)
    after_input = snapshot(volume)
    assert np.array_equal(after_input[0], before_input[0]) and np.array_equal(after_input[1], before_input[1])
    assert after_input[2:] == before_input[2:]
    assert before_nodes <= node_ids(scene)


def test_explicit_threshold_and_empty_mask(scene, logic, volume):
    outputs = logic.scoreVolume(volume, [1, 3], threshold=0.8)
    assert np.array_equal(segment_voxels(scene, outputs.segmentation_node, volume),
                          (known_map(volume) >= 0.8).astype(np.uint8))
    empty = logic.scoreVolume(volume, [1, 3], threshold=1.5)
    assert empty.segmentation_node.GetSegmentation().GetNthSegment(0).GetName() == "Anomaly"
    assert not segment_voxels(scene, empty.segmentation_node, volume).any()
    assert outputs.color_node is empty.color_node  # one heat table per scene


def test_supports_from_another_volume_reach_the_cli(scene, logic, volume):
    normal = add_volume(scene, np.ones((9, 7, 8), np.int16), np.eye(4), name="normal scan")
    outputs = logic.scoreVolume(volume, [1, (normal, 8), (normal, 2)])
    recorded = json.loads(outputs.map_node.GetAttribute("D24FAD.SupportSet"))
    assert [(s["volume"], s["index"]) for s in recorded] == [("patient CT", 1), ("normal scan", 8), ("normal scan", 2)]


def test_support_sets_the_engine_cannot_take_are_refused(scene, logic, volume):
    first = add_volume(scene, np.ones((9, 7, 8), np.int16), np.eye(4), name="normal 1")
    second = add_volume(scene, np.ones((9, 7, 8), np.int16), np.eye(4), name="normal 2")
    before = node_ids(scene)
    with pytest.raises(SupportSetError, match="at most 1"):
        logic.scoreVolume(volume, [0, (first, 1), (second, 1)])
    with pytest.raises(SupportSetError, match="scored volume itself"):
        logic.scoreVolume(volume, [(first, 1), (first, 2)])
    assert node_ids(scene) == before


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)")
def test_cancel_mid_run_kills_process_tree_and_adds_nothing(scene, logic, volume, fake_mode, tmp_path):
    fake_mode("slow", FAKE_D24FAD_PIDS=tmp_path)
    before = node_ids(scene)
    reports = []
    with pytest.raises(CancelledError):
        logic.scoreVolume(volume, [0, 1], progress=lambda d, t: reports.append(d), shouldCancel=lambda: bool(reports))
    assert reports == [1]
    assert node_ids(scene) == before
    pids = [int((tmp_path / name).read_text()) for name in ("child.pid", "grandchild.pid")]
    deadline = time.monotonic() + 5
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in pids)


@pytest.mark.parametrize("mode, error, text", [
    ("fail", D24FADError, "model exploded on slice 3"),
    ("bad_input", InputError, "cannot read"),
    ("wrong_shape", GeometryError, "anomaly_map.nrrd"),
])
def test_failing_run_reports_error_and_leaves_scene(scene, logic, volume, fake_mode, mode, error, text, caplog):
    fake_mode(mode)
    before = node_ids(scene)
    with pytest.raises(error, match=text):
        logic.scoreVolume(volume, [0, 1])
    assert node_ids(scene) == before
    # The whole engine output (command line, messages) is logged for the error details.
    assert "fake d24fad starting" in caplog.text and "--support-slices 0,1" in caplog.text


def test_gpu_out_of_memory_retries_with_smaller_batch(scene, logic, volume, fake_mode):
    fake_mode("oom", FAKE_OOM_ABOVE=4)
    outputs = logic.scoreVolume(volume, [0, 1], batchSize=16)
    assert outputs.map_node.GetAttribute("D24FAD.BatchSize") == "4"
    fake_mode("oom", FAKE_OOM_ABOVE=0)
    before = node_ids(scene)
    with pytest.raises(D24FADError, match="out of memory"):
        logic.scoreVolume(volume, [0, 1], batchSize=2)
    assert node_ids(scene) == before


def _rgb_volume(scene):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    image = vtk.vtkImageData()
    image.SetDimensions(4, 4, 3)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    node.SetAndObserveImageData(image)
    return node


def _sequence_frame(scene):
    frame = add_volume(scene, np.zeros((3, 4, 5), np.int16), np.eye(4), name="4D frame")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(frame, sequence, False)
    return frame


@pytest.mark.parametrize("make_input, supports, error, text", [
    (lambda scene, volume: None, [0, 1], InputError, "no volume"),
    (lambda scene, volume: _rgb_volume(scene), [0, 1], InputError, "'photo'"),
    (lambda scene, volume: _sequence_frame(scene), [0, 1], InputError, "4D sequence"),
    (lambda scene, volume: add_volume(scene, np.zeros((3, 4, 5), np.uint8), np.eye(4), "labels",
                                      "vtkMRMLLabelMapVolumeNode"), [0, 1], InputError, "label map"),
    (lambda scene, volume: volume, [2], SupportSetError, "at least 2"),
    (lambda scene, volume: volume, [2, 2], SupportSetError, "at least 2"),
    (lambda scene, volume: volume, [0, 6], SupportSetError, "outside volume 'patient CT'"),
    (lambda scene, volume: volume, [0, -1], SupportSetError, "outside"),
    (lambda scene, volume: volume, [0, "a"], SupportSetError, "supportSlices"),
])
def test_bad_inputs_raise_clear_errors_and_create_nothing(scene, logic, volume, make_input, supports, error, text):
    node = make_input(scene, volume)
    before = node_ids(scene)
    with pytest.raises(error, match=text):
        logic.scoreVolume(node, supports)
    assert node_ids(scene) == before


@pytest.mark.parametrize("options, text", [
    ({"axis": "oblique"}, "axis"),
    ({"checkpointPath": "/no/such/model.safetensors"}, "model.safetensors"),
    ({"batchSize": 0}, "batchSize"),
    ({"threshold": "high"}, "threshold"),
])
def test_bad_options_are_refused_before_running(scene, logic, volume, options, text):
    before = node_ids(scene)
    with pytest.raises(InputError, match=text):
        logic.scoreVolume(volume, [0, 1], **options)
    assert node_ids(scene) == before


def test_output_creation_is_all_or_nothing(scene, volume, monkeypatch):
    from D24FADSlicerLib.job import ScoringResult, SliceScore

    result = ScoringResult(known_map(volume), [SliceScore(k, 0.0, 0.1) for k in range(6)], 0.5, {}, 16)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    items_before = hierarchy.GetNumberOfItems()
    before = node_ids(scene)

    def broken_chart(*args):
        raise RuntimeError("plot failed")
    monkeypatch.setattr(outputslib, "_create_score_chart", broken_chart)
    with pytest.raises(RuntimeError, match="plot failed"):
        outputslib.create_output_nodes(scene, volume, result, {})
    assert node_ids(scene) == before
    assert hierarchy.GetNumberOfItems() == items_before


def test_score_files_writes_one_folder_per_file_without_touching_scene(scene, logic, volume, tmp_path):
    import SimpleITK as sitk

    paths = []
    for name, seed in (("a.nii.gz", 1), ("b.nrrd", 2)):
        voxels = np.random.default_rng(seed).random((5, 6, 7)).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(voxels), str(tmp_path / name))
        paths.append(tmp_path / name)
    before = node_ids(scene)
    reports = []
    written = logic.scoreFiles(paths, [0, 2, (paths[0], [1, 3])], tmp_path / "scores",
                               progress=lambda d, t: reports.append((d, t)))
    assert written == [tmp_path / "scores" / "a", tmp_path / "scores" / "b"]
    for folder, path in zip(written, paths):
        assert sorted(p.name for p in folder.iterdir()) == ["anomaly_map.nrrd", "run.json", "scores.csv"]
        arguments = json.loads((folder / "run.json").read_text())["arguments"]
        assert arguments["input"] == str(path)
        assert arguments["support_slices"] == "0,2"
        assert arguments["support_input"] == str(paths[0]) and arguments["support_slices_other"] == "1,3"
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["a", "b"]  # no temporary folders left
    assert reports == [(1, 2), (2, 2)]
    assert node_ids(scene) == before
    with pytest.raises(InputError, match="missing.nrrd"):
        logic.scoreFiles([tmp_path / "missing.nrrd"], [0, 1], tmp_path / "more")
    with pytest.raises(SupportSetError, match="at least 2"):
        logic.scoreFiles(paths, [1], tmp_path / "more")
    with pytest.raises(SupportSetError, match="scored volume itself"):
        logic.scoreFiles(paths, (paths[0], [1, 3]), tmp_path / "more")
    assert not (tmp_path / "more").exists()


def test_heat_scale_covers_maps_above_one():
    assert outputslib.map_display_maximum(np.array([0.2, 0.7])) == 1.0
    assert outputslib.map_display_maximum(np.array([0.2, 2.5])) == 2.5


def test_next_most_anomalous_walks_slices_by_score():
    from D24FADSlicerLib.job import SliceScore

    scores = [SliceScore(0, 0, 0.1), SliceScore(1, 0, 0.9), SliceScore(2, 0, 0.5), SliceScore(3, 0, 0.9)]
    order = [outputslib.next_most_anomalous(scores, None)]
    for _ in range(4):
        order.append(outputslib.next_most_anomalous(scores, order[-1]))
    assert order == [1, 3, 2, 0, 1]
    assert outputslib.next_most_anomalous([], None) is None


def test_navigation_skips_slices_without_tissue():
    from D24FADSlicerLib.job import SliceScore

    voxels = np.zeros((6, 20, 20), np.float32)
    yy, xx = np.mgrid[:20, :20]
    for k, radius in ((1, 8), (2, 9), (3, 9), (4, 7), (5, 2)):  # slice 0 is air, slice 5 a speck
        voxels[k][(yy - 10) ** 2 + (xx - 10) ** 2 <= radius ** 2] = 100.0
    eligible = outputslib.tissue_slices(voxels)
    assert eligible == {1, 2, 3, 4}
    assert outputslib.tissue_slices(voxels.transpose(1, 0, 2), array_axis=1) == eligible
    scores = [SliceScore(k, 0.0, score) for k, score in enumerate((0.9, 0.2, 0.6, 0.4, 0.3, 0.8))]
    order = [outputslib.next_most_anomalous(scores, None, eligible)]
    for _ in range(4):
        order.append(outputslib.next_most_anomalous(scores, order[-1], eligible))
    assert order == [2, 3, 4, 1, 2]
    assert outputslib.tissue_slices(np.zeros((3, 4, 4))) == set()


def test_heat_color_table_goes_from_black_to_white_through_red_and_yellow(scene):
    values = outputslib.heat_color_values()
    assert values.shape == (outputslib.HEAT_COLOR_COUNT, 3)
    assert values[0].tolist() == [0, 0, 0] and values[-1].tolist() == [1, 1, 1]
    assert np.all(np.diff(values.sum(axis=1)) >= 0)  # brightness never decreases
    node = outputslib.heat_color_node(scene)
    rgba = [0.0] * 4
    node.GetColor(outputslib.HEAT_COLOR_COUNT - 1, rgba)
    assert rgba[:3] == [1.0, 1.0, 1.0]
    assert outputslib.heat_color_node(scene) is node


def _as_dicom_series(scene, node, modality):
    """Put ``node`` in the subject hierarchy as Slicer's DICOM import does (series item with modality)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient"), "Study")
    item = hierarchy.CreateItem(study, node)
    hierarchy.SetItemAttribute(item, "DICOM.Modality", modality)
    return node


def test_engine_window_follows_the_dicom_modality(scene, volume):
    from d24fad.preprocess import CT_WINDOWS
    from D24FADSlicerLib.intensity import engine_window_argument

    assert engine_window_argument(volume) == "auto"  # no DICOM context: like a NIfTI / NRRD file
    level, width = CT_WINDOWS["soft"]
    assert engine_window_argument(_as_dicom_series(scene, volume, "CT")) == f"{width:.6f}/{level:.6f}"
    mr = add_volume(scene, np.random.default_rng(2).integers(0, 500, (4, 5, 6)).astype(np.int16), np.eye(4))
    voxels = slicer.util.arrayFromVolume(mr)
    low, high = np.percentile(voxels[voxels > voxels.min()], (0.5, 99.5))
    width_text, level_text = engine_window_argument(_as_dicom_series(scene, mr, "MR")).split("/")
    assert float(width_text) == pytest.approx(high - low, abs=1e-5)
    assert float(level_text) == pytest.approx((high + low) / 2, abs=1e-5)


def test_window_reaches_the_engine_command(scene, logic, volume):
    from D24FADSlicerLib.job import run_blocking

    job = logic.startScoring(_as_dicom_series(scene, volume, "CT"), [0, 1])
    try:
        arguments = run_blocking(job).run_info["arguments"]
    finally:
        job.cleanup()
    from d24fad.preprocess import CT_WINDOWS

    level, width = CT_WINDOWS["soft"]  # a CT without body part: the engine's soft-tissue window
    assert arguments["window"] == f"{width:.6f}/{level:.6f}" and arguments["support_slices"] == "0,1"


def test_outputs_follow_the_input_transform(scene, logic, volume):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    outputs = logic.scoreVolume(volume, [0, 1])
    assert outputs.map_node.GetTransformNodeID() == transform.GetID()
    assert outputs.segmentation_node.GetTransformNodeID() == transform.GetID()
