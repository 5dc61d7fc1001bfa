"""The tagger's model card (``schemas/tagger.schema.json``): input and output specs, loading,
semantic checks, and the check of an ONNX graph against its card."""

from __future__ import annotations

import math
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

CARD_FORMAT = "hepsafe-tagger/2"
#: the card formats :func:`load_card` reads
CARD_FORMATS = ("hepsafe-tagger/1", "hepsafe-tagger/2")
#: keys of an input that only format 2 knows
_V2_INPUT_KEYS = ("layout", "rank", "pad_length", "pad_mode")
#: graph dtypes of the inputs
DTYPES = ("float32", "float64", "int64", "bool")


# --------------------------------------------------------------------------- the card
@dataclass(frozen=True)
class Standardise:
    """A feature's standardisation (weaver's convention): ``(x - centre) * scale`` clipped to
    ``[lo, hi]`` on real constituents; padding slots hold ``pad``."""

    centre: float = 0.0
    scale: float = 1.0
    lo: float = -math.inf
    hi: float = math.inf
    pad: float = 0.0

    @property
    def identity(self) -> bool:
        """True when it changes nothing (no shift, scale 1, no bounds, pad 0)."""
        return (self.centre == 0.0 and self.scale == 1.0 and self.lo == -math.inf
                and self.hi == math.inf and self.pad == 0.0)


@dataclass(frozen=True)
class InputSpec:
    """One ONNX input as the card describes it.

    ``kind`` "constituent": shape ``(n, n_max, len(features))`` (``layout`` "NPC") or ``(n,
    len(features), n_max)`` ("NCP"); "jet": ``(n, len(features))`` from the first ``n_max``
    constituents; "mask": ``(n, n_max)``, 1 real / 0 padding, or with ``rank`` 3 a channel
    axis of size 1 placed as ``layout`` says. ``features`` are hepsafe feature names, or
    ``field:NAME`` for a constituent field of the JetBatch; ``transforms`` the per-feature
    :class:`Standardise` (empty: none). ``dtype`` the graph's input dtype; ``pad_length``
    "fixed" or "dynamic" (the graph's axis; hepsafe always pads to ``n_max``); ``pad_mode``
    "constant" or "wrap".
    """

    name: str
    kind: str
    features: tuple[str, ...]
    n_max: int
    mask: str | None = None
    layout: str = "NPC"
    rank: int = 2
    dtype: str = "float32"
    pad_length: str = "fixed"
    pad_mode: str = "constant"
    transforms: tuple[Standardise, ...] = ()
    variables: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Expected shape, ``None`` for the dynamic batch axis (and a dynamic pad length)."""
        p = None if self.pad_length == "dynamic" else self.n_max
        if self.kind == "constituent":
            c = len(self.features)
            return (None, c, p) if self.layout == "NCP" else (None, p, c)
        if self.kind == "jet":
            return (None, len(self.features))
        if self.rank == 3:
            return (None, 1, p) if self.layout == "NCP" else (None, p, 1)
        return (None, p)

    @property
    def fields(self) -> tuple[str, ...]:
        """The JetBatch constituent fields the features read beyond the kinematics."""
        out = [f.split(":", 1)[1] for f in self.features if f.startswith("field:")]
        out += [F.FEATURE_FIELDS[f] for f in self.features if f in F.FEATURE_FIELDS]
        return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class OutputSpec:
    """The score output: name, activation, class names, and the score's classes.

    The score is ``S / (S + B)``, S and B the summed probabilities of ``signal_classes`` and
    ``background_classes`` (default: the signal class against all others, i.e. its
    probability); ``signal`` is the signal's label (the class, or the classes joined by +).
    """

    name: str
    activation: str
    classes: tuple[str, ...]
    signal: str
    signal_classes: tuple[str, ...] = ()
    background_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.signal_classes:
            object.__setattr__(self, "signal_classes", (self.signal,))
        if not self.background_classes:
            others = tuple(c for c in self.classes if c not in self.signal_classes)
            object.__setattr__(self, "background_classes", others)

    @property
    def signal_index(self) -> int:
        """Index of the (first) signal class in :attr:`classes`."""
        return self.classes.index(self.signal_classes[0])

    @property
    def signal_indices(self) -> tuple[int, ...]:
        """Indices of the signal classes in :attr:`classes`."""
        return tuple(self.classes.index(c) for c in self.signal_classes)

    @property
    def background_indices(self) -> tuple[int, ...]:
        """Indices of the background classes in :attr:`classes`."""
        return tuple(self.classes.index(c) for c in self.background_classes)

    @property
    def ratio(self) -> bool:
        """True when the score is a ratio of class sums other than one class's probability
        (several signal classes, or a background that leaves classes out)."""
        rest = set(self.classes) - set(self.signal_classes)
        return len(self.signal_classes) > 1 or set(self.background_classes) != rest

    @property
    def binary(self) -> bool:
        """True when the output is one number per jet (sigmoid or logit)."""
        return self.activation in ("sigmoid", "logit")


def card_path(model_path: str | os.PathLike[str]) -> Path:
    """The card of an ONNX file: same directory and stem, suffix ``.json``."""
    return Path(model_path).with_suffix(".json")


def load_card(card: str | os.PathLike[str] | Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Read (if a path) and validate a model card (format 1 or 2); raise :class:`CardError`
    naming the key."""
    if isinstance(card, Mapping):
        data = dict(card)
        where = where or "model card"
    else:
        where = where or f"model card {Path(card)}"
        data = read_json(card, CardError, where, missing="no such file (a tagger needs its JSON "
                         "card: beside the ONNX file, same stem, or given as card=...)")
    validate(data, "tagger", what=where, error=CardError)
    _check_card_semantics(data, where)
    return data


