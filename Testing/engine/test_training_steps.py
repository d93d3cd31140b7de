"""A few episodic steps on tiny data decrease both losses."""

from __future__ import annotations

import numpy as np
import torch

from d24fad.models.d24fad import D24FADModel

from engine_fixtures import tiny_config, train_steps


def test_few_steps_decrease_ssd_and_tsd(brain_images64):
    torch.manual_seed(0)
    model = D24FADModel(tiny_config())
    history = np.array(train_steps(model, brain_images64, steps=30, shots=2, batch=4, lr=2e-3))
    first, last = history[:5].mean(0), history[-5:].mean(0)
    assert last[0] < first[0], f"total loss {first[0]:.3f} -> {last[0]:.3f}"
    assert last[1] < first[1], f"SSD {first[1]:.3f} -> {last[1]:.3f}"
    assert last[2] < first[2], f"TSD {first[2]:.3f} -> {last[2]:.3f}"
