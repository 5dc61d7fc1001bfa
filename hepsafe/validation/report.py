"""The gate's verdict: one :class:`Check` per statistic, :class:`VariableStats` per variable,
the calibrated gate's :class:`Calibration` (each size-aware test as a :class:`Visibility`:
p-value, limit, the control-region size where it flips, verdicts at other sizes) and the
:class:`GateReport` (text, JSON)."""

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
class AtSize:
    """One test (or the combined gate) at a control-region size ``n_data`` (events)."""

    n_data: float
    p_value: float
    limit: float | None
    passed: bool


@dataclass(frozen=True)
class Visibility:
    """One size-aware test of the calibrated gate, or the combined verdict (``name``
    "combined").

    ``value``: the statistic at the gate's sizes (KS distance; ``|z|`` of the efficiency;
    the likelihood ratio q; the correlation chi2; for "combined" the smallest p-value);
    ``p_value`` and ``significance`` (two-sided Gaussian equivalent, capped at 50) at those
    sizes; ``limit`` the value at which it fails (for "combined": the per-test level);
    ``flip_events``: the smallest control-region size (events) at which it fails, None when
    no size does (the simulation's own size limits it, or nothing moved);
    ``flip_events_infinite_sim``: the same with the simulation taken as exact; ``at``: the
    verdict at the report's sizes, ``at_infinite_sim`` the same with exact simulation.
    """

    name: str
    value: float
    p_value: float
    significance: float
    limit: float | None
    passed: bool
    flip_events: float | None
    flip_events_infinite_sim: float | None
    at: tuple[AtSize, ...] = ()
    at_infinite_sim: tuple[AtSize, ...] = ()

    def at_size(self, n_data: float, infinite_sim: bool = False) -> AtSize:
        """The verdict at ``n_data`` events (one of the report's sizes)."""
        for a in self.at_infinite_sim if infinite_sim else self.at:
            if a.n_data == n_data:
                return a
        raise ConfigError(f"test '{self.name}' has no verdict at {n_data:g} events "
                          f"(sizes: {[a.n_data for a in self.at]})")


@dataclass(frozen=True)
class Calibration:
    """The calibrated gate's sizes, levels and tests.

    ``n_data``/``n_sim``: the sizes the verdict is for (``n_sim`` inf: exact simulation);
    ``alpha``: the combined false-alarm rate; ``local_alpha``: each test's level in the
    combined verdict (fail when a p-value is below it) and ``local_alpha_method`` how it was
    set; ``threshold``: the working point on the score (None: no efficiency test);
    ``efficiency``: ``(eps_sim, eps_data)`` above it (None without a threshold).
    """

    pairing: str
    n_data: float
    n_sim: float
    alpha: float
    local_alpha: float
    local_alpha_method: str
    threshold: float | None
    efficiency: tuple[float, float] | None
    tests: tuple[Visibility, ...]
    combined: Visibility

    def test(self, name: str) -> Visibility:
        """The test called ``name`` (``variable:statistic``, or "combined")."""
        for t in (*self.tests, self.combined):
            if t.name == name:
                return t
        raise ConfigError(f"the calibrated gate has no test '{name}' "
                          f"(tests: {[t.name for t in self.tests]})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite size as "infinite", a size never reached as None)."""
        d = asdict(self)
        d["n_sim"] = "infinite" if math.isinf(self.n_sim) else self.n_sim
        d["efficiency"] = None if self.efficiency is None else list(self.efficiency)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        def vis(v: Mapping[str, Any]) -> Visibility:
            return Visibility(**{**v, "at": tuple(AtSize(**a) for a in v["at"]),
                                 "at_infinite_sim": tuple(AtSize(**a)
                                                          for a in v["at_infinite_sim"])})

        return cls(**{
            **d,
            "n_sim": math.inf if d["n_sim"] == "infinite" else float(d["n_sim"]),
            "efficiency": None if d["efficiency"] is None else tuple(d["efficiency"]),
            "tests": tuple(vis(t) for t in d["tests"]),
            "combined": vis(d["combined"]),
        })

    def to_text(self) -> str:
        """The size-aware tests: p-value, flip sizes, verdict at each report size (with the
        simulation's size, then with exact simulation)."""
        sizes = [a.n_data for a in self.combined.at]
        finite = not math.isinf(self.n_sim)
        sim = f"{self.n_sim:.0f}" if finite else "exact"
        cols = [f"N={n:.3g}" for n in sizes]
        if finite:
            cols += [f"N={n:.3g}*" for n in sizes]
        lines = [
            f"calibrated gate ({self.pairing}): N_data {self.n_data:.0f}, N_sim {sim}, "
            f"false-alarm rate {self.alpha:g}, per-test level {self.local_alpha:.4g} "
            f"({self.local_alpha_method})",
            f"{'test':<22s} {'p':>9s} {'Z':>6s} {'flip N':>9s} {'flip N*':>9s} "
            + " ".join(f"{c:>9s}" for c in cols),
        ]
        for t in (*self.tests, self.combined):
            rows = [*t.at, *(t.at_infinite_sim if finite else ())]
            cells = " ".join(f"{'visible' if not a.passed else 'hidden':>9s}" for a in rows)
            lines.append(f"{t.name:<22s} {t.p_value:>9.3g} {t.significance:>6.2f} "
                         f"{_events(t.flip_events):>9s} "
                         f"{_events(t.flip_events_infinite_sim):>9s} {cells}")
        lines.append("(flip N: the smallest control-region size at which the test fails; "
                     "*: with exact simulation)")
        return "\n".join(lines)


def _events(n: float | None) -> str:
    return "never" if n is None else f"{n:.4g}"


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
    calibration: Calibration | None = None

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
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
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
                calibration=(None if d.get("calibration") is None
                             else Calibration.from_dict(d["calibration"])),
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
        if self.calibration is not None:
            lines.append(self.calibration.to_text())
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
