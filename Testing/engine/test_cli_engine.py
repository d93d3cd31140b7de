"""`d24fad info` and `d24fad benchmark-speed` (figures checked for consistency, never for speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from d24fad.benchmarks.speed import run_speed_benchmark


def test_info_lists_teachers_and_devices():
    out = subprocess.run([sys.executable, "-m", "d24fad", "info", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["teachers"]["tf_efficientnet_lite0"]["offline_weights"] is True
    assert info["teachers"]["wide_resnet50_2"]["offline_weights"] is False
    assert info["devices"]["cpu"]["threads"] >= 1
    assert "torch" in info["versions"]


def test_speed_report_is_self_consistent():
    report = run_speed_benchmark(backbone="resnet18", image_size=64, shots=2, batch=2, dtype="fp32", min_seconds=0.2, warmup_batches=1)
    r = report.to_dict()
    assert r["images_per_s"] > 0 and r["gflop_per_image"] > 0 and r["matmul_gflop_per_s"] > 0
    assert r["roofline_images_per_s"] == pytest.approx(r["matmul_gflop_per_s"] / r["gflop_per_image"], rel=0.01)
    assert r["fraction_of_roofline"] == pytest.approx(r["images_per_s"] / r["roofline_images_per_s"], rel=0.01, abs=1e-3)
    assert r["peak_rss_mb"] > 0 and r["dtype"] == "fp32" and r["device"] == "cpu"


def test_flop_count_grows_with_image_size():
    small = run_speed_benchmark(backbone="resnet18", image_size=64, shots=1, batch=1, dtype="fp32", min_seconds=0.05, warmup_batches=0)
    large = run_speed_benchmark(backbone="resnet18", image_size=128, shots=1, batch=1, dtype="fp32", min_seconds=0.05, warmup_batches=0)
    assert large.gflop_per_image == pytest.approx(4 * small.gflop_per_image, rel=0.15)


def test_flop_count_does_not_depend_on_the_inference_kernels():
    """bf16 on CPU runs fused oneDNN kernels; the network's FLOPs must still be counted."""
    fp32 = run_speed_benchmark(backbone="resnet18", image_size=64, shots=1, batch=1, dtype="fp32", min_seconds=0.05, warmup_batches=0)
    bf16 = run_speed_benchmark(backbone="resnet18", image_size=64, shots=1, batch=1, dtype="bf16", min_seconds=0.05, warmup_batches=0)
    assert bf16.gflop_per_image == pytest.approx(fp32.gflop_per_image, rel=0.01)
