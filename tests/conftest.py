"""Shared fixtures: the real data folder beside the project, and small digits splits."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NOVELTYLAB_PROGRESS", "0")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` from the project root; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """(train, test) ImageSets of scikit-learn's 8x8 digits."""
    from noveltylab.data import load_dataset

    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="session")
def digits_split(digits):
    """One-class split of the digits: class 0 normal, everything else novel."""
    from noveltylab.data import one_class

    return one_class(*digits, 0, seed=0)


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
