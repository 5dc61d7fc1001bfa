"""Taggers: JetBatch -> scores. Model cards, input features, ONNX Runtime, the torch twin,
graph normalisation for it, weaver-core exports, training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.tagger._namespace import (
        Namespace,
        as_namespace,
        namespace,
    )
    from hepsafe.tagger.card import (
        CARD_FORMAT,
        CARD_FORMATS,
        InputSpec,
        OutputSpec,
        Standardise,
        card_path,
        check_graph,
        graph_inputs,
        load_card,
    )
    from hepsafe.tagger.features import (
        CONSTITUENT_FEATURES,
        FEATURE_FIELDS,
        JET_FEATURES,
        PADDED_FIELDS,
        Feature,
        constituent_features,
        jet_features,
        padded_constituents,
        standardise,
        wrap_pad,
    )
    from hepsafe.tagger.graph import (
        normalise_for_torch,
    )
    from hepsafe.tagger.onnx import (
        TORCH_TOLERANCE,
        OnnxTagger,
        reference,
        run_fixed_batches,
    )
    from hepsafe.tagger.torch import (
        score_np,
        signal_logit_np,
        to_torch,
    )
    from hepsafe.tagger.training import (
        MODELS,
        TrainConfig,
        TrainResult,
        default_config,
        train,
        train_reference,
    )
    from hepsafe.tagger.weaver import (
        card_from_weaver,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CARD_FORMAT": "card",
    "CARD_FORMATS": "card",
    "CONSTITUENT_FEATURES": "features",
    "FEATURE_FIELDS": "features",
    "Feature": "features",
    "InputSpec": "card",
    "JET_FEATURES": "features",
    "MODELS": "training",
    "Namespace": "_namespace",
    "OnnxTagger": "onnx",
    "OutputSpec": "card",
    "PADDED_FIELDS": "features",
    "Standardise": "card",
    "TORCH_TOLERANCE": "onnx",
    "TrainConfig": "training",
    "TrainResult": "training",
    "as_namespace": "_namespace",
    "card_from_weaver": "weaver",
    "card_path": "card",
    "check_graph": "card",
    "constituent_features": "features",
    "default_config": "training",
    "graph_inputs": "card",
    "jet_features": "features",
    "load_card": "card",
    "namespace": "_namespace",
    "normalise_for_torch": "graph",
    "padded_constituents": "features",
    "reference": "onnx",
    "run_fixed_batches": "onnx",
    "score_np": "torch",
    "signal_logit_np": "torch",
    "standardise": "features",
    "to_torch": "torch",
    "train": "training",
    "train_reference": "training",
    "wrap_pad": "features",
}
__all__ = [
    "CARD_FORMAT",
    "CARD_FORMATS",
    "CONSTITUENT_FEATURES",
    "FEATURE_FIELDS",
    "Feature",
    "InputSpec",
    "JET_FEATURES",
    "MODELS",
    "Namespace",
    "OnnxTagger",
    "OutputSpec",
    "PADDED_FIELDS",
    "Standardise",
    "TORCH_TOLERANCE",
    "TrainConfig",
    "TrainResult",
    "as_namespace",
    "card_from_weaver",
    "card_path",
    "check_graph",
    "constituent_features",
    "default_config",
    "graph_inputs",
    "jet_features",
    "load_card",
    "namespace",
    "normalise_for_torch",
    "padded_constituents",
    "reference",
    "run_fixed_batches",
    "score_np",
    "signal_logit_np",
    "standardise",
    "to_torch",
    "train",
    "train_reference",
    "wrap_pad",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
