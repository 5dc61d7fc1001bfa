"""The card of an exported learned adversary (format ``hepsafe-adversary/1``): what the graph
takes and returns, its envelope, the tagger it was trained against, and how it was trained."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepsafe._files import sha256sum
from hepsafe._versions import package_versions
from hepsafe.attacks.adversary.graph import CARD_FORMAT, INPUT_NAMES, OUTPUT_NAME
from hepsafe.attacks.adversary.network import _weights_of

if TYPE_CHECKING:
    from hepsafe.attacks.adversary.training import LearnedAdversary


def adversary_card(adv: LearnedAdversary, model_path: str | os.PathLike[str],
                   command: str | None = None) -> dict[str, Any]:
    """The card describing ``adv`` exported to ``model_path`` (``command``: the command that
    made it)."""
    p = Path(model_path)
    n_params = sum(int(np.prod(v.shape)) for v in _weights_of(adv.net).values())
    out = adv.tagger.output
    rep = adv.gate_report
    return {
        "format": CARD_FORMAT,
        "name": f"adversary_{adv.tagger.name}",
        "description": (
            "learned mismodelling g(J): deep set (per-constituent MLP "
            f"{list(adv.config.phi_sizes)}, masked-mean jet context, head MLP "
            f"{list(adv.config.head_sizes)}) -> tanh(head) * bound per constituent"),
        "model": {"file": p.name, "sha256": sha256sum(p) if p.exists() else None,
                  "opset": 17, "n_parameters": n_params},
        "inputs": {
            "names": list(INPUT_NAMES), "features": list(adv.features),
            "n_max": adv.n_max, "ordering": "pt_desc",
            "bound_columns": ["pt (relative)", "eta", "phi [rad]"],
        },
        "output": {"name": OUTPUT_NAME, "shape": ["n", adv.n_max, 3],
                   "columns": ["d_pt (relative)", "d_eta", "d_phi [rad]"]},
        "architecture": {"n_phi": len(adv.config.phi_sizes),
                         "n_head": len(adv.config.head_sizes),
                         "phi_sizes": list(adv.config.phi_sizes),
                         "head_sizes": list(adv.config.head_sizes), "pool": "mean"},
        "envelope": adv.envelope.to_dict(),
        "preserve": list(adv.preserve),
        "target": "down" if (adv.direction or -1) < 0 else "up",
        "tagger": {"name": adv.tagger.name, "file": adv.tagger.path.name,
                   "sha256": sha256sum(adv.tagger.path), "classes": list(out.classes),
                   "signal": out.signal},
        "training": {
            "config": adv.config.to_dict(),
            "lambdas": {"cls": adv.config.lambda_cls, "pt": adv.config.lambda_pt,
                        "mass": adv.config.lambda_mass},
            "bg_score": adv.config.bg_score,
            "seed": adv.config.seed,
            **adv.record,
            # the gate of the kept state on the report hold-out, which chose nothing
            "gate": {"split": "report",
                     "passed": None if rep is None else bool(rep.passed),
                     "failed": [] if rep is None else rep.failed,
                     "ks": {} if rep is None else {v.variable: float(v.ks) for v in rep.variables},
                     "config": adv.gate_config.to_dict()},
            "history": adv.history,
            "command": command,
            "platform": f"{platform.system()} {platform.machine()}",
            "versions": package_versions(("hepsafe", "torch", "onnx", "onnxruntime", "numpy")),
        },
    }
