"""One root handler per process; non-zero ranks log warnings only."""

from __future__ import annotations

import logging

import pytest

from dpr.utils.logging import _ToolHandler, setup_logging


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("rank,info_shown", [(0, True), (1, False)])
def test_setup_logging_tags_the_rank_and_quiets_other_ranks(restore_root, capsys, rank: int,
                                                            info_shown: bool) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, _ToolHandler)]
    setup_logging(rank)
    setup_logging(rank)  # a second call replaces the handler instead of adding one
    # (an in-process tool run by an earlier test may have left its handler: replaced too)
    assert [h for h in root.handlers if not isinstance(h, _ToolHandler)] == others
    assert sum(isinstance(h, _ToolHandler) for h in root.handlers) == 1
    log = logging.getLogger("dpr.test")
    log.info("progress line")
    log.warning("a warning")
    err = capsys.readouterr().err
    assert ("progress line" in err) is info_shown
    assert f"[WARNING] [rank {rank}] dpr.test: a warning" in err
