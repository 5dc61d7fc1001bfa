"""The fit report on the shipped sample's jet-mass templates (those of tests/test_stats.py:
two pT regions, 6 bins, W and QCD, variations ``tilt``, ``wnorm``, ``peak``, lumi 2 %).

Times, best of ``--repeat`` runs, side by side with one maximum-likelihood fit:

- one fit: ``hepsafe.fit.mle.fit`` of the Asimov data, every parameter free;
- report, no limit: ``hepsafe.fit.results.fit_report(limit=False)`` (mu-hat with all, none, only
  and all but each variation; pulls; impacts; significance);
- report: ``hepsafe.fit.results.fit_report`` (the same plus the CLs upper limit), what
  ``hepsafe fit`` and every run compute;
- the CLs upper limit alone by both methods of ``hepsafe.fit.limits.upper_limit``:
  "asymptotic" (hepsafe's formulas, the fits independent of the tested POI run once) and
  "pyhf" (``pyhf.infer.intervals.upper_limits.toms748_scan``), with the ratio of their
  times and the largest relative difference of the six limits (observed, expected -2 ..
  +2 sigma). The asymptotic method stays the default while pyhf is much slower and the two
  agree to 1e-6.

Run from the repository root:

    python benchmarks/bench_fit.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe import data as datasets
from hepsafe.exceptions import MirrorWarning
from hepsafe.fit import limits
from hepsafe.fit import mle as fits
from hepsafe.fit import results as stats
from hepsafe.fit import workspace as W

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from template_helpers import mass_templates  # noqa: E402  (the tests' templates)

EDGES = np.linspace(40.0, 200.0, 7)  # jet mass [GeV], 6 bins


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall-clock seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per timing (default 3)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", MirrorWarning)  # wnorm and peak are one-sided on purpose
    ws = W.build_workspace(mass_templates(datasets.load_sample(), EDGES, peak=True),
                           W.WorkspaceConfig(signal=("W",), lumi=0.02))
    model, data = fits.model_and_data(ws, asimov=True)
    n_par = len(fits.parameter_labels(model))
    stats.fit_report(ws, asimov=True, limit=False)  # warm-up (imports, pyhf caches)
    rows = [
        ("one fit", best(lambda: fits.fit(model, data), args.repeat)),
        ("report, no limit", best(lambda: stats.fit_report(ws, asimov=True, limit=False),
                                  args.repeat)),
        ("report", best(lambda: stats.fit_report(ws, asimov=True), args.repeat)),
    ]
    print(f"fit report: {n_par} parameters, {len(ws['channels'])} channels; best of "
          f"{args.repeat}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    one = rows[0][1]
    for name, t in rows:
        print(f"  {name:<18} {t:8.3f} s   {t / one:6.1f}x one fit")
    found: dict[str, dict[str, Any]] = {}

    def limit(method: str) -> None:
        found[method] = limits.upper_limit(model, data, method=method)

    times = {m: best(lambda m=m: limit(m), args.repeat) for m in limits.LIMIT_METHODS}
    a, b = found["asymptotic"], found["pyhf"]
    ours = np.array([a["observed"], *a["expected"]])
    theirs = np.array([b["observed"], *b["expected"]])
    print("upper limit (CLs, qtilde, 95 % CL; observed, expected -2 .. +2 sigma):")
    for m in limits.LIMIT_METHODS:
        exp = ", ".join(f"{x:.7f}" for x in found[m]["expected"])
        print(f"  {m:<18} {times[m]:8.3f} s   {times[m] / one:6.1f}x one fit   "
              f"{found[m]['observed']:.7f}  [{exp}]")
    print(f"  pyhf / asymptotic time ratio {times['pyhf'] / times['asymptotic']:.2f}; largest "
          f"relative difference {float(np.max(np.abs(theirs / ours - 1))):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
