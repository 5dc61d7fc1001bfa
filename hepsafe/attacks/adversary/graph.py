"""A learned adversary ``g(J)`` as an ONNX graph, and its application with ONNX Runtime alone.

The graph maps padded constituents to padded deltas. Inputs (float32, dynamic batch axis
``n``, padding length ``n_max`` as recorded in the card):

- ``features`` ``(n, n_max, k)``: constituent features of the nominal jet, names from
  :mod:`hepsafe.tagger.features` listed in the card (computed by the shared feature code);
- ``mask`` ``(n, n_max)``: 1.0 for a real constituent, 0.0 for padding;
- ``bound`` ``(n, n_max, 3)``: the envelope's bound per constituent and coordinate
  ``(pt relative, eta, phi [rad])`` for its particle class, 0 for padding.

Output ``delta`` ``(n, n_max, 3)`` = ``tanh(head) * bound * mask``: the graph applies the
envelope itself, so every delta it gives lies inside the box. The network is a deep set:
a per-constituent MLP, a masked mean over the jet (the jet context), and a head MLP that
sees each constituent's embedding and the context (the first head layer is
``relu(h_i W_local + c W_context + b)``, a concatenation written as two products).

:class:`OnnxAdversary` applies such a graph with ONNX Runtime and numpy only (no torch):
padded inputs -> graph -> padded deltas -> flat layout (:func:`flat_delta`, constituents
beyond ``n_max`` get zero) -> projection through the perturbation kernels (clip to the
envelope, restore the preserved jet observables). This is the cheap per-chunk step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from hepsafe._files import atomic_path, read_json, sha256sum, write_json
from hepsafe.attacks.base import (
    LABEL_TARGETS,
    Attack,
    Objective,
    constituent_classes,
    resolve_target,
)
from hepsafe.data import layout
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import CardError, ConfigError, InputError, ModelError
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.tagger import features as F
from hepsafe.tagger.card import card_path
from hepsafe.tagger.onnx import OnnxTagger

__all__ = [
    "CARD_FORMAT",
    "DEFAULT_FEATURES",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "AdversaryNetwork",
    "OnnxAdversary",
    "adversary_inputs",
    "build_graph",
    "flat_delta",
    "load_adversary_card",
    "probe_inputs",
    "rebuild_graph",
]

CARD_FORMAT = "hepsafe-adversary/1"
OPSET = 17
INPUT_NAMES = ("features", "mask", "bound")
OUTPUT_NAME = "delta"
#: constituent features g sees by default (those of the reference PFN)
DEFAULT_FEATURES = ("log_pt", "log_e", "log_ptrel", "log_erel", "deta", "dphi", "dr", "charge")


# --------------------------------------------------------------------------- inputs / outputs
def slot_bounds(jets: JetBatch, envelope: Envelope, index: np.ndarray) -> np.ndarray:
    """Envelope bound per padded slot, float32 ``(n_jets, n_max, 3)``, 0 for padding.

    ``index``: the slot -> flat constituent map of :func:`~hepsafe.data.layout.padded_index`.
    """
    table = envelope.table().astype(np.float32)
    table = np.vstack([table, np.zeros((1, 3), dtype=np.float32)])  # last row: padding
    classes = constituent_classes(jets).astype(np.int64)
    flat = index.ravel()
    rows = np.where(flat >= 0, classes[flat] if len(classes) else 0, len(table) - 1)
    return table[rows].reshape(*index.shape, 3)


def adversary_inputs(
    jets: JetBatch, n_max: int, features: Sequence[str], envelope: Envelope,
    padded: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The graph inputs of ``jets`` and the slot -> flat index map.

    Returns ``({"features": (n, n_max, k), "mask": (n, n_max), "bound": (n, n_max, 3)}``,
    all float32, ``index`` int64 ``(n, n_max)``, -1 for padding). Constituents are padded in
    the taggers' order (masked ones dropped, decreasing pT, first ``n_max``). A batch
    without a ``charge`` field gets charge 0. ``padded``: ``{"features", "mask"}`` of these
    jets already computed with the same feature names and ``n_max`` (e.g. a tagger's
    inputs, which the shared feature code makes identical); used as given.
    """
    if padded is None:
        p = F.padded_constituents(jets, n_max)
        charge = p.get("charge")
        if charge is None:
            charge = np.zeros_like(p["pt"])
        with np.errstate(invalid="ignore", divide="ignore"):
            x = F.constituent_features(np, list(features), p["pt"], p["eta"], p["phi"],
                                       p["energy"], charge, p["mask"])
        padded = {"features": x, "mask": p["mask"]}
    want = (len(jets), n_max)
    for key, shape in (("features", (*want, len(features))), ("mask", want)):
        if key not in padded or tuple(np.shape(padded[key])) != shape:
            got = np.shape(padded[key]) if key in padded else "missing"
            raise InputError(f"adversary inputs: precomputed '{key}' has shape {got}, "
                             f"expected {shape}")
    index = layout.padded_index(jets, n_max)
    inputs = {
        "features": np.ascontiguousarray(padded["features"], dtype=np.float32),
        "mask": np.asarray(padded["mask"]).astype(np.float32, copy=False),
        "bound": slot_bounds(jets, envelope, index),
    }
    return inputs, index


