"""The README's first commands are exactly what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [ln.strip() for ln in lines[:10] if ln.startswith("    ")][:2]


def test_readme_opens_with_two_commands():
    install, test = _readme_commands()
    assert "pip install" in install and "hepsafe demo" in install
    assert "pytest" in test


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in _readme_commands():
        assert cmd in ci, cmd
    assert "ruff check ." in ci
