"""Templates: scores -> hist templates (booking, files, hygiene before a fit)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.templates.booking import (
        DOWN,
        NOMINAL,
        UP,
        Cell,
        Templates,
        book,
        cell_contents,
        check_edges,
        check_name,
        fill,
        format_yields,
        from_arrays,
        from_cells,
        new_hist,
        split_variation,
        variation_name,
        with_cell_contents,
        yields_table,
    )
    from hepsafe.templates.files import (
        FORMAT,
        ROOT_META_KEY,
        from_dict,
        read_json_templates,
        read_root_templates,
        read_templates,
        root_name,
        to_dict,
        write_json_templates,
        write_root_templates,
        write_templates,
    )
    from hepsafe.templates.hygiene import (
        check,
        clip_negative,
        merge_empty_bins,
        merge_low_stat,
        merge_plan,
        one_sided,
        positive_plan,
        rebin,
        select_systematics,
        smooth,
        smooth_ratio,
        symmetrize,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "Cell": "booking",
    "FORMAT": "files",
    "DOWN": "booking",
    "NOMINAL": "booking",
    "UP": "booking",
    "ROOT_META_KEY": "files",
    "Templates": "booking",
    "book": "booking",
    "cell_contents": "booking",
    "check": "hygiene",
    "check_edges": "booking",
    "check_name": "booking",
    "clip_negative": "hygiene",
    "fill": "booking",
    "format_yields": "booking",
    "from_arrays": "booking",
    "from_cells": "booking",
    "from_dict": "files",
    "merge_empty_bins": "hygiene",
    "merge_low_stat": "hygiene",
    "merge_plan": "hygiene",
    "new_hist": "booking",
    "one_sided": "hygiene",
    "positive_plan": "hygiene",
    "read_json_templates": "files",
    "read_root_templates": "files",
    "read_templates": "files",
    "rebin": "hygiene",
    "root_name": "files",
    "select_systematics": "hygiene",
    "smooth": "hygiene",
    "smooth_ratio": "hygiene",
    "split_variation": "booking",
    "symmetrize": "hygiene",
    "to_dict": "files",
    "variation_name": "booking",
    "with_cell_contents": "booking",
    "write_json_templates": "files",
    "write_root_templates": "files",
    "write_templates": "files",
    "yields_table": "booking",
}
__all__ = [
    "Cell",
    "FORMAT",
    "DOWN",
    "NOMINAL",
    "UP",
    "ROOT_META_KEY",
    "Templates",
    "book",
    "cell_contents",
    "check",
    "check_edges",
    "check_name",
    "clip_negative",
    "fill",
    "format_yields",
    "from_arrays",
    "from_cells",
    "from_dict",
    "merge_empty_bins",
    "merge_low_stat",
    "merge_plan",
    "new_hist",
    "one_sided",
    "positive_plan",
    "read_json_templates",
    "read_root_templates",
    "read_templates",
    "rebin",
    "root_name",
    "select_systematics",
    "smooth",
    "smooth_ratio",
    "split_variation",
    "symmetrize",
    "to_dict",
    "variation_name",
    "with_cell_contents",
    "write_json_templates",
    "write_root_templates",
    "write_templates",
    "yields_table",
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
