"""Fixtures and helpers live in training_fixtures.py: test modules import them by that unique name
(every Testing folder shares one import namespace, so no test imports from "conftest")."""

from training_fixtures import _one_torch_thread, toy_root  # noqa: F401  (pytest fixtures)
