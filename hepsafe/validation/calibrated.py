"""The calibrated control-region gate: limits from the sizes of the control region and of the
simulation, one combined verdict at a stated false-alarm rate.

The question: would a control-region data set of ``N_data`` events, distributed as the
perturbed sample, be seen to disagree with the simulation (the nominal sample, ``N_sim``
effective events) at confidence ``1 - alpha``? For a *paired* perturbed sample (the nominal
jets changed one by one, as the pipeline makes them) the difference between the two samples
is the shift itself, free of their noise: it is taken as what the median data set would
show (for KS, the CDF shift; for the binned likelihood ratio, the Asimov data set
``n = N_data p_perturbed``), and its significance follows from ``N_data`` and ``N_sim``.
For *independent* samples the usual two-sample tests at the samples' own effective sizes.

Evaluating each test on the expected (Asimov) data rather than at the median of its
distribution under the shift is conservative for the analysis: a real data set fluctuates
away from the simulation as well, so the median KS distance or likelihood ratio is somewhat
larger than the Asimov one, and a variation the gate calls hidden (kept in the fit as an
uncertainty) may in fact be just visible; one it calls visible is.

Tests (:mod:`hepsafe.validation.significance`):

- ``<variable>:ks`` for each of ``GateConfig.tested_variables`` present (default: jet pT,
  mass, eta, number of constituents, the score): KS, critical value
  ``c(a) sqrt(1/N_data + 1/N_sim)``;
- ``score:eff_z``: the background efficiency above the working point (``threshold``), the
  part of the score the analysis uses and KS hardly sees (two-proportion z-test);
- ``score:lr``: the binned Poisson likelihood ratio on ``score_bins`` equal-probability bins
  of the nominal score, the simulation's statistical uncertainty profiled per bin
  (Barlow-Beeston lite);
- ``correlation:corr_chi2``: the change of the Fisher-transformed correlations of the jet
  variables, whose allowed size scales as ``sqrt(1/N_data + 1/N_sim)`` like every other.

The combined gate fails when any p-value is below the per-test level ``a``. ``a`` is
calibrated so that the combined false-alarm rate is ``alpha``: on ``calibration_halves``
random splits of the nominal sample (at most :data:`CALIBRATION_JETS` of its jets) into two
halves (one taken as data, one as simulation,
the tests in independent mode) ``a`` is the ``alpha``-quantile of the smallest p-value.
The tests are close to independent on the shipped sample (the score's KS and likelihood
ratio correlate at about 0.4), so ``a`` lands near Sidak's ``1 - (1 - alpha)^(1/tests)``,
also available as ``local_alpha="sidak"``. The calibration assumes the dependence between
the tests does not change with the sample sizes; :func:`false_alarm_rate` checks the
result on fresh halves.

Per test and combined, the smallest ``N_data`` at which the verdict flips (the p-values
fall with ``N_data``; found on a grid then by bisection), None ("never") when the
simulation's own size keeps the shift hidden, then also with the simulation taken as exact.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hepsafe.exceptions import ConfigError, InputError
from hepsafe.validation import pairs
from hepsafe.validation import significance as sig
from hepsafe.validation.config import GateConfig
from hepsafe.validation.report import AtSize, Calibration, Check, Visibility
from hepsafe.validation.twosample import Observed

#: the largest control-region size the flip search considers (events)
MAX_EVENTS = 1e12
#: the per-test level is calibrated on halves of at most this many nominal jets (a random
#: subset of a larger sample): it reflects how the tests depend on each other, not the size
CALIBRATION_JETS = 4000
_Z_CAP = 50.0


@dataclass(frozen=True)
class Pooled:
    """The tests' inputs over one pooled set of ``n`` jets (values of both samples side by
    side, or of the nominal sample alone for its halves).

    ``ks``: variable -> values ``(n,)``; ``above``: score above the working point, bool
    ``(n,)`` (None: no efficiency test); ``bin_index``: each jet's score bin ``(n,)`` among
    ``bins`` (None: no likelihood ratio); ``corr``: the correlation variables ``(n, k)``
    (None: no correlation test) and ``unit_var`` their ``n var(atanh r)`` per pair ``(m,)``.
    """

    ks: Mapping[str, np.ndarray]
    above: np.ndarray | None
    bin_index: np.ndarray | None
    bins: int
    corr: np.ndarray | None
    unit_var: np.ndarray | None

    @property
    def names(self) -> list[str]:
        """The tests, ``variable:statistic``, in report order."""
        out = [f"{v}:ks" for v in self.ks]
        out += ["score:eff_z"] if self.above is not None else []
        out += ["score:lr"] if self.bin_index is not None else []
        out += ["correlation:corr_chi2"] if self.corr is not None else []
        return out


class Measured(NamedTuple):
    """The statistics of K comparisons (rows), before any size enters."""

    ks: dict[str, np.ndarray]  # D, (K,)
    eff: tuple[np.ndarray, np.ndarray] | None  # (eps_data, eps_sim), (K,) each
    binned: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # p_data, p_sim, rel_var_sim
    dz: np.ndarray | None  # (K, m)
    n_data: np.ndarray  # Kish sizes of the rows, (K,)
    n_sim: np.ndarray


def measure(pooled: Pooled, w_data: np.ndarray, w_sim: np.ndarray) -> Measured:
    """The statistics between the rows of ``w_data`` and ``w_sim`` ``(K, n)`` (weights of the
    data and simulation samples over the pooled jets)."""
    ks = {v: pairs.ks_distance(x, w_data, w_sim) for v, x in pooled.ks.items()}
    eff = None
    if pooled.above is not None:
        eff = (pairs.fraction(pooled.above, w_data), pairs.fraction(pooled.above, w_sim))
    binned = None
    if pooled.bin_index is not None:
        p_d, _ = pairs.binned(pooled.bin_index, pooled.bins, w_data)
        p_s, rel = pairs.binned(pooled.bin_index, pooled.bins, w_sim)
        binned = (p_d, p_s, rel)
    dz = None
    if pooled.corr is not None:
        dz = pairs.fisher_z(pooled.corr, w_data) - pairs.fisher_z(pooled.corr, w_sim)
    return Measured(ks, eff, binned, dz, pairs.kish(w_data), pairs.kish(w_sim))


def pvalues(m: Measured, pooled: Pooled, n_data: np.ndarray | float,
            n_sim: np.ndarray | float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{test: (value, p)}`` of measured statistics at sizes ``n_data``, ``n_sim`` (arrays
    broadcasting against the K rows; ``n_sim`` inf: exact simulation)."""
    nd = np.asarray(n_data, dtype=np.float64)
    ns = np.asarray(n_sim, dtype=np.float64)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for v, d in m.ks.items():
        d_b = np.broadcast_to(d, np.broadcast_shapes(d.shape, nd.shape, ns.shape))
        out[f"{v}:ks"] = (d_b, sig.ks_pvalue_sizes(d, nd, ns))
    if m.eff is not None:
        z = np.abs(sig.efficiency_z(m.eff[0], m.eff[1], nd, ns))
        out["score:eff_z"] = (z, sig.two_sided_p(z))
    if m.binned is not None:
        p_d, p_s, rel = m.binned
        # the simulation's relative variance at its own Kish size, rescaled to n_sim
        scale = np.where(np.isinf(ns), 0.0, m.n_sim / np.where(np.isinf(ns), 1.0, ns))
        q = sig.poisson_lr(p_d, p_s, rel * np.asarray(scale)[..., None], nd)
        out["score:lr"] = (q, sig.chi2_pvalue(q, pooled.bins - 1))
    if m.dz is not None and pooled.unit_var is not None:
        c2 = sig.correlation_chi2(m.dz, pooled.unit_var, nd, ns)
        out["correlation:corr_chi2"] = (c2, sig.chi2_pvalue(c2, m.dz.shape[-1]))
    return out


