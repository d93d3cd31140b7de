"""Make the engine normalise a Slicer volume as it would the DICOM series it came from.

The engine picks its intensity window from the DICOM modality and body part (a CT brain
window for a head CT, foreground percentiles for MR, ...). The temporary NRRD copy handed
to the engine carries no DICOM header, so when the node came from DICOM this module runs
the engine's own choice (``d24fad.preprocess.plan_intensity``, numpy only) on the node's
voxels and passes the result as an explicit ``--window WIDTH/LEVEL``. Volumes without DICOM
context keep ``--window auto``, which is what the engine does for NIfTI / NRRD files.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

MODALITY_TAG = "0008,0060"
BODY_PART_TAG = "0018,0015"


def dicom_modality_and_body_part(volume_node) -> tuple[Optional[str], Optional[str]]:
    """Modality from the subject hierarchy (set by Slicer's DICOM import), body part from
    the DICOM database when the application has one."""
    import slicer

    modality = volume_node.GetAttribute("DICOM.Modality") or ""
    scene = volume_node.GetScene()
    if scene is not None and not modality:
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        item = hierarchy.GetItemByDataNode(volume_node)
        if item:
            modality = hierarchy.GetItemAttribute(item, "DICOM.Modality") or ""
    body_part = ""
    instance_uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if instance_uids and database is not None:
        first_file = database.fileForInstance(instance_uids[0])
        if first_file:
            modality = modality or database.fileValue(first_file, MODALITY_TAG)
            body_part = database.fileValue(first_file, BODY_PART_TAG)
    return (modality.strip().upper() or None), (body_part.strip().upper() or None)


def engine_window_argument(volume_node) -> str:
    """``--window`` value for the engine: the engine's automatic choice for this DICOM
    modality, as WIDTH/LEVEL, or ``auto`` when the volume has no DICOM context."""
    from d24fad.preprocess import plan_intensity

    modality, body_part = dicom_modality_and_body_part(volume_node)
    if modality is None:
        return "auto"
    import slicer

    voxels = np.asarray(slicer.util.arrayFromVolume(volume_node))
    plan = plan_intensity(voxels, modality, "auto", {"modality": modality, "body_part": body_part or ""})
    if plan.mode == "none" or not plan.high > plan.low:
        return "auto"
    # Fixed-point text: the engine's W/L syntax has no exponent notation.
    return f"{plan.high - plan.low:.6f}/{(plan.high + plan.low) / 2.0:.6f}"
