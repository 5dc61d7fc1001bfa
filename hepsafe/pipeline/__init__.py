"""Pipeline: a run configuration -> every stage -> an output directory (hepsafe run / demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.pipeline.config import (
        DEFAULTS,
        DEMO_CONFIG,
        TREES,
        RunConfig,
        from_dict,
        load,
        resolve_model,
    )
    from hepsafe.pipeline.runner import (
        NOMINAL,
        REGION,
        FitFailed,
        GateFailed,
        Progress,
        RunResult,
        Sample,
        Varied,
        fit_run,
        load_samples,
        make_provenance,
        output_dir,
        read_sample,
        region_masks,
        run,
        run_inputs,
        workspace_config,
    )
    from hepsafe.pipeline.spec import (
        FitSpec,
        Observable,
        ReadOptions,
        SampleSpec,
        TaggerSpec,
    )
    from hepsafe.pipeline.summary import (
        summary_table,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "DEFAULTS": "config",
    "DEMO_CONFIG": "config",
    "FitFailed": "runner",
    "FitSpec": "spec",
    "GateFailed": "runner",
    "NOMINAL": "runner",
    "Observable": "spec",
    "Progress": "runner",
    "REGION": "runner",
    "ReadOptions": "spec",
    "RunConfig": "config",
    "RunResult": "runner",
    "Sample": "runner",
    "SampleSpec": "spec",
    "TREES": "config",
    "TaggerSpec": "spec",
    "Varied": "runner",
    "fit_run": "runner",
    "from_dict": "config",
    "load": "config",
    "load_samples": "runner",
    "make_provenance": "runner",
    "output_dir": "runner",
    "read_sample": "runner",
    "region_masks": "runner",
    "resolve_model": "config",
    "run": "runner",
    "run_inputs": "runner",
    "summary_table": "summary",
    "workspace_config": "runner",
}
__all__ = [
    "DEFAULTS",
    "DEMO_CONFIG",
    "FitFailed",
    "FitSpec",
    "GateFailed",
    "NOMINAL",
    "Observable",
    "Progress",
    "REGION",
    "ReadOptions",
    "RunConfig",
    "RunResult",
    "Sample",
    "SampleSpec",
    "TREES",
    "TaggerSpec",
    "Varied",
    "fit_run",
    "from_dict",
    "load",
    "load_samples",
    "make_provenance",
    "output_dir",
    "read_sample",
    "region_masks",
    "resolve_model",
    "run",
    "run_inputs",
    "summary_table",
    "workspace_config",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