def limit(test: str, pooled: Pooled, alpha: float, n_data: float, n_sim: float) -> float:
    """The value at which ``test`` fails at level ``alpha`` for the sizes given."""
    if test.endswith(":ks"):
        return float(sig.ks_critical_value(alpha, n_data, n_sim))
    if test == "score:eff_z":
        return sig.z_critical(alpha)
    if test == "score:lr":
        return sig.chi2_critical(alpha, pooled.bins - 1)
    assert pooled.unit_var is not None
    return sig.chi2_critical(alpha, len(pooled.unit_var))


# --------------------------------------------------------------------------- the inputs
class Plan(NamedTuple):
    """Which variables a comparison uses: ``selected`` (statistics reported), ``tested``
    (KS in the calibrated gate), ``score`` (the score tests run), ``correlation``."""

    selected: list[str]
    tested: list[str]
    score: bool
    correlation: list[str]


def plan(config: GateConfig, names: Sequence[str]) -> Plan:
    """The variables of a comparison of ``names`` under ``config``."""
    from hepsafe.validation.config import CALIBRATED_VARIABLES, JET_VARIABLES

    selected = list(config.variables) if config.variables is not None else list(names)
    if config.correlation_variables is None:
        cvars = [v for v in JET_VARIABLES if v in names]
    else:
        cvars = list(config.correlation_variables)
    if config.tested_variables is not None:
        tested = [v for v in config.tested_variables if v in selected]
    else:
        tested = [v for v in CALIBRATED_VARIABLES if v in selected] or selected
    return Plan(selected, tested, "score" in selected, cvars if len(cvars) >= 2 else [])


