"""The tagger's model card (``schemas/tagger.schema.json``): input and output specs, loading,
semantic checks, and the check of an ONNX graph against its card."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import read_json
from hepsafe._schemas import validate
from hepsafe.exceptions import CardError, ModelError
from hepsafe.tagger import features as F

CARD_FORMAT = "hepsafe-tagger/1"

# --------------------------------------------------------------------------- the card
@dataclass(frozen=True)
class InputSpec:
    """One ONNX input as the card describes it.

    ``kind`` "constituent": shape ``(n, n_max, len(features))``; "jet": ``(n, len(features))``
    from the first ``n_max`` constituents; "mask": ``(n, n_max)``, 1.0 real / 0.0 padding.
    """

    name: str
    kind: str
    features: tuple[str, ...]
    n_max: int
    mask: str | None = None

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Expected shape, ``None`` for the dynamic batch axis."""
        if self.kind == "constituent":
            return (None, self.n_max, len(self.features))
        if self.kind == "jet":
            return (None, len(self.features))
        return (None, self.n_max)


@dataclass(frozen=True)
class OutputSpec:
    """The score output: name, activation, class names and the signal class."""

    name: str
    activation: str
    classes: tuple[str, ...]
    signal: str

    @property
    def signal_index(self) -> int:
        """Index of the signal class in :attr:`classes`."""
        return self.classes.index(self.signal)

    @property
    def binary(self) -> bool:
        """True when the output is one number per jet (sigmoid or logit)."""
        return self.activation in ("sigmoid", "logit")


def card_path(model_path: str | os.PathLike[str]) -> Path:
    """The card of an ONNX file: same directory and stem, suffix ``.json``."""
    return Path(model_path).with_suffix(".json")


