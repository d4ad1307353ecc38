"""Exceptions for mistakes a user can fix (bad input, bad options).

The CLI prints these as a single ``error: ...`` line and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BuildError(ValueError):
    """A problem with the user's input or options, explained in one line."""


class SourceTooShort(BuildError):
    """A source has too few frames for the window (``--skip-short`` skips these)."""


class DecodeFailed(BuildError):
    """A video that opened fails to decode partway: the work ran and failed (exit 1), not a
    usage mistake; still a BuildError, so a folder build and ``jobs`` report it per source."""