def _feature_of(f: str | Mapping[str, Any]) -> tuple[str, Standardise | None, str]:
    """(feature name, standardisation or None, source variable name) of a card feature."""
    if isinstance(f, str):
        return f, None, f
    name = f["feature"] if "feature" in f else f"field:{f['field']}"
    keys = ("centre", "scale", "min", "max", "pad")
    st = None
    if any(k in f for k in keys):
        st = Standardise(float(f.get("centre", 0.0)), float(f.get("scale", 1.0)),
                         float(f.get("min", -math.inf)), float(f.get("max", math.inf)),
                         float(f.get("pad", 0.0)))
    return name, st, str(f.get("name", name))


def _input_spec(d: Mapping[str, Any]) -> InputSpec:
    parsed = [_feature_of(f) for f in d.get("features", ())]
    transforms = tuple(st or Standardise() for _, st, _ in parsed)
    if all(t.identity for t in transforms):
        transforms = ()
    return InputSpec(
        name=d["name"],
        kind=d["kind"],
        features=tuple(n for n, _, _ in parsed),
        n_max=int(d["n_max"]),
        mask=d.get("mask"),
        layout=d.get("layout", "NPC"),
        rank=int(d.get("rank", 2)),
        dtype=d.get("dtype", "float32"),
        pad_length=d.get("pad_length", "fixed"),
        pad_mode=d.get("pad_mode", "constant"),
        transforms=transforms,
        variables=tuple(v for _, _, v in parsed),
    )


def _specs(card: Mapping[str, Any]) -> tuple[list[InputSpec], OutputSpec]:
    ins = [_input_spec(d) for d in card["inputs"]]
    o = card["output"]
    sig = o["signal"]
    sig_classes = (sig,) if isinstance(sig, str) else tuple(sig)
    out = OutputSpec(o["name"], o["activation"], tuple(o["classes"]), "+".join(sig_classes),
                     sig_classes, tuple(o.get("background", ())))
    return ins, out


def _check_card_semantics(card: Mapping[str, Any], where: str) -> None:
    v1 = card["format"] == "hepsafe-tagger/1"
    if v1:
        for i, d in enumerate(card["inputs"]):
            used = [k for k in _V2_INPUT_KEYS if k in d]
            feats = [j for j, f in enumerate(d.get("features", ())) if not isinstance(f, str)]
            if used or feats or d.get("dtype", "float32") != "float32":
                key = used[0] if used else (f"features/{feats[0]}" if feats else "dtype")
                raise CardError(f"{where}: key 'inputs/{i}/{key}': needs format "
                                f"'hepsafe-tagger/2' (the card says 'hepsafe-tagger/1')")
        for key in ("source",):
            if key in card:
                raise CardError(f"{where}: key '{key}': needs format 'hepsafe-tagger/2'")
        o = card["output"]
        if not isinstance(o["signal"], str) or "background" in o:
            raise CardError(f"{where}: key 'output/signal': a list of signal classes or a "
                            "'background' needs format 'hepsafe-tagger/2'")
    ins, out = _specs(card)
    names = [s.name for s in ins]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CardError(f"{where}: key 'inputs': input name(s) {dup} appear more than once")
    by_name = {s.name: s for s in ins}
    for i, s in enumerate(ins):
        known = F.CONSTITUENT_FEATURES if s.kind == "constituent" else F.JET_FEATURES
        unknown = [f for f in s.features if f not in known
                   and not (s.kind == "constituent" and f.startswith("field:"))]
        if unknown:
            raise CardError(f"{where}: key 'inputs/{i}/features': unknown {s.kind} feature(s) "
                            f"{unknown} in input '{s.name}'; known: {list(known)}"
                            + (" or {'field': NAME} for a constituent field of the JetBatch"
                               if s.kind == "constituent" else ""))
        if s.kind == "jet" and s.layout != "NPC":
            raise CardError(f"{where}: key 'inputs/{i}/layout': jet input '{s.name}' is "
                            f"(n, features); a layout applies to constituent and mask inputs")
        if s.kind != "mask" and s.rank != 2:
            raise CardError(f"{where}: key 'inputs/{i}/rank': only mask inputs take a rank, "
                            f"input '{s.name}' is of kind '{s.kind}'")
        if s.kind != "constituent" and s.pad_mode != "constant":
            raise CardError(f"{where}: key 'inputs/{i}/pad_mode': only constituent inputs wrap; "
                            f"input '{s.name}' is of kind '{s.kind}'")
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
        for j, t in enumerate(s.transforms):
            if not t.lo <= t.hi:
                raise CardError(f"{where}: key 'inputs/{i}/features/{j}': min {t.lo} is above "
                                f"max {t.hi}")
    for key, group in (("signal", out.signal_classes), ("background", out.background_classes)):
        bad = [c for c in group if c not in out.classes]
        if bad:
            what = f"'{bad[0]}' is" if len(bad) == 1 else f"{bad} are"
            raise CardError(f"{where}: key 'output/{key}': {what} not one of the classes "
                            f"{list(out.classes)}")
    both = sorted(set(out.signal_classes) & set(out.background_classes))
    if both:
        raise CardError(f"{where}: key 'output/background': class(es) {both} are also signal")
    if not out.background_classes:
        raise CardError(f"{where}: key 'output/signal': every class is signal; the score needs "
                        "at least one background class")
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


