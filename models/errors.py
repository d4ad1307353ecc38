"""The exceptions ``models`` raises for problems a user can fix.

They live apart from the code that raises them so that ``python -m models`` can name them
without loading torch: its CLI prints each as one ``error: ...`` line (exit status 2).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A training config that cannot work; the message names the field."""


class DataError(ValueError):
    """The pairs folder, its manifest or one of its images is unusable."""


class CheckpointError(ValueError):
    """A file that is not a generator checkpoint we can load; the message names the file."""