def load_card(card: str | os.PathLike[str] | Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Read (if a path) and validate a model card; raise :class:`CardError` naming the key."""
    if isinstance(card, Mapping):
        data = dict(card)
        where = where or "model card"
    else:
        where = where or f"model card {Path(card)}"
        data = read_json(card, CardError, where, missing="no such file (a tagger needs its JSON "
                         "card beside the ONNX file, same stem)")
    validate(data, "tagger", what=where, error=CardError)
    _check_card_semantics(data, where)
    return data


def _specs(card: Mapping[str, Any]) -> tuple[list[InputSpec], OutputSpec]:
    ins = [
        InputSpec(
            name=d["name"],
            kind=d["kind"],
            features=tuple(d.get("features", ())),
            n_max=int(d["n_max"]),
            mask=d.get("mask"),
        )
        for d in card["inputs"]
    ]
    o = card["output"]
    out = OutputSpec(o["name"], o["activation"], tuple(o["classes"]), o["signal"])
    return ins, out


def _check_card_semantics(card: Mapping[str, Any], where: str) -> None:
    ins, out = _specs(card)
    names = [s.name for s in ins]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CardError(f"{where}: key 'inputs': input name(s) {dup} appear more than once")
    by_name = {s.name: s for s in ins}
    for i, s in enumerate(ins):
        known = F.CONSTITUENT_FEATURES if s.kind == "constituent" else F.JET_FEATURES
        unknown = [f for f in s.features if f not in known]
        if unknown:
            raise CardError(f"{where}: key 'inputs/{i}/features': unknown {s.kind} feature(s) "
                            f"{unknown} in input '{s.name}'; known: {list(known)}")
        if s.mask is not None:
            if s.kind != "constituent":
                raise CardError(f"{where}: key 'inputs/{i}/mask': only constituent inputs "
                                f"name a mask, input '{s.name}' is of kind '{s.kind}'")
            m = by_name.get(s.mask)
            if m is None or m.kind != "mask":
                raise CardError(f"{where}: key 'inputs/{i}/mask': input '{s.name}' names mask "
                                f"'{s.mask}', which is not a mask input of the card")
            if m.n_max != s.n_max:
                raise CardError(f"{where}: key 'inputs/{i}/mask': mask '{m.name}' has n_max "
                                f"{m.n_max}, input '{s.name}' has {s.n_max}")
    if out.signal not in out.classes:
        raise CardError(f"{where}: key 'output/signal': '{out.signal}' is not one of the "
                        f"classes {list(out.classes)}")
    if out.binary and len(out.classes) != 2:
        raise CardError(f"{where}: key 'output/activation': '{out.activation}' gives one number "
                        f"per jet, so exactly 2 classes are expected, got {list(out.classes)}")
    rep = card.get("representation")
    if rep is not None and rep["name"] == out.name:
        raise CardError(f"{where}: key 'representation/name': '{rep['name']}' is the score "
                        "output itself")


# --------------------------------------------------------------------------- the graph
def _dims(value_info: Any) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type)


def _graph_inputs(model: Any) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _check_value(v: Any, expected: tuple[int | None, ...], what: str,
                 allowed_ranks: Sequence[int] | None = None) -> None:
    import onnx

    et = v.type.tensor_type.elem_type
    if et != onnx.TensorProto.FLOAT:
        raise ModelError(f"{what} has dtype {_dtype_name(et)}, expected float32")
    dims = _dims(v)
    ranks = list(allowed_ranks) if allowed_ranks else [len(expected)]
    if len(dims) not in ranks:
        exp = " or ".join(str(r) for r in ranks)
        raise ModelError(f"{what} has rank {len(dims)} (shape {dims}), expected rank {exp} "
                         f"(shape {list(expected)}, None = dynamic batch)")
    if isinstance(dims[0], int):
        raise ModelError(f"{what} has a fixed batch size {dims[0]} on axis 0, expected a "
                         "dynamic batch axis (dim_param)")
    for axis, (d, e) in enumerate(zip(dims[1:], expected[1:], strict=False), start=1):
        if isinstance(d, int) and e is not None and d != e:
            raise ModelError(f"{what} has size {d} on axis {axis} (shape {dims}), expected {e} "
                             f"(shape {list(expected)})")


def check_graph(model: Any, card: Mapping[str, Any], where: str = "model") -> None:
    """Check an ``onnx.ModelProto`` against a (validated) card.

    Input and output names, dtypes (float32), ranks, fixed sizes and the dynamic batch
    axis; raises :class:`ModelError` naming the input or output and what was expected.
    """
    ins, out = _specs(card)
    graph_in = {v.name: v for v in _graph_inputs(model)}
    graph_out = {v.name: v for v in model.graph.output}
    card_names = [s.name for s in ins]
    missing = [n for n in card_names if n not in graph_in]
    extra = [n for n in graph_in if n not in card_names]
    if missing or extra:
        raise ModelError(
            f"{where}: inputs disagree with the card: card input(s) {missing} not in the graph, "
            f"graph input(s) {extra} not in the card (graph inputs: {list(graph_in)}, card "
            f"inputs: {card_names})"
        )
    for s in ins:
        _check_value(graph_in[s.name], s.shape, f"{where}: input '{s.name}' ({s.kind})")
    if out.name not in graph_out:
        raise ModelError(f"{where}: output '{out.name}' named by the card is not a graph output "
                         f"(graph outputs: {list(graph_out)})")
    if out.binary:
        _check_value(graph_out[out.name], (None, 1), f"{where}: output '{out.name}' "
                     f"({out.activation})", allowed_ranks=(1, 2))
    else:
        _check_value(graph_out[out.name], (None, len(out.classes)),
                     f"{where}: output '{out.name}' ({out.activation})")
    rep = card.get("representation")
    if rep is not None:
        if rep["name"] not in graph_out:
            raise ModelError(f"{where}: representation output '{rep['name']}' is not a graph "
                             f"output (graph outputs: {list(graph_out)})")
        _check_value(graph_out[rep["name"]], (None, int(rep["dim"])),
                     f"{where}: representation output '{rep['name']}'")
