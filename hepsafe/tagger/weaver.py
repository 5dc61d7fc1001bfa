"""A model card (format 2) from weaver-core's export: ``model.onnx`` and ``preprocess.json``.

weaver-core (``weaver --export-onnx``) writes the network as ONNX with channels-first inputs
(``pf_points (N, 2, P)``, ``pf_features (N, C, P)``, ``pf_vectors (N, 4, P)``, ``pf_mask
(N, 1, P)``) and, beside it, ``preprocess.json``: per input its ``var_names``,
``var_length`` (the pad length) and per variable ``var_infos`` (``median`` = centre,
``norm_factor`` = scale, ``lower_bound`` / ``upper_bound`` = clip bounds, ``pad``), and the
class labels in ``output_names``. :func:`card_from_weaver` maps each variable to a hepsafe
feature by its name (:data:`VARIABLES`, after the ``part_`` / ``pfcand_`` / ``pf_`` prefix
is dropped) or by the user's ``mapping``; a variable it cannot map is a
:class:`~hepsafe.exceptions.CardError` naming it and how to declare it.

The card keeps every input of ``preprocess.json``: those the exporter dropped from the graph
(the network does not use them) are ignored by :class:`~hepsafe.tagger.onnx.OnnxTagger`.
Weaver's jet-level quantities (``jet_pt``, ``jet_energy`` in ``part_logptrel`` ...) are the
sums of the constituents here.

Examples
--------
>>> feature_of("part_pt_log"), feature_of("pfcand_etarel"), feature_of("part_isPhoton")
('log_pt', 'deta', 'is_photon')
>>> feature_of("part_d0val") is None
True
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepsafe._files import error_reason, read_json, sha256sum
from hepsafe.exceptions import CardError, ModelError
from hepsafe.tagger import features as F
from hepsafe.tagger.card import CARD_FORMAT, load_card

#: weaver variable names (lower case, prefix and underscores dropped) -> hepsafe features
VARIABLES: Mapping[str, str] = {
    "px": "px", "py": "py", "pz": "pz", "energy": "energy", "e": "energy", "pt": "pt",
    "ptlog": "log_pt", "logpt": "log_pt", "elog": "log_e", "loge": "log_e",
    "energylog": "log_e", "logenergy": "log_e",
    "logptrel": "log_ptrel", "ptrellog": "log_ptrel", "logerel": "log_erel",
    "erellog": "log_erel", "ptrel": "ptrel", "erel": "erel",
    "deta": "deta", "etarel": "deta", "dphi": "dphi", "phirel": "dphi",
    "deltar": "dr", "dr": "dr", "charge": "charge",
    "eta": "eta", "abseta": "abs_eta", "phi": "phi",
    "ischargedhadron": "is_charged_hadron", "ischargedhad": "is_charged_hadron",
    "isneutralhadron": "is_neutral_hadron", "isneutralhad": "is_neutral_hadron",
    "isphoton": "is_photon", "isgamma": "is_photon",
    "iselectron": "is_electron", "isel": "is_electron",
    "ismuon": "is_muon", "ismu": "is_muon",
}
#: weaver's jet-level variables -> hepsafe jet features
JET_VARIABLES: Mapping[str, str] = {
    "pt": "pt", "eta": "eta", "phi": "phi", "mass": "mass", "energy": "energy",
    "nparticles": "n_constituents", "npfcands": "n_constituents",
}
_PREFIXES = ("jet_pfcand_", "pfcand_", "part_", "pf_", "cand_")
#: weaver's bounds for a variable it does not standardise
_NO_BOUND = 1e31


def _key(var: str, prefixes: Sequence[str]) -> str:
    v = var.lower()
    for p in prefixes:
        if v.startswith(p):
            v = v[len(p):]
            break
    return re.sub(r"[_\W]", "", v)


def feature_of(var: str) -> str | None:
    """The hepsafe constituent feature of a weaver variable name, or None."""
    return VARIABLES.get(_key(var, _PREFIXES))


def _is_mask(var: str) -> bool:
    return _key(var, _PREFIXES) == "mask"


def _standardisation(info: Mapping[str, Any]) -> dict[str, float]:
    """The card keys of one variable's ``var_infos`` (what changes anything)."""
    out: dict[str, float] = {}
    centre, scale = float(info.get("median", 0.0)), float(info.get("norm_factor", 1.0))
    lo, hi = float(info.get("lower_bound", -math.inf)), float(info.get("upper_bound", math.inf))
    if centre != 0.0:
        out["centre"] = centre
    if scale != 1.0:
        out["scale"] = scale
    if lo > -_NO_BOUND:
        out["min"] = lo
    if hi < _NO_BOUND:
        out["max"] = hi
    if float(info.get("pad", 0.0)) != 0.0:
        out["pad"] = float(info["pad"])
    return out


