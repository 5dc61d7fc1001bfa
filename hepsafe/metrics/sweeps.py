"""Attack-strength sweeps: the metrics of :mod:`hepsafe.metrics.roc` at several envelope sizes
in one :class:`SweepTable`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe.exceptions import ConfigError, InputError
from hepsafe.metrics.roc import (
    _fraction,
    _rejection,
    _sic,
    efficiency,
    eps_b_at,
    fooling_rate,
    max_sic,
    roc_curve,
    threshold_at_efficiency,
    working_point,
)

# --------------------------------------------------------------------------- sweeps
#: columns of a :class:`SweepTable`, in order
SWEEP_COLUMNS = (
    "eps",
    "auc",
    "threshold",
    "rejection",
    "sic",
    "max_sic",
    "eps_s_at_ref_cut",
    "eps_b_at_ref_cut",
    "fool_sig",
    "fool_bkg",
)


@dataclass(frozen=True)
class SweepTable:
    """Metrics per perturbation size ``eps``: one row (a dict of column -> float) per eps.

    Columns (:data:`SWEEP_COLUMNS`): ``auc``; ``threshold``, ``rejection``, ``sic`` at the
    working point ``eff_sig`` of that eps (rejection and SIC interpolated on its ROC);
    ``max_sic``; and, against the reference eps (the nominal scores, usually eps = 0):
    ``eps_s_at_ref_cut``/``eps_b_at_ref_cut`` (efficiencies at the reference cut) and
    ``fool_sig``/``fool_bkg`` (fooling rates at that cut). Columns that need a reference
    are ``nan`` when there is none or when the jets differ in number.
    """

    eff_sig: float
    reference_eps: float | None
    rows: tuple[dict[str, float], ...]

    def column(self, name: str) -> np.ndarray:
        """One column as an array of shape ``(n_eps,)``."""
        if name not in SWEEP_COLUMNS:
            raise ConfigError(f"SweepTable has no column '{name}' (columns: {SWEEP_COLUMNS})")
        return np.array([r[name] for r in self.rows], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers become strings ("inf", "nan")."""

        def clean(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        return {
            "eff_sig": self.eff_sig,
            "reference_eps": self.reference_eps,
            "columns": list(SWEEP_COLUMNS),
            "rows": [{k: clean(r[k]) for k in SWEEP_COLUMNS} for r in self.rows],
        }

    def to_text(self) -> str:
        """A fixed-width text table, one line per eps."""
        head = " ".join(f"{c:>16s}" for c in SWEEP_COLUMNS)
        lines = [f"working point: eps_S = {self.eff_sig:g}; reference eps = {self.reference_eps}"]
        lines.append(head)
        for r in self.rows:
            lines.append(" ".join(f"{r[c]:16.6g}" for c in SWEEP_COLUMNS))
        return "\n".join(lines)


ScorePair = Sequence[Any]  # (scores_sig, scores_bkg) or (scores_sig, scores_bkg, w_sig, w_bkg)


def _unpack(eps: float, item: ScorePair, ws: Any, wb: Any) -> tuple[Any, Any, Any, Any]:
    if not isinstance(item, Sequence) or len(item) not in (2, 4):
        raise InputError(
            f"sweep: result for eps={eps} must be (scores_sig, scores_bkg) or "
            "(scores_sig, scores_bkg, weights_sig, weights_bkg)"
        )
    if len(item) == 4:
        return item[0], item[1], item[2], item[3]
    return item[0], item[1], ws, wb


def sweep(
    source: Callable[[float], ScorePair] | Mapping[float, ScorePair],
    epsilons: Iterable[float] | None = None,
    eff_sig: float = 0.5,
    weights_sig: Any = None,
    weights_bkg: Any = None,
    reference_eps: float | None = 0.0,
    min_eps_b: float = 0.0,
) -> SweepTable:
    """Tabulate metrics over perturbation sizes ``eps``.

    ``source`` is a callable ``eps -> (scores_sig, scores_bkg)`` (then ``epsilons`` is
    required) or a mapping ``{eps: (scores_sig, scores_bkg)}``; a result may also carry its
    own weights as a 4-tuple. ``weights_sig``/``weights_bkg`` apply otherwise. The
    reference (nominal) scores are those at ``reference_eps`` (``None``: no reference);
    its working-point cut is applied to every eps. Rows are sorted by eps.
    """
    e_sig = _fraction(eff_sig, "eff_sig")
    if callable(source):
        if epsilons is None:
            raise ConfigError("sweep: 'epsilons' is required when 'source' is a callable")
        results = {float(e): source(float(e)) for e in epsilons}
    elif isinstance(source, Mapping):
        keys = list(source) if epsilons is None else list(epsilons)
        missing = [e for e in keys if e not in source]
        if missing:
            raise ConfigError(f"sweep: 'epsilons' {missing} not in the results")
        results = {float(e): source[e] for e in keys}
    else:
        raise InputError("sweep: 'source' must be a callable eps -> scores or a dict")
    if not results:
        raise ConfigError("sweep: no eps values to tabulate")
    unpacked = {e: _unpack(e, r, weights_sig, weights_bkg) for e, r in results.items()}
    ref = None
    if reference_eps is not None:
        if float(reference_eps) not in unpacked:
            raise ConfigError(
                f"sweep: 'reference_eps' {reference_eps} not among eps {sorted(unpacked)}"
            )
        ss0, sb0, ws0, wb0 = unpacked[float(reference_eps)]
        ref = (np.asarray(ss0), np.asarray(sb0), working_point(ss0, sb0, e_sig, ws0, wb0))
    rows = []
    for e in sorted(unpacked):
        ss, sb, ws, wb = unpacked[e]
        roc = roc_curve(ss, sb, ws, wb)
        b = float(eps_b_at(roc, e_sig))
        row = {
            "eps": e,
            "auc": roc.auc(),
            "threshold": threshold_at_efficiency(ss, e_sig, ws),
            "rejection": _rejection(b),
            "sic": _sic(e_sig, b),
            "max_sic": max_sic(roc, min_eps_b)[0],
            "eps_s_at_ref_cut": math.nan,
            "eps_b_at_ref_cut": math.nan,
            "fool_sig": math.nan,
            "fool_bkg": math.nan,
        }
        if ref is not None:
            t = ref[2].threshold
            row["eps_s_at_ref_cut"] = efficiency(ss, t, ws)
            row["eps_b_at_ref_cut"] = efficiency(sb, t, wb)
            if np.shape(ss) == ref[0].shape:
                row["fool_sig"] = fooling_rate(ref[0], ss, t, ws).rate
            if np.shape(sb) == ref[1].shape:
                row["fool_bkg"] = fooling_rate(ref[1], sb, t, wb).rate
        rows.append(row)
    return SweepTable(
        eff_sig=e_sig,
        reference_eps=None if reference_eps is None else float(reference_eps),
        rows=tuple(rows),
    )