def _elem(v: Any) -> int:
    return int(v.type.tensor_type.elem_type)


def _elem_of(dtype: str) -> int:
    import onnx

    return int({"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE,
                "int64": onnx.TensorProto.INT64, "bool": onnx.TensorProto.BOOL}[dtype])


def _check_value(v: Any, expected: tuple[int | None, ...], what: str,
                 allowed_ranks: Sequence[int] | None = None, dtype: str = "float32") -> None:
    et = _elem(v)
    if et != _elem_of(dtype):
        raise ModelError(f"{what} has dtype {_dtype_name(et)}, expected {dtype} (the card's "
                         "'dtype')")
    dims = _dims(v)
    ranks = list(allowed_ranks) if allowed_ranks else [len(expected)]
    if len(dims) not in ranks:
        exp = " or ".join(str(r) for r in ranks)
        raise ModelError(f"{what} has rank {len(dims)} (shape {dims}), expected rank {exp} "
                         f"(shape {list(expected)}, None = dynamic)")
    if isinstance(dims[0], int):
        raise ModelError(f"{what} has a fixed batch size {dims[0]} on axis 0, expected a "
                         "dynamic batch axis (dim_param)")
    for axis, (d, e) in enumerate(zip(dims[1:], expected[1:], strict=False), start=1):
        if isinstance(d, int) and e is not None and d != e:
            raise ModelError(f"{what} has size {d} on axis {axis} (shape {dims}), expected {e} "
                             f"(shape {list(expected)})")


def graph_inputs(model: Any, card: Mapping[str, Any]) -> tuple[list[InputSpec], list[str]]:
    """The card's inputs that the graph has (card order), and the names of those it lacks.

    Exporters drop inputs a network does not use (weaver's ParticleNet: ``pf_vectors``);
    such card inputs are left out, not an error.
    """
    ins, _ = _specs(card)
    have = {v.name for v in _graph_inputs(model)}
    return [s for s in ins if s.name in have], [s.name for s in ins if s.name not in have]


def check_graph(model: Any, card: Mapping[str, Any], where: str = "model") -> None:
    """Check an ``onnx.ModelProto`` against a (validated) card.

    Input and output names, dtypes, ranks, fixed sizes (by the card's layout) and the dynamic
    batch axis; raises :class:`ModelError` naming the input or output, the axis and what was
    expected. Card inputs absent from the graph are allowed (see :func:`graph_inputs`), as
    long as one is left; graph inputs absent from the card are an error.
    """
    ins, out = _specs(card)
    graph_in = {v.name: v for v in _graph_inputs(model)}
    graph_out = {v.name: v for v in model.graph.output}
    card_names = [s.name for s in ins]
    extra = [n for n in graph_in if n not in card_names]
    present = [s for s in ins if s.name in graph_in]
    if extra or not present:
        missing = [n for n in card_names if n not in graph_in]
        raise ModelError(
            f"{where}: inputs disagree with the card: graph input(s) {extra} not in the card, "
            f"card input(s) {missing} not in the graph (graph inputs: {list(graph_in)}, card "
            f"inputs: {card_names})"
        )
    for s in present:
        _check_value(graph_in[s.name], s.shape, f"{where}: input '{s.name}' ({s.kind})",
                     dtype=s.dtype)
    if out.name not in graph_out:
        raise ModelError(f"{where}: output '{out.name}' named by the card is not a graph output "
                         f"(graph outputs: {list(graph_out)})")
    # outputs may be float32 or float64 (scores are computed in float64 either way)
    odt = "float64" if _elem(graph_out[out.name]) == _elem_of("float64") else "float32"
    if out.binary:
        _check_value(graph_out[out.name], (None, 1), f"{where}: output '{out.name}' "
                     f"({out.activation})", allowed_ranks=(1, 2), dtype=odt)
    else:
        _check_value(graph_out[out.name], (None, len(out.classes)),
                     f"{where}: output '{out.name}' ({out.activation})", dtype=odt)
    rep = card.get("representation")
    if rep is not None:
        if rep["name"] not in graph_out:
            raise ModelError(f"{where}: representation output '{rep['name']}' is not a graph "
                             f"output (graph outputs: {list(graph_out)})")
        _check_value(graph_out[rep["name"]], (None, int(rep["dim"])),
                     f"{where}: representation output '{rep['name']}'")
