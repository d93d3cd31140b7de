"""The Logic with the real engine CLI (``python -m d24fad score``) and a tiny random model.

The model's weights are random, so these tests check the plumbing (files, geometry,
progress, provenance), not detection quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_fixtures import slicer
from D24FADSlicer import D24FADSlicerLogic
from D24FADSlicerLib import outputs as outputslib
from D24FADSlicerLib.geometry import ijk_to_ras_array
from D24FADSlicerLib.mrml import module_logic, node_ids
from D24FADSlicerLib.sample_data import LESION_SLICES, NORMAL_SUPPORT_SLICES, VOLUME_FILE

torch = pytest.importorskip("torch", reason="the engine needs torch (installed by make test)")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from d24fad.checkpoint import save_checkpoint
    from d24fad.config import ModelConfig
    from d24fad.models.d24fad import D24FADModel

    torch.manual_seed(0)
    config = ModelConfig(teacher="resnet18", teacher_weights="random", image_size=64, decoder_depths=(1, 1, 1))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return path, save_checkpoint(path, D24FADModel(config)).sha256


def load_sample(scene):
    volume = module_logic(scene, "Volumes").AddArchetypeVolume(str(VOLUME_FILE), "sample")
    assert volume is not None
    return volume


def test_real_engine_scores_the_sample_volume(scene, tiny_checkpoint):
    checkpoint, sha256 = tiny_checkpoint
    volume = load_sample(scene)
    voxels_before = np.array(slicer.util.arrayFromVolume(volume))
    reports = []
    outputs = D24FADSlicerLogic().scoreVolume(volume, list(NORMAL_SUPPORT_SLICES), checkpointPath=str(checkpoint),
                                               device="cpu", batchSize=16,
                                               progress=lambda done, total: reports.append((done, total)))
    slices = volume.GetImageData().GetDimensions()[2]
    assert reports[-1] == (slices, slices)
    assert np.array_equal(ijk_to_ras_array(outputs.map_node), ijk_to_ras_array(volume))
    anomaly = slicer.util.arrayFromVolume(outputs.map_node)
    assert anomaly.shape == voxels_before.shape and np.isfinite(anomaly).all()
    rows = outputslib.read_score_table(outputs.table_node)
    assert [r.index for r in rows] == list(range(slices))
    # A slice's score is its map maximum (inside the body; slices with almost no body score
    # 0), taken at model resolution before the map is resampled to the voxels, so it agrees
    # with the voxel map's maximum only to ~1e-2.
    scored = [r for r in rows if r.score > 0]
    assert len(scored) > slices // 2
    assert np.allclose([r.score for r in scored], anomaly.max(axis=(1, 2))[[r.index for r in scored]], atol=0.02)
    assert outputs.map_node.GetAttribute("D24FAD.ModelSHA256") == sha256
    threshold = float(outputs.map_node.GetAttribute("D24FAD.Threshold"))
    versions = json.loads(outputs.map_node.GetAttribute("D24FAD.Versions"))
    assert versions["torch"] == torch.__version__
    assert np.array_equal(slicer.util.arrayFromVolume(volume), voxels_before)
    # The segmentation holds exactly the voxels at or above the engine's threshold.
    from test_logic import segment_voxels

    assert np.array_equal(segment_voxels(scene, outputs.segmentation_node, volume), (anomaly >= threshold).astype(np.uint8))
    assert LESION_SLICES[0] < LESION_SLICES[1] < slices


def test_real_engine_bad_checkpoint_reports_error_and_adds_nothing(scene, tmp_path):
    from d24fad.errors import D24FADError

    volume = load_sample(scene)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    before = node_ids(scene)
    with pytest.raises(D24FADError, match="broken.safetensors"):
        D24FADSlicerLogic().scoreVolume(volume, list(NORMAL_SUPPORT_SLICES), checkpointPath=str(broken), device="cpu")
    assert node_ids(scene) == before


def test_real_engine_scores_files_with_supports_from_another_scan(scene, tiny_checkpoint, tmp_path):
    """scoreFiles through the real CLI: its options (own slices + one other scan) are accepted."""
    import SimpleITK as sitk

    checkpoint, sha256 = tiny_checkpoint
    sample = sitk.ReadImage(str(VOLUME_FILE))
    paths = [tmp_path / "upper.nrrd"]  # one file: the loop over files is covered with the stand-in CLI
    sitk.WriteImage(sample[:, :, 30:40], str(paths[0]))
    before = node_ids(scene)
    folders = D24FADSlicerLogic().scoreFiles(paths, [0, 2, (VOLUME_FILE, [NORMAL_SUPPORT_SLICES[0]])],
                                             tmp_path / "scores", checkpointPath=str(checkpoint), device="cpu")
    for folder, path in zip(folders, paths):
        run = json.loads((folder / "run.json").read_text())
        assert run["input"]["path"] == str(path) and run["model"]["checkpoint_sha256"] == sha256
        assert [s["indices"] for s in run["supports"]] == [[0, 2], [NORMAL_SUPPORT_SLICES[0]]]
        assert len((folder / "scores.csv").read_text().splitlines()) == 1 + 10
    assert node_ids(scene) == before
