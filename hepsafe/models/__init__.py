"""The shipped models: reference taggers and the learned adversary, ONNX files with cards.

``path(name)`` finds a shipped file by name from any working directory; ``reference(name)``
loads a reference tagger.

Examples
--------
>>> path("pfn").name
'pfn.onnx'
>>> names = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
>>> names[:5]
['adversary_pfn', 'hl', 'pfn', 'pfn3', 'pfn3_md']
>>> [n for n in names if n.startswith("pfn_adv")]
['pfn_adv_fgsm', 'pfn_adv_learned', 'pfn_adv_pgd']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.tagger.onnx import OnnxTagger

#: the folder of the shipped ONNX files and their cards (``<name>.onnx`` + ``<name>.json``)
MODELS_DIR = Path(__file__).parent

__all__ = ["MODELS_DIR", "model_path", "path", "reference"]


def model_path(model: str | os.PathLike[str]) -> Path:
    """The ONNX file ``model`` names: a shipped model by name (``pfn``, ``hl``,
    ``adversary_pfn``: ``MODELS_DIR/<name>.onnx``, from any working directory), otherwise
    ``model`` itself as a path (``~`` expanded).

    Examples
    --------
    >>> model_path("pfn") == MODELS_DIR / "pfn.onnx"
    True
    >>> str(model_path("my/tagger.onnx"))
    'my/tagger.onnx'
    """
    s = os.fspath(model)
    shipped = MODELS_DIR / f"{s}.onnx"
    if s and "/" not in s and os.sep not in s and not s.endswith(".onnx") and shipped.is_file():
        return shipped
    return Path(os.path.expanduser(s))


#: ``hepsafe.models.path(name)``: the shipped file of that name (see :func:`model_path`)
path = model_path


def reference(name: str = "pfn", **options: Any) -> OnnxTagger:
    """A shipped reference tagger by name ("pfn" or "hl"); ``options`` go to OnnxTagger.

    Examples
    --------
    >>> tagger = reference("pfn", providers="cpu")
    >>> tagger.name, tagger.path == path("pfn")
    ('pfn', True)
    """
    from hepsafe.tagger.onnx import reference as _reference

    return _reference(name, **options)
