"""The learned adversary g(J): its network and training (``training``), its ONNX graph and
torch-free application (``graph``)."""

from __future__ import annotations

from hepsafe.attacks.adversary.graph import OnnxAdversary
from hepsafe.attacks.adversary.network import LearnedConfig
from hepsafe.attacks.adversary.training import LearnedAdversary

__all__ = ["LearnedAdversary", "LearnedConfig", "OnnxAdversary"]
