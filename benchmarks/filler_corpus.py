"""French filler passages for the hidden-PIAF retrieval check: real French documentation text
that installs offline, then passages of recombined real French sentences up to N.

    python benchmarks/filler_corpus.py --n 1000000 --out filler.tsv \
        --exclude_articles data/DPR_FR_dev.json,data/DPR_FR_test.json

1. Documentation: the Debian packages `--packages` (French man pages, the Debian reference,
   LibreOffice's and GIMP's help...) are fetched with `apt-get download` into `--cache` (kept
   there: a rerun reads them) and unpacked with `dpkg-deb -x`. Text comes from their HTML
   pages (block elements; scripts, navigation and code left out) and French man pages (roff
   markup removed); a paragraph is kept when it has at least 8 words and more French than
   English function words (GIMP's help is partly untranslated), and a document's kept
   paragraphs are cut into passages of about 100 words (DPR's split). Passages seen twice are
   kept once.
2. Fill: passages of about 100 words made of random real sentences (from PIAF's paragraphs and
   from the documentation's passages), each with a random title of the same sources, until N
   passages (benchmarks/scale_common.recombined_passages). Sentences and titles of the
   articles named by `--exclude_articles` (DPR JSON files: the titles of their positive
   passages) are never used, so the hidden PIAF passages of those articles have no copies in
   the filler.

Writes the passage TSV (id, text, title; ids `doc-<package>-<k>` and `fill-<k>`) and
`<out>.summary.json` saying exactly how many passages came from each source.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_common import (  # noqa: E402
    DEFAULT_PIAF,
    piaf_sentences,
    recombined_passages,
    split_sentences,
)

PACKAGES = ("manpages-fr", "debian-reference-fr", "libreoffice-help-fr", "gimp-help-fr",
            "developers-reference-fr", "maint-guide-fr", "debian-edu-doc-fr")
WORDS = 100
MIN_PARAGRAPH_WORDS = 8
FRENCH = set("le la les de des du un une et est en pour que qui dans sur par avec ce cette au "
             "aux pas ne se sont il elle vous nous on son sa ses leur plus ou mais être fichier "
             "peut être".split())
ENGLISH = set("the of and to is in you that for with this are be can it on as by or an from "
              "your which will not".split())
BLOCKS = {"p", "div", "li", "dd", "dt", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "br",
          "tr", "table", "section", "blockquote"}
SKIPPED = {"script", "style", "head", "nav", "header", "aside", "pre", "code", "noscript"}


def is_french(words: list[str]) -> bool:
    """More French than English function words (and some of them)."""
    lowered = [w.lower().strip(".,;:!?()«»\"'") for w in words]
    french = sum(w in FRENCH for w in lowered)
    return french >= 2 and french > sum(w in ENGLISH for w in lowered)


class _Paragraphs(HTMLParser):
    """Text of an HTML page's block elements (skipping scripts, navigation and code)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.title = ""
        self._current: list[str] = []
        self._skip = 0
        self._in_title = False

    def _flush(self) -> None:
        text = " ".join("".join(self._current).split())
        if text:
            self.paragraphs.append(text)
        self._current = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIPPED:
            self._skip += 1
        self._in_title = tag == "title"
        if tag in BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip = max(0, self._skip - 1)
        if tag == "title":
            self._in_title = False
        if tag in BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self._current.append(data)


_ROFF_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_ROFF_SPECIAL = {r"\-": "-", r"\(aq": "'", r"\(lq": "«", r"\(rq": "»", r"\(em": "—",
                 r"\(en": "–", r"\(Fo": "«", r"\(Fc": "»", r"\ ": " ", r"\~": " ", r"\&": "",
                 r"\e": "\\", r"\(bu": "•", r"\(co": "©"}
_ROFF_OTHER = re.compile(r"\\(\(..|\*\(..|\*.|\[[^\]]*\]|.)")
_ROFF_BREAK = {".SH", ".SS", ".PP", ".P", ".LP", ".TP", ".IP", ".br", ".sp", ".HP", ".TQ"}
_ROFF_TEXT = {".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".SM", ".SB"}


def roff_paragraphs(source: str) -> list[str]:
    """Paragraphs of a man page's roff source, markup removed (headings are paragraphs)."""
    paragraphs, current = [], []
    for line in source.splitlines():
        macro, _, rest = line.partition(" ")
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".", "'")):
            if macro in _ROFF_BREAK or macro in (".SH", ".SS"):
                paragraphs.append(" ".join(current))
                current = []
            if macro in _ROFF_TEXT or macro in (".SH", ".SS", ".TP", ".IP"):
                current.append(rest.replace('"', " "))
            continue
        current.append(line)
    paragraphs.append(" ".join(current))
    out = []
    for text in paragraphs:
        text = _ROFF_FONT.sub("", text)
        for escape, value in _ROFF_SPECIAL.items():
            text = text.replace(escape, value)
        text = " ".join(_ROFF_OTHER.sub("", text).split())
        if text:
            out.append(text)
    return out


def fetch(package: str, cache: Path) -> Path | None:
    """The unpacked package folder: downloaded with apt-get and unpacked once, then reused.
    None when the package cannot be fetched (offline, unknown)."""
    folder = cache / package
    if folder.is_dir():
        return folder
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        done = subprocess.run(["apt-get", "download", package], cwd=cache,
                              capture_output=True, text=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            print(f"   {package}: not fetched ({done.stderr.strip()[-200:]})", flush=True)
            return None
    staging = cache / f".{package}.unpacking"
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(staging)], check=True)
    staging.rename(folder)
    return folder


