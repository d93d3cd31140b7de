"""Output nodes of a scoring run: anomaly-map volume, segmentation, score table and plot.

All nodes are created inside one scene transaction: if anything fails, every node added
so far is removed and the scene is left as it was. The input node is only read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from d24fad.errors import D24FADError

from .job import ScoringResult, SliceScore
from .mrml import scene_transaction, segmentations_logic

ATTRIBUTE_PREFIX = "D24FAD."
HEAT_COLOR_NODE_NAME = "D24FAD Heat"
ANOMALY_SEGMENT_NAME = "Anomaly"
ANOMALY_SEGMENT_COLOR = (1.0, 0.85, 0.0)
SCORE_COLUMNS = ("index", "position_mm", "score")

# Heat scale control points (value in [0, 1] -> RGB): black, dark red, red, yellow, white.
_HEAT_CONTROL_POINTS = (
    (0.00, (0.0, 0.0, 0.0)),
    (0.35, (0.55, 0.0, 0.0)),
    (0.60, (1.0, 0.1, 0.0)),
    (0.85, (1.0, 0.9, 0.0)),
    (1.00, (1.0, 1.0, 1.0)),
)
HEAT_COLOR_COUNT = 256


@dataclass
class ScoringOutputs:
    """The nodes a run adds to the scene (returned by ``logic.scoreVolume``)."""

    map_node: object
    segmentation_node: object
    table_node: object
    chart_node: object
    color_node: object

    def nodes(self) -> list:
        return [self.map_node, self.segmentation_node, self.table_node, self.chart_node]


def heat_color_values(count: int = HEAT_COLOR_COUNT) -> np.ndarray:
    """RGB rows of the heat scale, linearly interpolated between its control points."""
    positions = np.array([p for p, _ in _HEAT_CONTROL_POINTS])
    colors = np.array([c for _, c in _HEAT_CONTROL_POINTS])
    samples = np.linspace(0.0, 1.0, count)
    return np.stack([np.interp(samples, positions, colors[:, channel]) for channel in range(3)], axis=1)


def heat_color_node(scene):
    """The module's heat colour table, created once per scene.

    Built here rather than taken from Slicer's file-based tables (Inferno, ColdToHot...),
    which slicer-core does not ship, so the overlay looks the same everywhere.
    """
    existing = scene.GetFirstNodeByName(HEAT_COLOR_NODE_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    import slicer

    color_node = slicer.vtkMRMLColorTableNode()
    color_node.SetName(HEAT_COLOR_NODE_NAME)
    color_node.SetTypeToUser()
    color_node.SetNumberOfColors(HEAT_COLOR_COUNT)
    for index, (red, green, blue) in enumerate(heat_color_values()):
        color_node.SetColor(index, f"{index / (HEAT_COLOR_COUNT - 1):.3f}", red, green, blue, 1.0)
    color_node.SetAttribute(ATTRIBUTE_PREFIX + "Role", "heat color table")
    scene.AddNode(color_node)
    return color_node


def provenance_attributes(run_info: dict, input_node, support_description: list[dict], axis: str,
                          threshold: float) -> dict[str, str]:
    """Attributes that let a reader reproduce an output: model, supports, threshold, versions."""
    model = run_info.get("model") if isinstance(run_info.get("model"), dict) else {}
    model_sha256 = run_info.get("checkpoint_sha256") or model.get("sha256") or model.get("checkpoint_sha256") or ""
    versions = dict(run_info.get("versions") or {})
    versions.setdefault("d24fad", _d24fad_version())
    versions.setdefault("slicer", _slicer_version())
    return {
        ATTRIBUTE_PREFIX + "InputVolume": input_node.GetName(),
        ATTRIBUTE_PREFIX + "InputVolumeID": input_node.GetID(),
        ATTRIBUTE_PREFIX + "ModelSHA256": str(model_sha256),
        ATTRIBUTE_PREFIX + "SupportSet": json.dumps(support_description),
        ATTRIBUTE_PREFIX + "Axis": axis,
        ATTRIBUTE_PREFIX + "Threshold": repr(float(threshold)),
        ATTRIBUTE_PREFIX + "Versions": json.dumps(versions, sort_keys=True),
    }


def _d24fad_version() -> str:
    import d24fad

    return d24fad.__version__


def _slicer_version() -> str:
    import slicer

    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "applicationVersion"):
        return str(app.applicationVersion)
    try:
        from importlib.metadata import version

        return "slicer-core " + version("slicer-core")
    except Exception:  # metadata missing: record that rather than fail a finished run
        return "unknown"


def create_output_nodes(scene, input_node, result: ScoringResult, attributes: dict[str, str],
                        display_threshold: float = 0.0) -> ScoringOutputs:
    """Add the map volume, segmentation, table and chart for ``result``; all or nothing."""
    with scene_transaction(scene):
        base_name = input_node.GetName()
        color_node = heat_color_node(scene)
        map_node = _create_map_volume(scene, input_node, result.anomaly_map, f"{base_name} anomaly map",
                                      color_node, display_threshold)
        segmentation_node = _create_segmentation(scene, input_node, result.anomaly_map >= result.threshold,
                                                 f"{base_name} anomaly segmentation")
        table_node = _create_score_table(scene, result.slice_scores, f"{base_name} slice scores")
        chart_node = _create_score_chart(scene, table_node, f"{base_name} slice scores chart")
        # Under the input's transform (if any), so the overlay stays on the input in the views.
        for node in (map_node, segmentation_node):
            node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
        outputs = ScoringOutputs(map_node, segmentation_node, table_node, chart_node, color_node)
        for node in outputs.nodes():
            for key, value in attributes.items():
                node.SetAttribute(key, value)
        place_under_input_study(scene, input_node, outputs.nodes(), f"{base_name} anomaly detection")
    return outputs


def _create_map_volume(scene, input_node, anomaly_map: np.ndarray, name: str, color_node, display_threshold):
    import slicer

    map_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    # CopyOrientation copies spacing, origin and directions: the IJK-to-RAS is identical.
    map_node.CopyOrientation(input_node)
    slicer.util.updateVolumeFromArray(map_node, np.ascontiguousarray(anomaly_map, dtype=np.float32))
    map_node.CreateDefaultDisplayNodes()
    display = map_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(color_node.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, map_display_maximum(anomaly_map))
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(float(display_threshold))
    display.SetUpperThreshold(map_display_maximum(anomaly_map))
    return map_node


def map_display_maximum(anomaly_map: np.ndarray) -> float:
    """Top of the heat scale: 1, or the map's maximum when it exceeds 1.

    Maps sum (1 - cosine) over several feature scales, so a model can produce values above
    1; a fixed 0-1 window would then paint every tissue voxel white.
    """
    return float(max(1.0, float(np.max(anomaly_map))))


def _create_segmentation(scene, input_node, mask: np.ndarray, name: str):
    import slicer

    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(input_node)
    segmentation = segmentation_node.GetSegmentation()
    if mask.any():
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name + " labelmap")
        try:
            labelmap.CopyOrientation(input_node)
            slicer.util.updateVolumeFromArray(labelmap, mask.astype(np.uint8))
            if not segmentations_logic(scene).ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
                raise D24FADError(f"importing the anomaly mask into segmentation '{name}' failed")
        finally:
            scene.RemoveNode(labelmap)
        segment = segmentation.GetNthSegment(0)
        segment.SetName(ANOMALY_SEGMENT_NAME)
    else:
        # Nothing above the threshold: still give the user the (empty) segment to edit.
        segment = segmentation.GetSegment(segmentation.AddEmptySegment("", ANOMALY_SEGMENT_NAME))
    segment.SetColor(*ANOMALY_SEGMENT_COLOR)
    segmentation_node.CreateDefaultDisplayNodes()
    return segmentation_node


def _create_score_table(scene, slice_scores: list[SliceScore], name: str):
    import vtk

    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = table_node.GetTable()
    columns = [vtk.vtkIntArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray()]
    for column, column_name in zip(columns, SCORE_COLUMNS):
        column.SetName(column_name)
        table.AddColumn(column)
    table.SetNumberOfRows(len(slice_scores))
    for row, entry in enumerate(slice_scores):
        table.SetValue(row, 0, vtk.vtkVariant(int(entry.index)))
        table.SetValue(row, 1, vtk.vtkVariant(float(entry.position_mm)))
        table.SetValue(row, 2, vtk.vtkVariant(float(entry.score)))
    table_node.Modified()
    return table_node


def _create_score_chart(scene, table_node, name: str):
    import slicer

    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name + " series")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("index")
    series.SetYColumnName("score")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("Anomaly score per slice")
    chart.SetXAxisTitle("slice index")
    chart.SetYAxisTitle("score")
    return chart


def read_score_table(table_node) -> list[SliceScore]:
    """Slice scores back from a table node made by :func:`create_output_nodes`."""
    table = table_node.GetTable()
    return [SliceScore(table.GetValue(row, 0).ToInt(), table.GetValue(row, 1).ToDouble(),
                       table.GetValue(row, 2).ToDouble()) for row in range(table.GetNumberOfRows())]


def place_under_input_study(scene, input_node, nodes, folder_name: str) -> int:
    """Put ``nodes`` in a new folder next to the input in the subject hierarchy.

    The folder goes under the input's parent (its study when the input came from DICOM).
    Items are created explicitly: outside the application nothing creates them for new
    nodes. Returns the folder's item ID.
    """
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    input_item = hierarchy.GetItemByDataNode(input_node)
    parent = hierarchy.GetItemParent(input_item) if input_item else hierarchy.GetSceneItemID()
    folder = hierarchy.CreateFolderItem(parent, folder_name)
    try:
        for node in nodes:
            item = hierarchy.GetItemByDataNode(node)
            if item:
                hierarchy.SetItemParent(item, folder)
            else:
                hierarchy.CreateItem(folder, node)
    except BaseException:
        hierarchy.RemoveItem(folder, False, False)
        raise
    return folder


# A slice "shows tissue" when its foreground covers at least this fraction of the largest
# cross-section along the axis (the rule `make demo` uses to pick brain slices).
TISSUE_SECTION_FRACTION = 0.25
# Foreground: above the minimum by this fraction of the (min .. 99.5th percentile) range.
FOREGROUND_LEVEL = 0.1


def tissue_slices(voxels: np.ndarray, array_axis: int = 0) -> set[int]:
    """Slice indices along ``array_axis`` whose foreground is a sizeable cross-section.

    Slices of air above the head or below the feet look nothing like the normal references
    and top the ranking without being findings; navigation skips them (they stay in the
    table and the map).
    """
    voxels = np.asarray(voxels, dtype=np.float32)
    low, high = float(voxels.min()), float(np.percentile(voxels, 99.5))
    if not high > low:
        return set()
    foreground = voxels > low + FOREGROUND_LEVEL * (high - low)
    other_axes = tuple(a for a in range(voxels.ndim) if a != array_axis)
    sections = foreground.sum(axis=other_axes)
    return {int(k) for k in np.flatnonzero(sections >= TISSUE_SECTION_FRACTION * sections.max())}


def next_most_anomalous(slice_scores: list[SliceScore], current_index: Optional[int],
                        eligible: Optional[set[int]] = None) -> Optional[int]:
    """The slice ranked just below ``current_index`` by score (the top slice to start with).

    Repeated calls walk the slices from most to least anomalous and wrap around; with
    ``eligible`` (e.g. :func:`tissue_slices`) only those slices are visited.
    """
    if eligible is not None:
        slice_scores = [entry for entry in slice_scores if entry.index in eligible]
    if not slice_scores:
        return None
    ranking = [entry.index for entry in sorted(slice_scores, key=lambda entry: (-entry.score, entry.index))]
    if current_index not in ranking:
        return ranking[0]
    return ranking[(ranking.index(current_index) + 1) % len(ranking)]
