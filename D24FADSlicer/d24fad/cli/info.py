"""``d24fad info``: versions, compute devices, teachers and the default model."""

from __future__ import annotations

import argparse
import json
import platform

NAME = "info"
HELP = "show versions, available devices, teachers and the default model"

# Teachers known to work; any timm CNN with features_only support is accepted.
RECOMMENDED_TEACHERS = ("tf_efficientnet_lite0", "wide_resnet50_2", "resnet18", "resnet50")


def collect_info() -> dict:
    import torch

    from .. import __version__
    from ..checkpoint import default_model_path, read_checkpoint_info
    from ..device import cpu_supports_bf16
    from ..errors import D24FADError
    from ..models.teacher import OFFLINE_WEIGHTS

    versions = {"d24fad": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for module in ("timm", "SimpleITK", "pydicom", "highdicom", "monai", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # an optional package may be missing or broken: report, do not fail
            versions[module] = None
    devices = {
        "cpu": {"threads": torch.get_num_threads(), "bf16": cpu_supports_bf16()},
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda_build": torch.version.cuda,
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    teachers = {
        name: {"offline_weights": name in OFFLINE_WEIGHTS, "other_sources": ["hub (--allow-download)", "file"]}
        for name in RECOMMENDED_TEACHERS
    }
    model_path = default_model_path()
    default_model = {"path": str(model_path), "installed": model_path.is_file()}
    if model_path.is_file():
        try:
            info = read_checkpoint_info(model_path)
            default_model.update(sha256=info.sha256, teacher=info.config.teacher, image_size=info.config.image_size)
        except D24FADError as exc:
            default_model["error"] = str(exc)
    return {"versions": versions, "devices": devices, "teachers": teachers, "default_model": default_model}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("versions:")
    for k, v in info["versions"].items():
        print(f"  {k:<10} {v}")
    d = info["devices"]
    print(f"devices:\n  cpu        {d['cpu']['threads']} threads, bf16 instructions: {d['cpu']['bf16']}")
    print(f"  cuda       {', '.join(d['cuda']) or 'none'} (PyTorch CUDA build: {d['cuda_build'] or 'none'})")
    print(f"  mps        {d['mps']}")
    print("teachers (any timm CNN with features_only works):")
    for name, t in info["teachers"].items():
        src = "offline weights shipped" if t["offline_weights"] else "weights: --allow-download (hub) or a local file"
        print(f"  {name:<22} {src}")
    m = info["default_model"]
    state = f"sha256 {m['sha256']}" if m.get("sha256") else ("NOT INSTALLED" if not m["installed"] else m.get("error"))
    print(f"default model:\n  {m['path']}\n  {state}")
    return 0