def _mapped(var: str, mapping: Mapping[str, str], jet: bool, where: str, group: str
            ) -> dict[str, str]:
    if var in mapping:
        target = mapping[var]
        if target.startswith("field:"):
            return {"field": target[6:]}
        known = F.JET_FEATURES if jet else F.CONSTITUENT_FEATURES
        if target not in known:
            raise CardError(f"option 'map': {var}={target}: '{target}' is not a hepsafe "
                            f"{'jet' if jet else 'constituent'} feature (known: {list(known)}; "
                            "or field:NAME for a constituent field of the JetBatch)")
        return {"feature": target}
    found = JET_VARIABLES.get(_key(var, ("jet_", "fj_"))) if jet else feature_of(var)
    if found is None:
        raise CardError(f"{where}: variable '{var}' of input '{group}' has no hepsafe feature; "
                        f"declare it with --map {var}=FEATURE (a feature of "
                        f"hepsafe.tagger.features) or --map {var}=field:NAME (a constituent "
                        "field of the jets, e.g. d0)")
    return {"feature": found}


def _graph(model_path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(model_path))
    except FileNotFoundError:
        raise ModelError(f"{model_path}: no such ONNX file") from None
    except Exception as exc:
        raise ModelError(f"{model_path}: not a valid ONNX model ({error_reason(exc)})") from exc


def _class_names(prep: Mapping[str, Any], classes: Sequence[str] | None, n_out: int | None,
                 where: str) -> list[str]:
    if classes:
        names = list(classes)
    else:
        labels = prep.get("output_names")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise CardError(f"{where}: key 'output_names' gives no class labels; name the "
                            "classes with --classes A,B,...")
        names = [x[6:] if x.startswith("label_") else x for x in labels]
    if n_out is not None and len(names) != n_out:
        raise CardError(f"{where}: {len(names)} class name(s) {names}, but the graph output has "
                        f"{n_out} columns; name them with --classes")
    return names


def _pick(given: Sequence[str], names: Sequence[str], option: str) -> list[str]:
    out = []
    for c in given:
        name = c[6:] if c.startswith("label_") and c[6:] in names else c
        if name not in names:
            raise CardError(f"option '{option}': '{c}' is not a class (classes: {list(names)})")
        out.append(name)
    return out


