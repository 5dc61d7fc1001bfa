"""The gate's configuration: variables, default binning, per-variable :class:`Limits` and
:class:`GateConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from hepsafe.exceptions import ConfigError

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
