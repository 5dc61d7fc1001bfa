"""Report: presentation only (figures, markdown/HTML report, tables)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.report.markdown import (
        SUMMARY_COLUMNS,
        markdown,
        summary_rows,
        summary_text,
        write_reports,
    )
    from hepsafe.report.plots import (
        CAPTIONS,
        COLORS,
        control,
        impacts,
        make_all,
        roc,
        scores,
    )
    from hepsafe.report.tables import (
        format_table,
        markdown_table,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CAPTIONS": "plots",
    "COLORS": "plots",
    "SUMMARY_COLUMNS": "markdown",
    "control": "plots",
    "format_table": "tables",
    "impacts": "plots",
    "make_all": "plots",
    "markdown": "markdown",
    "markdown_table": "tables",
    "roc": "plots",
    "scores": "plots",
    "summary_rows": "markdown",
    "summary_text": "markdown",
    "write_reports": "markdown",
}
__all__ = [
    "CAPTIONS",
    "COLORS",
    "SUMMARY_COLUMNS",
    "control",
    "format_table",
    "impacts",
    "make_all",
    "markdown",
    "markdown_table",
    "roc",
    "scores",
    "summary_rows",
    "summary_text",
    "write_reports",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
