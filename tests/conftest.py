"""Shared fixtures. Tests import the project as `stark.*`, exactly as an installed copy does."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Helpers that live beside the tests (e.g. reference_stark) are imported as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
