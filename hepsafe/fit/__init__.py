"""Fit: templates -> a pyhf workspace or patch -> fits, impacts, limits, the fit report."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.fit.adversarial import (
        THETA_BOUNDS,
        TREATMENTS,
        adversarial_parameters,
        delta_samples,
    )
    from hepsafe.fit.limits import (
        cls,
        significance,
        upper_limit,
    )
    from hepsafe.fit.mle import (
        MINUIT_CALLS_FACTOR,
        MINUIT_TOLERANCE,
        FitResult,
        asimov_data,
        fit,
        impacts,
        minuit_backend,
        minuit_max_calls,
        model_and_data,
        nominal_values,
        parameter_labels,
        pulls,
    )
    from hepsafe.fit.results import (
        OUTPUT_FILES,
        REPORT_FORMAT,
        FitOutputs,
        fit_report,
        fit_templates,
        format_report,
        worst_case,
        write_fit_outputs,
    )
    from hepsafe.fit.workspace import (
        MODIFIER_SETTINGS,
        WorkspaceConfig,
        apply_patch,
        as_patchset,
        build_patch,
        build_workspace,
        load_config,
        parameter_name,
        prepare_templates,
        read_workspace,
        systematic_parameters,
        validate_workspace,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "THETA_BOUNDS": "adversarial",
    "TREATMENTS": "adversarial",
    "adversarial_parameters": "adversarial",
    "delta_samples": "adversarial",
    "worst_case": "results",
    "FitOutputs": "results",
    "FitResult": "mle",
    "MINUIT_CALLS_FACTOR": "mle",
    "MINUIT_TOLERANCE": "mle",
    "MODIFIER_SETTINGS": "workspace",
    "OUTPUT_FILES": "results",
    "REPORT_FORMAT": "results",
    "WorkspaceConfig": "workspace",
    "apply_patch": "workspace",
    "as_patchset": "workspace",
    "asimov_data": "mle",
    "build_patch": "workspace",
    "build_workspace": "workspace",
    "cls": "limits",
    "fit": "mle",
    "fit_report": "results",
    "fit_templates": "results",
    "format_report": "results",
    "impacts": "mle",
    "load_config": "workspace",
    "minuit_backend": "mle",
    "minuit_max_calls": "mle",
    "model_and_data": "mle",
    "nominal_values": "mle",
    "parameter_labels": "mle",
    "parameter_name": "workspace",
    "prepare_templates": "workspace",
    "pulls": "mle",
    "read_workspace": "workspace",
    "significance": "limits",
    "systematic_parameters": "workspace",
    "upper_limit": "limits",
    "validate_workspace": "workspace",
    "write_fit_outputs": "results",
}
__all__ = [
    "FitOutputs",
    "FitResult",
    "MINUIT_CALLS_FACTOR",
    "MINUIT_TOLERANCE",
    "MODIFIER_SETTINGS",
    "OUTPUT_FILES",
    "REPORT_FORMAT",
    "THETA_BOUNDS",
    "TREATMENTS",
    "WorkspaceConfig",
    "adversarial_parameters",
    "apply_patch",
    "as_patchset",
    "asimov_data",
    "build_patch",
    "build_workspace",
    "cls",
    "delta_samples",
    "fit",
    "fit_report",
    "fit_templates",
    "format_report",
    "impacts",
    "load_config",
    "minuit_backend",
    "minuit_max_calls",
    "model_and_data",
    "nominal_values",
    "parameter_labels",
    "parameter_name",
    "prepare_templates",
    "pulls",
    "read_workspace",
    "significance",
    "systematic_parameters",
    "upper_limit",
    "validate_workspace",
    "worst_case",
    "write_fit_outputs",
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
