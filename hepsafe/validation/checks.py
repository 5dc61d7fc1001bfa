"""Control-region gate: would a standard validation notice the difference between two samples?

The gate compares a nominal and a perturbed sample (usually the background/control region,
e.g. QCD jets) variable by variable and returns a :class:`GateReport` with pass/fail per
check and an overall verdict. Per variable: the weighted two-sample Kolmogorov-Smirnov
statistic and its p-value, the Jensen-Shannon distance (base 2) and chi2/ndf on fixed
binning; across the jet-level variables: the Frobenius norm of the change of their Pearson
correlation matrix. Limits live in :class:`GateConfig`: by default (``mode`` "calibrated")
they follow from the sizes of the control region and of the simulation at a stated
confidence, and a combined verdict adds the background efficiency at the working point and a
binned likelihood ratio on the score (:mod:`hepsafe.validation.calibrated`); ``mode`` "fixed"
gates on fixed :class:`Limits`.

The core works on named arrays, ``{name: (values, weights)}``, see :func:`compare`;
:func:`control_variables` builds them from a :class:`~hepsafe.data.jets.JetBatch` and
:func:`gate` does both. Note the statistics treat the two samples as independent; when the
perturbed sample is the nominal one modified jet by jet, p-values and chi2 are conservative
(the calibrated gate's "paired" mode instead takes their difference as the shift itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.validation.calibrated import calibrated_checks, plan
from hepsafe.validation.config import CONTROL_VARIABLES, GateConfig
from hepsafe.validation.report import Check, GateReport, VariableStats, _check
from hepsafe.validation.twosample import (
    NamedArrays,
    Observed,
    chi2_ndf,
    correlation_matrix,
    effective_size,
    histogram,
    js_distance,
    ks_2samp_weighted,
)
from hepsafe.validation.variables import ConstituentFeatures, _select, control_variables


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
    names: Sequence[str]
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
    nominal: NamedArrays, perturbed: NamedArrays, config: GateConfig | None = None,
    threshold: float | None = None,
) -> GateReport:
    """Run the gate on named arrays ``{name: (values, weights)}`` (or ``{name: values}``).

    Both mappings must hold the same variable names; values have shape ``(n,)`` per
    variable (sizes may differ between variables and between the samples). The correlation
    variables must share one length within each sample (they describe the same jets), as
    must the calibrated gate's tested variables and ``score``. ``threshold``: the working
    point on ``score`` (the calibrated gate then tests the efficiency above it; the fixed
    gate does not use it).
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

    use = plan(config, names)
    calibrated = config.mode == "calibrated"
    checks: list[Check] = []
    stats: list[VariableStats] = []
    for var in selected:  # a loop over variables, not jets
        edges = config.edges_for(var, nom[var].values)
        st = _variable_stats(var, nom[var], per[var], edges)
        stats.append(st)
        if calibrated:  # KS of the tested variables comes from the size-aware tests below
            checks += [
                *([] if var in use.tested else [_check(var, "ks", st.ks, None, "max")]),
                _check(var, "jsd", st.jsd, None, "max"),
                _check(var, "chi2_ndf", st.chi2_ndf, None, "max"),
            ]
            continue
        lim = config.limits_for(var)
        checks += [
            _check(var, "ks", st.ks, lim.ks_max, "max"),
            _check(var, "ks_p", st.ks_p, lim.ks_p_min, "min"),
            _check(var, "jsd", st.jsd, lim.jsd_max, "max"),
            _check(var, "chi2_ndf", st.chi2_ndf, lim.chi2_ndf_max, "max"),
        ]

    cvars = use.correlation
    corr_n: np.ndarray = np.zeros((0, 0))
    corr_p: np.ndarray = np.zeros((0, 0))
    for v in [*cvars, *use.tested]:  # variables outside GateConfig.variables
        if v not in nom:
            nom[v] = _observed(v, "nominal", nominal[v], neg)
            per[v] = _observed(v, "perturbed", perturbed[v], neg)
    if cvars:
        corr_n = _correlation(cvars, nom, "nominal")
        corr_p = _correlation(cvars, per, "perturbed")
        frob = float(np.linalg.norm(corr_p - corr_n))
        limit = None if calibrated else config.corr_frobenius_max
        checks.append(_check("correlation", "corr_frobenius", frob, limit, "max"))
    calibration = None
    if calibrated:
        extra, calibration = calibrated_checks(nom, per, config, threshold, use)
        checks = _in_report_order(checks, extra)
    passed = all(c.passed is not False for c in checks)
    return GateReport(
        passed=passed,
        checks=tuple(checks),
        variables=tuple(stats),
        correlation_variables=tuple(cvars),
        corr_nominal=tuple(tuple(float(x) for x in r) for r in corr_n),
        corr_perturbed=tuple(tuple(float(x) for x in r) for r in corr_p),
        config=config.to_dict(),
        calibration=calibration,
    )


def _in_report_order(info: list[Check], tests: list[Check]) -> list[Check]:
    """Each variable's size-aware tests before its reported statistics, variables in order."""
    order = list(dict.fromkeys([c.variable for c in info] + [c.variable for c in tests]))
    return [c for v in order for c in (*[t for t in tests if t.variable == v],
                                       *[i for i in info if i.variable == v])]


def _same_weights(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """True when both weights are None (all 1) or equal arrays."""
    if a is None or b is None:
        return a is b
    return np.array_equal(a, b)


def _correlation(cvars: list[str], obs: Mapping[str, Observed], which: str) -> np.ndarray:
    n = {v: len(obs[v].values) for v in cvars}
    if len(set(n.values())) != 1:
        raise InputError(
            f"correlation variables must describe the same jets, but the {which} sample has "
            f"lengths {n}"
        )
    w0 = obs[cvars[0]].weights
    for v in cvars[1:]:
        if not _same_weights(obs[v].weights, w0):
            raise InputError(
                f"correlation variables '{cvars[0]}' and '{v}' have different weights in the "
                f"{which} sample; they must describe the same weighted jets"
            )
    return correlation_matrix([obs[v].values for v in cvars], w0)



def gate(
    nominal_jets: JetBatch,
    perturbed_jets: JetBatch,
    nominal_scores: np.ndarray | None = None,
    perturbed_scores: np.ndarray | None = None,
    config: GateConfig | None = None,
    select: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    constituent_features: ConstituentFeatures | None = None,
    threshold: float | None = None,
) -> GateReport:
    """Control-region gate between two batches (e.g. QCD jets before and after a change).

    ``nominal_scores``/``perturbed_scores`` are the tagger scores per jet, shape
    ``(n_jets,)``, of each batch (both or neither). ``select`` picks the control sample: a
    boolean mask over jets applied to both batches (same size), or a pair of masks.
    ``threshold``: the working point on the score (the calibrated gate tests the fraction
    of control jets above it; the fixed gate does not use it). The calibrated gate takes the
    perturbed batch as the nominal one changed jet by jet (``GateConfig.pairing``
    "paired"); for two independent samples set ``pairing="independent"``.

    Examples
    --------
    >>> import hepsafe
    >>> from hepsafe.perturbation.variations import apply_variation
    >>> jets = hepsafe.data.load_sample("test")
    >>> qcd = jets[jets.label == 0][:2000]
    >>> hepsafe.gate(qcd, qcd).passed
    True
    >>> report = hepsafe.gate(qcd, apply_variation("scale_all_up", qcd))  # pT x 1.02
    >>> report.passed, report.failed
    (False, ['jet_pt:ks'])
    >>> print(f"{report.stats('jet_pt').ks:.2f}")
    0.10
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
    return compare(nom, per, config, threshold)