def pooled_inputs(nominal: Mapping[str, Observed], perturbed: Mapping[str, Observed] | None,
                  use: Plan, score_bins: int,
                  threshold: float | None) -> tuple[Pooled, np.ndarray, np.ndarray, int]:
    """The tests' inputs, the weights of the simulation (nominal) and data (perturbed)
    samples over the pooled jets ``(1, n)`` each, and the number of nominal jets (first in
    the pooled order). ``perturbed`` None: the nominal alone (for its halves; both weights
    are then the nominal's)."""
    jet_level = list(dict.fromkeys([*use.tested, *use.correlation,
                                    *(["score"] if use.score else [])]))
    if not jet_level:
        raise InputError("the calibrated gate has nothing to test: no tested variable "
                         "(GateConfig.tested_variables), score or correlation variables given")
    w_nom = _jet_weights(nominal, jet_level, "nominal")
    samples = [nominal] if perturbed is None else [nominal, perturbed]
    pooled_values = {v: np.concatenate([s[v].values for s in samples]) for v in jet_level}
    n_nom = len(w_nom)
    n = len(pooled_values[jet_level[0]])
    w_sim = np.zeros((1, n))
    w_sim[0, :n_nom] = w_nom
    w_data = w_sim.copy()
    if perturbed is not None:
        w_data = np.zeros((1, n))
        w_data[0, n_nom:] = _jet_weights(perturbed, jet_level, "perturbed")
    above = bin_index = None
    bins = 0
    if use.score:
        score = pooled_values["score"]
        if threshold is not None:
            above = score > threshold
        bin_index, bins = pairs.quantile_index(nominal["score"].values, w_nom, score_bins,
                                               score)
        if bins < 2:
            bin_index = None
    elif threshold is not None:
        raise InputError("'threshold' is given but there is no 'score' to apply it to")
    corr = unit_var = None
    if use.correlation:
        corr = np.stack([pooled_values[v] for v in use.correlation], axis=1)
        uv = sig.correlation_unit_variance(corr[:n_nom], w_nom)
        i, j = np.triu_indices(len(use.correlation), k=1)
        unit_var = uv[i, j]
    pooled = Pooled({v: pooled_values[v] for v in use.tested}, above, bin_index, bins, corr,
                    unit_var)
    return pooled, w_sim, w_data, n_nom


