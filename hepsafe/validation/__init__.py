"""Validation: nominal vs perturbed control-region samples -> a GateReport (the control-region
gate), by default calibrated to the sizes of the control region and of the simulation
(:mod:`hepsafe.validation.calibrated`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.validation.calibrated import (
        FalseAlarmRate,
        false_alarm_rate,
        random_halves,
    )
    from hepsafe.validation.checks import (
        compare,
        gate,
    )
    from hepsafe.validation.config import (
        CALIBRATED_VARIABLES,
        CONSTITUENT_VARIABLES,
        CONTROL_VARIABLES,
        DEFAULT_BINS,
        GATE_MODES,
        JET_VARIABLES,
        LIMIT_NAMES,
        PAIRINGS,
        REPORT_EVENTS,
        STATISTICS,
        GateConfig,
        Limits,
    )
    from hepsafe.validation.report import (
        AtSize,
        Calibration,
        Check,
        GateReport,
        VariableStats,
        Visibility,
    )
    from hepsafe.validation.significance import (
        efficiency_z,
        kolmogorov_quantile,
        ks_critical_value,
        poisson_lr,
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
    "AtSize": "report",
    "CALIBRATED_VARIABLES": "config",
    "CONSTITUENT_VARIABLES": "config",
    "CONTROL_VARIABLES": "config",
    "Calibration": "report",
    "Check": "report",
    "ConstituentFeatures": "variables",
    "DEFAULT_BINS": "config",
    "FalseAlarmRate": "calibrated",
    "GATE_MODES": "config",
    "GateConfig": "config",
    "GateReport": "report",
    "JET_VARIABLES": "config",
    "LIMIT_NAMES": "config",
    "Limits": "config",
    "NamedArrays": "twosample",
    "Observed": "twosample",
    "PAIRINGS": "config",
    "REPORT_EVENTS": "config",
    "STATISTICS": "config",
    "VariableStats": "report",
    "Visibility": "report",
    "chi2_ndf": "twosample",
    "compare": "checks",
    "control_variables": "variables",
    "correlation_matrix": "twosample",
    "default_constituent_features": "variables",
    "effective_size": "twosample",
    "efficiency_z": "significance",
    "false_alarm_rate": "calibrated",
    "gate": "checks",
    "histogram": "twosample",
    "js_distance": "twosample",
    "kolmogorov_quantile": "significance",
    "ks_2samp_weighted": "twosample",
    "ks_critical_value": "significance",
    "ks_pvalue": "twosample",
    "poisson_lr": "significance",
    "random_halves": "calibrated",
}
__all__ = [
    "AtSize",
    "CALIBRATED_VARIABLES",
    "CONSTITUENT_VARIABLES",
    "CONTROL_VARIABLES",
    "Calibration",
    "Check",
    "ConstituentFeatures",
    "DEFAULT_BINS",
    "FalseAlarmRate",
    "GATE_MODES",
    "GateConfig",
    "GateReport",
    "JET_VARIABLES",
    "LIMIT_NAMES",
    "Limits",
    "NamedArrays",
    "Observed",
    "PAIRINGS",
    "REPORT_EVENTS",
    "STATISTICS",
    "VariableStats",
    "Visibility",
    "chi2_ndf",
    "compare",
    "control_variables",
    "correlation_matrix",
    "default_constituent_features",
    "effective_size",
    "efficiency_z",
    "false_alarm_rate",
    "gate",
    "histogram",
    "js_distance",
    "kolmogorov_quantile",
    "ks_2samp_weighted",
    "ks_critical_value",
    "ks_pvalue",
    "poisson_lr",
    "random_halves",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
