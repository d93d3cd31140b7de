"""D24FADSlicer: few-shot anomaly detection (D2-4FAD) for volumes loaded in 3D Slicer.

Layout follows Slicer's scripted-module template: Module, parameter node, Widget, Logic,
Test. Only the Widget and the Test touch Qt and the application; the Logic and
``D24FADSlicerLib`` use MRML only, so they also run against PyPI's ``slicer-core``
(the module's pytest suite). Nothing here imports torch: the engine runs in a child
process (``PythonSlicer -m d24fad score``) that Slicer can start before any
dependency is installed.

Console use (blocking, with an optional progress callback)::

    logic = slicer.util.getModuleLogic("D24FADSlicer")
    outputs = logic.scoreVolume(volumeNode, [3, 9, 20], axis="acquisition")
    outputs.map_node, outputs.segmentation_node, outputs.table_node
    logic.scoreFiles(["a.nii.gz", "b.nrrd"], [0, 1, ("normal.nrrd", [10, 20])], "/tmp/scores")
"""

import functools
import logging
import os
import tempfile
import unittest
from pathlib import Path
from typing import Annotated, Callable, Optional, Sequence, Union

import slicer

from slicer.util import VTKObservationMixin

try:  # Application-only parts; absent under slicer-core, where only the Logic is used.
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
except ImportError:
    # Stand-ins so that this file imports under slicer-core (the Logic's tests).
    class ScriptedLoadableModule:  # noqa: D101
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleLogic:  # noqa: D101
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleWidget:  # noqa: D101
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):  # noqa: D101  (lets pytest run the self-test)
        def delayDisplay(self, message, msec=None):  # noqa: N802
            logging.info(message)

    parameterNodeWrapper = None

    def Choice(*args, **kwargs):  # noqa: N802  (annotations must still evaluate)
        return None

    WithinRange = Choice

from d24fad.errors import CancelledError, InputError, SupportSetError
from D24FADSlicerLib import support as supportlib
from D24FADSlicerLib.geometry import require_scalar_volume, write_node_nrrd
from D24FADSlicerLib.intensity import engine_window_argument
from D24FADSlicerLib.job import ScoringJob, ScoringRequest, run_blocking
from D24FADSlicerLib.outputs import (
    ScoringOutputs,
    create_output_nodes,
    map_display_maximum,
    next_most_anomalous,
    provenance_attributes,
    read_score_table,
    tissue_slices,
)
from D24FADSlicerLib.sample_data import SAMPLE_NAME, register_sample_data
from D24FADSlicerLib.support import AXES, MIN_SUPPORT_SLICES, RECOMMENDED_SUPPORT_SLICES, SupportReference

ProgressCallback = Callable[[int, int], None]
# A support slice given to the Logic: an index of the scored volume, a (volume node,
# index) pair for another volume, or a SupportReference.
SupportSlice = Union[int, tuple, SupportReference]

SLICE_VIEWS = ("Red", "Yellow", "Green")
DEVICES = ("auto", "cpu", "cuda:0", "cuda:1", "mps")


#
# Module
#


class D24FADSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Few-shot Anomaly Detection (D2-4FAD)"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["D24FADSlicer developers"]
        self.parent.helpText = (
            "Mark a few normal slices (of this scan or of other patients' normal scans), press Run, "
            "and get a per-voxel anomaly heat map, an 'Anomaly' segmentation and per-slice scores. "
            "Method: D2-4FAD, Dong et al., ICLR 2026. Research use only: not a medical device.")
        self.parent.acknowledgementText = (
            "Method by Dong et al. (ICLR 2026). Sample volume built from the MNI ICBM152 template "
            "(McConnell Brain Imaging Centre) with a synthetic lesion.")
        if hasattr(slicer, "app"):
            slicer.app.connect("startupCompleted()", register_sample_data)


#
# Parameter node
#


