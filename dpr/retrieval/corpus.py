"""The passages a retriever searches, as columns (`Corpus`), and reading them from a passage
TSV."""

from __future__ import annotations

from dataclasses import dataclass

from dpr.data.tsv import read_passages
from dpr.utils.errors import read_input


@dataclass(frozen=True)
class Corpus:
    """The passages searched, in index order (a passage's row is its position), as columns:
    the layout BM25, faiss, relevance and the TREC files read."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    source: str


def read_tsv_corpus(path: str, *, flag: str = "--ctx_file") -> Corpus:
    """Passages of a DPR passage TSV file, in file order; InputError naming `flag` on a
    malformed row, a duplicate id or no passage at all."""
    passages = list(read_input(read_passages, path, flag=flag, what="passages").values())
    return Corpus([p.passage_id for p in passages], [p.title for p in passages],
                  [p.text for p in passages], path)
