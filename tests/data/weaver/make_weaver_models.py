"""Regenerate the weaver-core test taggers in this folder (random weights, tiny sizes).

What it does: builds weaver-core's own ``ParticleNet`` and ``ParticleTransformer`` network
classes with small layer sizes and seeded random weights, wraps each the way weaver's
network configurations do (``forward(pf_points, pf_features, pf_vectors, pf_mask)``, a
softmax over the classes when ``for_inference``), and exports them the way ``weaver
--export-onnx`` does: the TorchScript exporter at opset 15, input names ``pf_points (N, 2,
P)``, ``pf_features (N, C, P)``, ``pf_vectors (N, 4, P)``, ``pf_mask (N, 1, P)``, output
``softmax (N, n_classes)``, the batch and particle axes dynamic, traced with batch 2. The
exporter drops the inputs a network does not use (``pf_vectors`` for ParticleNet,
``pf_points`` for ParT). Beside each ``model.onnx`` it writes ``preprocess.json`` with
weaver's own ``DataConfig.export_json`` from a data configuration written here (variables,
centre / scale / clip bounds, pad length 32), as weaver writes it next to the export.

The models are not trained: the tests only need real architectures and real exports.

Needs weaver-core (``pip install --no-deps weaver-core``) and torch; run from anywhere:

    OMP_NUM_THREADS=1 python tests/data/weaver/make_weaver_models.py
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent
LENGTH = 32  # particles per jet (weaver's ``length``): short, the tests run on the CPU
CLASSES = ["label_QCD", "label_Hbb", "label_Wqq", "label_Zqq", "label_Tbqq"]

# weaver's variable lists: [name, centre, scale, min, max] (centre None: no standardisation)
POINTS = [["part_deta", None], ["part_dphi", None]]
KINEMATIC = [
    ["part_pt_log", 1.7, 0.7],
    ["part_e_log", 2.0, 0.7],
    ["part_logptrel", -4.7, 0.7, -2.0, 2.0],
    ["part_logerel", -4.7, 0.7, -2.0, 2.0],
    ["part_deltaR", 0.2, 4.0],
    ["part_charge", None],
    ["part_deta", None],
    ["part_dphi", None],
]
PID_FLAGS = [["part_isChargedHadron", None], ["part_isNeutralHadron", None],
             ["part_isPhoton", None], ["part_isElectron", None], ["part_isMuon", None]]
VECTORS = [["part_px", None], ["part_py", None], ["part_pz", None], ["part_energy", None]]
MASK = [["part_mask", None]]


def data_config(features: list[list[object]]) -> dict[str, object]:
    """A weaver data configuration (the YAML's content) with these pf_features."""
    def group(vars_: list[list[object]], pad_mode: str) -> dict[str, object]:
        return {"length": LENGTH, "pad_mode": pad_mode, "vars": vars_}

    return {
        "treename": "tree",
        "preprocess": {"method": "manual", "data_fraction": 0.5, "params": None},
        "inputs": {
            "pf_points": group(POINTS, "wrap"),
            "pf_features": group(features, "wrap"),
            "pf_vectors": group(VECTORS, "wrap"),
            "pf_mask": group(MASK, "constant"),
        },
        "labels": {"type": "simple", "value": CLASSES},
        "observers": ["jet_pt"],
    }


class ParticleNetTagger(torch.nn.Module):
    """weaver's ParticleNet behind the four-input signature of its network configs."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        from weaver.nn.model.ParticleNet import ParticleNet

        self.net = ParticleNet(n_features, len(CLASSES),
                               conv_params=[(7, (8, 8, 8)), (7, (16, 16, 16))],
                               fc_params=[(16, 0.1)], use_fusion=True, for_inference=True)

    def forward(self, points, features, lorentz_vectors, mask):  # type: ignore[no-untyped-def]
        return self.net(points, features, mask)


class ParTTagger(torch.nn.Module):
    """weaver's ParticleTransformer behind the same signature (points unused)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        from weaver.nn.model.ParticleTransformer import ParticleTransformer

        self.net = ParticleTransformer(
            input_dim=n_features, num_classes=len(CLASSES), pair_input_dim=4,
            embed_dims=[16, 16], pair_embed_dims=[8, 8], num_heads=2, num_layers=1,
            num_cls_layers=1, fc_params=[], for_inference=True)

    def forward(self, points, features, lorentz_vectors, mask):  # type: ignore[no-untyped-def]
        return self.net(features, v=lorentz_vectors, mask=mask)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Batch-norm statistics away from (0, 1) (the weights are torch's seeded initialisation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(1.0 + torch.rand(m.running_var.shape, generator=g))


def export(model: torch.nn.Module, n_features: int, out: Path) -> None:
    """``model.onnx`` as ``weaver --export-onnx`` writes it."""
    names = ["pf_points", "pf_features", "pf_vectors", "pf_mask"]
    shapes = {"pf_points": (2, 2, LENGTH), "pf_features": (2, n_features, LENGTH),
              "pf_vectors": (2, 4, LENGTH), "pf_mask": (2, 1, LENGTH)}
    dynamic = {k: {0: "N", 2: "n_" + k.split("_")[0]} for k in names}
    dynamic["softmax"] = {0: "N"}
    inputs = tuple(torch.ones(shapes[k]) for k in names)
    kwargs: dict[str, object] = dict(input_names=names, output_names=["softmax"],
                                     dynamic_axes=dynamic, opset_version=15)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    model.eval()
    torch.onnx.export(model, inputs, str(out / "model.onnx"), **kwargs)


def preprocess_json(features: list[list[object]], out: Path) -> None:
    """``preprocess.json`` by weaver's own DataConfig.export_json."""
    import yaml
    from weaver.utils.data.config import DataConfig

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "data.yaml"
        cfg.write_text(yaml.safe_dump(data_config(features)))
        dc = DataConfig.load(str(cfg), load_observers=False, load_reweight_info=False)
    dc.export_json(str(out / "preprocess.json"))


def main() -> None:
    for name, cls, features, seed in (("particlenet", ParticleNetTagger, KINEMATIC, 1),
                                      ("part", ParTTagger, KINEMATIC + PID_FLAGS, 2)):
        out = HERE / name
        out.mkdir(exist_ok=True)
        torch.manual_seed(seed)
        model = cls(len(features))
        randomise(model, seed)
        export(model, len(features), out)
        preprocess_json(features, out)
        print(f"{out}: {os.path.getsize(out / 'model.onnx') / 1024:.0f} kB")


if __name__ == "__main__":
    main()
