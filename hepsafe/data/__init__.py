"""Data: ROOT files (the hepsafe format, CMS PFNano) -> JetBatch; the shipped sample, its
generator, regions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.data.generator import (
        ECAL_CELL,
        HCAL_CELL,
        PART_DTYPES,
        PROCESS_SETTINGS,
        GenConfig,
        check_generate_available,
        detector_response,
        generate,
        generate_block,
        jet_four_vector,
        merge_cells,
        round_mantissa,
        stored_constituents,
    )
    from hepsafe.data.jets import (
        CLASS_NAMES,
        FINITE_BRANCHES,
        JET_BRANCHES,
        PART_BRANCHES,
        PART_FIELDS,
        REQUIRED_BRANCHES,
        TREE,
        JetBatch,
        Selector,
        iter_root,
        num_entries,
        read_root,
        write_root,
    )
    from hepsafe.data.nanoaod import (
        COLLECTIONS,
        PF_FIELDS,
        PUPPI_BRANCH,
        branch_names,
        default_puppi,
        iter_pfnano,
        jets_from_arrays,
        optional_branch_names,
        read_pfnano,
        weighted_p4,
        write_pfnano,
    )
    from hepsafe.data.reading import (
        SPLITS,
        STEP_SIZE,
        iter_selected,
        read_selected,
        sample_jets,
        selector,
    )
    from hepsafe.data.regions import (
        OBSERVABLES,
        Region,
    )
    from hepsafe.data.sample import (
        DATA_DIR,
        LABELS,
        SAMPLE_CARD,
        SAMPLE_FILE,
        TEST_FRACTION,
        describe,
        is_test,
        load_sample,
        sample_card,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CLASS_NAMES": "jets",
    "COLLECTIONS": "nanoaod",
    "DATA_DIR": "sample",
    "ECAL_CELL": "generator",
    "FINITE_BRANCHES": "jets",
    "GenConfig": "generator",
    "HCAL_CELL": "generator",
    "JET_BRANCHES": "jets",
    "JetBatch": "jets",
    "LABELS": "sample",
    "OBSERVABLES": "regions",
    "PART_BRANCHES": "jets",
    "PART_DTYPES": "generator",
    "PART_FIELDS": "jets",
    "PF_FIELDS": "nanoaod",
    "PROCESS_SETTINGS": "generator",
    "PUPPI_BRANCH": "nanoaod",
    "REQUIRED_BRANCHES": "jets",
    "Region": "regions",
    "SAMPLE_CARD": "sample",
    "SAMPLE_FILE": "sample",
    "SPLITS": "reading",
    "STEP_SIZE": "reading",
    "Selector": "jets",
    "TEST_FRACTION": "sample",
    "TREE": "jets",
    "branch_names": "nanoaod",
    "check_generate_available": "generator",
    "default_puppi": "nanoaod",
    "describe": "sample",
    "detector_response": "generator",
    "generate": "generator",
    "generate_block": "generator",
    "is_test": "sample",
    "iter_pfnano": "nanoaod",
    "iter_root": "jets",
    "iter_selected": "reading",
    "jet_four_vector": "generator",
    "jets_from_arrays": "nanoaod",
    "load_sample": "sample",
    "merge_cells": "generator",
    "num_entries": "jets",
    "optional_branch_names": "nanoaod",
    "read_pfnano": "nanoaod",
    "read_root": "jets",
    "read_selected": "reading",
    "round_mantissa": "generator",
    "sample_card": "sample",
    "sample_jets": "reading",
    "selector": "reading",
    "stored_constituents": "generator",
    "weighted_p4": "nanoaod",
    "write_pfnano": "nanoaod",
    "write_root": "jets",
}
__all__ = [
    "CLASS_NAMES",
    "COLLECTIONS",
    "DATA_DIR",
    "ECAL_CELL",
    "FINITE_BRANCHES",
    "GenConfig",
    "HCAL_CELL",
    "JET_BRANCHES",
    "JetBatch",
    "LABELS",
    "OBSERVABLES",
    "PART_BRANCHES",
    "PART_DTYPES",
    "PART_FIELDS",
    "PF_FIELDS",
    "PROCESS_SETTINGS",
    "PUPPI_BRANCH",
    "REQUIRED_BRANCHES",
    "Region",
    "SAMPLE_CARD",
    "SAMPLE_FILE",
    "SPLITS",
    "STEP_SIZE",
    "Selector",
    "TEST_FRACTION",
    "TREE",
    "branch_names",
    "check_generate_available",
    "default_puppi",
    "describe",
    "detector_response",
    "generate",
    "generate_block",
    "is_test",
    "iter_pfnano",
    "iter_root",
    "iter_selected",
    "jet_four_vector",
    "jets_from_arrays",
    "load_sample",
    "merge_cells",
    "num_entries",
    "optional_branch_names",
    "read_pfnano",
    "read_root",
    "read_selected",
    "round_mantissa",
    "sample_card",
    "sample_jets",
    "selector",
    "stored_constituents",
    "weighted_p4",
    "write_pfnano",
    "write_root",
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
