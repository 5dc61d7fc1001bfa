"""The calibrated control-region gate on the shipped sample: its false-alarm rate, and when each
of the demo's variations would become visible.

    python examples/gate_calibration.py [--halves 1000] [--pgd]

Scores the QCD jets of the shipped sample's test split (the control sample of ``hepsafe
demo``) and its W jets with the reference PFN; the working point keeps 50 % of the W jets
(the demo's). Prints

1. the combined gate's false-alarm rate on ``--halves`` random halves of the QCD sample
   (one half taken as data, the other as simulation, the tests in independent mode; the
   per-test level set on other halves), with its binomial standard error, beside the stated
   rate alpha = 0.05;
2. for the shipped learned adversary (``hepsafe.perturbation.ADVERSARY_MODEL``) and the
   demo's physics variations (jet energy scale up/down, energy smearing; PGD with ``--pgd``,
   slower), each test's statistic, limit and verdict at 2000 control events, the shipped
   size and 100000 events, and the control-region size at which it flips, with the
   simulation's size as shipped and with exact simulation.
"""

from __future__ import annotations

import argparse
import math
import os
import time

from hepsafe import data as datasets
from hepsafe import validation as validate
from hepsafe.data import JetBatch
from hepsafe.metrics import threshold_at_efficiency
from hepsafe.perturbation.shifts import LearnedShift, PhysicsShift, apply_shift
from hepsafe.tagger.onnx import OnnxTagger, reference

SEED = 1  # the demo's seed (physics variations)
WORKING_POINT = 0.5  # signal efficiency of the demo's working point


def variations(pgd: bool) -> dict[str, object]:
    """The demo's variations and attacks as shifts, by the name the demo gives them."""
    out: dict[str, object] = {
        "learned": LearnedShift(),
        "escale_up": PhysicsShift("scale_all_up", SEED),
        "escale_down": PhysicsShift("scale_all_down", SEED),
        "smear_up": PhysicsShift("smear_energy", SEED),
    }
    if pgd:  # the demo's envelope (2 % in pT, 0.02 in eta and phi), 10 steps, scores down
        from hepsafe.perturbation import Envelope
        from hepsafe.perturbation.shifts import AttackShift

        env = Envelope(pt=0.02, eta=0.02, phi=0.02)
        out["pgd"] = AttackShift("pgd", "down", env, steps=10, seed=SEED)
    return out


def fmt_events(n: float | None) -> str:
    return "never" if n is None else f"{n:.3g}"


def show(name: str, report: validate.GateReport) -> None:
    """One variation: per test, p-value / limit / verdict at each size (simulation as shipped,
    then exact), and the flip sizes."""
    cal = report.calibration
    assert cal is not None
    sizes = [a.n_data for a in cal.combined.at]
    print(f"\n{name}: verdict at N_data = {cal.n_data:.0f} "
          f"(N_sim = {cal.n_sim:.0f}): {'pass' if report.passed else 'FAIL'}")
    if cal.efficiency is not None:
        print(f"  efficiency above the working point: simulation {cal.efficiency[0]:.4f}, "
              f"perturbed {cal.efficiency[1]:.4f}")
    for label, exact in ((f"simulation as shipped (N_sim = {cal.n_sim:.0f})", False),
                         ("exact simulation", True)):
        head = "".join(f"  {'N=' + format(n, '.3g'):>23s}" for n in sizes)
        print(f"  {label}\n  {'test':<22s}{'value':>9s}{head}  {'flip N':>8s}")
        for t in (*cal.tests, cal.combined):
            cells = ""
            for a in (t.at_infinite_sim if exact else t.at):
                lim = "-" if a.limit is None else f"{a.limit:.4g}"
                cells += (f"  {'p=' + format(a.p_value, '.2g'):>9s} {lim:>8s} "
                          f"{'FAIL' if not a.passed else 'pass':>4s}")
            flip = t.flip_events_infinite_sim if exact else t.flip_events
            value = "" if exact else f"{t.value:.4g}"  # at the shipped sizes
            print(f"  {t.name:<22s}{value:>9s}{cells}  {fmt_events(flip):>8s}")


def main() -> None:
    """Parse the options, run, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--halves", type=int, default=1000, help="random halves for the rate")
    ap.add_argument("--pgd", action="store_true", help="also the demo's PGD attack (slower)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()

    test = datasets.load_sample("test")
    qcd, w = test[test.label == 0], test[test.label == 1]
    pfn: OnnxTagger = reference("pfn", providers="cpu", intra_op_threads=1)
    s_qcd, s_w = pfn.predict(qcd), pfn.predict(w)
    thr = float(threshold_at_efficiency(s_w, WORKING_POINT, w.weight))
    config = validate.GateConfig()
    print(f"control sample: {len(qcd)} QCD jets of the test split; working point: score > "
          f"{thr:.4f} ({WORKING_POINT:.0%} of the W jets)")

    nominal = validate.control_variables(qcd, s_qcd)
    fa = validate.false_alarm_rate(nominal, config, thr, halves=args.halves, seed=1)
    lo, hi = fa.alpha - 0.02, fa.alpha + 0.02
    print(f"false-alarm rate on {fa.halves} random halves: {fa.rate:.3f} +- {fa.error:.3f} "
          f"({fa.failed} failed; stated alpha {fa.alpha:g}, accepted {lo:.2f}-{hi:.2f}: "
          f"{'yes' if lo <= fa.rate <= hi else 'NO'}); per-test level {fa.local_alpha:.4g}, "
          f"Sidak over 8 tests {1 - (1 - fa.alpha) ** (1 / 8):.4g}")
    sidak = validate.false_alarm_rate(nominal, validate.GateConfig(local_alpha="sidak"), thr,
                                      halves=args.halves, seed=1)
    print(f"  with the Sidak level instead: {sidak.rate:.3f} +- {sidak.error:.3f}")

    for name, shift in variations(args.pgd).items():
        jets: JetBatch = apply_shift(shift, qcd, pfn).jets  # type: ignore[arg-type]
        scores = pfn.predict(jets)
        show(name, validate.gate(qcd, jets, s_qcd, scores, config=config, threshold=thr))
    print(f"\n({time.perf_counter() - t0:.0f} s; KS critical value at 95 %, exact simulation: "
          + ", ".join(f"{float(validate.ks_critical_value(0.05, n)):.4f} at {n:g}"
                      for n in (2e3, 1e4, 1e5)) + f"; c(0.05) = "
          f"{validate.kolmogorov_quantile(0.05):.4f} vs sqrt(-ln(0.025)/2) = "
          f"{math.sqrt(-math.log(0.025) / 2):.4f})")


if __name__ == "__main__":
    main()
