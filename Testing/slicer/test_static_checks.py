"""Static checks of the extension: CMake lists, catalog entry, UI file, import hygiene.

The extension's CMake cannot be configured here (slicer-core has no UseSlicer.cmake), so
these tests read the files. They read the source tree at test time: a file added later
by anyone, but not listed in the module's CMakeLists.txt, fails the build here.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from slicer_fixtures import MODULE_DIR, REPO_ROOT

MODULE_FILE = MODULE_DIR / "D24FADSlicer.py"
LIB_DIR = MODULE_DIR / "D24FADSlicerLib"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "D24FADSlicer.ui"
HEAVY_OR_GUI_MODULES = {"torch", "torchvision", "timm", "monai", "qt", "ctk", "DICOMLib", "SampleData"}


def cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def cmake_variables(text: str) -> dict[str, str]:
    return dict(re.findall(r'set\((EXTENSION_[A-Z]+)\s+"([^"]*)"\)', text))


def module_tree_files() -> list[str]:
    """Every file the module installs: all under D24FADSlicer/ but caches and hidden files."""
    files = []
    for path in sorted(MODULE_DIR.rglob("*")):
        relative = path.relative_to(MODULE_DIR)
        if path.is_dir() or "__pycache__" in relative.parts or any(p.startswith(".") for p in relative.parts):
            continue
        if relative.as_posix() != "CMakeLists.txt":
            files.append(relative.as_posix())
    return files


def test_module_cmakelists_lists_every_file_of_the_module_and_engine():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = set(cmake_list(text, "MODULE_PYTHON_SCRIPTS")) | set(cmake_list(text, "MODULE_PYTHON_RESOURCES"))
    tree = module_tree_files()
    missing = [f for f in tree if f not in listed]
    assert not missing, "add to D24FADSlicer/CMakeLists.txt:\n" + "\n".join(f"  {f}" for f in missing)
    stale = sorted(listed - set(tree))
    assert not stale, f"listed in D24FADSlicer/CMakeLists.txt but absent: {stale}"
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    assert all(s.endswith(".py") for s in scripts)
    assert {"D24FADSlicer.py", "d24fad/__init__.py", "d24fad/__main__.py", "d24fad/cli/score.py"} <= set(scripts)
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_catalog_entry_agrees_with_cmake_metadata():
    top = (REPO_ROOT / "CMakeLists.txt").read_text()
    variables = cmake_variables(top)
    catalog = json.loads((REPO_ROOT / "D24FADSlicer.json").read_text())
    assert set(catalog) >= {"$schema", "category", "scm_url", "scm_revision", "build_dependencies", "tier"}
    assert catalog["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/")
    assert catalog["category"] == variables["EXTENSION_CATEGORY"]
    assert catalog["build_dependencies"] == variables["EXTENSION_DEPENDS"].split(";") == ["PyTorch"]
    assert catalog["scm_url"].removesuffix(".git") == variables["EXTENSION_HOMEPAGE"]
    assert catalog["tier"] in (1, 3, 5)
    assert "add_subdirectory(D24FADSlicer)" in top
    for key in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert variables.get(key), f"{key} is empty in CMakeLists.txt"
    # The module's own category is the extension's.
    assert f'self.parent.categories = ["{variables["EXTENSION_CATEGORY"]}"]' in MODULE_FILE.read_text()


def test_icon_and_screenshot_urls_point_at_files_in_this_repository():
    from PIL import Image

    variables = cmake_variables((REPO_ROOT / "CMakeLists.txt").read_text())
    prefix = variables["EXTENSION_HOMEPAGE"].replace("https://github.com/", "https://raw.githubusercontent.com/")
    prefix += "/" + json.loads((REPO_ROOT / "D24FADSlicer.json").read_text())["scm_revision"] + "/"
    icon_url = variables["EXTENSION_ICONURL"]
    assert icon_url.startswith(prefix)
    with Image.open(REPO_ROOT / icon_url[len(prefix):]) as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)
    for url in variables["EXTENSION_SCREENSHOTURLS"].split():
        assert url.startswith(prefix)
        screenshot = REPO_ROOT / url[len(prefix):]
        if not screenshot.exists():
            pytest.fail(f"screenshot {screenshot} is missing: run scripts/make_slicer_images.py preview")


def ui_widgets() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def test_ui_is_valid_xml_and_has_every_widget_the_code_uses():
    widgets = ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "the widget code should use self.ui"
    missing = sorted(used - set(widgets))
    assert not missing, f"widgets used in D24FADSlicer.py but absent from {UI_FILE.name}: {missing}"


def parameter_names() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "D24FADSlicerParameterNode")
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}


def test_ui_parameter_bindings_name_real_parameters():
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.find("string").text
    parameters = parameter_names()
    assert set(bound.values()) <= parameters, set(bound.values()) - parameters
    assert {"inputVolume", "axis", "supportSet", "checkpointPath", "device", "batchSize"} <= parameters
    assert {"inputVolume", "axis", "sliceView", "device", "batchSize", "opacity"} <= set(bound.values())


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported when the file is imported (not inside functions)."""
    found = set()

    def visit(statements):
        for statement in statements:
            if isinstance(statement, ast.Import):
                found.update(alias.name.split(".")[0] for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom) and statement.level == 0:
                found.add(statement.module.split(".")[0])
            elif isinstance(statement, (ast.If, ast.Try, ast.With, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(statement, field, []))
                for handler in getattr(statement, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return found


@pytest.mark.parametrize("path", [MODULE_FILE, *sorted(LIB_DIR.glob("*.py"))], ids=lambda p: p.name)
def test_no_module_file_imports_torch_or_gui_at_top_level(path):
    assert not module_level_imports(path) & HEAVY_OR_GUI_MODULES


def test_module_and_lib_import_with_torch_and_qt_unavailable():
    """Slicer loads modules before dependencies are installed: importing must not need them."""
    blocked = sorted(HEAVY_OR_GUI_MODULES)
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Blocker())
        sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("Testing")]
        sys.path.insert(0, {str(MODULE_DIR)!r})
        import D24FADSlicerLib
        for info in pkgutil.iter_modules(D24FADSlicerLib.__path__):
            importlib.import_module("D24FADSlicerLib." + info.name)
        import D24FADSlicer
        assert hasattr(D24FADSlicer, "D24FADSlicerLogic")
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
        assert not leaked, leaked
        print("imported")
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("imported")


