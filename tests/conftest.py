"""Shared test fixtures: where the peers' data lives, and a cheap small phantom study."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: reference data from other projects, laid beside the clone (never copied into it)
PEERS = Path(os.environ.get("BREASTMRI_PEERS", ROOT.parent / "shared" / "peers"))


@pytest.fixture(scope="session")
def peers_dir() -> Path:
    if not PEERS.is_dir():
        pytest.skip(f"peer reference data not found at {PEERS} (set BREASTMRI_PEERS to its folder)")
    return PEERS


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Two cores on CI: keep BLAS/torch from oversubscribing when tests run."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
