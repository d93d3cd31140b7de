"""Inference speed benchmark with an in-run roofline.

Machines (especially shared CI machines) are noisy, so absolute seconds say little. This
benchmark measures, in the same run: the network's FLOPs per query image
(torch.utils.flop_counter), the machine's large-matmul throughput in the same dtype
(the practical compute ceiling), and the achieved query images per second with the
support features cached. It reports achieved / roofline.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from ..config import ModelConfig
from ..detector import FewShotDetector
from ..device import autocast, dtype_name, resolve_device, resolve_dtype
from ..models.d24fad import D24FADModel


@dataclass
class SpeedReport:
    backbone: str
    weights: str
    image_size: int
    shots: int
    batch: int
    device: str
    dtype: str
    threads: int
    images_per_s: float
    seconds_per_batch: float
    gflop_per_image: float
    matmul_gflop_per_s: float
    roofline_images_per_s: float
    fraction_of_roofline: float
    peak_rss_mb: float
    torch_version: str
    cpu: str

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained GFLOP/s of square matmuls in ``dtype`` (the compute roofline)."""
    if device.type == "cuda":
        size = max(size, 8192)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and runs >= 3:
            break
    return 2.0 * size**3 * runs / elapsed / 1e9


def count_gflop_per_image(detector: FewShotDetector, batch: int, shots: int) -> float:
    """FLOPs of scoring one query batch (teacher + student + L2W + maps), per image.

    Counted on the plain float32 network: FLOPs belong to the network, and the fused
    kernels of the fast inference path are invisible to PyTorch's FLOP counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    plain = FewShotDetector(detector.model, device="cpu", dtype="fp32", mode=detector.mode)
    size = detector.image_size
    plain.set_support(torch.rand(shots, 3, size, size))
    images = torch.rand(batch, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        plain.score(images, batch_size=batch)
    return counter.get_total_flops() / batch / 1e9


def run_speed_benchmark(
    backbone: str = "wide_resnet50_2",
    weights: str = "random",
    image_size: int = 128,
    shots: int = 8,
    batch: int = 16,
    device: str = "auto",
    dtype: str = "bf16",
    min_seconds: float = 10.0,
    warmup_batches: int = 2,
    allow_download: bool = False,
    checkpoint: Optional[str] = None,
) -> SpeedReport:
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if checkpoint:
        detector = FewShotDetector.from_checkpoint(checkpoint, device=device, dtype=dtype, allow_download=allow_download)
    else:
        config = ModelConfig(teacher=backbone, teacher_weights=weights, image_size=image_size)
        detector = FewShotDetector(D24FADModel(config, allow_download=allow_download), device=device, dtype=dtype)
    size = detector.image_size
    detector.set_support(torch.rand(shots, 3, size, size))
    gflop = count_gflop_per_image(detector, batch=min(batch, 4), shots=shots)
    queries = torch.rand(batch, 3, size, size)
    for _ in range(warmup_batches):
        detector.score(queries, batch_size=batch)
    _sync(torch_device)
    runs, start = 0, time.perf_counter()
    while True:
        detector.score(queries, batch_size=batch)
        runs += 1
        _sync(torch_device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            break
    images_per_s = runs * batch / elapsed
    matmul = measure_matmul_gflops(torch_device, torch_dtype)
    roofline = matmul / gflop
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return SpeedReport(
        backbone=detector.config.teacher,
        weights=detector.config.teacher_weights,
        image_size=size,
        shots=shots,
        batch=batch,
        device=str(torch_device),
        dtype=dtype_name(torch_dtype),
        threads=torch.get_num_threads(),
        images_per_s=round(images_per_s, 3),
        seconds_per_batch=round(elapsed / runs, 4),
        gflop_per_image=round(gflop, 3),
        matmul_gflop_per_s=round(matmul, 1),
        roofline_images_per_s=round(roofline, 3),
        fraction_of_roofline=round(images_per_s / roofline, 4),
        peak_rss_mb=round(rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 1024 / 1024, 1),
        torch_version=torch.__version__,
        cpu=platform.processor() or platform.machine(),
    )
