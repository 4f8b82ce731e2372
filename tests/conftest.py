"""Shared fixtures: tiny datasets that keep the unit tests fast."""

from pathlib import Path

import pytest

from lib import data

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def tiny_shapes():
    """A small generated dataset: 400 training, 100 validation, 100 test images."""
    return data.load("shapes", n_train=400, n_val=100, n_test=100, seed=3)