class D24FADSlicerParameterNode:
    """Everything the module's GUI edits; saved with the scene.

    supportSet holds JSON (see D24FADSlicerLib.support.support_set_to_json) so that the
    reference list survives scene save and reload.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    axis: Annotated[str, Choice(list(AXES))] = "acquisition"
    sliceView: Annotated[str, Choice(list(SLICE_VIEWS))] = "Red"
    supportSet: str = ""
    checkpointPath: str = ""
    device: str = "auto"
    batchSize: Annotated[int, WithinRange(1, 512)] = 16
    useAutoThreshold: bool = True
    # Maps sum (1 - cosine) over the feature scales, so values above 1 are normal.
    threshold: Annotated[float, WithinRange(0.0, 10.0)] = 1.0
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    displayThreshold: float = 0.0  # slider range follows the map's values (map_display_maximum)
    mapVolume: slicer.vtkMRMLScalarVolumeNode
    scoreTable: slicer.vtkMRMLTableNode


if parameterNodeWrapper is not None:
    D24FADSlicerParameterNode = parameterNodeWrapper(D24FADSlicerParameterNode)


#
# Widget
#


class D24FADSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: input, support set, model, run / cancel, output display."""

    POLL_MILLISECONDS = 200

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._jobContext = None
        self._pollTimer = None
        self._currentAnomalousSlice = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/D24FADSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = D24FADSlicerLogic()

        self.ui.minimumSupportLabel.text = (
            f"at least {MIN_SUPPORT_SLICES} normal slices, {RECOMMENDED_SUPPORT_SLICES} or more recommended")
        self.ui.addSupportButton.connect("clicked(bool)", self.onAddSupport)
        self.ui.removeSupportButton.connect("clicked(bool)", self.onRemoveSupport)
        self.ui.clearSupportButton.connect("clicked(bool)", self.onClearSupport)
        self.ui.jumpToSupportButton.connect("clicked(bool)", self.onJumpToSupport)
        self.ui.supportListWidget.connect("itemDoubleClicked(QListWidgetItem*)", lambda item: self.onJumpToSupport())
        self.ui.loadCheckpointButton.connect("clicked(bool)", self.onLoadCheckpoint)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.ui.nextAnomalousButton.connect("clicked(bool)", self.onNextAnomalousSlice)
        self.ui.opacitySlider.connect("valueChanged(double)", lambda value: self._updateOverlayDisplay())
        self.ui.displayThresholdSlider.connect("valueChanged(double)", lambda value: self._updateOverlayDisplay())

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_MILLISECONDS)
        self._pollTimer.connect("timeout()", self._onPollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelJob()
        self.removeObservers()
        self.setParameterNode(None)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk_modified_event(), self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk_modified_event(), self._updateGui)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk_modified_event(), self._updateGui)
            self._updateGui()

    # Support set

    def _supportReferences(self) -> list[SupportReference]:
        return supportlib.support_set_from_json(self._parameterNode.supportSet)

    def _storeSupportReferences(self, references) -> None:
        self._parameterNode.supportSet = supportlib.support_set_to_json(list(dict.fromkeys(references)))

    def onAddSupport(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot add the current slice.", waitCursor=True):
            volumeNode = self._viewedVolume()
            sliceNode = self._sliceNode()
            axis = self._parameterNode.axis
            if not supportlib.slice_view_is_aligned(volumeNode, sliceNode, axis):
                # Oblique volume or a view on another plane: turn the view onto the volume's planes.
                sliceNode.RotateToVolumePlane(volumeNode)
            index = self.logic.supportIndexFromSliceView(volumeNode, sliceNode, axis)
            self._storeSupportReferences(self._supportReferences() + [SupportReference(volumeNode.GetID(), index)])

    def _viewedVolume(self):
        """The background volume of the chosen view (the input or another normal scan)."""
        layoutName = self._parameterNode.sliceView
        compositeNode = slicer.app.layoutManager().sliceWidget(layoutName).mrmlSliceCompositeNode()
        volumeNode = slicer.mrmlScene.GetNodeByID(compositeNode.GetBackgroundVolumeID() or "")
        return volumeNode or self._parameterNode.inputVolume

    def _sliceNode(self):
        return slicer.app.layoutManager().sliceWidget(self._parameterNode.sliceView).mrmlSliceNode()

    def onRemoveSupport(self) -> None:
        row = self.ui.supportListWidget.currentRow
        references = self._supportReferences()
        if 0 <= row < len(references):
            del references[row]
            self._storeSupportReferences(references)

    def onClearSupport(self) -> None:
        self._storeSupportReferences([])

    def onJumpToSupport(self) -> None:
        row = self.ui.supportListWidget.currentRow
        references = self._supportReferences()
        if not 0 <= row < len(references):
            return
        reference = references[row]
        volumeNode = slicer.mrmlScene.GetNodeByID(reference.volume_node_id)
        if volumeNode is None:
            slicer.util.errorDisplay(f"Volume {reference.volume_node_id} is no longer in the scene.")
            return
        slicer.util.setSliceViewerLayers(background=volumeNode)
        self._jumpToSlice(volumeNode, reference.index)

    def _jumpToSlice(self, volumeNode, index: int) -> None:
        center = supportlib.slice_center_ras(volumeNode, self._parameterNode.axis, index)
        sliceNode = self._sliceNode()
        if not supportlib.slice_view_is_aligned(volumeNode, sliceNode, self._parameterNode.axis):
            sliceNode.RotateToVolumePlane(volumeNode)
        sliceNode.JumpSliceByOffsetting(*center)

    # Model

    def onLoadCheckpoint(self) -> None:
        import qt

        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), "Load D2-4FAD checkpoint", "", "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self._parameterNode.checkpointPath = path

    # Run / cancel

    def onApplyOrCancel(self) -> None:
        if self._job is not None:
            self._cancelJob()
            self._setRunning(False, "Cancelled; the scene is unchanged.")
            return
        if not ensure_dependencies():
            return
        warning = cpu_only_warning()
        self.ui.gpuWarningLabel.text = warning
        self.ui.gpuWarningLabel.visible = bool(warning)
        parameters = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot start scoring.", waitCursor=True):
            references = self._supportReferences()
            self._job = self.logic.startScoring(
                parameters.inputVolume, references, axis=parameters.axis,
                checkpointPath=parameters.checkpointPath or None, device=parameters.device,
                batchSize=parameters.batchSize,
                threshold="auto" if parameters.useAutoThreshold else parameters.threshold)
            self._jobContext = (parameters.inputVolume, references, parameters.axis)
            self._setRunning(True, "Scoring...")
            self._pollTimer.start()

    def _onPollJob(self) -> None:
        from D24FADSlicerLib.job import CANCELLED, RUNNING, SUCCEEDED

        job = self._job
        status = job.poll()
        if status.total:
            self.ui.progressBar.maximum = status.total
            self.ui.progressBar.value = status.done
        if status.message:
            self.ui.statusLabel.text = status.message
        if status.state == RUNNING:
            return
        self._pollTimer.stop()
        self._job = None
        inputVolume, references, axis = self._jobContext
        if status.state == SUCCEEDED:
            with slicer.util.tryWithErrorDisplay("Scoring finished but its outputs could not be shown.",
                                                 waitCursor=True):
                outputs = self.logic.finishScoring(job, inputVolume, references, axis,
                                                   displayThreshold=self._parameterNode.displayThreshold)
                self._showOutputs(inputVolume, outputs)
                self._setRunning(False, f"Done ({len(read_score_table(outputs.table_node))} slices scored).")
                return
            self._setRunning(False, "Failed to create the outputs.")
        else:
            job.cleanup()
            message = "Cancelled; the scene is unchanged." if status.state == CANCELLED else "Scoring failed."
            self._setRunning(False, message)
            if status.state != CANCELLED:
                logging.error("D24FADSlicer scoring failed: %s\n%s", job.error, "\n".join(job.log))
                slicer.util.errorDisplay(str(job.error), detailedText="\n".join(job.log))

    def _cancelJob(self) -> None:
        if self._job is not None:
            if self._pollTimer is not None:
                self._pollTimer.stop()
            self._job.cancel()
            self._job.cleanup()
            self._job = None

    def _setRunning(self, running: bool, message: str) -> None:
        self.ui.applyButton.text = "Cancel" if running else "Run"
        self.ui.applyButton.toolTip = "Stop the background run" if running else "Score the input volume"
        self.ui.progressBar.visible = running
        if running:
            self.ui.progressBar.value = 0
        self.ui.statusLabel.text = message

    # Outputs

    def _showOutputs(self, inputVolume, outputs: ScoringOutputs) -> None:
        self._parameterNode.mapVolume = outputs.map_node
        self._parameterNode.scoreTable = outputs.table_node
        slicer.util.setSliceViewerLayers(background=inputVolume, foreground=outputs.map_node,
                                         foregroundOpacity=self._parameterNode.opacity)
        self.ui.displayThresholdSlider.maximum = map_display_maximum(slicer.util.arrayFromVolume(outputs.map_node))
        colorsLogic = slicer.modules.colors.logic()
        colorsLogic.AddDefaultColorLegendDisplayNode(outputs.map_node)
        slicer.modules.plots.logic().ShowChartInLayout(outputs.chart_node)
        self._currentAnomalousSlice = None
        self._updateOverlayDisplay()

    def _updateOverlayDisplay(self) -> None:
        if not self._parameterNode or not self._parameterNode.mapVolume:
            return
        mapNode = self._parameterNode.mapVolume
        mapNode.GetDisplayNode().SetLowerThreshold(self._parameterNode.displayThreshold)
        for name in SLICE_VIEWS:
            sliceWidget = slicer.app.layoutManager().sliceWidget(name)
            if sliceWidget and sliceWidget.mrmlSliceCompositeNode().GetForegroundVolumeID() == mapNode.GetID():
                sliceWidget.mrmlSliceCompositeNode().SetForegroundOpacity(self._parameterNode.opacity)

    def onNextAnomalousSlice(self) -> None:
        parameters = self._parameterNode
        if not parameters.scoreTable or not parameters.inputVolume:
            return
        inputVolume = slicer.mrmlScene.GetNodeByID(parameters.scoreTable.GetAttribute("D24FAD.InputVolumeID") or "")
        inputVolume = inputVolume or parameters.inputVolume
        axis = parameters.scoreTable.GetAttribute("D24FAD.Axis") or parameters.axis
        eligible = tissue_slices(slicer.util.arrayFromVolume(inputVolume), 2 - supportlib.ijk_axis_of(inputVolume, axis))
        index = next_most_anomalous(read_score_table(parameters.scoreTable), self._currentAnomalousSlice, eligible)
        if index is not None:
            self._currentAnomalousSlice = index
            self._jumpToSlice(inputVolume, index)
            self.ui.statusLabel.text = f"Slice {index} (ranked by anomaly score; slices without tissue skipped)"

    def _updateGui(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        if parameters is None:
            return
        self.ui.supportListWidget.clear()
        for reference in self._supportReferencesOrEmpty():
            node = slicer.mrmlScene.GetNodeByID(reference.volume_node_id)
            name = node.GetName() if node else f"missing volume {reference.volume_node_id}"
            self.ui.supportListWidget.addItem(f"{name}: slice {reference.index}")
        count = self.ui.supportListWidget.count
        self.ui.supportCountLabel.text = f"{count} normal slice(s)"
        self.ui.checksumLabel.text = checkpoint_checksum_text(parameters.checkpointPath)
        if self._job is None:
            ready = bool(parameters.inputVolume) and count >= MIN_SUPPORT_SLICES
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = ("Score the input volume" if ready else
                                           f"Select an input volume and at least {MIN_SUPPORT_SLICES} normal slices")
        self.ui.thresholdSpinBox.enabled = not parameters.useAutoThreshold
        self.ui.nextAnomalousButton.enabled = bool(parameters.scoreTable)

    def _supportReferencesOrEmpty(self) -> list[SupportReference]:
        try:
            return self._supportReferences()
        except SupportSetError:
            return []


def vtk_modified_event():
    import vtk

    return vtk.vtkCommand.ModifiedEvent


def checkpoint_checksum_text(path: str) -> str:
    """SHA256 of a user-chosen checkpoint for the GUI, or the default model's note."""
    if not path:
        return "default model shipped with the extension"
    if not os.path.isfile(path):
        return f"file not found: {path}"
    status = os.stat(path)
    return f"SHA256 {_file_sha256(path, status.st_mtime_ns, status.st_size)}"


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, modifiedNs: int, size: int) -> str:
    """Hash once per file version: the GUI refreshes on every parameter change."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_dependencies() -> bool:
    """Install what the engine needs, after asking; True when everything is present."""
    from D24FADSlicerLib import dependencies

    missingPip = dependencies.missing_pip_requirements()
    needTorch = dependencies.torch_missing()
    if not missingPip and not needTorch:
        return True
    listing = "\n".join((["torch (through the PyTorch extension)"] if needTorch else []) + missingPip)
    if not slicer.util.confirmOkCancelDisplay(
            "Anomaly detection needs these Python packages, which will be downloaded and installed now "
            f"(this can take several minutes):\n\n{listing}", windowTitle="Install dependencies"):
        return False
    with slicer.util.WaitCursor():
        if needTorch:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay("Install the PyTorch extension from the Extensions Manager first.")
                return False
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                return False
        constraints = dependencies.write_bundled_constraints(Path(tempfile.mkdtemp()) / "constraints.txt")
        missingPip = dependencies.missing_pip_requirements()
        if missingPip:
            packaging = getattr(slicer, "packaging", None) or getattr(slicer, "pydeps", None)
            if packaging is not None and hasattr(packaging, "pip_ensure"):
                packaging.pip_ensure(missingPip, constraints=str(constraints), requester="D24FADSlicer")
            else:  # Slicer < 5.12
                slicer.util.pip_install(missingPip + ["-c", str(constraints)])
    return not dependencies.missing_pip_requirements() and not dependencies.torch_missing()


def cpu_only_warning() -> str:
    from D24FADSlicerLib.dependencies import cpu_only_torch_warning

    return cpu_only_torch_warning()


#
# Logic
#


class D24FADSlicerLogic(ScriptedLoadableModuleLogic):
    """Scoring without any GUI: usable from the Python console and in tests.

    ``engineCommand`` replaces ``[python, "-m", "d24fad"]`` (tests use a stand-in CLI).
    """

    def __init__(self, scene=None, engineCommand: Optional[Sequence[str]] = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self.engineCommand = list(engineCommand) if engineCommand else None

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    def getParameterNode(self):
        return D24FADSlicerParameterNode(super().getParameterNode())

    # Support slices

    def supportIndexFromSliceView(self, volumeNode, sliceNode, axis: str = "acquisition") -> int:
        """Index of ``volumeNode``'s slice shown in ``sliceNode`` (which must show that axis's planes)."""
        require_scalar_volume(volumeNode, parameter="volumeNode", scene=self.scene)
        return supportlib.slice_index_of_view(volumeNode, sliceNode, axis)

    def supportReferences(self, volumeNode, supportSlices: Sequence[SupportSlice]) -> list[SupportReference]:
        """Normalise support slices to references: ints are slices of ``volumeNode``."""
        references = []
        for entry in supportSlices:
            if isinstance(entry, SupportReference):
                references.append(entry)
            elif isinstance(entry, tuple) and len(entry) == 2:
                node, index = entry
                references.append(SupportReference(node if isinstance(node, str) else node.GetID(), int(index)))
            elif isinstance(entry, int) or hasattr(entry, "__index__"):
                references.append(SupportReference(volumeNode.GetID(), int(entry)))
            else:
                raise SupportSetError(f"support slice {entry!r} is not an index, (volume, index) or SupportReference "
                                      "(parameter 'supportSlices')")
        return references

    # Scoring a scene volume

    def startScoring(self, volumeNode, supportSlices: Sequence[SupportSlice], axis: str = "acquisition",
                     checkpointPath: Optional[str] = None, device: str = "auto", batchSize: int = 16,
                     threshold: Union[str, float] = "auto") -> ScoringJob:
        """Check everything, export temporary NRRD files and start the background run.

        Raises a d24fad InputError subclass, naming the parameter, before anything starts.
        """
        scene = self.scene
        require_scalar_volume(volumeNode, parameter="volumeNode", scene=scene)
        supportlib.require_axis(axis)
        references = supportlib.validate_support_set(scene, self.supportReferences(volumeNode, supportSlices), axis)
        ownSlices, otherSlices = _split_by_volume(references, volumeNode.GetID())
        supportlib.require_engine_support_layout(len(ownSlices), len(otherSlices))
        _require_run_options(checkpointPath, batchSize, threshold)
        workDir = Path(tempfile.mkdtemp(prefix="D24FADSlicer-"))
        job = None
        try:
            # The engine reads files: hand it NRRD copies of the nodes (exact geometry).
            otherSupports = [(write_node_nrrd(scene.GetNodeByID(nodeId), workDir / f"support-{number}.nrrd"), indices)
                             for number, (nodeId, indices) in enumerate(otherSlices.items())]
            dims = volumeNode.GetImageData().GetDimensions()
            request = ScoringRequest(write_node_nrrd(volumeNode, workDir / "input.nrrd"), tuple(dims[::-1]),
                                     ownSlices, otherSupports, axis, checkpointPath, device, int(batchSize), threshold,
                                     window=engine_window_argument(volumeNode))
            job = ScoringJob(request, workDir, command_prefix=self.engineCommand)
            return job.start()
        except BaseException:
            if job is not None:
                job.cancel()
            import shutil

            shutil.rmtree(workDir, ignore_errors=True)
            raise

    def finishScoring(self, job: ScoringJob, volumeNode, supportSlices, axis: str,
                      displayThreshold: float = 0.0) -> ScoringOutputs:
        """Turn a finished job into output nodes (all or none) and delete its temporary files."""
        try:
            references = self.supportReferences(volumeNode, supportSlices)
            description = [{"volume": _node_name(self.scene, r.volume_node_id), "volume_node_id": r.volume_node_id,
                            "index": r.index} for r in references]
            result = job.result
            attributes = provenance_attributes(result.run_info, volumeNode, description, axis, result.threshold)
            attributes["D24FAD.BatchSize"] = str(result.batch_size)
            return create_output_nodes(self.scene, volumeNode, result, attributes, displayThreshold)
        finally:
            job.cleanup()

    def scoreVolume(self, volumeNode, supportSlices: Sequence[SupportSlice], axis: str = "acquisition",
                    checkpointPath: Optional[str] = None, device: str = "auto", batchSize: int = 16,
                    threshold: Union[str, float] = "auto", progress: Optional[ProgressCallback] = None,
                    shouldCancel: Optional[Callable[[], bool]] = None) -> ScoringOutputs:
        """Score ``volumeNode`` and add the output nodes to the scene; blocks until done.

        supportSlices: slice indices of ``volumeNode`` along ``axis`` (ints), and/or
        ``(otherVolumeNode, index)`` pairs for other (normal) scans. ``progress(done, total)``
        is called as slices are scored; ``shouldCancel()`` returning True stops the run and
        raises CancelledError, leaving the scene unchanged. Returns a ScoringOutputs with
        map_node, segmentation_node, table_node, chart_node and color_node.
        """
        job = self.startScoring(volumeNode, supportSlices, axis, checkpointPath, device, batchSize, threshold)
        try:
            run_blocking(job, progress, shouldCancel)
        except BaseException:
            job.cancel()
            job.cleanup()
            raise
        return self.finishScoring(job, volumeNode, supportSlices, axis)

    # Scoring files without loading them

    def scoreFiles(self, paths: Sequence[Union[str, os.PathLike]], support, outputFolder: Union[str, os.PathLike],
                   axis: str = "acquisition", checkpointPath: Optional[str] = None, device: str = "auto",
                   batchSize: int = 16, threshold: Union[str, float] = "auto",
                   progress: Optional[ProgressCallback] = None,
                   shouldCancel: Optional[Callable[[], bool]] = None) -> list[Path]:
        """Score volume files (NIfTI, NRRD, MHA, DICOM folders) into ``outputFolder/<name>/``.

        support: normal slice indices along ``axis`` that hold for every file (e.g. the
        slices above the region of interest), optionally with one
        ``(normalVolumePath, [indices])`` pair adding references from another scan, e.g.
        ``[0, 1, ("normal.nrrd", [10, 20])]``. Nothing is loaded into the scene.
        ``progress(filesDone, filesTotal)`` is called after each file. Returns the
        per-file output folders (anomaly_map.nrrd, scores.csv, run.json); each appears
        complete or not at all, and files finished before a cancel or an error keep theirs.
        """
        ownSlices, otherSupports = _file_supports(support)
        inputs = [Path(p) for p in paths]
        for path in inputs + [p for p, _ in otherSupports]:
            if not path.exists():
                raise InputError(f"input file {path} does not exist (parameter 'paths' / 'support')")
        if len(ownSlices) + sum(len(indices) for _, indices in otherSupports) < MIN_SUPPORT_SLICES:
            raise SupportSetError(f"at least {MIN_SUPPORT_SLICES} support slices are needed (parameter 'support')")
        supportlib.require_engine_support_layout(len(ownSlices), len(otherSupports), parameter="support")
        supportlib.require_axis(axis)
        _require_run_options(checkpointPath, batchSize, threshold)
        outputFolder = Path(outputFolder)
        if outputFolder.exists() and not outputFolder.is_dir():
            raise InputError(f"output folder {outputFolder} is a file (parameter 'outputFolder')")
        destinations = [outputFolder / _file_stem(path) for path in inputs]
        if len(set(destinations)) != len(destinations):
            raise InputError("two input files have the same name; score them into different output folders "
                             "(parameter 'paths')")
        written = []
        for number, (path, destination) in enumerate(zip(inputs, destinations)):
            request = ScoringRequest(path, None, ownSlices, otherSupports, axis, checkpointPath, device,
                                     int(batchSize), threshold)
            outputFolder.mkdir(parents=True, exist_ok=True)
            # Working folder beside the destination, so publishing the result is a rename.
            workDir = Path(tempfile.mkdtemp(prefix=".D24FADSlicer-", dir=outputFolder))
            job = ScoringJob(request, workDir, command_prefix=self.engineCommand)
            try:
                run_blocking(job, None, shouldCancel)
                _publish_run_folder(job.output_dir, destination)
            finally:
                job.cancel()
                job.cleanup()
            written.append(destination)
            if progress is not None:
                progress(number + 1, len(inputs))
        return written


def _require_run_options(checkpointPath, batchSize, threshold) -> None:
    if checkpointPath and not os.path.isfile(checkpointPath):
        raise InputError(f"checkpoint file {checkpointPath} does not exist (parameter 'checkpointPath')")
    if int(batchSize) < 1:
        raise InputError(f"batch size must be at least 1, got {batchSize} (parameter 'batchSize')")
    if threshold != "auto" and not isinstance(threshold, (int, float)):
        raise InputError(f"threshold must be 'auto' or a number, got {threshold!r} (parameter 'threshold')")


def _split_by_volume(references, volumeNodeId: str) -> tuple[list[int], dict[str, list[int]]]:
    """Slice indices of the scored volume, and of each other volume (by node ID)."""
    own, others = [], {}
    for reference in references:
        if reference.volume_node_id == volumeNodeId:
            own.append(reference.index)
        else:
            others.setdefault(reference.volume_node_id, []).append(reference.index)
    return own, others


def _node_name(scene, nodeId: str) -> str:
    node = scene.GetNodeByID(nodeId)
    return node.GetName() if node is not None else nodeId


def _file_supports(support) -> tuple[list[int], list[tuple[Path, list[int]]]]:
    """Split scoreFiles' ``support`` into slice indices of each file and (path, indices) pairs."""
    items = [support] if isinstance(support, tuple) else list(support)
    ownSlices, otherSupports = [], []
    try:
        for item in items:
            if isinstance(item, tuple):
                path, indices = item
                otherSupports.append((Path(path), [int(i) for i in indices]))
            else:
                ownSlices.append(int(item))
    except (TypeError, ValueError) as exc:
        raise SupportSetError("support must be slice indices of each file, optionally with one "
                              f"(normalVolumePath, [indices]) pair (parameter 'support'): {exc}") from exc
    return ownSlices, otherSupports


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _publish_run_folder(source: Path, destination: Path) -> None:
    """Move a finished run's files into ``destination`` atomically (replacing an older result)."""
    from d24fad.io.atomic import atomic_directory

    with atomic_directory(destination, overwrite=True) as staging:
        for item in source.iterdir():
            os.replace(item, staging / item.name)


