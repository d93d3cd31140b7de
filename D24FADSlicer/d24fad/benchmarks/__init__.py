"""Benchmarks: the speed benchmark (speed.py) and the MedFAD-mini builder (medfad_mini.py)."""