def card_from_weaver(
    model: str | os.PathLike[str],
    preprocess: str | os.PathLike[str],
    signal: Sequence[str],
    background: Sequence[str] = (),
    classes: Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    pad_mode: str = "wrap",
    name: str | None = None,
    license: str = "unknown",
    citation: str | None = None,
    card_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """A validated format-2 card for a weaver-exported ONNX file and its ``preprocess.json``.

    ``signal`` / ``background``: class names (``label_`` prefix optional) of the score
    ``S / (S + B)`` (``background`` empty: all other classes); ``classes``: the class names
    (default ``output_names`` of ``preprocess.json``, prefix ``label_`` dropped);
    ``mapping``: weaver variable -> hepsafe feature or ``field:NAME``, for names the
    built-in table (:data:`VARIABLES`) lacks; ``pad_mode``: "wrap" (weaver's example
    configurations for ParticleNet and ParT; ParT gives NaN on zero-padded four-vectors) or
    "constant": the training's ``pad_mode``, which ``preprocess.json`` does not record;
    ``card_dir``: where the card will be written (its ``model/file`` is relative to it;
    default the model's folder). Raises :class:`CardError` naming the file, key, variable
    or option at fault.
    """
    import onnx

    model_path, prep_path = Path(model), Path(preprocess)
    where = str(prep_path)
    g = _graph(model_path)
    prep = read_json(prep_path, CardError, where, missing="no such file (weaver writes "
                     "preprocess.json beside the exported model)")
    if not isinstance(prep, Mapping) or not isinstance(prep.get("input_names"), list):
        raise CardError(f"{where}: key 'input_names': missing; not a weaver preprocess.json")
    if pad_mode not in ("constant", "wrap"):
        raise CardError(f"option 'pad_mode' must be 'constant' or 'wrap', got {pad_mode!r}")
    mapping = dict(mapping or {})
    inits = {i.name for i in g.graph.initializer}
    graph_in = {v.name: v for v in g.graph.input if v.name not in inits}
    extra = [n for n in graph_in if n not in prep["input_names"]]
    if extra:
        raise CardError(f"{where}: key 'input_names': graph input(s) {extra} of {model_path} "
                        f"are not in preprocess.json (it lists {prep['input_names']})")

    inputs: list[dict[str, Any]] = []
    for group in prep["input_names"]:
        spec = prep.get(group)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("var_names"), list):
            raise CardError(f"{where}: key '{group}/var_names': missing for input '{group}'")
        var_names = [str(v) for v in spec["var_names"]]
        infos = spec.get("var_infos", {})
        length = spec.get("var_length")
        v = graph_in.get(group)
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] if v else []
        dtype = "float32"
        if v is not None:
            et = v.type.tensor_type.elem_type
            dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64",
                     onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool"}.get(et, "?")
            if dtype == "?":
                raise CardError(f"{model_path}: input '{group}' has an ONNX dtype ({et}) a card "
                                "cannot declare (float32, float64, int64, bool)")
        if length is None:  # a jet-level input (N, C)
            feats = [{"name": var, **_mapped(var, mapping, True, where, group),
                      **_standardisation(infos.get(var, {}))} for var in var_names]
            inputs.append({"name": group, "kind": "jet", "features": feats, "n_max": 0,
                           "dtype": dtype})
            continue
        entry: dict[str, Any] = {"name": group, "n_max": int(length), "layout": "NCP",
                                 "dtype": dtype, "ordering": "pt_desc",
                                 "pad_length": "dynamic" if len(dims) > 2
                                 and isinstance(dims[2], str) else "fixed"}
        if len(var_names) == 1 and _is_mask(var_names[0]) and var_names[0] not in mapping:
            entry.update(kind="mask", rank=3)
            entry["description"] = f"weaver variable {var_names[0]}: 1 real, 0 padding"
        else:
            feats = [{"name": var, **_mapped(var, mapping, False, where, group),
                      **_standardisation(infos.get(var, {}))} for var in var_names]
            entry.update(kind="constituent", features=feats, pad_mode=pad_mode)
        if v is None:
            entry["description"] = (f"not an input of {model_path.name} (the exporter dropped "
                                    "it: the network does not use it); ignored")
        inputs.append(entry)
    # jet-level inputs: computed from as many constituents as the longest particle input
    longest = max((d["n_max"] for d in inputs if d["kind"] != "jet"), default=128)
    for d in inputs:
        if d["kind"] == "jet":
            d["n_max"] = longest
    masks = {d["n_max"]: d["name"] for d in inputs if d["kind"] == "mask"}
    for d in inputs:
        if d["kind"] == "constituent" and d["n_max"] in masks:
            d["mask"] = masks[d["n_max"]]

    if len(g.graph.output) < 1:
        raise ModelError(f"{model_path}: the graph has no output")
    out = g.graph.output[0]
    odims = [d.dim_value if d.HasField("dim_value") else None
             for d in out.type.tensor_type.shape.dim]
    n_out = odims[1] if len(odims) == 2 else None
    producer = next((n for n in g.graph.node if out.name in n.output), None)
    activation = "softmax" if producer is not None and producer.op_type == "Softmax" else "logits"
    names = _class_names(prep, classes, n_out, where)
    sig = _pick(signal, names, "signal")
    if not sig:
        raise CardError("option 'signal': name at least one signal class")
    bkg = _pick(background, names, "background")
    n_params = sum(math.prod(i.dims) for i in g.graph.initializer)
    card_dir = Path(card_dir) if card_dir is not None else model_path.parent
    opset = next((o.version for o in g.opset_import if o.domain in ("", "ai.onnx")), None)
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": name or (model_path.parent.name if model_path.stem == "model"
                         else model_path.stem) or "weaver",
        "description": f"weaver-core export {model_path.name} with {prep_path.name}",
        "model": {"file": os.path.relpath(model_path.resolve(), card_dir.resolve()),
                  "sha256": sha256sum(model_path), "n_parameters": int(n_params),
                  **({"opset": int(opset)} if opset else {})},
        "inputs": inputs,
        "output": {"name": out.name, "activation": activation, "classes": names,
                   "signal": sig[0] if len(sig) == 1 else sig,
                   **({"background": bkg} if bkg else {}),
                   "description": "score = S / (S + B), the summed probabilities of the signal "
                                  "and background classes"},
        "source": {"origin": "weaver-core export (weaver --export-onnx)", "license": license,
                   "files": {model_path.name: sha256sum(model_path),
                             prep_path.name: sha256sum(prep_path)},
                   **({"citation": citation} if citation else {})},
        "license": license,
    }
    load_card(card, where=f"card made from {model_path} and {prep_path}")
    return card


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["VAR=FEATURE", "VAR=field:NAME", ...]`` (option ``--map``) as a dict."""
    out = {}
    for item in items:
        var, sep, target = item.partition("=")
        if not sep or not var or not target:
            raise CardError(f"option 'map': '{item}' is not VAR=FEATURE or VAR=field:NAME")
        out[var] = target
    return out
