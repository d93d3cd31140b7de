"""Checkpoints: one safetensors file holding the trained tensors and, in its header, the
JSON model configuration and training record. Loading never unpickles anything.

Layout of the safetensors metadata (all strings):
    format           "d24fad-checkpoint/1"
    config           ModelConfig JSON (teacher, weight source and digest, sizes, scales, lambda ...)
    training         JSON: what it was trained on, recipe, metrics (free form)
    d24fad_version   package version that wrote it
    teacher_normalisation  JSON {"mean": [...], "std": [...]}

Tensors: ``student.*`` and ``l2w.*`` always; ``teacher.*`` too unless the teacher's
weights come from an offline package (then the package supplies them and the stored
digest in the config proves they are the same).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import torch

from . import __version__
from .config import ModelConfig
from .errors import CheckpointError, UnsafeCheckpointError
from .io.atomic import atomic_path
from .models.d24fad import D24FADModel
from .models.teacher import file_sha256, state_dict_sha256

FORMAT = "d24fad-checkpoint/1"
DEFAULT_MODEL_FILE = "default_model.safetensors"


@dataclass
class CheckpointInfo:
    path: Path
    sha256: str
    config: ModelConfig
    training: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    teacher_normalisation: dict[str, Any] = field(default_factory=dict)


def default_model_path() -> Path:
    """The model shipped with the package (trained on MedFAD-mini, offline teacher)."""
    return Path(str(resources.files("d24fad") / "assets" / DEFAULT_MODEL_FILE))


def default_model_expected_sha256() -> Optional[str]:
    """The SHA256 pinned next to the shipped model (``default_model.safetensors.sha256``)."""
    pin = default_model_path().with_name(DEFAULT_MODEL_FILE + ".sha256")
    if not pin.is_file():
        return None
    return pin.read_text(encoding="utf-8").split()[0].strip()


def _check_safetensors_file(path: Path) -> None:
    """Reject pickles and archives before any parser sees them."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise UnsafeCheckpointError(
            f"{path}: this is a pickled PyTorch file; d24fad only loads safetensors checkpoints "
            "and never unpickles (pickles can run arbitrary code)"
        )
    if len(head) < 9 or head[8:9] != b"{":
        raise CheckpointError(f"{path}: not a safetensors checkpoint")


def read_checkpoint_info(path: str | os.PathLike, expected_sha256: Optional[str] = None) -> CheckpointInfo:
    """Read and validate the header of a checkpoint (no tensors loaded)."""
    path = Path(path)
    _check_safetensors_file(path)
    sha = file_sha256(path)
    if expected_sha256 and sha != expected_sha256.lower():
        raise CheckpointError(f"{path}: SHA256 {sha} does not match the expected {expected_sha256}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable safetensors header ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a d24fad checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        config = ModelConfig.from_json(meta["config"])
        training = json.loads(meta.get("training", "{}"))
        normalisation = json.loads(meta.get("teacher_normalisation", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete or corrupt ({exc})") from exc
    return CheckpointInfo(path=path, sha256=sha, config=config, training=training,
                          version=meta.get("d24fad_version", ""), teacher_normalisation=normalisation)


def save_checkpoint(
    path: str | os.PathLike,
    model: D24FADModel,
    training: Optional[dict[str, Any]] = None,
) -> CheckpointInfo:
    """Write ``model`` atomically; returns the info (with the file's SHA256)."""
    from safetensors.torch import save_file

    path = Path(path)
    config = model.config
    if config.teacher_weights != "random" and model.teacher.weights_sha256:
        config = config.replace(teacher_weights_sha256=model.teacher.weights_sha256)
    tensors = dict(model.trainable_state_dict())
    if config.teacher_weights != "offline":
        # Random, hub and file teachers travel inside the checkpoint so that it works offline.
        tensors.update({f"teacher.{k}": v for k, v in model.teacher.backbone.state_dict().items()})
        config = config.replace(teacher_weights_sha256=state_dict_sha256(model.teacher.backbone.state_dict()))
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "config": config.to_json(),
        "training": json.dumps(training or {}, sort_keys=True, default=str),
        "d24fad_version": __version__,
        "teacher_normalisation": json.dumps(model.teacher.normalisation),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return read_checkpoint_info(path)


def load_checkpoint(
    path: str | os.PathLike | None = None,
    allow_download: bool = False,
    expected_sha256: Optional[str] = None,
) -> tuple[D24FADModel, CheckpointInfo]:
    """Rebuild the model from a checkpoint (``None`` = the shipped default model), on CPU."""
    if path is None:
        path = default_model_path()
        if not path.is_file():
            raise CheckpointError(
                f"the default model is not installed ({path}); train it with `make model` or pass --checkpoint"
            )
        expected_sha256 = expected_sha256 or default_model_expected_sha256()
    info = read_checkpoint_info(path, expected_sha256)
    from safetensors.torch import load_file

    tensors = load_file(str(info.path))
    teacher_tensors = {k[len("teacher.") :]: v for k, v in tensors.items() if k.startswith("teacher.")}
    config = info.config
    embedded_teacher = bool(teacher_tensors)
    model = D24FADModel(config, allow_download=allow_download, load_teacher_weights=not embedded_teacher)
    if embedded_teacher:
        try:
            model.teacher.backbone.load_state_dict(teacher_tensors, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{info.path}: teacher tensors do not fit {config.teacher} ({exc})") from exc
        digest = state_dict_sha256(model.teacher.backbone.state_dict())
        if config.teacher_weights_sha256 and digest != config.teacher_weights_sha256:
            raise CheckpointError(f"{info.path}: embedded teacher weights were altered (digest mismatch)")
        model.teacher.weights_sha256 = digest
        norm = info.teacher_normalisation
        if norm:
            model.teacher.mean.copy_(torch.tensor(norm["mean"]).view(1, 3, 1, 1))
            model.teacher.std.copy_(torch.tensor(norm["std"]).view(1, 3, 1, 1))
            model.teacher.normalisation = norm
    model.load_trainable_state_(tensors, str(info.path))
    model.eval()
    return model, info
