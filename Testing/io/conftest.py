"""I/O test fixtures live in io_fixtures.py (importable by name from the tests)."""

from io_fixtures import tiny_checkpoint, tiny_detector, tiny_model  # noqa: F401  (fixtures)
