"""Plain-text tables for reports: fixed-width columns, numbers right-aligned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    floatfmt: str = ".4g",
    title: str | None = None,
) -> str:
    """A fixed-width text table: one line per row, a rule under the headers.

    Floats are formatted with ``floatfmt``, None as ``-``; text columns are left-aligned and
    numeric columns right-aligned.
    """
    cells = [[_cell(v, floatfmt) for v in row] for row in rows]
    for i, row in enumerate(cells):
        if len(row) != len(headers):
            raise ValueError(f"format_table: row {i} has {len(row)} cells, expected {len(headers)}")
    numeric = [
        bool(rows) and all(isinstance(r[j], int | float) or r[j] is None for r in rows)
        for j in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[j]) for r in cells]) for j, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        out = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    lines = [] if title is None else [title]
    lines += [line(list(headers)), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in cells]
    return "\n".join(lines)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g"
) -> str:
    """A GitHub-flavoured markdown table; floats formatted with ``floatfmt``, None as ``-``."""
    cells = [[_cell(v, floatfmt) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)