def flat_delta(padded: np.ndarray, index: np.ndarray, n_constituents: int) -> np.ndarray:
    """Padded deltas ``(n, n_max, 3)`` back on the flat layout, float32 ``(n_constituents, 3)``.

    Constituents without a slot (beyond the padding length, or masked out) get zero
    (:func:`hepsafe.data.layout.scatter`).
    """
    return layout.scatter(padded, index, n_constituents, dtype=np.float32)


# --------------------------------------------------------------------------- the graph
def build_graph(weights: Mapping[str, np.ndarray], n_max: int, n_phi: int, n_head: int,
                name: str = "hepsafe_adversary") -> Any:
    """The adversary network as an ``onnx.ModelProto`` from its weights (opset 17).

    ``weights`` (float32 arrays, matrices as ``(in, out)``): ``norm.mean``, ``norm.scale``
    ``(k,)``; ``phi.{i}.weight``/``.bias`` for ``i < n_phi``; ``head.0.local``,
    ``head.0.context``, ``head.0.bias``; ``head.{i}.weight``/``.bias`` for ``0 < i <
    n_head``; ``out.weight`` ``(h, 3)``, ``out.bias`` ``(3,)``. Inputs and output as in the
    module docstring.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(key: str, a: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=dtype), key))
        return key

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def w(key: str) -> str:
        if key not in weights:
            raise ModelError(f"adversary weights lack '{key}'")
        return const(key, weights[key])

    def width(key: str) -> int:
        if key not in weights:
            raise ModelError(f"adversary weights lack '{key}'")
        return int(np.asarray(weights[key]).shape[1])

    def dense_relu(x: str, layer: str) -> str:
        y = node("Gemm", [x, w(f"{layer}.weight"), w(f"{layer}.bias")], f"{layer}.gemm")
        return node("Relu", [y], f"{layer}.relu")

    def shape(key: str, dims: list[int]) -> str:
        return const(key, dims, np.int64)

    k = int(np.asarray(weights["norm.mean"]).shape[0])
    axes = {a: const(f"axes_{a}", [a], np.int64) for a in (0, 1, 2)}
    # standardisation folded into the first layer by constant nodes (ONNX Runtime evaluates
    # them once, at session start): W0' = diag(scale) W0, b0' = b0 - (mean * scale) W0
    w0 = node("Mul", [node("Unsqueeze", [w("norm.scale"), axes[1]], "norm.scale_col"),
                      w("phi.0.weight")], "phi.0.weight_folded")
    shift = node("Unsqueeze", [node("Mul", [w("norm.mean"), "norm.scale"], "norm.shift"),
                               axes[0]], "norm.shift_row")
    shift = node("Squeeze", [node("MatMul", [shift, "phi.0.weight"], "norm.shift_mm"), axes[0]],
                 "norm.shift_out")
    b0 = node("Sub", [w("phi.0.bias"), shift], "phi.0.bias_folded")
    # per-constituent layers on rows (n * n_max, features): Gemm (+ Relu, fused by ORT)
    x = node("Reshape", ["features", shape("shape_rows_k", [-1, k])], "x_rows")
    h = node("Relu", [node("Gemm", [x, w0, b0], "phi.0.gemm")], "phi.0.relu")
    for i in range(1, n_phi):
        h = dense_relu(h, f"phi.{i}")
    width_phi, width_head = width(f"phi.{n_phi - 1}.weight"), width("head.0.local")
    # masked mean over the jet: mask (n, 1, n_max) @ h (n, n_max, H) / count
    h_jets = node("Reshape", [h, shape("shape_jets_phi", [-1, n_max, width_phi])], "phi_jets")
    summed = node("MatMul", [node("Unsqueeze", ["mask", axes[1]], "mask_row"), h_jets],
                  "phi_sum")
    count = node("ReduceSum", ["mask", axes[1]], "count", keepdims=1)
    count = node("Unsqueeze", [node("Max", [count, const("one", [1.0])], "count_safe"),
                               axes[2]], "count_3d")
    context = node("Div", [summed, count], "context")
    ctx = node("Add", [node("MatMul", [context, w("head.0.context")], "head.0.context_mm"),
                       w("head.0.bias")], "head.0.context_3d")
    # first head layer: relu(h_i W_local + c W_context + b), then rows again
    local = node("Gemm", [h, w("head.0.local")], "head.0.local_gemm")
    local = node("Reshape", [local, shape("shape_jets_head", [-1, n_max, width_head])],
                 "head.0.local_3d")
    a = node("Relu", [node("Add", [local, ctx], "head.0.add")], "head.0.relu")
    a = node("Reshape", [a, shape("shape_rows_head", [-1, width_head])], "head.0.rows")
    for i in range(1, n_head):
        a = dense_relu(a, f"head.{i}")
    o = node("Gemm", [a, w("out.weight"), w("out.bias")], "out.gemm")
    o = node("Tanh", [node("Reshape", [o, shape("shape_jets_out", [-1, n_max, 3])], "out.jets")],
             "out.tanh")
    # delta = tanh * bound * mask (the mask repeated over the three coordinates: a same-shape
    # product, much cheaper in ONNX Runtime than broadcasting a trailing axis of length 1)
    mask3 = node("Unsqueeze", ["mask", axes[2]], "mask3")
    mask3 = node("Concat", [mask3, mask3, mask3], "mask3_xyz", axis=2)
    node("Mul", [o, node("Mul", ["bound", mask3], "bound_masked")], OUTPUT_NAME)
    inputs = [
        helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", n_max, k]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", n_max]),
        helper.make_tensor_value_info("bound", TensorProto.FLOAT, ["n", n_max, 3]),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", n_max, 3])]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hepsafe", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def graph_weights(model: Any) -> dict[str, np.ndarray]:
    """The named weights (initializers) of an adversary graph, float32 arrays."""
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}


def probe_inputs(n_max: int, k: int, n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Random graph inputs to compare two implementations of one network: ``n`` jets with
    random multiplicities, standard-normal features ``(n, n_max, k)`` (0 on padding) and
    bounds ``|N(0, 0.02)|``; float32."""
    rng = np.random.default_rng(seed)
    mask = np.arange(n_max)[None, :] < rng.integers(0, n_max + 1, size=(n, 1))
    return {"features": (rng.normal(size=(n, n_max, k)) * mask[..., None]).astype(np.float32),
            "mask": mask.astype(np.float32),
            "bound": (np.abs(rng.normal(size=(n, n_max, 3))) * 0.02).astype(np.float32)}


