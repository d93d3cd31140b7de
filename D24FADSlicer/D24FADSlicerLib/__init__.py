"""Slicer-facing helpers of the D24FADSlicer module.

Nothing in this package imports Qt, ctk or torch: the Logic built on it runs inside the
Slicer application and, for tests, against the MRML classes of PyPI's ``slicer-core``.
The engine (``d24fad``) is only run in a child process or imported lazily.
"""
