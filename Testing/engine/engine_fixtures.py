"""Fixtures for engine tests: tiny real-image data and tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from d24fad.config import ModelConfig
from d24fad.models.d24fad import D24FADModel


def _resize_stack(slices: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] in [0,1] -> [N, 3, size, size] float32 (bilinear), grey replicated."""
    t = torch.from_numpy(slices.astype(np.float32)).unsqueeze(1)
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return t.repeat(1, 3, 1, 1).numpy()


@pytest.fixture(scope="session")
def brain_slices() -> np.ndarray:
    """Real axial T1 brain MRI slices (MNI152 template shipped in nilearn), [N, H, W] in [0, 1]."""
    from nilearn.datasets import load_mni152_template

    volume = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float32)
    volume = volume / np.percentile(volume, 99.5)
    axial = np.clip(np.transpose(volume, (2, 1, 0))[:, ::-1, :], 0, 1)  # [z, y, x], anterior up
    return np.ascontiguousarray(axial[30:70:2])  # 20 slices through the brain


@pytest.fixture(scope="session")
def brain_images64(brain_slices) -> np.ndarray:
    return _resize_stack(brain_slices, 64)


def tiny_config(**changes) -> ModelConfig:
    base = dict(teacher="resnet18", teacher_weights="random", image_size=64, decoder_depths=(1, 1, 1))
    base.update(changes)
    return ModelConfig(**base)


@pytest.fixture
def tiny_model() -> D24FADModel:
    torch.manual_seed(0)
    return D24FADModel(tiny_config())


def train_steps(model: D24FADModel, images: np.ndarray, steps: int, shots: int = 3, batch: int = 4, lr: float = 1e-3, seed: int = 0):
    """A minimal episodic loop (query + K other images of the same set); returns loss history."""
    from d24fad.losses import d24fad_loss

    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(images)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    model.train()
    history = []
    for _ in range(steps):
        q_idx = torch.randint(len(data), (batch,), generator=gen)
        supports = []
        for q in q_idx.tolist():
            others = torch.tensor([i for i in range(len(data)) if i != q])
            supports.append(data[others[torch.randperm(len(others), generator=gen)[:shots]]])
        out = model(data[q_idx], torch.stack(supports))
        terms = d24fad_loss(out, model.config.loss_lambda)
        optimiser.zero_grad()
        terms.total.backward()
        optimiser.step()
        history.append((terms.total.item(), terms.ssd.item(), terms.tsd.item()))
    model.eval()
    return history
