"""Engine test fixtures live in engine_fixtures.py (importable by the tests by name)."""

from engine_fixtures import brain_images64, brain_slices, tiny_model  # noqa: F401  (fixtures)
