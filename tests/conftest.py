"""Shared fixtures, built once per test session: the shipped sample and its splits, the
reference taggers, and small run configurations on the shipped sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from hepsafe import data as datasets
from hepsafe.data.jets import JetBatch
from hepsafe.data.sample import SAMPLE_FILE
from hepsafe.tagger.onnx import OnnxTagger, reference

#: torch (gradients of the attacks, the torch twin of a tagger, training) on one thread: the
#: machines running the tests are small and shared
torch.set_num_threads(1)


# --------------------------------------------------------------------------- the sample
@pytest.fixture(scope="session")
def sample() -> JetBatch:
    """The whole shipped sample."""
    return datasets.load_sample()


@pytest.fixture(scope="session")
def small(sample: JetBatch) -> JetBatch:
    """A small mixed subset of the shipped sample (every 50th jet, all classes)."""
    return sample[::50]


@pytest.fixture(scope="session")
def part(sample: JetBatch) -> JetBatch:
    """Every 5th jet of the shipped sample, all classes."""
    return sample[::5]


@pytest.fixture(scope="session")
def test_split(sample: JetBatch) -> JetBatch:
    """The test split of the shipped sample (what ``load_sample("test")`` returns)."""
    return sample[datasets.is_test(sample.event)]


@pytest.fixture(scope="session")
def wq_test(test_split: JetBatch) -> JetBatch:
    """The W and QCD jets of the test split."""
    return test_split[test_split.label <= 1]


# --------------------------------------------------------------------------- taggers
@pytest.fixture(scope="session")
def pfn() -> OnnxTagger:
    """The reference particle-flow network on the CPU, one thread."""
    return reference("pfn", providers="cpu", intra_op_threads=1)


@pytest.fixture(scope="session")
def hl() -> OnnxTagger:
    """The reference high-level-feature tagger on the CPU, one thread."""
    return reference("hl", providers="cpu", intra_op_threads=1)


# --------------------------------------------------------------------------- run configurations
RunDoc = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def run_doc() -> RunDoc:
    """``run_doc(files=(SAMPLE_FILE,), split=None, max_jets=None, scale=None, **extra)``: a
    run configuration (as a dict) of W jets (label 1, signal) against QCD jets (label 0,
    background) of ``files``, the reference PFN and the energy scale variation ``escale``,
    written to ``out``. ``split`` and ``max_jets`` go to both samples, ``scale`` to the
    signal; ``extra`` adds or replaces top-level keys."""

    def make(files: Sequence[str | Path] = (SAMPLE_FILE,), split: str | None = None,
             max_jets: int | None = None, scale: float | None = None,
             **extra: Any) -> dict[str, Any]:
        samples = []
        for name, role, label in (("W", "signal", 1), ("QCD", "background", 0)):
            s: dict[str, Any] = {"name": name, "role": role, "files": [str(f) for f in files],
                                 "label": label}
            if split is not None:
                s["split"] = split
            if max_jets is not None:
                s["max_jets"] = max_jets
            if scale is not None and role == "signal":
                s["scale"] = scale
            samples.append(s)
        return {
            "samples": samples,
            "tagger": {"model": "pfn"},
            "variations": [{"type": "scale_all", "name": "escale"}],
            "output": "out",
            **extra,
        }

    return make
