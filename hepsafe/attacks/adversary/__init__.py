"""The learned adversary g(J): its network and training (``training``), its ONNX graph and
torch-free application (``graph``)."""

from __future__ import annotations

from hepsafe.attacks.adversary.graph import OnnxAdversary, rebuild_graph
from hepsafe.attacks.adversary.network import LearnedConfig, default_gate_config
from hepsafe.attacks.adversary.training import LearnedAdversary

__all__ = ["LearnedAdversary", "LearnedConfig", "OnnxAdversary", "default_gate_config",
           "rebuild_graph"]
