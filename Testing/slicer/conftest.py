"""Fixtures and helpers live in slicer_fixtures.py: test modules import them by that unique name
(every Testing folder shares one import namespace, so no test imports from "conftest")."""

from slicer_fixtures import scene  # noqa: F401  (pytest fixtures)
