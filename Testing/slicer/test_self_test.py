"""The module's in-app self-test (D24FADSlicerTest), run here against slicer-core.

Slicer's SampleData module does not exist outside the application; a stand-in loads the
same sample file with the Volumes logic, which is what SampleData does after download.
"""

from __future__ import annotations

import sys
import types

import pytest

import D24FADSlicer  # the module, not its TestCase class: pytest would collect that on its own
from D24FADSlicerLib.mrml import module_logic
from D24FADSlicerLib.sample_data import SAMPLE_NAME, VOLUME_FILE


@pytest.fixture
def sample_data_module(scene, monkeypatch):
    def download_sample(name):
        assert name == SAMPLE_NAME
        return module_logic(scene, "Volumes").AddArchetypeVolume(str(VOLUME_FILE), name)

    module = types.ModuleType("SampleData")
    module.downloadSample = download_sample
    monkeypatch.setitem(sys.modules, "SampleData", module)
    return module


def test_self_test_bad_inputs(sample_data_module):
    D24FADSlicer.D24FADSlicerTest("test_D24FADSlicer_bad_inputs_create_nothing").test_D24FADSlicer_bad_inputs_create_nothing()


def test_self_test_workflow_with_the_default_model(sample_data_module):
    from d24fad.checkpoint import default_model_path

    if not default_model_path().is_file():
        pytest.skip(f"the default model {default_model_path().name} is not in d24fad/assets yet")
    D24FADSlicer.D24FADSlicerTest("test_D24FADSlicer_workflow").test_D24FADSlicer_workflow()
