"""Resumable training state in one safetensors file (no pickles, like the checkpoints).

Tensors: ``model.*`` (student and L2W, with BatchNorm buffers) and ``optim.<param>.<key>``
(Adam moments and step counts). Metadata ``state``: JSON with the finished epoch, the
best validation result so far, the log history, the optimiser's hyper-parameters and
the settings fingerprint that a resumed run must match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path
from ..models.d24fad import D24FADModel

FORMAT = "d24fad-train-state/1"


def save_state(path: str | os.PathLike, model: D24FADModel, optimizer: torch.optim.Optimizer, record: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    optimizer_state = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    for param_id, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{param_id}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    record = dict(record, param_groups=optimizer_state["param_groups"])
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "state": json.dumps(record, sort_keys=True)})


def load_state(path: str | os.PathLike, model: D24FADModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` in place; return the saved record."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a d24fad training state (format {meta.get('format')!r})")
    record = json.loads(meta["state"])
    model_part = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_trainable_state_(model_part, str(path))
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            optimizer_state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": record.pop("param_groups")})
    return record
