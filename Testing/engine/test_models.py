"""Network shapes, dtypes and what trains."""

from __future__ import annotations

import pytest
import torch

from d24fad.config import ModelConfig
from d24fad.device import autocast
from d24fad.losses import d24fad_loss
from d24fad.models.d24fad import D24FADModel
from d24fad.models.student import plan_decoder

from engine_fixtures import tiny_config


@pytest.mark.parametrize("size", [128, 224])
@pytest.mark.parametrize(
    "teacher,weights,channels",
    [
        ("wide_resnet50_2", "random", [256, 512, 1024, 2048]),
        ("tf_efficientnet_lite0", "offline", [24, 40, 112, 320]),
    ],
)
def test_feature_shapes_match_teacher_scales(teacher, weights, channels, size):
    model = D24FADModel(ModelConfig(teacher=teacher, teacher_weights=weights, image_size=size))
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        t = model.encode(x)
        s = model.decode(t[-1])
    assert [f.shape[1] for f in t] == channels
    assert [f.shape[-1] for f in t] == [size // 4, size // 8, size // 16, size // 32]
    # The student reconstructs exactly the teacher's map scales (not the deepest stage).
    assert [tuple(f.shape) for f in s] == [tuple(f.shape) for f in t[:-1]]
    assert all(f.dtype == torch.float32 for f in t + s)


def test_reduced_precision_forward_runs_in_bf16():
    model = D24FADModel(tiny_config()).eval()
    with torch.no_grad(), autocast(torch.device("cpu"), torch.bfloat16):
        t = model.encode(torch.rand(2, 3, 64, 64))
        s = model.decode(t[-1])
    assert s[0].dtype == torch.bfloat16


def test_reverse_resnet_plan_mirrors_wide_resnet():
    plan = plan_decoder("wide_resnet50_2", [256, 512, 1024, 2048], [4, 8, 16, 32])
    assert plan.out_channels == (1024, 512, 256)
    assert plan.depths == (3, 4, 6)
    assert plan.widths == (512, 256, 128)  # bottleneck width of a wide ResNet (2x)
    assert plan.relu_outputs


def test_generic_plan_follows_feature_info():
    plan = plan_decoder("tf_efficientnet_lite0", [24, 40, 112, 320], [4, 8, 16, 32])
    assert plan.out_channels == (112, 40, 24)
    assert plan.upsample_steps == (1, 1, 1)
    assert not plan.relu_outputs  # EfficientNet features are signed


def test_only_student_and_l2w_receive_gradients():
    model = D24FADModel(tiny_config()).train()
    out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 3, 64, 64))
    d24fad_loss(out).total.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.student.parameters())
    assert all(p.grad is not None for p in model.l2w.parameters())
    assert not model.teacher.training  # frozen batch-norm statistics even in train()


def test_teacher_normalises_input_with_its_statistics():
    model = D24FADModel(ModelConfig())  # offline EfficientNet: ImageNet mean/std
    assert model.teacher.normalisation["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert model.teacher.normalisation["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_folding_decoder_batch_norms_keeps_outputs():
    import copy

    model = D24FADModel(tiny_config())
    with torch.no_grad():
        for m in model.student.modules():  # non-trivial statistics, as after training
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    model.eval()
    folded = copy.deepcopy(model.student).fold_batch_norms_()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    deepest = torch.randn(2, 512, 2, 2)
    with torch.no_grad():
        for a, b in zip(model.student(deepest), folded(deepest)):
            assert torch.allclose(a, b, atol=1e-4)


def test_conv_activation_fusion_keeps_outputs_and_replaces_pairs():
    from d24fad.models.inference_graph import ConvWithActivation, fuse_conv_activations

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 4, 1),  # no activation: left alone
    ).eval()
    fused = fuse_conv_activations(net)
    assert sum(isinstance(m, ConvWithActivation) for m in fused.modules()) == 2
    x = torch.randn(2, 3, 16, 16) * 4
    with torch.no_grad():
        assert torch.allclose(fused(x), net(x), atol=1e-5)
