"""Variations of the jets as nuisance parameters in a pyhf fit of the W signal strength.

    python examples/fit_variations.py -o out/fit_variations

Fills templates of an observable (the reference PFN tagger's W score, for jets in a jet-mass
window; see :func:`observable` and :func:`region`) for W (signal) and QCD (background) jets
of the shipped sample's test split, nominal and under every variation of :func:`variations`
(observable and region recomputed on the varied jets). Builds the pyhf workspace (signal
normfactor ``mu``, staterror, lumi, one normsys + histosys pair per physics variation and
one bounded parameter theta in [0, 1] per adversarial variation, docs/STATISTICS.md), fits
the Asimov data set at ``mu = 1`` with iminuit and writes into the output directory:
``templates.root``, ``workspace_config.json``, ``workspace.json``, ``fit.json``,
``fit.txt``, ``yields.txt`` and ``results_section.md`` (the "Nuisance parameters in the
fit" section of docs/RESULTS.md). The same fit from the command line:
``hepsafe fit OUT/templates.root -o OUT --config OUT/workspace_config.json --asimov --force``.

To add a variation, add an entry to :func:`variations`: a name and a function ``jets ->
(up, down)`` returning varied JetBatches (``down`` None for a one-sided variation, which the
fit mirrors). Adversarial perturbations enter the same way, in :func:`adversarial`, and take
the adversarial treatment (``ADVERSARIAL``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hepsafe import data as datasets
from hepsafe import fit as stats
from hepsafe import fit as workspace
from hepsafe import perturbation as V
from hepsafe import tagger
from hepsafe import templates as T
from hepsafe import templates as templates_io
from hepsafe.data import JetBatch
from hepsafe.report import markdown_table

EDGES = np.linspace(0.0, 1.0, 11)  # tagger-score bins
MASS_WINDOW = (55.0, 105.0)  # signal region: jet mass [GeV]
SAMPLES = {"W": (1, 0.05), "QCD": (0, 1.0)}  # name: (label, weight scale)
LUMI = 0.017  # relative luminosity uncertainty
SEED = 1
ADVERSARIAL = ("learned", "pgd")  # fitted as theta in [0, 1] (treatment: adversarial)

VariationFn = Callable[[JetBatch], tuple[JetBatch, JetBatch | None]]
_TAGGER: dict[str, tagger.OnnxTagger] = {}


def observable(jets: JetBatch) -> np.ndarray:
    """The fitted observable, shape ``(n_jets,)``: the reference PFN tagger's W score."""
    if "pfn" not in _TAGGER:
        _TAGGER["pfn"] = tagger.reference("pfn")
    return _TAGGER["pfn"].predict(jets).astype(np.float64)


def region(jets: JetBatch) -> np.ndarray:
    """Jets in the signal region, shape ``(n_jets,)`` bool: jet mass [GeV] in MASS_WINDOW."""
    return (jets.mass > MASS_WINDOW[0]) & (jets.mass < MASS_WINDOW[1])


def variations() -> dict[str, VariationFn]:
    """Physics variations (hepsafe.perturbation.variations): name -> jets -> (up, down or None)."""
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
    """Adversarial variations: name -> jets -> (perturbed jets, None).

    ``learned``: the shipped learned adversary (passes the control-region gate);
    ``pgd``: PGD at epsilon 0.02, 10 steps (fails the gate: shown for comparison).
    Both push the W score down on every jet (signal and background alike).
    """
    from hepsafe import Envelope
    from hepsafe.attacks import PGD, LearnedAdversary

    pfn = _TAGGER.setdefault("pfn", tagger.reference("pfn"))
    learned = LearnedAdversary.load("adversary_pfn", pfn)
    pgd = PGD(pfn, Envelope.uniform(0.02), steps=10, seed=SEED)
    return {
        "learned": lambda j: (learned(j, "down").jets, None),
        "pgd": lambda j: (pgd(j, "down").jets, None),
    }


def make_templates(jets: JetBatch, varied: dict[str, VariationFn]) -> T.Templates:
    """One region "SR": observable x {W, QCD} x {nominal, <name>_up, <name>_down}."""
    h = T.book(EDGES, observable="score", label="PFN W score")
    batches: dict[str, JetBatch] = {T.NOMINAL: jets}
    for name, fn in varied.items():
        up, down = fn(jets)
        batches[T.variation_name(name, T.UP)] = up
        if down is not None:
            batches[T.variation_name(name, T.DOWN)] = down
    for variation, batch in batches.items():
        x = observable(batch)
        in_region = region(batch)
        for sample, (label, scale) in SAMPLES.items():
            sel = in_region & (batch.label == label)
            h = T.fill(h, x[sel], sample, variation, weight=batch.weight[sel] * scale)
    return T.Templates({"SR": h})


