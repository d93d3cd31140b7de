"""Small MRML utilities shared by the Logic: logic wiring, scene transactions, node search."""

from __future__ import annotations

import contextlib
from typing import Iterator

# Module logics made by wire_module_logics, by scene address (outside the app only). The
# application logic does not own them, so Python must keep them alive.
_WIRED_LOGICS: dict[int, dict[str, object]] = {}


def wire_module_logics(scene):
    """Create the module logics the Logic needs when no Slicer application provides them.

    Outside the application (slicer-core, pytest) nobody creates the Colors, Volumes,
    Segmentations, Subject hierarchy and Sequences logics (the last registers the
    sequence-browser node class that 4D-input detection looks for). Each must know the application
    logic before it sees the scene; the segmentations logic also registers the
    segmentation converter rules. Returns the application logic.
    """
    import slicer

    application_logic = slicer.vtkSlicerApplicationLogic()
    logics = {"Application": application_logic}
    for name, logic_class in (
        ("Colors", slicer.vtkSlicerColorLogic),
        ("Volumes", slicer.vtkSlicerVolumesLogic),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
        ("Sequences", slicer.vtkSlicerSequencesLogic),
    ):
        logic = logic_class()
        logic.SetMRMLApplicationLogic(application_logic)
        logic.SetMRMLScene(scene)
        application_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    application_logic.SetMRMLScene(scene)
    _WIRED_LOGICS[id(scene)] = logics
    return application_logic


def module_logic(scene, name: str):
    """A module logic ("Segmentations", "Volumes", ...) of the application, or of
    :func:`wire_module_logics` outside it."""
    import slicer

    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, name.lower()):
        return getattr(modules, name.lower()).logic()
    if id(scene) not in _WIRED_LOGICS:
        wire_module_logics(scene)
    return _WIRED_LOGICS[id(scene)][name]


def segmentations_logic(scene):
    return module_logic(scene, "Segmentations")


def node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


@contextlib.contextmanager
def scene_transaction(scene) -> Iterator[None]:
    """Remove every node added inside the block if the block raises (scene left as it was).

    Comparing node IDs catches the display, storage and subject-hierarchy side nodes that
    helper functions add implicitly, not only the nodes created by name.
    """
    before = node_ids(scene)
    try:
        yield
    except BaseException:
        for node_id in node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)
        raise
