"""Control-region gate: would a standard validation notice the difference between two samples?

The gate compares a nominal and a perturbed sample (usually the background/control region,
e.g. QCD jets) variable by variable and returns a :class:`GateReport` with pass/fail per
check and an overall verdict. Per variable: the weighted two-sample Kolmogorov-Smirnov
statistic and its p-value, the Jensen-Shannon distance (base 2) and chi2/ndf on fixed
binning; across the jet-level variables: the Frobenius norm of the change of their Pearson
correlation matrix. Limits live in :class:`GateConfig`.

The core works on named arrays, ``{name: (values, weights)}``, see :func:`compare`;
:func:`control_variables` builds them from a :class:`~hepsafe.data.jets.JetBatch` and
:func:`gate` does both. Note the statistics treat the two samples as independent; when the
perturbed sample is the nominal one modified jet by jet, p-values and chi2 are conservative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import awkward as ak
import numpy as np

from hepsafe._files import write_json, write_text
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError

__all__ = [
    "CONTROL_VARIABLES",
    "DEFAULT_BINS",
    "Check",
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


class Observed(NamedTuple):
    """One variable of one sample: ``values`` and per-entry ``weights`` (None: all 1), ``(n,)``."""

    values: np.ndarray
    weights: np.ndarray | None = None


NamedArrays = Mapping[str, "Observed | tuple[Any, Any] | np.ndarray"]

#: jet-level variables, in the order :func:`control_variables` produces them
JET_VARIABLES = ("jet_pt", "jet_mass", "jet_eta", "n_constituents")
#: constituent marginals of :func:`default_constituent_features`
CONSTITUENT_VARIABLES = ("part_pt", "part_deta", "part_dphi", "part_energy")
#: every variable :func:`control_variables` can produce (``score`` only when scores are given)
CONTROL_VARIABLES = (*JET_VARIABLES, *CONSTITUENT_VARIABLES, "score")

#: fixed bin edges per variable (GeV, rad, counts); under- and overflow bins are added
DEFAULT_BINS: dict[str, np.ndarray] = {
    "jet_pt": np.linspace(450.0, 750.0, 61),
    "jet_mass": np.arange(0.0, 305.0, 5.0),
    "jet_eta": np.linspace(-2.0, 2.0, 41),
    "n_constituents": np.arange(-0.5, 151.0, 2.0),
    "part_pt": np.geomspace(0.5, 1000.0, 56),
    "part_deta": np.linspace(-1.0, 1.0, 51),
    "part_dphi": np.linspace(-1.0, 1.0, 51),
    "part_energy": np.geomspace(0.5, 5000.0, 61),
    "score": np.linspace(0.0, 1.0, 51),
}

STATISTICS = ("ks", "ks_p", "jsd", "chi2_ndf")


# =========================================================================== configuration
@dataclass(frozen=True)
class Limits:
    """Limits for one variable; ``None`` reports a statistic without gating on it.

    A check passes when ``ks <= ks_max``, ``ks_p >= ks_p_min``, ``jsd <= jsd_max`` and
    ``chi2_ndf <= chi2_ndf_max``.
    """

    ks_max: float | None = 0.04
    ks_p_min: float | None = None
    jsd_max: float | None = None
    chi2_ndf_max: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise ConfigError(f"limit '{f.name}' must be a number >= 0 or None, got {v!r}")
        if self.ks_p_min is not None and self.ks_p_min > 1:
            raise ConfigError(f"limit 'ks_p_min' must be in [0, 1], got {self.ks_p_min}")


LIMIT_NAMES = tuple(f.name for f in fields(Limits))


def _default_overrides() -> dict[str, dict[str, float | None]]:
    return {"score": {"ks_max": 0.02}}


@dataclass(frozen=True)
class GateConfig:
    """Limits and binning of the control-region gate.

    - ``defaults``: the :class:`Limits` of every variable (KS <= 0.04; the JSD and chi2/ndf
      are reported, not gated: on a perturbed sample made from the nominal jets, binned
      statistics of narrow distributions such as jet pT respond to sub-bin migrations that
      no validation plot would show; set ``jsd_max`` to gate on them).
    - ``overrides``: ``{variable: {limit name: value or None}}`` replacing single limits of
      one variable (default: KS <= 0.02 for the background ``score``).
    - ``corr_frobenius_max``: cap on the Frobenius norm of the change of the correlation
      matrix of ``correlation_variables`` (None: the jet-level variables present). Default
      0.02, about the statistical precision of one correlation coefficient measured on a
      control sample of a few thousand jets (1/sqrt(n)): a smaller change is not visible in
      a validation plot of that sample. The greedy search's own cap (0.006, after
      CONSERVAttack) is tighter.
    - ``bins``: ``{variable: edges or number of bins}`` over :data:`DEFAULT_BINS`; a number
      ``n`` means ``n`` equal bins between the 0.5 % and 99.5 % quantiles of the nominal
      sample (``auto_bins`` for variables without edges).
    - ``variables``: check only these (None: every variable given).
    - ``allow_negative_weights``: accept negative weights (MC at NLO); histograms then
      clip negative bin contents to zero for the JSD.

    The default limits are meant for a perturbed sample made from the nominal jets one by
    one, where statistical noise cancels. Two independent samples of the same physics carry
    a noise floor: for two halves of the shipped QCD sample (5k jets each) the JSD on the
    default jet-level binning is 0.05-0.08 and the correlation change 0.08, above the
    default caps; loosen them (or coarsen ``bins``) for such comparisons.
    """

    defaults: Limits = field(default_factory=Limits)
    overrides: Mapping[str, Mapping[str, float | None]] = field(
        default_factory=_default_overrides
    )
    corr_frobenius_max: float | None = 0.02
    correlation_variables: tuple[str, ...] | None = None
    bins: Mapping[str, Any] = field(default_factory=dict)
    auto_bins: int = 40
    variables: tuple[str, ...] | None = None
    allow_negative_weights: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, Limits):
            raise ConfigError(f"GateConfig.defaults must be a Limits, got {self.defaults!r}")
        for var, lim in self.overrides.items():
            if not isinstance(lim, Mapping):
                raise ConfigError(
                    f"GateConfig.overrides['{var}'] must map limit names to values, got {lim!r}"
                )
            bad = [k for k in lim if k not in LIMIT_NAMES]
            if bad:
                raise ConfigError(
                    f"GateConfig.overrides['{var}']: unknown limit(s) {bad} "
                    f"(known: {list(LIMIT_NAMES)})"
                )
            self.limits_for(var)  # validates the values
        c = self.corr_frobenius_max
        if c is not None and (isinstance(c, bool) or not isinstance(c, int | float) or c < 0):
            raise ConfigError(f"GateConfig.corr_frobenius_max must be >= 0 or None, got {c!r}")
        if not isinstance(self.auto_bins, int) or self.auto_bins < 1:
            raise ConfigError(f"GateConfig.auto_bins must be an int >= 1, got {self.auto_bins!r}")
        for var, spec in self.bins.items():
            _check_bin_spec(var, spec)
        # normalise to plain values, so configs compare equal and serialise the same way
        object.__setattr__(self, "overrides", {k: dict(v) for k, v in self.overrides.items()})
        object.__setattr__(
            self,
            "bins",
            {
                k: int(v) if isinstance(v, int | np.integer) else tuple(float(e) for e in v)
                for k, v in self.bins.items()
            },
        )
        for name in ("variables", "correlation_variables"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str):
                    raise ConfigError(f"GateConfig.{name} must be a sequence of names, not a str")
                object.__setattr__(self, name, tuple(value))
        if self.correlation_variables is not None and len(self.correlation_variables) == 1:
            raise ConfigError("GateConfig.correlation_variables needs at least 2 variables")

    def limits_for(self, variable: str) -> Limits:
        """The limits of ``variable``: ``defaults`` with its ``overrides`` applied."""
        over = dict(self.overrides.get(variable, {}))
        try:
            return Limits(**{**asdict(self.defaults), **over})
        except ConfigError as exc:
            raise ConfigError(f"GateConfig.overrides['{variable}']: {exc}") from None

    def edges_for(self, variable: str, nominal: np.ndarray) -> np.ndarray:
        """Fixed bin edges of ``variable`` (user ``bins``, else :data:`DEFAULT_BINS`, else auto)."""
        spec = self.bins.get(variable, DEFAULT_BINS.get(variable, self.auto_bins))
        if isinstance(spec, int | np.integer):
            lo, hi = np.quantile(nominal, [0.005, 0.995])
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            return np.linspace(lo, hi, int(spec) + 1)
        return np.asarray(spec, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (bin edges as lists)."""
        return {
            "defaults": asdict(self.defaults),
            "overrides": {k: dict(v) for k, v in self.overrides.items()},
            "corr_frobenius_max": self.corr_frobenius_max,
            "correlation_variables": (
                None if self.correlation_variables is None else list(self.correlation_variables)
            ),
            "bins": {k: v if isinstance(v, int) else list(v) for k, v in self.bins.items()},
            "auto_bins": self.auto_bins,
            "variables": None if self.variables is None else list(self.variables),
            "allow_negative_weights": self.allow_negative_weights,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"GateConfig: unknown option(s) {bad} (known: {sorted(known)})")
        kw = dict(d)
        if "defaults" in kw:
            if not isinstance(kw["defaults"], Mapping):
                raise ConfigError("GateConfig.defaults must be a mapping of limits")
            unknown = sorted(set(kw["defaults"]) - set(LIMIT_NAMES))
            if unknown:
                raise ConfigError(f"GateConfig.defaults: unknown limit(s) {unknown}")
            kw["defaults"] = Limits(**kw["defaults"])
        return cls(**kw)


