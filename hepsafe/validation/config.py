"""The gate's configuration: variables, default binning, per-variable :class:`Limits` and
:class:`GateConfig` (the calibrated gate's sizes and confidence, or the fixed limits)."""

from __future__ import annotations

import math
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

#: how the gate decides: size-aware tests at a stated false-alarm rate, or fixed limits
GATE_MODES = ("calibrated", "fixed")
#: how the perturbed sample relates to the nominal one (calibrated gate)
PAIRINGS = ("paired", "independent")
#: variables the calibrated gate tests with KS by default (jet level, one entry per jet)
CALIBRATED_VARIABLES = (*JET_VARIABLES, "score")
#: control-region sizes at which the calibrated gate's report gives every verdict
REPORT_EVENTS = (2000.0, 100000.0)


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
#: options of the fixed gate: setting one (without ``mode``) selects it
_FIXED_KEYS = ("defaults", "overrides", "corr_frobenius_max")


def _default_overrides() -> dict[str, dict[str, float | None]]:
    return {"score": {"ks_max": 0.02}}


@dataclass(frozen=True)
class GateConfig:
    """Limits and binning of the control-region gate.

    ``mode`` "calibrated" (the default): the gate asks whether a control-region data set of
    ``control_events`` events, distributed as the perturbed sample, would be seen to disagree
    with a simulation of ``simulation_events`` effective events at ``confidence``; every
    limit follows from those sizes (:mod:`hepsafe.validation.calibrated`). "fixed": the
    :class:`Limits` below, whatever the sizes. ``mode=None`` (what ``GateConfig()`` and a run
    configuration without ``mode`` give) means "fixed" when ``defaults``, ``overrides`` or
    ``corr_frobenius_max`` differ from their defaults, or (:meth:`from_dict`, a run
    configuration's ``gate:``) when any of them is given (a user who sets limits gets
    them), else "calibrated"; the resolved mode is stored.

    Calibrated gate:

    - ``pairing``: "paired" (the perturbed sample is the nominal one changed jet by jet:
      its difference to the nominal is the shift the data would show, without the samples'
      noise) or "independent" (two samples, each with its own noise; the sizes are then the
      samples' own effective sizes and ``control_events``/``simulation_events`` are unused).
    - ``control_events``: N_data, the size of the control-region data set (None: the
      nominal sample's effective size ``(sum w)^2 / sum w^2``).
    - ``simulation_events``: N_sim, the simulation's effective size (None: the nominal
      sample's; "infinite" or ``math.inf``: simulation taken as exact).
    - ``confidence``: 1 - alpha, the combined gate's false-alarm rate being alpha.
    - ``tested_variables``: variables tested with KS, one entry per jet (None: those of
      :data:`CALIBRATED_VARIABLES` present, the jet-level variables and the score; when
      none is, every variable compared). Constituent marginals are reported, not tested:
      the constituents of one jet are not independent events.
    - ``score_bins``: equal-probability bins of the nominal score for the likelihood ratio.
    - ``local_alpha``: the level of each test in the combined verdict (fail when any p-value
      is below it): None calibrates it on ``calibration_halves`` random halves of the
      nominal sample (seed ``calibration_seed``) so that the combined false-alarm rate is
      alpha; "sidak" takes ``1 - (1 - alpha)^(1/tests)``; a number in (0, 1) is used as is.
    - ``report_events``: control-region sizes at which the report gives every verdict
      (besides ``control_events``).

    Fixed gate:

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
    mode: str | None = None
    pairing: str = "paired"
    control_events: float | None = None
    simulation_events: float | str | None = None
    confidence: float = 0.95
    tested_variables: tuple[str, ...] | None = None
    score_bins: int = 20
    local_alpha: float | str | None = None
    calibration_halves: int = 1000
    calibration_seed: int = 0
    report_events: tuple[float, ...] = REPORT_EVENTS

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
        self._check_calibrated()

    def _check_calibrated(self) -> None:
        """Validate and normalise the calibrated gate's options (one-line errors)."""
        if self.mode is None:
            fixed = (self.defaults != Limits() or dict(self.overrides) != _default_overrides()
                     or self.corr_frobenius_max != 0.02)
            object.__setattr__(self, "mode", "fixed" if fixed else "calibrated")
        if self.mode not in GATE_MODES:
            raise ConfigError(f"GateConfig.mode must be one of {list(GATE_MODES)}, "
                              f"got {self.mode!r}")
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"GateConfig.pairing must be one of {list(PAIRINGS)}, "
                              f"got {self.pairing!r}")
        if self.control_events is not None:
            object.__setattr__(self, "control_events",
                               _positive("control_events", self.control_events))
        sim = self.simulation_events
        if sim is not None:
            if isinstance(sim, str):
                if sim not in ("infinite", "inf"):
                    raise ConfigError("GateConfig.simulation_events must be a number > 0, "
                                      f"'infinite' or None, got {sim!r}")
                sim = math.inf
            object.__setattr__(self, "simulation_events",
                               _positive("simulation_events", sim, allow_inf=True))
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.0 < c < 1.0:
            raise ConfigError(f"GateConfig.confidence must be in (0, 1), got {c!r}")
        if isinstance(self.tested_variables, str):
            raise ConfigError("GateConfig.tested_variables must be a sequence of names, not a str")
        if self.tested_variables is not None:
            object.__setattr__(self, "tested_variables", tuple(self.tested_variables))
        for name, low in (("score_bins", 2), ("calibration_halves", 20),
                          ("calibration_seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
                raise ConfigError(f"GateConfig.{name} must be an int >= {low}, got {v!r}")
        a = self.local_alpha
        if a is not None and a != "sidak" and (
            isinstance(a, bool) or not isinstance(a, int | float) or not 0.0 < a < 1.0
        ):
            raise ConfigError(f"GateConfig.local_alpha must be None, 'sidak' or in (0, 1), "
                              f"got {a!r}")
        if isinstance(self.report_events, int | float | str):
            raise ConfigError("GateConfig.report_events must be a sequence of sizes")
        object.__setattr__(self, "report_events", tuple(
            _positive("report_events", v) for v in self.report_events))

    @property
    def alpha(self) -> float:
        """The combined gate's false-alarm rate, ``1 - confidence``."""
        return round(1.0 - float(self.confidence), 12)

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
            "mode": self.mode,
            "pairing": self.pairing,
            "control_events": self.control_events,
            "simulation_events": (
                "infinite" if self.simulation_events == math.inf else self.simulation_events
            ),
            "confidence": self.confidence,
            "tested_variables": (
                None if self.tested_variables is None else list(self.tested_variables)
            ),
            "score_bins": self.score_bins,
            "local_alpha": self.local_alpha,
            "calibration_halves": self.calibration_halves,
            "calibration_seed": self.calibration_seed,
            "report_events": list(self.report_events),
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
        if "mode" not in kw and any(k in kw for k in _FIXED_KEYS):
            kw["mode"] = "fixed"  # limits written in a file are the ones wanted
        return cls(**kw)


def _positive(key: str, value: Any, allow_inf: bool = False) -> float:
    """``value`` as a float > 0 (finite unless ``allow_inf``), or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"GateConfig.{key} must be a number > 0, got {value!r}")
    v = float(value)
    if not v > 0 or math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ConfigError(f"GateConfig.{key} must be a {'' if allow_inf else 'finite '}number "
                          f"> 0, got {value!r}")
    return v


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
