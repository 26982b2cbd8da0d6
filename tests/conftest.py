"""Shared fixtures: the FTRL test set from ../shared (tests skip cleanly without it)."""

import os
import sys
from pathlib import Path

# No test touches the network: Hugging Face lookups stay in the local cache (set before any HF import).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

# Tests mirror the package in sub-folders (importlib import mode); the shared helpers stay here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ftrl_lab.core.records import default_test_set, load_records


@pytest.fixture(scope="session")
def ftrl_test_records():
    path = default_test_set()
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/benchmarks is absent)")
    return load_records(path)


@pytest.fixture(scope="module")
def toy():
    """Three toy environments (capital / population lookups) for rollout-level tests."""
    from helpers import TOY

    return load_records(TOY)
