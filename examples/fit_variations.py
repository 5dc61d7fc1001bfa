"""Variations of the jets as nuisance parameters in a pyhf fit of the W signal strength.

    python examples/fit_variations.py -o out/fit_variations

Fills templates of an observable (the jet mass; swap :func:`observable` for a tagger score)
for W (signal) and QCD (background) jets of the shipped sample's test split, nominal and
under every variation of :func:`variations`, builds the pyhf workspace (signal normfactor
``mu``, staterror, lumi, one normsys + histosys pair per variation), fits the Asimov data set
at ``mu = 1`` with iminuit and writes into the output directory: ``templates.root``,
``workspace.json``, ``fit.json``, ``fit.txt``, ``yields.txt`` and ``results_section.md``
(the "Nuisance parameters in the fit" section of docs/RESULTS.md). The same fit from the
command line: ``hepsafe fit OUT/templates.root -o OUT --signal W --lumi 0.017 --asimov``.

To add a variation, add an entry to :func:`variations`: a name and a function ``jets ->
(up, down)`` returning varied JetBatches (``down`` None for a one-sided variation, which the
fit mirrors). Adversarial perturbations enter the same way (see :func:`adversarial`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hepsafe import datasets, stats
from hepsafe import templates as T
from hepsafe import variations as V
from hepsafe.jets import JetBatch
from hepsafe.report_tables import markdown_table

EDGES = np.linspace(40.0, 200.0, 9)  # jet mass bins [GeV]
SAMPLES = {"W": (1, 0.05), "QCD": (0, 1.0)}  # name: (label, weight scale); S/B of a few %
LUMI = 0.017  # relative luminosity uncertainty
SEED = 1

VariationFn = Callable[[JetBatch], tuple[JetBatch, JetBatch | None]]


def observable(jets: JetBatch) -> np.ndarray:
    """The fitted observable, shape ``(n_jets,)``: the jet mass [GeV]."""
    return np.asarray(jets.mass, dtype=np.float64)


def variations() -> dict[str, VariationFn]:
    """Physics variations (hepsafe.variations): name -> jets -> (up, down or None)."""
    return {
        "escale": lambda j: (
            V.apply_variation("scale_all_up", j),
            V.apply_variation("scale_all_down", j),
        ),
        "smear": lambda j: (V.apply_variation("smear_energy", j, seed=SEED), None),
        "tracking": lambda j: (V.apply_variation("tracking_loss", j, seed=SEED), None),
        **adversarial(),
    }


def adversarial() -> dict[str, VariationFn]:
    """Adversarial variations (none yet): name -> jets -> (perturbed jets, None)."""
    return {}


def make_templates(jets: JetBatch, varied: dict[str, VariationFn]) -> T.Templates:
    """One region "SR": observable x {W, QCD} x {nominal, <name>_up, <name>_down}."""
    h = T.book(EDGES, observable="mass", label="jet mass [GeV]")
    batches: dict[str, JetBatch] = {T.NOMINAL: jets}
    for name, fn in varied.items():
        up, down = fn(jets)
        batches[T.variation_name(name, T.UP)] = up
        if down is not None:
            batches[T.variation_name(name, T.DOWN)] = down
    for variation, batch in batches.items():
        x = observable(batch)
        for sample, (label, scale) in SAMPLES.items():
            sel = batch.label == label
            h = T.fill(h, x[sel], sample, variation, weight=batch.weight[sel] * scale)
    return T.Templates({"SR": h})


def results_section(report: dict, command: str) -> str:
    """The markdown of docs/RESULTS.md "Nuisance parameters in the fit"."""
    mu = report["mu"]
    ul = report["upper_limit"]
    sig = report["significance"]
    lines = [
        "## Nuisance parameters in the fit",
        "",
        "W signal strength `mu` fitted (iminuit) to the Asimov data set at `mu = 1`: jet-mass",
        f"templates ({len(EDGES) - 1} bins, 40-200 GeV) of W (signal, weight "
        f"{SAMPLES['W'][1]}) and QCD",
        "(background, weight 1) jets of the shipped sample's test split; staterror, lumi "
        f"({100 * LUMI:.1f} %), and",
        "per variation one nuisance parameter acting through a normsys + histosys pair",
        "(one-sided variations mirrored). Variations: `escale` = constituent momentum scale",
        "+-2 % (`scale_all_up/down`), `smear` = 2 % momentum smear, `tracking` = 2 % loss of",
        "charged constituents (hepsafe.variations).",
        "",
        "Regenerate:",
        "",
        f"    {command}",
        "",
        markdown_table(
            ["fit", "mu-hat", "sigma_mu"], [[r["fit"], r["mu"], r["sigma_mu"]] for r in mu]
        ),
        "",
        "Impacts on `mu` (parameter fixed at its post-fit value +-1 sigma, refit):",
        "",
        markdown_table(
            ["rank", "parameter", "dmu (+1 sigma)", "dmu (-1 sigma)"],
            [[r["rank"], r["name"], r["up"], r["down"]] for r in report["impacts"]],
        ),
        "",
        f"CLs upper limit on mu (95 % CL, Asimov data at mu = 1): {ul['observed']:.3f}; "
        "expected (background only) "
        f"{ul['expected'][2]:.3f} [{ul['expected'][1]:.3f}, {ul['expected'][3]:.3f}] (+-1 sigma).",
        f"Expected discovery significance: {sig['expected']:.2f} sigma.",
        "",
        "The adversarial nuisance parameter joins this table when the attacks land: add it",
        "in `adversarial()` of `examples/fit_variations.py` and rerun the command.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output-dir", default="out/fit_variations", help="output directory")
    args = p.parse_args(argv)
    out = Path(args.output_dir)
    start = time.perf_counter()
    sample = datasets.load_sample("test")
    jets = sample[np.isin(sample.label, [label for label, _ in SAMPLES.values()])]
    t = make_templates(jets, variations())
    T.write_templates(t, out / "templates.root")
    config = stats.WorkspaceConfig(signal=("W",), lumi=LUMI)
    res = stats.fit_templates(t, config, asimov=True)
    stats.write_fit_outputs(res, out, force=True)
    command = f"python examples/fit_variations.py -o {args.output_dir}"
    (out / "results_section.md").write_text(results_section(res.report, command))
    print(res.yields)
    print(res.text)
    print(f"wrote {out}/ in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