def results_section(report: dict, yields: str, command: str) -> str:
    """The markdown of docs/RESULTS.md "Nuisance parameters in the fit"."""
    ul = report["upper_limit"]
    sig = report["significance"]
    lo, hi = MASS_WINDOW
    lines = [
        "## Nuisance parameters in the fit",
        "",
        "Regenerate (about 1 minute):",
        "",
        f"    {command}",
        "",
        "W signal strength `mu` fitted with iminuit to the Asimov data set at `mu = 1`. The",
        f"templates are the reference PFN tagger's W score ({len(EDGES) - 1} bins) for jets "
        f"with mass in {lo:g}-{hi:g} GeV:",
        f"W (signal, weight {SAMPLES['W'][1]}) and QCD (background, weight 1) jets of the "
        "shipped sample's test split.",
        f"The model has staterror, lumi ({100 * LUMI:.1f} %) and, per physics variation, one "
        "nuisance parameter acting",
        "through a normsys + histosys pair (one-sided ones mirrored); the adversarial "
        f"variations ({', '.join(f'`{n}`' for n in ADVERSARIAL)}) are one parameter theta in "
        "[0, 1] each,",
        "flat prior, moving the templates linearly from the nominal (theta = 0) to the "
        "adversarial template (theta = 1), never mirrored (docs/STATISTICS.md). Variations "
        "(`hepsafe.perturbation.variations`):",
        f"`escale` = constituent momentum scale +-{100 * V.DEFAULT_SCALE['all']:g} % "
        "(`scale_all_up/down`), `smear` = 2 % momentum smear,",
        "`tracking` = 2 % loss of charged constituents; `learned` and `pgd`: see below.",
        "",
        "Yields in the signal region:",
        "",
        "```",
        yields,
        "```",
        "",
        "`mu`-hat and its uncertainty with the variations' nuisance parameters free or fixed "
        "at nominal:",
        "",
        markdown_table(
            ["fit", "mu-hat", "sigma_mu"],
            [[r["fit"], r["mu"], r["sigma_mu"]] for r in report["mu"]],
            floatfmt=".4f",
        ),
        "",
        "Impacts on `mu` of the Gaussian parameters (fixed at the post-fit value +-1 sigma, "
        "refit), ranked:",
        "",
        markdown_table(
            ["rank", "parameter", "dmu (+1 sigma)", "dmu (-1 sigma)"],
            [[r["rank"], r["name"], r["up"], r["down"]] for r in report["impacts"]],
            floatfmt=".4f",
        ),
        "",
        "Adversarial parameters: theta-hat (bounds [0, 1]) and the worst-case band, "
        "mu-hat(theta = 1) - mu-hat(theta = 0) with every other parameter profiled:",
        "",
        markdown_table(
            ["parameter", "theta-hat", "mu-hat (theta=0)", "mu-hat (theta=1)",
             "worst-case dmu"],
            [[r["name"], r["value"], report["worst_case"][r["name"]]["mu_at_0"],
              report["worst_case"][r["name"]]["mu_at_1"],
              report["worst_case"][r["name"]]["delta_mu"]] for r in report["adversarial"]],
            floatfmt=".4f",
        ),
        "",
        f"CLs upper limit on `mu` at 95 % CL (asymptotic, qtilde) on the Asimov data at mu = 1: "
        f"{ul['observed']:.3f};",
        f"expected (background only) {ul['expected'][2]:.3f} "
        f"[{ul['expected'][1]:.3f}, {ul['expected'][3]:.3f}] at +-1 sigma. Expected discovery "
        f"significance: {sig['expected']:.2f} sigma.",
        "",
        "Adversarial nuisance parameters (`adversarial()` in the example): `learned` is the "
        "shipped",
        "learned adversary (`hepsafe/models/adversary_pfn.onnx`, trained to pass the "
        "control-region gate),",
        "`pgd` is PGD at epsilon 0.02 (10 steps), which fails the gate and is shown for "
        "comparison (a run leaves it out of the fit: `fit: {include_failed: false}`). Both "
        "are",
        "one-sided (theta in [0, 1], not mirrored) and applied to W and QCD jets alike.",
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
    templates_io.write_templates(t, out / "templates.root")
    config = workspace.WorkspaceConfig(signal=("W",), lumi=LUMI,
                                       treatment={n: "adversarial" for n in ADVERSARIAL})
    (out / "workspace_config.json").write_text(
        json.dumps({"signal": ["W"], "lumi": LUMI,
                    "treatment": {n: {"name": "adversarial"} for n in ADVERSARIAL}}, indent=2))
    res = stats.fit_templates(t, config, asimov=True)
    stats.write_fit_outputs(res, out, force=True)
    command = f"python examples/fit_variations.py -o {args.output_dir}"
    section = results_section(res.report, res.yields, command)
    (out / "results_section.md").write_text(section)
    print(res.yields)
    print(res.text)
    print(f"wrote {out}/ in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
