"""Jet-mass templates of the shipped sample with transparent reweighting variations, shared
by the template and fit tests."""

from __future__ import annotations

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.templates import booking as T


def mass_templates(jets: JetBatch, edges: np.ndarray, peak: bool = False) -> T.Templates:
    """W (signal, weight 0.05) and QCD (weight 1) jet-mass templates in two pT regions.

    Variations by reweighting: ``tilt`` (mass-dependent, both samples, two-sided),
    ``wnorm`` (W +10 %, one-sided) and, with ``peak``, ``peak`` (W jets within 15 GeV of
    80 GeV lose 20 % weight, one-sided: a stand-in for a variation that moves signal out of
    the peak).
    """
    hists = {}
    for region, sel in (("lowpt", jets.pt < 580), ("highpt", jets.pt >= 580)):
        h = T.book(edges, observable="mass", label="jet mass [GeV]")
        for label, name, scale in ((1, "W", 0.05), (0, "QCD", 1.0)):
            m = jets.mass[sel & (jets.label == label)].astype(np.float64)
            w = np.full(len(m), scale)
            tilt = 0.1 * (m - 100.0) / 100.0
            h = T.fill(h, m, name, weight=w)
            h = T.fill(h, m, name, "tilt_up", weight=w * (1 + tilt))
            h = T.fill(h, m, name, "tilt_down", weight=w * (1 - tilt))
            if name == "W":
                h = T.fill(h, m, name, "wnorm_up", weight=w * 1.1)
                if peak:
                    h = T.fill(h, m, name, "peak_up",
                               weight=w * (1 - 0.2 * (np.abs(m - 80) < 15)))
        hists[region] = h
    return T.Templates(hists)
