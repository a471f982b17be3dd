"""Shared fixtures for data_prep tests: fixture files and the PIAF data set location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DEFAULT_PIAF = REPO_ROOT / ".." / "shared" / "data" / "piaf-v1.0.json"


def piaf_location() -> Path:
    """PIAF v1.0 JSON: ``$PIAF_PATH`` if set, else ``../shared/data/piaf-v1.0.json``."""
    return Path(os.environ.get("PIAF_PATH") or DEFAULT_PIAF)


@pytest.fixture(scope="session")
def piaf_path() -> Path:
    """The PIAF file; skips when absent, except under CI=true where absence is a failure."""
    path = piaf_location()
    if not path.is_file():
        message = (
            f"PIAF data set not found at {path} (set PIAF_PATH or place piaf-v1.0.json in "
            "../shared/data/)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; required when CI=true", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def small_fixture() -> Path:
    """Hand-written French SQuAD v1 file (5 articles, one duplicate, one crossing answer)."""
    return FIXTURES / "squad_fr_small.json"


@pytest.fixture(scope="session")
def v2_fixture() -> Path:
    """Hand-written SQuAD v2 file with one answerable and two unanswerable questions."""
    return FIXTURES / "squad_fr_v2.json"
