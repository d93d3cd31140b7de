"""Teacher weight sources: offline package, local files, opt-in hub, and refusals."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from d24fad.config import ModelConfig
from d24fad.errors import CheckpointError, ConfigError, UnsafeCheckpointError, WeightsUnavailableError
from d24fad.models.teacher import Teacher, load_offline_imagenet_classifier, load_weights_file


def test_offline_teacher_is_imagenet_pretrained():
    """A known photograph (scikit-image's cat, CC0) gets its ImageNet class 285 'Egyptian cat'."""
    from PIL import Image
    from skimage import data

    model, spec = load_offline_imagenet_classifier()
    img = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert int(probs.argmax()) == 285
    assert float(probs.max()) > 0.6


def test_offline_teacher_features_equal_classifier_backbone():
    teacher = Teacher(ModelConfig())
    classifier, _ = load_offline_imagenet_classifier()
    assert torch.equal(teacher.backbone.state_dict()["conv_stem.weight"], classifier.state_dict()["conv_stem.weight"])


def test_teacher_from_local_safetensors_and_state_dict(tmp_path):
    from safetensors.torch import save_file

    source = Teacher(ModelConfig(teacher="resnet18", teacher_weights="random", image_size=64))
    state = {k: v.clone() for k, v in source.backbone.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        cfg = ModelConfig(teacher="resnet18", teacher_weights="file", teacher_weights_path=str(tmp_path / name), image_size=64)
        loaded = Teacher(cfg)
        assert loaded.weights_sha256 == source.weights_sha256 or source.weights_sha256 is None
        for k, v in state.items():
            assert torch.equal(loaded.backbone.state_dict()[k], v)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_in_weights_file_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_weights_file(path)


def test_weights_digest_mismatch_is_refused(tmp_path):
    cfg = ModelConfig(teacher_weights_sha256="0" * 64)
    with pytest.raises(CheckpointError, match="digest"):
        Teacher(cfg)


def test_hub_weights_need_explicit_opt_in():
    with pytest.raises(WeightsUnavailableError, match="opt-in"):
        Teacher(ModelConfig(teacher="wide_resnet50_2", teacher_weights="hub"))


def test_unknown_teacher_is_a_config_error():
    with pytest.raises(ConfigError, match="not_a_network"):
        Teacher(ModelConfig(teacher="not_a_network", teacher_weights="random"))


def test_no_offline_weights_for_other_teachers():
    with pytest.raises(WeightsUnavailableError, match="resnet18"):
        Teacher(ModelConfig(teacher="resnet18", teacher_weights="offline"))


def test_invalid_config_values_name_the_field():
    with pytest.raises(ConfigError, match="image_size"):
        ModelConfig(image_size=100)
    with pytest.raises(ConfigError, match="teacher_weights"):
        ModelConfig(teacher_weights="internet")
    assert ModelConfig.from_json(ModelConfig(image_size=64).to_json()) == ModelConfig(image_size=64)