def documents(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(title, paragraphs) of the French HTML pages (in a `fr` or `*-fr` folder, or named
    `*.fr.*`) and French man pages of an unpacked package."""
    for path in sorted(folder.rglob("*")):
        name, parts = path.name, path.parts
        if not path.is_file():
            continue
        if "man" in parts and "fr" in parts and name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
                yield name.split(".")[0], roff_paragraphs(handle.read())
        elif name.endswith((".html", ".htm", ".xhtml")) and (
                ".fr." in name or any(p == "fr" or p.endswith("-fr") for p in parts)):
            parser = _Paragraphs()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            yield " ".join(parser.title.split()) or path.stem, parser.paragraphs


def doc_passages(paragraphs: list[str]) -> list[str]:
    """The French paragraphs of a document, cut into passages of about WORDS words."""
    words = []
    for paragraph in paragraphs:
        split = paragraph.split()
        if len(split) >= MIN_PARAGRAPH_WORDS and is_french(split):
            words += split
    cuts = range(0, len(words), WORDS)
    return [" ".join(words[i:i + WORDS]) for i in cuts if len(words[i:i + WORDS]) >= WORDS // 2]


def package_passages(package: str, cache: Path) -> tuple[list[tuple[str, str]], dict]:
    """(title, text) passages of one package and its counts for the summary."""
    folder = fetch(package, cache)
    if folder is None:
        return [], {"package": package, "fetched": False}
    passages, files = [], 0
    for title, paragraphs in documents(folder):
        files += 1
        passages += [(title, text) for text in doc_passages(paragraphs)]
    deb = sorted(cache.glob(f"{package}_*.deb"))
    return passages, {"package": package, "fetched": True, "deb": deb[-1].name if deb else None,
                      "documents": files, "passages": len(passages),
                      "words": sum(len(t.split()) for _, t in passages)}


def excluded_titles(files: list[str]) -> set[str]:
    """Titles of the positive passages of DPR JSON files (their articles are held out)."""
    titles = set()
    for file in files:
        for record in json.loads(Path(file).read_text(encoding="utf-8")):
            titles.update(ctx.get("title", "") for ctx in record.get("positive_ctxs", []))
    return {t.replace("_", " ") for t in titles if t}


def write_tsv(path: Path, rows: Iterator[tuple[str, str, str]]) -> int:
    """Writes (id, text, title) rows under DPR's header through a temporary file; returns the
    row count."""
    staging = path.with_name(f".{path.name}.partial")
    count = 0
    with staging.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        for row in rows:
            writer.writerow(row)
            count += 1
    os.replace(staging, path)
    return count


def build(args: argparse.Namespace) -> dict:
    """Documentation passages, then the fill; writes the TSV and returns the summary."""
    args.cache.mkdir(parents=True, exist_ok=True)
    docs, packages = [], []
    for package in args.packages.split(","):
        passages, counts = package_passages(package, args.cache)
        docs += [(package, title, text) for title, text in passages]
        packages.append(counts)
        print(f"   {package}: {counts}", flush=True)
    kept = {}
    for package, title, text in docs:
        kept.setdefault(text, (package, title))
    docs = [(package, title, text) for text, (package, title) in kept.items()]
    random.Random(args.seed).shuffle(docs)
    docs = docs[:args.n]
    excluded = excluded_titles([f for f in args.exclude_articles.split(",") if f])
    piaf, piaf_titles, _ = piaf_sentences(args.piaf, exclude_titles=frozenset(excluded))
    doc_sentences = [s for _, _, text in docs for s in split_sentences(text)]
    fill = max(0, args.n - len(docs))
    titles, texts = recombined_passages(piaf + doc_sentences,
                                        piaf_titles + sorted({t for _, t, _ in docs}), fill,
                                        seed=args.seed, words=WORDS)
    rows = [(f"doc-{package}-{i}", text, title) for i, (package, title, text) in enumerate(docs)]
    rows += [(f"fill-{i}", text, title) for i, (title, text) in enumerate(zip(titles, texts))]
    written = write_tsv(args.out, iter(rows))
    return {"out": str(args.out), "passages": written,
            "documentation_passages": len(docs),
            "documentation_by_package": {p["package"]: sum(d[0] == p["package"] for d in docs)
                                         for p in packages},
            "packages": packages,
            "recombined_passages": fill,
            "recombined_from": {"piaf_sentences": len(piaf),
                                "documentation_sentences": len(doc_sentences),
                                "titles": len(piaf_titles) + len({t for _, t, _ in docs}),
                                "words_per_passage": WORDS, "seed": args.seed},
            "excluded_articles": {"files": args.exclude_articles, "titles": len(excluded)}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="Passages to write in all.")
    parser.add_argument("--out", type=Path, required=True, help="Passage TSV to write.")
    parser.add_argument("--packages", default=",".join(PACKAGES),
                        help="Debian packages of French documentation (comma-separated).")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench_out" / "debian_fr",
                        help="Where the .deb files are downloaded and unpacked (reused).")
    parser.add_argument("--piaf", type=Path, default=DEFAULT_PIAF, help="PIAF v1.0 JSON.")
    parser.add_argument("--exclude_articles", default="",
                        help="DPR JSON files (comma-separated) whose positive passages' articles "
                        "give no sentence or title to the filler.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the recombination.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = build(args)
    summary_path = args.out.with_name(args.out.name + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
    print(f"Wrote {summary['passages']:,} passages to {args.out} "
          f"({summary['documentation_passages']:,} documentation, "
          f"{summary['recombined_passages']:,} recombined); summary {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
