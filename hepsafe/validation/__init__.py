"""Validation: nominal vs perturbed control-region samples -> a GateReport (the control-region
gate).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.validation.checks import (
        CONTROL_VARIABLES,
        DEFAULT_BINS,
        Check,
        GateConfig,
        GateReport,
        Limits,
        Observed,
        VariableStats,
        chi2_ndf,
        compare,
        control_variables,
        correlation_matrix,
        default_constituent_features,
        effective_size,
        gate,
        histogram,
        js_distance,
        ks_2samp_weighted,
        ks_pvalue,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CONTROL_VARIABLES": "checks",
    "Check": "checks",
    "DEFAULT_BINS": "checks",
    "GateConfig": "checks",
    "GateReport": "checks",
    "Limits": "checks",
    "Observed": "checks",
    "VariableStats": "checks",
    "chi2_ndf": "checks",
    "compare": "checks",
    "control_variables": "checks",
    "correlation_matrix": "checks",
    "default_constituent_features": "checks",
    "effective_size": "checks",
    "gate": "checks",
    "histogram": "checks",
    "js_distance": "checks",
    "ks_2samp_weighted": "checks",
    "ks_pvalue": "checks",
}
__all__ = [
    "CONTROL_VARIABLES",
    "Check",
    "DEFAULT_BINS",
    "GateConfig",
    "GateReport",
    "Limits",
    "Observed",
    "VariableStats",
    "chi2_ndf",
    "compare",
    "control_variables",
    "correlation_matrix",
    "default_constituent_features",
    "effective_size",
    "gate",
    "histogram",
    "js_distance",
    "ks_2samp_weighted",
    "ks_pvalue",
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
