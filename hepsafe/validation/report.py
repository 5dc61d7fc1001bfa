"""The gate's verdict: one :class:`Check` per statistic, :class:`VariableStats` per variable
and the :class:`GateReport` (text, JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hepsafe._files import write_json, write_text
from hepsafe.exceptions import ConfigError, InputError


# =========================================================================== report
@dataclass(frozen=True)
class Check:
    """One check: ``statistic`` of ``variable`` against ``limit``.

    ``kind`` is "max" (pass if value <= limit) or "min" (pass if value >= limit);
    ``passed`` is None when the statistic is reported but not gated (no limit).
    """

    variable: str
    statistic: str
    value: float | None
    limit: float | None
    kind: str
    passed: bool | None

    @property
    def name(self) -> str:
        """``variable:statistic``."""
        return f"{self.variable}:{self.statistic}"


@dataclass(frozen=True)
class VariableStats:
    """Comparison of one variable: sizes, weighted means and every statistic."""

    variable: str
    n_nominal: int
    n_perturbed: int
    n_eff_nominal: float
    n_eff_perturbed: float
    mean_nominal: float
    mean_perturbed: float
    ks: float
    ks_p: float
    jsd: float
    chi2: float
    ndf: int
    n_bins: int

    @property
    def chi2_ndf(self) -> float | None:
        """chi2 / ndf (None if ndf < 1)."""
        return self.chi2 / self.ndf if self.ndf > 0 else None


@dataclass(frozen=True)
class GateReport:
    """The gate's verdict: every check, the per-variable statistics, the correlation change."""

    passed: bool
    checks: tuple[Check, ...]
    variables: tuple[VariableStats, ...]
    correlation_variables: tuple[str, ...]
    corr_nominal: tuple[tuple[float, ...], ...]
    corr_perturbed: tuple[tuple[float, ...], ...]
    config: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        """Names (``variable:statistic``) of the failed checks."""
        return [c.name for c in self.checks if c.passed is False]

    @property
    def failed_variables(self) -> list[str]:
        """Variables with at least one failed check, in report order."""
        return list(dict.fromkeys(c.variable for c in self.checks if c.passed is False))

    def check(self, variable: str, statistic: str) -> Check:
        """The check of ``statistic`` on ``variable``."""
        for c in self.checks:
            if c.variable == variable and c.statistic == statistic:
                return c
        raise ConfigError(f"GateReport has no check '{variable}:{statistic}'")

    def stats(self, variable: str) -> VariableStats:
        """The statistics of ``variable``."""
        for v in self.variables:
            if v.variable == variable:
                return v
        raise ConfigError(f"GateReport has no variable '{variable}'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "format": "hepsafe-gate/1",
            "passed": self.passed,
            "failed": self.failed,
            "checks": [asdict(c) for c in self.checks],
            "variables": [asdict(v) for v in self.variables],
            "correlation": {
                "variables": list(self.correlation_variables),
                "nominal": [list(r) for r in self.corr_nominal],
                "perturbed": [list(r) for r in self.corr_perturbed],
            },
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. read back from JSON)."""
        try:
            corr = d["correlation"]
            return cls(
                passed=bool(d["passed"]),
                checks=tuple(Check(**c) for c in d["checks"]),
                variables=tuple(VariableStats(**v) for v in d["variables"]),
                correlation_variables=tuple(corr["variables"]),
                corr_nominal=tuple(tuple(r) for r in corr["nominal"]),
                corr_perturbed=tuple(tuple(r) for r in corr["perturbed"]),
                config=dict(d["config"]),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a gate report (format hepsafe-gate/1): {exc}") from exc

    def write_json(self, path: str | Path) -> Path:
        """Write the report as JSON, atomically."""
        return write_json(path, self.to_dict())

    def write_text(self, path: str | Path) -> Path:
        """Write :meth:`to_text` to ``path``, atomically."""
        return write_text(path, self.to_text() + "\n")

    def to_text(self) -> str:
        """A fixed-width table: one line per check, then the verdict."""
        gated = [c for c in self.checks if c.passed is not None]
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"control-region gate: {verdict} ({len(self.failed)} of {len(gated)} gated checks "
            f"failed{': ' + ', '.join(self.failed) if self.failed else ''})",
            f"{'variable':<16s} {'statistic':<15s} {'value':>12s} {'limit':>12s}  result",
        ]
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.6g}"
            op = "<=" if c.kind == "max" else ">="
            limit = "-" if c.limit is None else f"{op} {c.limit:g}"
            result = {True: "pass", False: "FAIL", None: "(info)"}[c.passed]
            lines.append(
                f"{c.variable:<16s} {c.statistic:<15s} {value:>12s} {limit:>12s}  {result}"
            )
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)


def _check(var: str, stat: str, value: float | None, limit: float | None, kind: str) -> Check:
    if limit is None:
        passed = None
    elif value is None or not math.isfinite(value):
        passed = False
    else:
        passed = bool(value <= limit) if kind == "max" else bool(value >= limit)
    return Check(var, stat, None if value is None else float(value), limit, kind, passed)
