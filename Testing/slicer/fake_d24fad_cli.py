"""Stand-in for ``python -m d24fad`` with the same options and output contract.

The Logic tests run it instead of the engine, so they check the Slicer side exactly:
its map is the input divided by its maximum (a known map), and the environment variable
FAKE_D24FAD_MODE selects a behaviour: ok, slow (never ends; starts a grandchild), fail,
bad_input, oom (CUDA out of memory while --batch-size > FAKE_OOM_ABOVE), wrong_shape.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def emit(payload):
    sys.stderr.write(json.dumps(payload) + "\n")
    sys.stderr.flush()


def parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--input", required=True)
    parser.add_argument("--support-slices", required=True)
    parser.add_argument("--support-input")
    parser.add_argument("--support-slices-other")
    parser.add_argument("--axis", default="acquisition")
    parser.add_argument("--window", default="auto")
    parser.add_argument("--out", required=True)
    parser.add_argument("--map-format", default="nrrd")
    parser.add_argument("--threshold", default="auto")
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--progress", default="bar")
    return parser.parse_args(argv)


def run_slow(args):
    pid_dir = Path(os.environ["FAKE_D24FAD_PIDS"])
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (pid_dir / "child.pid").write_text(str(os.getpid()))
    (pid_dir / "grandchild.pid").write_text(str(grandchild.pid))
    emit({"event": "progress", "stage": "scoring", "done": 1, "total": 100})
    time.sleep(600)


def run_ok(args, wrong_shape=False):
    image = sitk.ReadImage(args.input)
    voxels = sitk.GetArrayFromImage(image).astype(np.float32)
    anomaly = voxels / max(float(voxels.max()), 1e-6)
    slices = anomaly.shape[0]
    for done in range(1, slices + 1):
        emit({"event": "progress", "stage": "scoring", "done": done, "total": slices})
    emit({"event": "done", "stage": "scoring"})
    out = Path(args.out)
    out.mkdir(parents=True)
    written = sitk.GetImageFromArray(anomaly[:-1] if wrong_shape else anomaly)
    written.CopyInformation(image) if not wrong_shape else None
    sitk.WriteImage(written, str(out / "anomaly_map.nrrd"))
    with (out / "scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "position_mm", "score"])
        for k in range(slices):
            writer.writerow([k, image.TransformIndexToPhysicalPoint((0, 0, k))[2], float(anomaly[k].max())])
    threshold = 0.5 if args.threshold == "auto" else float(args.threshold)
    (out / "run.json").write_text(json.dumps({
        "threshold": threshold, "checkpoint_sha256": "f" * 64,
        "versions": {"d24fad": "fake", "torch": "fake"}, "arguments": vars(args)}))


def main():
    args = parse(sys.argv[1:])
    mode = os.environ.get("FAKE_D24FAD_MODE", "ok")
    print("fake d24fad starting", flush=True)
    if mode == "slow":
        run_slow(args)
    elif mode == "fail":
        sys.stderr.write("Traceback (most recent call last):\nRuntimeError: model exploded\n")
        sys.stderr.write("d24fad: error: model exploded on slice 3\n")
        sys.exit(1)
    elif mode == "bad_input":
        sys.stderr.write(f"d24fad: error: cannot read {args.input}\n")
        sys.exit(2)
    elif mode == "oom" and args.batch_size > int(os.environ.get("FAKE_OOM_ABOVE", "0")):
        sys.stderr.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
        sys.exit(1)
    else:
        run_ok(args, wrong_shape=(mode == "wrong_shape"))


if __name__ == "__main__":
    main()