def rebuild_graph(path: str | os.PathLike[str]) -> float:
    """Rewrite the exported adversary at ``path`` in the current graph layout of
    :func:`build_graph`, from its own weights (the same network), and update its card's
    ``model/sha256``. Graphs exported by older versions run, but slower. Both files are
    written atomically, only after ONNX Runtime agrees with the old graph on random inputs
    (max |difference| of the deltas <= 1e-6, returned); ModelError otherwise."""
    import onnx
    import onnxruntime as ort

    p = Path(path)
    card = load_adversary_card(card_path(p))
    if card["model"].get("sha256") not in (None, sha256sum(p)):
        raise CardError(f"adversary card of {p}: key 'model/sha256' does not match the file")
    old = onnx.load(str(p))
    n_max, arch = int(card["inputs"]["n_max"]), card["architecture"]
    new = build_graph(graph_weights(old), n_max, int(arch["n_phi"]), int(arch["n_head"]),
                      name=old.graph.name)
    feed = probe_inputs(n_max, len(card["inputs"]["features"]), 16)
    deltas = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
              .run([OUTPUT_NAME], feed)[0] for m in (old, new)]
    diff = float(np.max(np.abs(deltas[0] - deltas[1])))
    if not diff <= 1e-6:
        raise ModelError(f"{p}: the rebuilt graph disagrees with the stored one by {diff}")
    with atomic_path(p) as tmp:
        tmp.write_bytes(new.SerializeToString())
    card["model"]["sha256"] = sha256sum(p)
    write_json(card_path(p), card)
    return diff