def _check_bin_spec(var: str, spec: Any) -> None:
    if isinstance(spec, bool):
        raise ConfigError(f"GateConfig.bins['{var}'] must be edges or a bin count, got {spec!r}")
    if isinstance(spec, int | np.integer):
        if spec < 1:
            raise ConfigError(f"GateConfig.bins['{var}'] must be >= 1 bins, got {spec}")
        return
    e = np.asarray(spec, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise ConfigError(
            f"GateConfig.bins['{var}'] must be >= 2 finite, strictly increasing edges"
        )


# =========================================================================== statistics
def effective_size(weights: np.ndarray) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` of weights, shape ``(n,)``."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def ks_pvalue(d: float, n_eff: float) -> float:
    """Two-sided p-value of a KS statistic ``d`` for effective size ``n_eff = n1 n2/(n1+n2)``.

    Asymptotic Kolmogorov distribution with Stephens' small-sample correction,
    ``Q_KS((sqrt(n) + 0.12 + 0.11/sqrt(n)) d)``.
    """
    if not n_eff > 0:
        return math.nan
    if d <= 0:
        return 1.0
    sn = math.sqrt(n_eff)
    z = (sn + 0.12 + 0.11 / sn) * d
    if z < 1.18:  # the series in exp(-pi^2 / 8 z^2) converges fast for small z
        y = math.exp(-(math.pi**2) / (8.0 * z * z))
        cdf = math.sqrt(2.0 * math.pi) / z * (y + y**9 + y**25 + y**49)
        return float(min(1.0, max(0.0, 1.0 - cdf)))
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k * k * z * z)
    return float(min(1.0, max(0.0, terms.sum())))


def ks_2samp_weighted(
    x1: np.ndarray, x2: np.ndarray, w1: np.ndarray | None = None, w2: np.ndarray | None = None
) -> tuple[float, float]:
    """Weighted two-sample KS test: ``(D, p)``, D = max |F1 - F2| of the weighted ECDFs.

    The p-value uses the effective sizes (Kish) of both samples in :func:`ks_pvalue`.
    Shapes ``(n1,)`` and ``(n2,)``; weights None mean 1.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    w1 = np.ones(len(x1)) if w1 is None else np.asarray(w1, dtype=np.float64)
    w2 = np.ones(len(x2)) if w2 is None else np.asarray(w2, dtype=np.float64)
    # one sort of the pooled values; both ECDFs are running sums along it, read at the last
    # entry of each group of equal values (so ties are counted whole)
    pooled = np.concatenate([x1, x2])
    order = np.argsort(pooled)
    first = order < len(x1)
    w = np.concatenate([w1, w2])[order]
    c1 = np.cumsum(np.where(first, w, 0.0))
    c2 = np.cumsum(np.where(first, 0.0, w))
    xs = pooled[order]
    last = np.append(xs[1:] != xs[:-1], True)
    d = float(np.max(np.abs(c1[last] / c1[-1] - c2[last] / c2[-1])))
    n1, n2 = effective_size(w1), effective_size(w2)
    n_eff = n1 * n2 / (n1 + n2) if n1 + n2 > 0 else 0.0
    return d, ks_pvalue(d, n_eff)


def histogram(
    x: np.ndarray, edges: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted histogram with under- and overflow: ``(sum w, sum w^2)``, ``(len(edges)+1,)``.

    Bin 0 holds ``x < edges[0]``, bin ``len(edges)`` holds ``x >= edges[-1]``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    idx = np.searchsorted(edges, x, side="right")
    n = len(edges) + 1
    return np.bincount(idx, weights=w, minlength=n), np.bincount(idx, weights=w * w, minlength=n)


def js_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two histograms of equal binning.

    The histograms are normalised to unit sum; negative bin contents are clipped to 0.
    """
    p = np.clip(np.asarray(h1, dtype=np.float64), 0, None)
    q = np.clip(np.asarray(h2, dtype=np.float64), 0, None)
    if not (p.sum() > 0 and q.sum() > 0):
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def chi2_ndf(
    h1: tuple[np.ndarray, np.ndarray], h2: tuple[np.ndarray, np.ndarray]
) -> tuple[float, int]:
    """Shape chi2 and its ndf between two weighted histograms ``(sum w, sum w^2)``.

    Both are normalised to unit sum; chi2 = sum (p1 - p2)^2 / (s1/W1^2 + s2/W2^2) over bins
    with a non-zero error, ndf = that number of bins - 1 (the normalisation).
    """
    (a, a2), (b, b2) = h1, h2
    wa, wb = float(a.sum()), float(b.sum())
    var = a2 / wa**2 + b2 / wb**2
    used = var > 0
    chi2 = float(np.sum((a[used] / wa - b[used] / wb) ** 2 / var[used]))
    return chi2, int(used.sum()) - 1


def correlation_matrix(columns: Sequence[np.ndarray], weights: np.ndarray | None) -> np.ndarray:
    """Weighted Pearson correlation matrix of ``k`` columns of shape ``(n,)``: ``(k, k)``.

    A constant column is taken as uncorrelated with every other (0 off the diagonal).
    """
    x = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (w @ x) / w.sum()
    xc = x - mean
    cov = (xc * w[:, None]).T @ xc / w.sum()
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    ok = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    denom = np.outer(np.where(ok, sd, 1.0), np.where(ok, sd, 1.0))
    corr = np.where(np.outer(ok, ok), cov / denom, 0.0)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


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


# =========================================================================== core
def _observed(var: str, which: str, obj: Any, allow_negative: bool) -> Observed:
    if isinstance(obj, Observed | tuple):
        if len(obj) != 2:
            raise InputError(f"variable '{var}' ({which}): expected (values, weights)")
        values, weights = obj
    else:
        values, weights = obj, None
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"variable '{var}' ({which}): values must have shape (n,), got {x.shape}")
    if x.size == 0:
        raise InputError(f"variable '{var}' ({which}): the sample is empty")
    if not np.all(np.isfinite(x)):
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise InputError(f"variable '{var}' ({which}): non-finite value {x[i]} at index {i}")
    if weights is None:
        return Observed(x, np.ones(len(x)))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != x.shape:
        raise InputError(
            f"variable '{var}' ({which}): weights have shape {w.shape}, values {x.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise InputError(f"variable '{var}' ({which}): non-finite weights")
    if not allow_negative and np.any(w < 0):
        i = int(np.flatnonzero(w < 0)[0])
        raise InputError(
            f"variable '{var}' ({which}): negative weight {w[i]} at index {i} "
            "(set GateConfig.allow_negative_weights=True to accept them)"
        )
    if not w.sum() > 0:
        raise InputError(f"variable '{var}' ({which}): the weights sum to {w.sum()}, not > 0")
    return Observed(x, w)


def _variable_stats(var: str, a: Observed, b: Observed, edges: np.ndarray) -> VariableStats:
    assert a.weights is not None and b.weights is not None
    d, p = ks_2samp_weighted(a.values, b.values, a.weights, b.weights)
    ha, hb = histogram(a.values, edges, a.weights), histogram(b.values, edges, b.weights)
    chi2, ndf = chi2_ndf(ha, hb)
    return VariableStats(
        variable=var,
        n_nominal=len(a.values),
        n_perturbed=len(b.values),
        n_eff_nominal=effective_size(a.weights),
        n_eff_perturbed=effective_size(b.weights),
        mean_nominal=float(np.average(a.values, weights=a.weights)),
        mean_perturbed=float(np.average(b.values, weights=b.weights)),
        ks=d,
        ks_p=p,
        jsd=js_distance(ha[0], hb[0]),
        chi2=chi2,
        ndf=ndf,
        n_bins=len(edges) + 1,
    )


def _check_config_names(config: GateConfig, present: Sequence[str]) -> None:
    known = set(present) | set(CONTROL_VARIABLES)
    for option, names in (
        ("overrides", list(config.overrides)),
        ("bins", list(config.bins)),
    ):
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(
                f"GateConfig.{option}: unknown variable(s) {bad} (variables: {list(present)})"
            )
    for option, names in (
        ("variables", config.variables or ()),
        ("correlation_variables", config.correlation_variables or ()),
    ):
        bad = [n for n in names if n not in present]
        if bad:
            raise ConfigError(
                f"GateConfig.{option}: unknown variable(s) {bad} (variables: {list(present)})"
            )


def compare(
    nominal: NamedArrays, perturbed: NamedArrays, config: GateConfig | None = None
) -> GateReport:
    """Run the gate on named arrays ``{name: (values, weights)}`` (or ``{name: values}``).

    Both mappings must hold the same variable names; values have shape ``(n,)`` per
    variable (sizes may differ between variables and between the samples). The correlation
    variables must share one length within each sample (they describe the same jets).
    """
    config = config or GateConfig()
    names = list(nominal)
    missing = [n for n in names if n not in perturbed] + [n for n in perturbed if n not in nominal]
    if missing:
        raise InputError(
            f"variable(s) {missing} present in only one of the nominal and perturbed samples"
        )
    if not names:
        raise InputError("no variables to compare")
    _check_config_names(config, names)
    selected = list(config.variables) if config.variables is not None else names
    neg = config.allow_negative_weights
    nom = {n: _observed(n, "nominal", nominal[n], neg) for n in selected}
    per = {n: _observed(n, "perturbed", perturbed[n], neg) for n in selected}

    checks: list[Check] = []
    stats: list[VariableStats] = []
    for var in selected:  # a loop over variables, not jets
        edges = config.edges_for(var, nom[var].values)
        st = _variable_stats(var, nom[var], per[var], edges)
        lim = config.limits_for(var)
        stats.append(st)
        checks += [
            _check(var, "ks", st.ks, lim.ks_max, "max"),
            _check(var, "ks_p", st.ks_p, lim.ks_p_min, "min"),
            _check(var, "jsd", st.jsd, lim.jsd_max, "max"),
            _check(var, "chi2_ndf", st.chi2_ndf, lim.chi2_ndf_max, "max"),
        ]

    if config.correlation_variables is None:
        cvars = [v for v in JET_VARIABLES if v in names]
    else:
        cvars = list(config.correlation_variables)
    corr_n: np.ndarray = np.zeros((0, 0))
    corr_p: np.ndarray = np.zeros((0, 0))
    if len(cvars) >= 2:
        for v in cvars:  # correlation variables outside GateConfig.variables
            if v not in nom:
                nom[v] = _observed(v, "nominal", nominal[v], neg)
                per[v] = _observed(v, "perturbed", perturbed[v], neg)
        corr_n = _correlation(cvars, nom, "nominal")
        corr_p = _correlation(cvars, per, "perturbed")
        frob = float(np.linalg.norm(corr_p - corr_n))
        checks.append(
            _check("correlation", "corr_frobenius", frob, config.corr_frobenius_max, "max")
        )
    else:
        cvars = []
    passed = all(c.passed is not False for c in checks)
    return GateReport(
        passed=passed,
        checks=tuple(checks),
        variables=tuple(stats),
        correlation_variables=tuple(cvars),
        corr_nominal=tuple(tuple(float(x) for x in r) for r in corr_n),
        corr_perturbed=tuple(tuple(float(x) for x in r) for r in corr_p),
        config=config.to_dict(),
    )


def _correlation(cvars: list[str], obs: Mapping[str, Observed], which: str) -> np.ndarray:
    n = {v: len(obs[v].values) for v in cvars}
    if len(set(n.values())) != 1:
        raise InputError(
            f"correlation variables must describe the same jets, but the {which} sample has "
            f"lengths {n}"
        )
    w0 = obs[cvars[0]].weights
    for v in cvars[1:]:
        if not np.array_equal(obs[v].weights, w0):
            raise InputError(
                f"correlation variables '{cvars[0]}' and '{v}' have different weights in the "
                f"{which} sample; they must describe the same weighted jets"
            )
    return correlation_matrix([obs[v].values for v in cvars], w0)


# =========================================================================== from jets
ConstituentFeatures = Callable[[JetBatch], Mapping[str, np.ndarray]]


def _kept(jets: JetBatch) -> np.ndarray | None:
    """Flat boolean mask of kept constituents, or None when ``parts`` has no ``mask`` field."""
    if "mask" not in jets.parts.fields:
        return None
    return jets.flat("mask").astype(bool)


def default_constituent_features(jets: JetBatch) -> dict[str, np.ndarray]:
    """Constituent marginals, flat over kept constituents, shape ``(n_kept,)`` each.

    ``part_pt`` [GeV], ``part_deta`` = eta - jet eta, ``part_dphi`` = phi - jet phi wrapped
    to (-pi, pi] [rad], ``part_energy`` [GeV]. Constituents whose ``mask`` is False are
    left out.
    """
    counts = jets.n_parts
    jet_eta = np.repeat(np.asarray(jets.eta, dtype=np.float64), counts)
    jet_phi = np.repeat(np.asarray(jets.phi, dtype=np.float64), counts)
    dphi = np.asarray(jets.flat("phi"), dtype=np.float64) - jet_phi
    dphi = np.where(dphi > np.pi, dphi - 2 * np.pi, dphi)
    dphi = np.where(dphi <= -np.pi, dphi + 2 * np.pi, dphi)
    out = {
        "part_pt": jets.flat("pt").astype(np.float64),
        "part_deta": jets.flat("eta").astype(np.float64) - jet_eta,
        "part_dphi": dphi,
        "part_energy": jets.flat("energy").astype(np.float64),
    }
    keep = _kept(jets)
    return out if keep is None else {k: v[keep] for k, v in out.items()}


def control_variables(
    jets: JetBatch,
    scores: np.ndarray | None = None,
    constituent_features: ConstituentFeatures | None = None,
) -> dict[str, Observed]:
    """The gate's variables of a batch: ``{name: Observed(values, weights)}``.

    Jet level (one entry per jet, weighted by ``jets.weight``): ``jet_pt``, ``jet_mass``,
    ``jet_eta``, ``n_constituents`` (kept constituents only). Constituent marginals from
    ``constituent_features`` (default :func:`default_constituent_features`; a callable
    ``jets -> {name: flat values over kept constituents}``), each constituent weighted by
    its jet's weight. ``score``: the tagger score per jet, shape ``(n_jets,)``, if given.

    Any feature set can be plugged in through ``constituent_features``; e.g. with the
    padded features of :mod:`hepsafe.tagger.features` (constituents in jet order, as required)::

        def named(jets, names=("log_pt", "deta", "dphi")):
            p = features.padded_constituents(jets, n_max=max(1, int(jets.n_parts.max())))
            x = features.constituent_features(np, names, **p)
            return {f"part_{n}": x[..., i][p["mask"]] for i, n in enumerate(names)}

        validate.gate(nominal, perturbed, constituent_features=named)
    """
    w = np.asarray(jets.weight, dtype=np.float64)
    keep = _kept(jets)
    if keep is None:
        n_const = jets.n_parts
    else:
        n_const = ak.to_numpy(ak.sum(jets.parts["mask"], axis=1)).astype(np.int64)
    out = {
        "jet_pt": Observed(np.asarray(jets.pt, dtype=np.float64), w),
        "jet_mass": Observed(np.asarray(jets.mass, dtype=np.float64), w),
        "jet_eta": Observed(np.asarray(jets.eta, dtype=np.float64), w),
        "n_constituents": Observed(n_const.astype(np.float64), w),
    }
    feats = (constituent_features or default_constituent_features)(jets)
    w_const = np.repeat(w, jets.n_parts)
    if keep is not None:
        w_const = w_const[keep]
    for name, values in feats.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape != w_const.shape:
            raise InputError(
                f"constituent feature '{name}' has shape {v.shape}, expected {w_const.shape} "
                "(one value per kept constituent)"
            )
        out[name] = Observed(v, w_const)
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(jets),):
            raise InputError(f"scores have shape {s.shape}, expected ({len(jets)},) (one per jet)")
        out["score"] = Observed(s, w)
    return out


def _select(
    select: np.ndarray | tuple[np.ndarray, np.ndarray] | None, n_nom: int, n_per: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if select is None:
        return None, None
    if isinstance(select, tuple):
        if len(select) != 2:
            raise ConfigError("'select' must be a mask or a pair (nominal mask, perturbed mask)")
        masks = select
    else:
        if n_nom != n_per:
            raise ConfigError(
                f"'select' is one mask but the samples differ in size ({n_nom} vs {n_per} jets);"
                " pass a pair (nominal mask, perturbed mask)"
            )
        masks = (select, select)
    out = []
    for m, n, which in zip(masks, (n_nom, n_per), ("nominal", "perturbed"), strict=True):
        a = np.asarray(m)
        if a.dtype != bool or a.shape != (n,):
            raise ConfigError(
                f"'select' ({which}) must be a boolean mask of shape ({n},), got "
                f"{a.dtype} {a.shape}"
            )
        if not a.any():
            raise InputError(f"'select' ({which}) keeps no jets: the control sample is empty")
        out.append(a)
    return out[0], out[1]


def gate(
    nominal_jets: JetBatch,
    perturbed_jets: JetBatch,
    nominal_scores: np.ndarray | None = None,
    perturbed_scores: np.ndarray | None = None,
    config: GateConfig | None = None,
    select: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    constituent_features: ConstituentFeatures | None = None,
) -> GateReport:
    """Control-region gate between two batches (e.g. QCD jets before and after a change).

    ``nominal_scores``/``perturbed_scores`` are the tagger scores per jet, shape
    ``(n_jets,)``, of each batch (both or neither). ``select`` picks the control sample: a
    boolean mask over jets applied to both batches (same size), or a pair of masks.
    """
    if (nominal_scores is None) != (perturbed_scores is None):
        raise ConfigError("give both 'nominal_scores' and 'perturbed_scores', or neither")
    if len(nominal_jets) == 0 or len(perturbed_jets) == 0:
        which = "nominal_jets" if len(nominal_jets) == 0 else "perturbed_jets"
        raise InputError(f"'{which}' is empty: the gate needs jets")
    for name, s, jets in (
        ("nominal_scores", nominal_scores, nominal_jets),
        ("perturbed_scores", perturbed_scores, perturbed_jets),
    ):
        if s is not None and np.shape(s) != (len(jets),):
            raise InputError(f"'{name}' has shape {np.shape(s)}, expected ({len(jets)},)")
    m_nom, m_per = _select(select, len(nominal_jets), len(perturbed_jets))
    if m_nom is not None and m_per is not None:
        nominal_jets, perturbed_jets = nominal_jets[m_nom], perturbed_jets[m_per]
        if nominal_scores is not None and perturbed_scores is not None:
            nominal_scores = np.asarray(nominal_scores)[m_nom]
            perturbed_scores = np.asarray(perturbed_scores)[m_per]
    nom = control_variables(nominal_jets, nominal_scores, constituent_features)
    per = control_variables(perturbed_jets, perturbed_scores, constituent_features)
    return compare(nom, per, config)
