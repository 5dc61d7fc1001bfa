"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?"""

from __future__ import annotations

from . import datasets, exceptions, jets
from .jets import JetBatch

__version__ = "0.1.0"
__all__ = ["JetBatch", "datasets", "exceptions", "jets", "__version__"]