# --------------------------------------------------------------------------- the card
_CARD_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str, "name": str, "model": dict, "inputs": dict, "architecture": dict,
    "envelope": dict, "preserve": list, "target": str, "tagger": dict, "training": dict,
}


def load_adversary_card(card: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read (if a path) and check an adversary card; :class:`CardError` names the bad key."""
    if isinstance(card, Mapping):
        doc, where = dict(card), "adversary card"
    else:
        where = f"adversary card {Path(card)}"
        doc = read_json(card, CardError, where, missing="no such file (the ONNX file needs its "
                        "JSON card beside it, same stem)")
    for key, typ in _CARD_KEYS.items():
        if key not in doc:
            raise CardError(f"{where}: missing key '{key}'")
        if not isinstance(doc[key], typ):
            raise CardError(f"{where}: key '{key}' must be a {typ}, got "
                            f"{type(doc[key]).__name__}")
    if doc["format"] != CARD_FORMAT:
        raise CardError(f"{where}: key 'format' is {doc['format']!r}, expected {CARD_FORMAT!r}")
    if doc["target"] not in ("down", "up"):
        raise CardError(f"{where}: key 'target' must be 'down' or 'up', got {doc['target']!r}")
    for key in ("features", "n_max"):
        if key not in doc["inputs"]:
            raise CardError(f"{where}: missing key 'inputs/{key}'")
    for key in ("n_phi", "n_head"):
        if key not in doc["architecture"]:
            raise CardError(f"{where}: missing key 'architecture/{key}'")
    return doc


# --------------------------------------------------------------------------- appliers
class AdversaryNetwork(Attack):
    """Shared part of the learned adversaries: a network ``g`` maps a batch's padded inputs
    (:func:`adversary_inputs`) to padded deltas, which are projected through the kernels.

    Subclasses provide :meth:`padded_delta`; ``n_max``, ``features`` and ``direction``
    (-1 "down", +1 "up": the target the network was trained for) are set by them.
    """

    name = "learned"
    n_max: int = 0
    features: tuple[str, ...] = DEFAULT_FEATURES
    direction: float | None = None
    classes: tuple[str, ...] = ()
    signal: str | None = None

    def padded_delta(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The network's deltas float32 ``(n, n_max, 3)`` for inputs of :func:`adversary_inputs`."""
        raise NotImplementedError

    def _direction_of(self, target: str) -> float:
        """-1 or +1 for ``target``; the label-aware targets are -1: g is trained to push
        the signal down while holding the background fixed, its own label-aware objective
        (it does not see labels when applied, so none are needed)."""
        if target in LABEL_TARGETS:
            return -1.0
        if self.tagger is not None:
            return resolve_target(self.tagger, target)
        if target in ("down", "up"):
            return -1.0 if target == "down" else 1.0
        if target not in self.classes:
            raise ConfigError(f"option 'target': '{target}' is neither 'down', 'up', "
                              f"{' nor '.join(repr(t) for t in LABEL_TARGETS)} nor a class of "
                              f"the adversary's tagger (classes {list(self.classes)})")
        return 1.0 if target == self.signal else -1.0

    def objective(self, jets: JetBatch, target: str) -> Objective:
        """The direction ``g`` was trained for, the same for every jet (``target`` must ask
        for it; a label-aware target asks for "down")."""
        if self.direction is None:
            raise ConfigError(f"{type(self).__name__}: no trained network (call fit() or load())")
        direction = self._direction_of(target)
        if direction != self.direction:
            trained = "down" if self.direction < 0 else "up"
            raise ConfigError(f"option 'target': '{target}' asks for the other direction than "
                              f"the network was trained for ('{trained}'); train one with "
                              f"target='{'up' if trained == 'down' else 'down'}'")
        return Objective(np.full(len(jets), direction))

    def __call__(self, jets: JetBatch, target: str = "down") -> Perturbation:
        """Apply ``g`` to ``jets`` (one forward pass per batch), then project through the
        kernels (inside the envelope, preserved observables restored). ``target`` must be
        the direction ``g`` was trained for ("down", "up" or a class of the tagger; the
        label-aware "signal_down_background_up" and "true_label" mean the network's own
        objective, signal down with the background held fixed, so "down"). Every jet gets
        the same g, whatever its label; ``info.target`` records ``target``."""
        if not isinstance(jets, JetBatch):
            raise InputError(f"{self.name}: expected a JetBatch, got {type(jets).__name__}")
        self.objective(jets, target)  # checks the target before any work
        return super().__call__(jets, target)

    def delta(self, jets: JetBatch) -> np.ndarray:
        """The network's raw delta on the flat layout, float32 ``(n_constituents, 3)``.

        Inside the envelope box by construction; preserved observables not yet restored.
        """
        inputs, index = adversary_inputs(jets, self.n_max, self.features, self.envelope)
        return flat_delta(self.padded_delta(inputs), index, int(jets.n_parts.sum()))

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        applied, _ = perturber.project(self.delta(jets))
        return applied


class OnnxAdversary(AdversaryNetwork):
    """An exported adversary applied with ONNX Runtime alone (no torch).

    ``path``: the ``.onnx`` file; ``card``: its card (default the ``.json`` beside it).
    ``envelope``: the envelope to apply (default the card's, the one it was trained in);
    ``preserve`` default the card's. ``tagger`` is optional (only to check that it is the
    one the adversary was trained against). Call as any attack:
    ``OnnxAdversary(path)(jets, "down") -> Perturbation``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        card: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        envelope: Envelope | None = None,
        preserve: Sequence[str] | None = None,
        tagger: OnnxTagger | None = None,
        batch_size: int = 512,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"{self.path}: no such ONNX file")
        self.card = load_adversary_card(card_path(self.path) if card is None else card)
        digest = self.card["model"].get("sha256")
        if digest is not None and digest != sha256sum(self.path):
            raise CardError(f"adversary card of {self.path}: key 'model/sha256' does not match "
                            "the file (card and model do not belong together)")
        env = envelope if envelope is not None else Envelope.from_dict(self.card["envelope"])
        keep = tuple(self.card["preserve"]) if preserve is None else tuple(preserve)
        # without a tagger the base class keeps None: this class checks for it where it
        # needs one (resolve_target)
        super().__init__(cast(OnnxTagger, tagger), env, keep, batch_size,
                         int(self.card["training"].get("seed", 0)))
        tcard = self.card["tagger"]
        if tagger is not None and tcard.get("sha256") not in (None, sha256sum(tagger.path)):
            raise ModelError(f"{self.path}: trained against tagger '{tcard.get('name')}' "
                             f"(sha256 {str(tcard.get('sha256'))[:12]}...), not {tagger.path}")
        try:
            model = onnx.load(str(self.path))
            onnx.checker.check_model(model)
        except Exception as exc:
            raise ModelError(f"{self.path}: not a valid ONNX model ({exc})") from exc
        names = [i.name for i in model.graph.input]
        if names != list(INPUT_NAMES) or [o.name for o in model.graph.output] != [OUTPUT_NAME]:
            raise ModelError(f"{self.path}: graph inputs {names} / outputs "
                             f"{[o.name for o in model.graph.output]}, expected "
                             f"{list(INPUT_NAMES)} / ['{OUTPUT_NAME}']")
        so = ort.SessionOptions()
        if intra_op_threads is not None:
            so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        self.n_max = int(self.card["inputs"]["n_max"])
        self.features = tuple(self.card["inputs"]["features"])
        self.direction = -1.0 if self.card["target"] == "down" else 1.0
        self.classes = tuple(tcard.get("classes", ()))
        self.signal = tcard.get("signal")

    def __repr__(self) -> str:
        return (f"OnnxAdversary({self.path.name}, target '{self.card['target']}', tagger "
                f"'{self.card['tagger'].get('name')}', n_max {self.n_max})")

    def details(self) -> dict[str, Any]:
        return {**super().details(), "model": str(self.path),
                "sha256": self.card["model"].get("sha256")}

    def padded_delta(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.float32) for k in INPUT_NAMES}
        n = feed["features"].shape
        if len(n) != 3 or n[1] != self.n_max or n[2] != len(self.features):
            raise InputError(f"adversary input 'features' has shape {n}, expected "
                             f"(n, {self.n_max}, {len(self.features)})")
        if n[0] == 0:
            return np.zeros((0, self.n_max, 3), dtype=np.float32)
        return self.session.run([OUTPUT_NAME], feed)[0]
