"""Shared fixtures for data_prep tests: fixture files and the PIAF data set location."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_piaf

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def piaf_path() -> Path:
    """The PIAF file; skips when absent, except under CI=true where absence is a failure."""
    return require_piaf()


@pytest.fixture(scope="session")
def small_fixture() -> Path:
    """Hand-written French SQuAD v1 file (5 articles, one duplicate, one crossing answer)."""
    return FIXTURES / "squad_fr_small.json"


@pytest.fixture(scope="session")
def v2_fixture() -> Path:
    """Hand-written SQuAD v2 file with one answerable and two unanswerable questions."""
    return FIXTURES / "squad_fr_v2.json"
