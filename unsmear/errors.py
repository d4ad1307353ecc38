"""Error text for users: one line, whatever the library that raised it put in its message."""

from __future__ import annotations

# Library messages can be pages long (FFmpeg, Ray); one line of an error report stays short.
MAX_REASON_CHARS = 300


def one_line(exc: BaseException) -> str:
    """``exc``'s message as one line: its first non-empty line (the type's name if it has no
    message), whitespace collapsed, cut at MAX_REASON_CHARS."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."
