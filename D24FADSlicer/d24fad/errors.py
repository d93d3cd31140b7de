"""Typed errors of the d24fad engine.

Every error a user can cause derives from :class:`D24FADError`, so callers (the CLI,
the Slicer module) can catch one class, show its message and exit cleanly. Messages
name the offending file or parameter.
"""

from __future__ import annotations


class D24FADError(Exception):
    """Base class of every error raised on purpose by d24fad."""


class InputError(D24FADError, ValueError):
    """A user-supplied file or parameter is invalid (the message names it)."""


class ImageReadError(InputError):
    """An image or volume file cannot be read or decoded."""


class DicomError(InputError):
    """A DICOM file or series cannot be turned into a regular image or volume."""


class GeometryError(InputError):
    """Image geometry is inconsistent or unsupported (sizes, orientations, spacing)."""


class SupportSetError(InputError):
    """The support (normal reference) set is invalid: too small, empty, out of range."""


class ConfigError(D24FADError, ValueError):
    """An engine or model configuration is invalid (unknown teacher, bad scales ...)."""


class CheckpointError(D24FADError):
    """A checkpoint file is missing, malformed, or does not match its checksum."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need unpickling arbitrary objects; it is refused."""


class WeightsUnavailableError(D24FADError):
    """Pretrained weights are not available offline and downloading was not allowed."""


class OutputError(D24FADError):
    """An output cannot be written (existing file without overwrite, unwritable dir)."""


class CancelledError(D24FADError):
    """The user cancelled a long-running job."""
