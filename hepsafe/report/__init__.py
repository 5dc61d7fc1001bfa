"""Report: presentation only: figures (``plots``: drawing, ``ax=None`` in, the figure out;
``figures``: the report's style and atomic PNG files), the markdown/HTML report, tables,
and atomic writers of results (``output``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.report.document import (
        SUMMARY_COLUMNS,
        markdown,
        summary_rows,
        summary_text,
        write_reports,
    )
    from hepsafe.report.figures import (
        CAPTIONS,
        STYLE,
        report_style,
        save_figure,
        write_figures,
    )
    from hepsafe.report.output import atomic_path, write_json, write_text
    from hepsafe.report.plots import (
        COLORS,
        control,
        impacts,
        roc,
        scores,
    )
    from hepsafe.report.tables import (
        format_table,
        markdown_table,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CAPTIONS": "figures",
    "COLORS": "plots",
    "STYLE": "figures",
    "SUMMARY_COLUMNS": "document",
    "atomic_path": "output",
    "control": "plots",
    "format_table": "tables",
    "impacts": "plots",
    "markdown": "document",
    "markdown_table": "tables",
    "report_style": "figures",
    "roc": "plots",
    "save_figure": "figures",
    "scores": "plots",
    "summary_rows": "document",
    "summary_text": "document",
    "write_figures": "figures",
    "write_json": "output",
    "write_reports": "document",
    "write_text": "output",
}
__all__ = [
    "CAPTIONS",
    "COLORS",
    "STYLE",
    "SUMMARY_COLUMNS",
    "atomic_path",
    "control",
    "format_table",
    "impacts",
    "markdown",
    "markdown_table",
    "report_style",
    "roc",
    "save_figure",
    "scores",
    "summary_rows",
    "summary_text",
    "write_figures",
    "write_json",
    "write_reports",
    "write_text",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
