"""d24fad: few-shot anomaly detection for medical images (D2-4FAD, Dong et al., ICLR 2026).

The engine is pure Python + PyTorch; it never imports slicer, qt or vtk, so it runs in a
shell, a GPU server, or inside 3D Slicer's Python.
"""

__version__ = "0.1.0"
