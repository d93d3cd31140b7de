#!/usr/bin/env python
"""Build the module's sample volume: a normal brain MR with one synthetic lesion.

Offline and deterministic: the MNI ICBM152 2009a T1 template shipped inside nilearn is
resampled to 3 mm, and a bright mass (d24fad.data.lesions, fixed seed) is added in the
right hemisphere. Writes D24FADSlicer/Resources/SampleData/D24FADBrainLesion.nrrd and the
lesion's exact mask D24FADBrainLesion-mask.nrrd (the ground truth), both gzip NRRD, and
prints the lesion's slice range, which D24FADSlicerLib/sample_data.py records.

    .venv/bin/python scripts/make_sample_data.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "D24FADSlicer" / "Resources" / "SampleData"
VOLUME_NAME = "D24FADBrainLesion.nrrd"
MASK_NAME = "D24FADBrainLesion-mask.nrrd"
SPACING_MM = 3.0
SEED = 20260303
# Lesion centre in the resampled grid, index order (k, j, i): right frontal white matter
# above the ventricles (i grows towards the patient's left in this LPS-stored template).
LESION_CENTER_KJI = (38, 42, 25)
LESION_RADIUS_VOXELS = 4.0


def template_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def resampled_template() -> sitk.Image:
    """The T1 template on a 3 mm grid with the same origin and directions (linear interpolation)."""
    image = sitk.ReadImage(str(template_path()), sitk.sitkFloat32)
    size = [int(round(n * s / SPACING_MM)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    # Gaussian anti-aliasing before 3x decimation: sigma ~ 0.4 of the new spacing.
    smoothed = sitk.SmoothingRecursiveGaussian(image, 0.4 * SPACING_MM)
    return sitk.Resample(smoothed, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         (SPACING_MM,) * 3, image.GetDirection(), 0.0, sitk.sitkFloat32)


def build(out: Path) -> tuple[Path, Path, tuple[int, int]]:
    from d24fad.data.lesions import synthesize_lesion

    template = resampled_template()
    voxels = np.clip(sitk.GetArrayFromImage(template) / 255.0, 0.0, 1.0)
    with_lesion, mask = synthesize_lesion(voxels, np.random.default_rng(SEED), kind="hyper",
                                          center=LESION_CENTER_KJI, radius=LESION_RADIUS_VOXELS)
    out.mkdir(parents=True, exist_ok=True)
    volume_path = _write_like(template, np.round(with_lesion * 255.0).astype(np.uint8), out / VOLUME_NAME)
    mask_path = _write_like(template, mask.astype(np.uint8), out / MASK_NAME)
    lesion_slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return volume_path, mask_path, (int(lesion_slices.min()), int(lesion_slices.max()))


def _write_like(reference: sitk.Image, voxels: np.ndarray, path: Path) -> Path:
    from d24fad.io.atomic import atomic_path

    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(reference)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        tmp.chmod(0o644)  # a data file others read, not mkstemp's private 0600
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()
    volume_path, mask_path, (first, last) = build(args.out)
    print(f"wrote {volume_path} ({volume_path.stat().st_size} bytes) and {mask_path}")
    print(f"lesion on acquisition slices {first}..{last}")


if __name__ == "__main__":
    main()