#
# Test (runs inside the Slicer application: Developer mode > Reload and Test)
#


class D24FADSlicerTest(ScriptedLoadableModuleTest):
    """Whole workflow on the module's sample data, with the default model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_D24FADSlicer_workflow()
        self.setUp()
        self.test_D24FADSlicer_bad_inputs_create_nothing()

    def _sampleVolume(self):
        import SampleData

        try:
            volumeNode = SampleData.downloadSample(SAMPLE_NAME)
        except Exception:  # noqa: BLE001  (not registered: module loaded after startup)
            volumeNode = None
        if volumeNode is None:
            register_sample_data()
            volumeNode = SampleData.downloadSample(SAMPLE_NAME)
        return volumeNode

    def test_D24FADSlicer_workflow(self):
        from D24FADSlicerLib.geometry import ijk_to_ras_array
        from D24FADSlicerLib.sample_data import LESION_SLICES, NORMAL_SUPPORT_SLICES, lesion_contrast

        self.delayDisplay("Loading sample data")
        volumeNode = self._sampleVolume()
        self.assertIsNotNone(volumeNode)
        if not ensure_dependencies():
            self.skipTest("dependencies were not installed")
        self.delayDisplay("Scoring (background process)")
        reports = []
        logic = D24FADSlicerLogic()
        outputs = logic.scoreVolume(volumeNode, list(NORMAL_SUPPORT_SLICES), progress=lambda d, t: reports.append(d))
        self.assertTrue(reports)
        self.assertEqual(ijk_to_ras_array(outputs.map_node).tolist(), ijk_to_ras_array(volumeNode).tolist())
        self.assertEqual(outputs.map_node.GetImageData().GetDimensions(), volumeNode.GetImageData().GetDimensions())
        self.assertEqual(outputs.segmentation_node.GetSegmentation().GetNthSegment(0).GetName(), "Anomaly")
        scores = read_score_table(outputs.table_node)
        self.assertEqual(len(scores), volumeNode.GetImageData().GetDimensions()[2])
        self.assertTrue(outputs.map_node.GetAttribute("D24FAD.ModelSHA256"))
        # Localisation, within the lesion's slices (so anatomy differences between slices do
        # not enter): the lesion must score higher on average than the brain around it.
        insideMean, outsideMean = lesion_contrast(slicer.util.arrayFromVolume(outputs.map_node),
                                                  slicer.util.arrayFromVolume(volumeNode))
        self.assertGreater(insideMean, outsideMean, "the lesion should score higher than the brain around it")
        top = next_most_anomalous(scores, None, tissue_slices(slicer.util.arrayFromVolume(volumeNode)))
        slicer.util.setSliceViewerLayers(background=volumeNode, foreground=outputs.map_node, foregroundOpacity=0.6)
        self.delayDisplay(f"Workflow passed: lesion mean score {insideMean:.3f} vs {outsideMean:.3f} around it; "
                          f"most anomalous slice with tissue {top} (lesion on slices {LESION_SLICES[0]}-{LESION_SLICES[1]})")

    def test_D24FADSlicer_bad_inputs_create_nothing(self):
        volumeNode = self._sampleVolume()
        logic = D24FADSlicerLogic()
        before = slicer.mrmlScene.GetNumberOfNodes()
        for supportSlices in ([1], [0, 10_000]):
            with self.assertRaises(SupportSetError):
                logic.scoreVolume(volumeNode, supportSlices)
        with self.assertRaises(InputError):
            logic.scoreVolume(None, [0, 1])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Bad inputs refused")


__all__ = ["D24FADSlicer", "D24FADSlicerLogic", "D24FADSlicerTest", "D24FADSlicerWidget", "CancelledError"]
