"""The training configs that ship with unsmear, usable by name: ``python -m models train default``."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the shipped configs (file stems), sorted."""
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def resolve(spec: str | Path) -> Path:
    """A config file from a path, or from the name of a shipped config (``default``, ``tiny``...).

    An existing file wins over a shipped name; anything else is returned as given, so the
    caller reports it as missing.
    """
    path = Path(spec)
    if path.is_file():
        return path
    shipped = FOLDER / f"{path.stem if path.suffix in ('.yaml', '.yml') else path.name}.yaml"
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name == "configs"):
        return shipped
    return path
