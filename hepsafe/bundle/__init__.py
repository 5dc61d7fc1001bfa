"""FAIR robustness-challenge bundles: ``write_bundle`` (``hepsafe bundle``) writes nominal test
jets, their adversarial twins, cards, envelope and gate reports; ``score_bundle``
(``hepsafe score-bundle``) scores any tagger on one from its files alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.bundle.metrics import Figures, format_figures, score_files
    from hepsafe.bundle.scorer import bundle_jets, read_manifest, score_bundle
    from hepsafe.bundle.writer import BUNDLE_CONFIG, write_bundle

#: public name -> the module that defines it
_EXPORTS = {
    "BUNDLE_CONFIG": "writer",
    "Figures": "metrics",
    "bundle_jets": "scorer",
    "format_figures": "metrics",
    "read_manifest": "scorer",
    "score_bundle": "scorer",
    "score_files": "metrics",
    "write_bundle": "writer",
}
__all__ = [
    "BUNDLE_CONFIG",
    "Figures",
    "bundle_jets",
    "format_figures",
    "read_manifest",
    "score_bundle",
    "score_files",
    "write_bundle",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
