"""Checkpoint round trips and refusals."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from d24fad.checkpoint import FORMAT, load_checkpoint, read_checkpoint_info, save_checkpoint
from d24fad.config import ModelConfig
from d24fad.detector import FewShotDetector
from d24fad.errors import CheckpointError, UnsafeCheckpointError
from d24fad.models.d24fad import D24FADModel

from engine_fixtures import tiny_config, train_steps


def test_round_trip_gives_identical_outputs(tmp_path, brain_images64):
    torch.manual_seed(1)
    model = D24FADModel(tiny_config())
    train_steps(model, brain_images64, steps=3)  # non-trivial batch-norm statistics and weights
    info = save_checkpoint(tmp_path / "m.safetensors", model, training={"tasks": ["brain"], "steps": 3})
    assert len(info.sha256) == 64 and info.training["steps"] == 3
    before = FewShotDetector(model, device="cpu")
    after = FewShotDetector.from_checkpoint(tmp_path / "m.safetensors", device="cpu", expected_sha256=info.sha256)
    for det in (before, after):
        det.set_support(brain_images64[:3])
    a, b = before.score(brain_images64[4:8]), after.score(brain_images64[4:8])
    assert np.array_equal(a.maps, b.maps) and np.array_equal(a.weights, b.weights)
    assert after.checkpoint_sha256 == info.sha256
    assert after.config.teacher_weights_sha256  # random teacher travels inside the file, with its digest


def test_offline_teacher_is_not_duplicated_into_the_checkpoint(tmp_path):
    from safetensors import safe_open

    model = D24FADModel(ModelConfig(image_size=64))
    info = save_checkpoint(tmp_path / "m.safetensors", model)
    with safe_open(str(info.path), framework="pt") as f:
        assert not any(k.startswith("teacher.") for k in f.keys())
        meta = f.metadata()
    assert meta["format"] == FORMAT
    assert json.loads(meta["config"])["teacher_weights_sha256"] == model.teacher.weights_sha256
    loaded, _ = load_checkpoint(info.path)
    assert torch.equal(loaded.teacher.backbone.conv_stem.weight, model.teacher.backbone.conv_stem.weight)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_checkpoints_are_refused(tmp_path):
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(UnsafeCheckpointError, match="raw.safetensors"):
        read_checkpoint_info(raw)
    zipped = tmp_path / "torch.ckpt"
    torch.save({"x": torch.zeros(1)}, zipped)
    assert zipfile.is_zipfile(zipped)
    with pytest.raises(UnsafeCheckpointError, match="never unpickles"):
        FewShotDetector.from_checkpoint(zipped)


def test_tampered_checkpoint_is_refused(tmp_path):
    model = D24FADModel(tiny_config())
    info = save_checkpoint(tmp_path / "m.safetensors", model)
    data = bytearray(info.path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the tensor data
    tampered = tmp_path / "t.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA256"):
        load_checkpoint(tampered, expected_sha256=info.sha256)
    # Without a pinned checksum the embedded teacher digest still catches teacher edits.
    with pytest.raises(CheckpointError):
        load_checkpoint(tampered)


def test_garbage_and_missing_files_are_checkpoint_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a model")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    import safetensors.torch as st

    model = D24FADModel(tiny_config())
    target = tmp_path / "m.safetensors"

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", failing_save)
    with pytest.raises(OSError):
        save_checkpoint(target, model)
    assert list(tmp_path.iterdir()) == []
