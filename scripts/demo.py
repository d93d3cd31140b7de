"""`make demo`: the volume workflow on a real brain MRI with a synthetic lesion.

1. Builds the input at run time, offline and deterministically: the MNI152 T1 template
   shipped with nilearn (2 mm, 99 x 117 x 95) with one synthetic lesion
   (d24fad.data.lesions) a few axial slices thick. The template is a real normal brain;
   the lesion is synthetic, and so is every "abnormal" claim this demo makes.
2. Tags normal support slices away from the lesion, exactly as a user would in the viewer.
3. Runs `d24fad score` (the real CLI) with the default model and prints the top-scoring
   slices next to the slices that really contain the lesion, and where the outputs went.

    .venv/bin/python scripts/demo.py --out demo-output [--checkpoint model.safetensors]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

LESION_SEED = 2026
LESION_RADIUS_VOXELS = 3.0  # 6 mm at 2 mm voxels: a few axial slices
SUPPORT_COUNT = 8
SUPPORT_MARGIN_SLICES = 3  # supports stay this far from any lesion slice
SUPPORT_MIN_BODY_FRACTION = 0.10  # a reference slice shows at least this much tissue
TOP_COUNT = 5


def template_volume(work_folder: Path):
    """The MNI152 T1 template as a d24fad Volume (read back through SimpleITK, so the
    RAS -> LPS conversion is ITK's own)."""
    import nibabel
    from nilearn.datasets import load_mni152_template

    from d24fad.io import read_volume

    path = work_folder / "mni152_t1_2mm.nii.gz"
    nibabel.save(load_mni152_template(resolution=2), str(path))
    volume = read_volume(path)
    volume.modality = "MR"
    return volume


def add_lesion(volume):
    """A deterministic synthetic lesion inside the brain; returns (volume, mask volume)."""
    from d24fad.data.lesions import synthesize_lesion

    voxels = np.clip(volume.array, 0.0, 1.0).astype(np.float32)
    brain = voxels > 0.3
    slices_with_brain = np.flatnonzero(brain.any(axis=(1, 2)))
    # Centre: the brain's centre of mass shifted towards one hemisphere, mid-height.
    k = int(np.percentile(slices_with_brain, 60))
    j, i = (int(c) for c in np.argwhere(brain[k]).mean(axis=0))
    i += brain.shape[2] // 8
    lesioned, mask = synthesize_lesion(voxels, np.random.default_rng(LESION_SEED), kind="hyper",
                                       center=(k, j, i), radius=LESION_RADIUS_VOXELS)
    return volume.with_array(lesioned), volume.with_array(mask.astype(np.uint8))


def choose_supports(volume, lesion_slices: np.ndarray) -> list[int]:
    """Normal slices spread over the slices that show the brain, kept away from the lesion:
    what a reader would tag. Air-only slices are no reference (scoring ignores air)."""
    from d24fad.preprocess import body_mask

    body = body_mask(volume.array, volume.modality)
    with_tissue = [k for k in range(volume.shape[0]) if body[k].mean() >= SUPPORT_MIN_BODY_FRACTION]
    far = [k for k in with_tissue if np.min(np.abs(lesion_slices - k)) > SUPPORT_MARGIN_SLICES]
    picks = np.linspace(0, len(far) - 1, SUPPORT_COUNT).round().astype(int)
    return sorted({far[p] for p in picks})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-output", help="output folder (its files are replaced)")
    parser.add_argument("--checkpoint", help="model file; default: the shipped model")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from d24fad.cli import main as d24fad_main
    from d24fad.io import read_slice_scores_csv, write_volume

    out = Path(args.out)
    with tempfile.TemporaryDirectory() as work:
        volume, lesion_mask = add_lesion(template_volume(Path(work)))
    lesion_slices = np.flatnonzero(lesion_mask.array.any(axis=(1, 2)))
    supports = choose_supports(volume, lesion_slices)
    write_volume(volume, out / "brain_with_lesion.nii.gz")
    write_volume(lesion_mask, out / "lesion_mask.nii.gz")
    command = ["score", "--input", str(out / "brain_with_lesion.nii.gz"),
               "--support-slices", ",".join(map(str, supports)), "--out", str(out / "result"), "--overwrite",
               "--threshold", "auto", "--mask", "--png-top", str(TOP_COUNT), "--device", args.device,
               "--progress", "bar"]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    print(f"d24fad {' '.join(command)}")
    code = d24fad_main(command)
    if code != 0:
        return code
    indices, positions, scores = read_slice_scores_csv(out / "result" / "scores.csv")
    top = np.argsort(-scores, kind="stable")[:TOP_COUNT]
    print("\nInput: MNI152 T1 brain template (real, normal) + one SYNTHETIC lesion; "
          f"{volume.shape[0]} axial slices of {volume.shape[2]}x{volume.shape[1]} at 2 mm")
    print(f"Support (normal) slices tagged: {supports}")
    print(f"Slices that contain the synthetic lesion: {lesion_slices.tolist()}")
    print(f"Top {TOP_COUNT} slices by anomaly score:")
    for rank, row in enumerate(top, 1):
        marker = "  <- lesion" if indices[row] in set(lesion_slices.tolist()) else ""
        print(f"  {rank}. slice {indices[row]:3d}  (S = {positions[row]:7.1f} mm)  score {scores[row]:.4f}{marker}")
    hits = sorted(set(indices[top].tolist()) & set(lesion_slices.tolist()))
    ranking = np.argsort(-scores, kind="stable")
    best_rank = min(int(np.flatnonzero(indices[ranking] == k)[0]) + 1 for k in lesion_slices)
    print(f"Lesion slices among the top {TOP_COUNT}: {len(hits)} {hits}; best-ranked lesion slice: "
          f"#{best_rank} of {len(scores)}")
    print(f"\nOutputs in {out.resolve()}:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(out)}")
    print("Open brain_with_lesion.nii.gz with result/anomaly_map.nii.gz as overlay in 3D Slicer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
