"""The module's sample volume, registered with Slicer's Sample Data module.

Built offline by scripts/make_sample_data.py (MNI ICBM152 T1 template at 3 mm with one
synthetic bright lesion); shipped inside the extension, so no download is needed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SAMPLE_NAME = "D24FADBrainLesion"
SAMPLE_CATEGORY = "Anomaly detection"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
VOLUME_FILE = SAMPLE_DIR / f"{SAMPLE_NAME}.nrrd"
MASK_FILE = SAMPLE_DIR / f"{SAMPLE_NAME}-mask.nrrd"
THUMBNAIL_FILE = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / f"{SAMPLE_NAME}.png"

# Acquisition (axial) slices the lesion touches, first and last (printed by the script).
LESION_SLICES = (35, 42)
# Normal slices of the same scan used as the support set, chosen by the same kind of rule as
# `make demo`: slices showing brain, spread evenly, away from the lesion (here six slices, at
# least 12 mm = 4 slices from it).
NORMAL_SUPPORT_SLICES = (8, 13, 17, 22, 26, 47)


# Voxel value above which the sample shows brain tissue rather than background (uint8 T1).
BRAIN_MIN_VALUE = 50


def lesion_contrast(anomaly_map, voxels) -> tuple[float, float]:
    """Mean map value inside the lesion, and in the brain around it, on the lesion's slices."""
    import numpy as np
    import SimpleITK as sitk

    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(MASK_FILE))).astype(bool)
    slices = slice(LESION_SLICES[0], LESION_SLICES[1] + 1)
    around = (np.asarray(voxels) > BRAIN_MIN_VALUE) & ~lesion
    anomaly_map = np.asarray(anomaly_map)
    return float(anomaly_map[slices][lesion[slices]].mean()), float(anomaly_map[slices][around[slices]].mean())


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def register_sample_data() -> None:
    """Add the sample to Slicer's Sample Data module (application only)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=VOLUME_FILE.as_uri(),
        fileNames=VOLUME_FILE.name,
        nodeNames=SAMPLE_NAME,
        thumbnailFileName=str(THUMBNAIL_FILE),
        loadFileType="VolumeFile",
        checksums=f"SHA256:{file_sha256(VOLUME_FILE)}",
    )