def _jet_weights(sample: Mapping[str, Observed], names: Sequence[str], which: str) -> np.ndarray:
    """The common per-jet weights of ``names`` (they must describe the same jets)."""
    first = sample[names[0]]
    w = np.asarray(first.weights, dtype=np.float64)
    for v in names[1:]:
        o = sample[v]
        same = len(o.values) == len(first.values) and np.array_equal(
            np.asarray(o.weights, dtype=np.float64), w)
        if not same:
            raise InputError(
                f"the calibrated gate's variables '{names[0]}' and '{v}' must describe the same "
                f"weighted jets in the {which} sample ({len(first.values)} vs {len(o.values)} "
                "entries); test only jet-level variables (GateConfig.tested_variables)")
    return w


# --------------------------------------------------------------------------- halves
def random_halves(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` random splits of ``n`` jets: 1 for the first half (``n // 2`` jets), 0 for the
    rest, shape ``(k, n)``."""
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((k, n)), axis=1)
    out = np.zeros((k, n))
    np.put_along_axis(out, ranks[:, : n // 2], 1.0, axis=1)
    return out


def null_pvalues(pooled: Pooled, weights: np.ndarray, n_halves: int, seed: int,
                 chunk: int = 200) -> np.ndarray:
    """p-values of every test on ``n_halves`` random halves of one sample (weights ``(n,)``),
    the first half as data, the second as simulation, independent mode: ``(n_halves, tests)``."""
    rows = []
    n = len(weights)
    rng = np.random.SeedSequence(seed)
    for start, child in zip(range(0, n_halves, chunk),
                            rng.spawn(math.ceil(n_halves / chunk)), strict=True):
        k = min(chunk, n_halves - start)
        half = random_halves(n, k, int(child.generate_state(1)[0]))
        m = measure(pooled, weights * half, weights * (1.0 - half))
        p = pvalues(m, pooled, m.n_data, m.n_sim)
        rows.append(np.stack([p[t][1] for t in pooled.names], axis=1))
    return np.concatenate(rows, axis=0)


_CACHE: dict[str, float] = {}


def local_alpha(pooled: Pooled, weights: np.ndarray, config: GateConfig) -> tuple[float, str]:
    """The per-test level of the combined verdict and how it was set (see the module)."""
    alpha, t = config.alpha, len(pooled.names)
    if isinstance(config.local_alpha, float | int):
        return float(config.local_alpha), "configured"
    if config.local_alpha == "sidak" or t == 1:
        return 1.0 - (1.0 - alpha) ** (1.0 / t), f"Sidak over {t} tests"
    key = _digest(pooled, weights, alpha, config.calibration_halves, config.calibration_seed)
    if key not in _CACHE:
        sub, w_sub = _subset(pooled, weights, CALIBRATION_JETS, config.calibration_seed)
        p = null_pvalues(sub, w_sub, config.calibration_halves, config.calibration_seed)
        _CACHE[key] = float(np.quantile(p.min(axis=1), alpha))
        if len(_CACHE) > 32:
            _CACHE.pop(next(iter(_CACHE)))
    return _CACHE[key], (f"calibrated on {config.calibration_halves} halves, "
                         f"seed {config.calibration_seed}")


def _subset(pooled: Pooled, weights: np.ndarray, n_max: int,
            seed: int) -> tuple[Pooled, np.ndarray]:
    """At most ``n_max`` of the jets, drawn at random (all of them, in order, when fewer)."""
    if len(weights) <= n_max:
        return pooled, weights
    keep = np.sort(np.random.default_rng(seed).choice(len(weights), n_max, replace=False))

    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[keep]

    return Pooled({v: x[keep] for v, x in pooled.ks.items()}, cut(pooled.above),
                  cut(pooled.bin_index), pooled.bins, cut(pooled.corr),
                  pooled.unit_var), weights[keep]


def _digest(pooled: Pooled, weights: np.ndarray, *extra: float) -> str:
    h = hashlib.sha1(repr((pooled.names, pooled.bins, extra)).encode())
    for a in (*pooled.ks.values(), pooled.above, pooled.bin_index, pooled.corr, weights):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class FalseAlarmRate(NamedTuple):
    """The combined gate's failures on random halves of the nominal sample.

    ``rate`` = ``failed / halves`` with its binomial standard error ``error``; ``alpha``
    the stated rate; ``local_alpha`` the per-test level used (set on other halves)."""

    rate: float
    error: float
    failed: int
    halves: int
    alpha: float
    local_alpha: float


def false_alarm_rate(nominal: Mapping[str, Observed], config: GateConfig | None = None,
                     threshold: float | None = None, halves: int = 1000,
                     seed: int = 1) -> FalseAlarmRate:
    """Run the combined gate in independent mode on ``halves`` random halves of the nominal
    control sample (``{name: Observed}``, e.g. :func:`control_variables` of the control
    jets and their scores) and count the failures.

    ``seed`` must differ from ``config.calibration_seed``: the halves that set the per-test
    level are not the ones that measure the rate.
    """
    config = config or GateConfig()
    if seed == config.calibration_seed:
        raise ConfigError(f"false_alarm_rate: 'seed' ({seed}) must differ from "
                          "GateConfig.calibration_seed: the rate is measured on other halves")
    if halves < 1:
        raise ConfigError(f"false_alarm_rate: 'halves' must be >= 1, got {halves}")
    _check_threshold(threshold)
    pooled, w, _, _ = pooled_inputs(nominal, None, plan(config, list(nominal)),
                                    config.score_bins, threshold)
    weights = w[0]
    a, _ = local_alpha(pooled, weights, config)
    p = null_pvalues(pooled, weights, halves, seed)
    failed = int(np.count_nonzero(p.min(axis=1) < a))
    rate = failed / halves
    return FalseAlarmRate(rate, math.sqrt(rate * (1 - rate) / halves), failed, halves,
                          config.alpha, a)


# --------------------------------------------------------------------------- visibility
def flip_events(p_at: Callable[[np.ndarray], np.ndarray], alpha: float) -> float | None:
    """The smallest integer size ``N`` with ``p_at(N) < alpha`` (``p_at`` falls with N), None
    when no size up to :data:`MAX_EVENTS` has it."""
    grid = np.unique(np.ceil(np.geomspace(1.0, MAX_EVENTS, 400)))
    fail = np.asarray(p_at(grid)) < alpha
    if not fail.any():
        return None
    i = int(np.argmax(fail))
    if i == 0:
        return float(grid[0])
    lo, hi = float(grid[i - 1]), float(grid[i])  # p(lo) >= alpha > p(hi)
    while hi - lo > 1:
        mid = math.floor((lo + hi) / 2)
        if float(np.asarray(p_at(np.array([mid])))[0]) < alpha:
            hi = mid
        else:
            lo = mid
    return hi


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and (isinstance(threshold, bool) or not math.isfinite(threshold)):
        raise ConfigError(f"'threshold' must be a finite score or None, got {threshold!r}")


def calibrated_checks(nominal: Mapping[str, Observed], perturbed: Mapping[str, Observed],
                      config: GateConfig, threshold: float | None,
                      use: Plan) -> tuple[list[Check], Calibration]:
    """The calibrated gate's checks (one per test) and its :class:`Calibration` record."""
    _check_threshold(threshold)
    pooled, w_sim, w_data, n_nom = pooled_inputs(nominal, perturbed, use, config.score_bins,
                                                 threshold)
    m = measure(pooled, w_data, w_sim)
    weights_nom = w_sim[0, :n_nom]
    a, how = local_alpha(_nominal_only(pooled, n_nom), weights_nom, config)
    if config.pairing == "paired":
        n_data = config.control_events or float(m.n_sim[0])
        n_sim = (float(m.n_sim[0]) if config.simulation_events is None
                 else float(config.simulation_events))
        sizes = sorted({*config.report_events, n_data})
    else:
        n_data, n_sim = float(m.n_data[0]), float(m.n_sim[0])
        sizes = []
    at_gate = pvalues(m, pooled, n_data, n_sim)
    tests: list[Visibility] = []
    checks: list[Check] = []
    for name in pooled.names:
        value, p = float(at_gate[name][0][0]), float(at_gate[name][1][0])
        lim = limit(name, pooled, a, n_data, n_sim)
        var, stat = name.split(":")
        checks.append(Check(var, stat, value, lim, "max", bool(p >= a)))
        tests.append(_visibility(name, m, pooled, a, n_data, n_sim, sizes, value, p, lim,
                                 config.pairing == "paired"))
    combined = _combined(tests, a, n_data, n_sim, sizes, config.pairing == "paired")
    eff = None if m.eff is None else (float(m.eff[1][0]), float(m.eff[0][0]))
    cal = Calibration(config.pairing, float(n_data), float(n_sim), config.alpha, a, how,
                      None if threshold is None else float(threshold), eff, tuple(tests),
                      combined)
    return checks, cal


def _nominal_only(pooled: Pooled, n_nom: int) -> Pooled:
    """The pooled inputs cut to the nominal jets (the first ``n_nom``)."""
    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[:n_nom]

    return Pooled({v: x[:n_nom] for v, x in pooled.ks.items()}, cut(pooled.above),
                  cut(pooled.bin_index), pooled.bins, cut(pooled.corr), pooled.unit_var)


def _z(p: float) -> float:
    return float(min(_Z_CAP, max(0.0, float(sig.significance(p)))))


def _visibility(name: str, m: Measured, pooled: Pooled, a: float, n_data: float, n_sim: float,
                sizes: Sequence[float], value: float, p: float, lim: float,
                paired: bool) -> Visibility:
    def p_at(n_sim_: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda grid: pvalues(m, pooled, grid, n_sim_)[name][1]

    def verdicts(n_sim_: float) -> tuple[AtSize, ...]:
        if not sizes:
            return ()
        ps = p_at(n_sim_)(np.asarray(sizes, dtype=np.float64))
        return tuple(AtSize(float(n), float(pn), limit(name, pooled, a, n, n_sim_),
                            bool(pn >= a)) for n, pn in zip(sizes, ps, strict=True))

    at = verdicts(n_sim)
    at_inf = at if math.isinf(n_sim) else verdicts(math.inf)
    flip = flip_inf = None
    if paired:
        flip = flip_events(p_at(n_sim), a)
        flip_inf = flip if math.isinf(n_sim) else flip_events(p_at(math.inf), a)
    return Visibility(name, value, p, _z(p), lim, bool(p >= a), flip, flip_inf, at, at_inf)


def _combined(tests: Sequence[Visibility], a: float, n_data: float, n_sim: float,
              sizes: Sequence[float], paired: bool) -> Visibility:
    p_min = min(t.p_value for t in tests)

    def verdicts(inf: bool) -> tuple[AtSize, ...]:
        rows = [t.at_infinite_sim if inf else t.at for t in tests]
        return tuple(AtSize(float(n), min(r[i].p_value for r in rows), a,
                            all(r[i].passed for r in rows)) for i, n in enumerate(sizes))

    def first(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return min(known) if known else None

    flip = first([t.flip_events for t in tests]) if paired else None
    flip_inf = first([t.flip_events_infinite_sim for t in tests]) if paired else None
    return Visibility("combined", p_min, p_min, _z(p_min), a, bool(p_min >= a), flip,
                      flip_inf, verdicts(False), verdicts(True))
