"""Exceptions for mistakes a user can fix (bad input, bad options).

The CLI prints these as a single ``error: ...`` line and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BuildError(ValueError):
    """A problem with the user's input or options, explained in one line."""


class SourceTooShort(BuildError):
    """A source has too few frames for the window (``--skip-short`` skips these)."""
