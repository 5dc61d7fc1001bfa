"""Versions of the installed packages, recorded beside every result (cards, reports)."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata


def package_versions(names: Sequence[str], python: bool = True) -> dict[str, str]:
    """``{name: version}`` of each installed package in ``names`` (``"not installed"`` when
    absent), after ``{"python": version}`` when ``python``."""
    out = {"python": platform.python_version()} if python else {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
