"""Pipeline tests share the DICOM writers and tiny detector of Testing/io/io_fixtures.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "io"))

from io_fixtures import tiny_checkpoint, tiny_detector, tiny_model  # noqa: E402,F401  (fixtures)