def test_pip_requirements_match_runtime_requirements_without_slicer_bundled_packages():
    from D24FADSlicerLib import dependencies

    runtime = []
    for line in (REPO_ROOT / "requirements" / "runtime.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            runtime.append(line.replace(" ", ""))
    skipped = {name.lower() for name in dependencies.SLICER_BUNDLED + dependencies.TORCH_PACKAGES}
    expected = sorted(r for r in runtime if re.split(r"[=<>!~,;\[]", r)[0].lower() not in skipped)
    assert sorted(dependencies.PIP_REQUIREMENTS) == expected
    names = {dependencies.parse_requirement(r)[0].lower() for r in dependencies.PIP_REQUIREMENTS}
    assert not names & {n.lower() for n in dependencies.SLICER_BUNDLED}


def test_bundled_constraints_pin_installed_versions(tmp_path):
    from importlib.metadata import version

    from D24FADSlicerLib import dependencies

    lines = dependencies.write_bundled_constraints(tmp_path / "c.txt").read_text().split()
    assert f"numpy=={version('numpy')}" in lines and f"SimpleITK=={version('SimpleITK')}" in lines
    assert dependencies.is_satisfied(f"numpy=={version('numpy')}")
    assert not dependencies.is_satisfied("numpy>=999")
    assert not dependencies.is_satisfied("surely-not-installed-package-d24fad")


def test_every_slicer_util_function_the_module_calls_exists():
    """slicer-core ships the application's slicer/util.py: catch misspelt or removed helpers."""
    from slicer_fixtures import slicer

    used = set(re.findall(r"slicer\.util\.(\w+)", MODULE_FILE.read_text()))
    for path in LIB_DIR.glob("*.py"):
        used |= set(re.findall(r"slicer\.util\.(\w+)", path.read_text()))
    assert {"tryWithErrorDisplay", "setSliceViewerLayers", "loadUI"} <= used
    assert not sorted(name for name in used if not hasattr(slicer.util, name))


def test_mrml_methods_the_widget_calls_exist():
    """The widget runs only in the application; check its MRML / logic calls against slicer-core."""
    from slicer_fixtures import slicer

    expected = {
        slicer.vtkMRMLSliceNode: ("RotateToVolumePlane", "JumpSliceByOffsetting"),
        slicer.vtkMRMLSliceCompositeNode: ("GetBackgroundVolumeID", "GetForegroundVolumeID", "SetForegroundOpacity"),
        slicer.vtkSlicerColorLogic: ("AddDefaultColorLegendDisplayNode",),
        slicer.vtkSlicerPlotsLogic: ("ShowChartInLayout",),
        slicer.vtkMRMLScalarVolumeDisplayNode: ("SetLowerThreshold",),
    }
    source = MODULE_FILE.read_text()
    for mrml_class, methods in expected.items():
        for method in methods:
            assert method in source
            assert hasattr(mrml_class, method), f"{mrml_class.__name__}.{method}"


def test_parameter_node_fields_have_types_the_wrapper_can_store():
    """parameterNodeWrapper (application only) stores str, int, float, bool and MRML nodes."""
    import typing

    import D24FADSlicer
    import slicer

    hints = typing.get_type_hints(D24FADSlicer.D24FADSlicerParameterNode, include_extras=True)
    assert set(hints) == parameter_names()
    for name, hint in hints.items():
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        assert base in (str, int, float, bool) or issubclass(base, slicer.vtkMRMLNode), (name, hint)
        default = getattr(D24FADSlicer.D24FADSlicerParameterNode, name, None)
        assert default is None or isinstance(default, base), (name, default)
