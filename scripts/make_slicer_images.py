#!/usr/bin/env python
"""Icons and the rendered preview of the Slicer extension, from the module's sample data.

    .venv/bin/python scripts/make_slicer_images.py icons
    .venv/bin/python scripts/make_slicer_images.py preview [--checkpoint MODEL.safetensors]

``icons``: the extension icon (Resources/D24FADSlicer.png, 128x128), the module icon and
the Sample Data thumbnail, drawn from the sample volume and its lesion mask (the heat in
the icons is the smoothed ground-truth mask, an illustration).
``preview``: runs ``python -m d24fad score`` on the sample volume with its normal support
slices, exactly as the module does, and renders the outputs (heat map over slices, the
per-slice score plot) with matplotlib. The Slicer GUI cannot run here, so the image is
labelled as a rendered preview, not a screenshot.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "D24FADSlicer"))

from D24FADSlicerLib.outputs import heat_color_values  # noqa: E402
from D24FADSlicerLib.sample_data import (  # noqa: E402
    LESION_SLICES, MASK_FILE, NORMAL_SUPPORT_SLICES, THUMBNAIL_FILE, VOLUME_FILE)

EXTENSION_ICON = REPO_ROOT / "Resources" / "D24FADSlicer.png"
MODULE_ICON = REPO_ROOT / "D24FADSlicer" / "Resources" / "Icons" / "D24FADSlicer.png"
PREVIEW = REPO_ROOT / "Resources" / "Screenshots" / "D24FADSlicer-preview.png"
ICON_SIZE = 128


def read_array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def display_slice(array: np.ndarray, index: int) -> np.ndarray:
    """Axial slice [j, i] turned for display: anterior up, patient right on the left."""
    return np.flipud(array[index])


def heat_colormap():
    from matplotlib.colors import ListedColormap

    return ListedColormap(heat_color_values())


def blend(grey: np.ndarray, heat: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """RGB of a grey image with heat-coloured values laid over it with per-pixel opacity."""
    rgb_heat = heat_colormap()(np.clip(heat, 0, 1))[..., :3]
    base = np.repeat(grey[..., None], 3, axis=2)
    return (1 - opacity[..., None]) * base + opacity[..., None] * rgb_heat


def make_icons() -> None:
    from PIL import Image
    from scipy import ndimage

    volume = read_array(VOLUME_FILE).astype(np.float32) / 255.0
    mask = read_array(MASK_FILE).astype(np.float32)
    index = (LESION_SLICES[0] + LESION_SLICES[1]) // 2
    grey = display_slice(volume, index)
    heat = display_slice(ndimage.gaussian_filter(mask, 1.5), index)
    heat = heat / heat.max()
    rgb = blend(grey, heat, 0.8 * (heat > 0.15))
    side = max(rgb.shape[:2])
    square = np.zeros((side, side, 3))
    top, left = (side - rgb.shape[0]) // 2, (side - rgb.shape[1]) // 2
    square[top:top + rgb.shape[0], left:left + rgb.shape[1]] = rgb
    image = Image.fromarray(np.uint8(np.round(square * 255))).resize((ICON_SIZE, ICON_SIZE), Image.LANCZOS)
    for path in (EXTENSION_ICON, MODULE_ICON, THUMBNAIL_FILE):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
        print(f"wrote {path}")


def score_sample(checkpoint: str | None, out: Path) -> None:
    command = [sys.executable, "-m", "d24fad", "score", "--input", str(VOLUME_FILE),
               "--support-slices", ",".join(map(str, NORMAL_SUPPORT_SLICES)), "--axis", "acquisition",
               "--out", str(out), "--map-format", "nrrd", "--threshold", "auto", "--device", "cpu",
               "--progress", "none"]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    subprocess.run(command, check=True)


def make_preview(checkpoint: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        score_sample(checkpoint, out)
        anomaly = read_array(out / "anomaly_map.nrrd").astype(np.float32)
        run = json.loads((out / "run.json").read_text())
        with (out / "scores.csv").open() as handle:
            rows = [(int(r["index"]), float(r["score"])) for r in csv.DictReader(handle)]
    volume = read_array(VOLUME_FILE).astype(np.float32) / 255.0
    threshold = float(run["threshold"])
    scale = max(float(anomaly.max()), 1e-6)
    top = max(rows, key=lambda row: row[1])[0]
    lesion_center = (LESION_SLICES[0] + LESION_SLICES[1]) // 2

    figure, axes = plt.subplots(1, 3, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.5]})
    panels = ((axes[0], lesion_center, f"slice {lesion_center}: synthetic lesion (most anomalous: {top})"),
              (axes[1], NORMAL_SUPPORT_SLICES[0], f"slice {NORMAL_SUPPORT_SLICES[0]}: a normal reference"))
    for axis, index, title in panels:
        heat = np.clip(display_slice(anomaly, index) / scale, 0, 1)
        # Overlay opacity grows with the map value, like a thresholded foreground layer.
        axis.imshow(blend(display_slice(volume, index), heat, 0.75 * heat), interpolation="nearest")
        axis.contour(display_slice(read_array(MASK_FILE), index), levels=[0.5], colors="#40c0ff", linewidths=0.8)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    indices, scores = zip(*rows)
    axes[2].plot(indices, scores, "o-", ms=3, color="#b30000", label="slice score (map maximum)")
    axes[2].axvspan(LESION_SLICES[0] - 0.5, LESION_SLICES[1] + 0.5, color="#ffd400", alpha=0.3,
                    label="synthetic lesion (ground truth)")
    for n, index in enumerate(NORMAL_SUPPORT_SLICES):
        axes[2].axvline(index, color="#2060c0", ls=":", label="normal reference slices" if n == 0 else None)
    axes[2].set_xlabel("acquisition slice index")
    axes[2].set_ylabel("anomaly score")
    axes[2].legend(loc="best", fontsize=8)
    axes[2].set_title(f"per-slice scores (threshold {threshold:.3f} from the references)")
    sha = (run.get("model") or {}).get("checkpoint_sha256") or "?"
    figure.suptitle("RENDERED PREVIEW (matplotlib, not a Slicer screenshot) of the engine's real output on the "
                    f"module's sample data; heat = anomaly map (0..{scale:.2f}), blue = lesion outline; "
                    f"model SHA256 {sha[:12]}", fontsize=9)
    figure.tight_layout()
    PREVIEW.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PREVIEW, dpi=90)
    print(f"wrote {PREVIEW}; top slice {top}, lesion slices {LESION_SLICES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("icons", "preview"))
    parser.add_argument("--checkpoint", help="model file for the preview (default: the shipped model)")
    args = parser.parse_args()
    if args.what == "icons":
        make_icons()
    else:
        make_preview(args.checkpoint)


if __name__ == "__main__":
    main()
