"""Validation: nominal vs perturbed control-region samples -> a GateReport (the control-region
gate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.validation.checks import (
        compare,
        gate,
    )
    from hepsafe.validation.config import (
        CONSTITUENT_VARIABLES,
        CONTROL_VARIABLES,
        DEFAULT_BINS,
        JET_VARIABLES,
        LIMIT_NAMES,
        STATISTICS,
        GateConfig,
        Limits,
    )
    from hepsafe.validation.report import (
        Check,
        GateReport,
        VariableStats,
    )
    from hepsafe.validation.twosample import (
        NamedArrays,
        Observed,
        chi2_ndf,
        correlation_matrix,
        effective_size,
        histogram,
        js_distance,
        ks_2samp_weighted,
        ks_pvalue,
    )
    from hepsafe.validation.variables import (
        ConstituentFeatures,
        control_variables,
        default_constituent_features,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CONSTITUENT_VARIABLES": "config",
    "CONTROL_VARIABLES": "config",
    "Check": "report",
    "ConstituentFeatures": "variables",
    "DEFAULT_BINS": "config",
    "GateConfig": "config",
    "GateReport": "report",
    "JET_VARIABLES": "config",
    "LIMIT_NAMES": "config",
    "Limits": "config",
    "NamedArrays": "twosample",
    "Observed": "twosample",
    "STATISTICS": "config",
    "VariableStats": "report",
    "chi2_ndf": "twosample",
    "compare": "checks",
    "control_variables": "variables",
    "correlation_matrix": "twosample",
    "default_constituent_features": "variables",
    "effective_size": "twosample",
    "gate": "checks",
    "histogram": "twosample",
    "js_distance": "twosample",
    "ks_2samp_weighted": "twosample",
    "ks_pvalue": "twosample",
}
__all__ = [
    "CONSTITUENT_VARIABLES",
    "CONTROL_VARIABLES",
    "Check",
    "ConstituentFeatures",
    "DEFAULT_BINS",
    "GateConfig",
    "GateReport",
    "JET_VARIABLES",
    "LIMIT_NAMES",
    "Limits",
    "NamedArrays",
    "Observed",
    "STATISTICS",
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
