"""Shared fixtures: the shipped sample, loaded once per test session."""

from __future__ import annotations

import pytest

from hepsafe import data as datasets
from hepsafe.data.jets import JetBatch


@pytest.fixture(scope="session")
def sample() -> JetBatch:
    """The whole shipped sample."""
    return datasets.load_sample()


@pytest.fixture(scope="session")
def small(sample: JetBatch) -> JetBatch:
    """A small mixed subset of the shipped sample (every 50th jet, all classes)."""
    return sample[::50]
