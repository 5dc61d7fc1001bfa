"""Metrics: ROC curves and AUC, efficiencies and working points, rejection, SIC, fooling rate,
and attack-strength sweeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.metrics.roc import (
        FoolingRate,
        RocCurve,
        WorkingPoint,
        as_dict,
        efficiency,
        eps_b_at,
        fooling_rate,
        max_sic,
        rejection_at_efficiency,
        roc_auc,
        roc_curve,
        sic_at_efficiency,
        sic_curve,
        threshold_at_efficiency,
        working_point,
    )
    from hepsafe.metrics.sweeps import (
        SWEEP_COLUMNS,
        ScorePair,
        SweepTable,
        sweep,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "FoolingRate": "roc",
    "RocCurve": "roc",
    "SWEEP_COLUMNS": "sweeps",
    "ScorePair": "sweeps",
    "SweepTable": "sweeps",
    "WorkingPoint": "roc",
    "as_dict": "roc",
    "efficiency": "roc",
    "eps_b_at": "roc",
    "fooling_rate": "roc",
    "max_sic": "roc",
    "rejection_at_efficiency": "roc",
    "roc_auc": "roc",
    "roc_curve": "roc",
    "sic_at_efficiency": "roc",
    "sic_curve": "roc",
    "sweep": "sweeps",
    "threshold_at_efficiency": "roc",
    "working_point": "roc",
}
__all__ = [
    "FoolingRate",
    "RocCurve",
    "SWEEP_COLUMNS",
    "ScorePair",
    "SweepTable",
    "WorkingPoint",
    "as_dict",
    "efficiency",
    "eps_b_at",
    "fooling_rate",
    "max_sic",
    "rejection_at_efficiency",
    "roc_auc",
    "roc_curve",
    "sic_at_efficiency",
    "sic_curve",
    "sweep",
    "threshold_at_efficiency",
    "working_point",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
