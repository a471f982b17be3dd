"""Helpers of the scale benchmarks (index_scale.py, bm25_scale.py): the machine, peak memory
measured per phase in a child process, folder sizes, and the French sentence pool.

Each measured phase runs as `python <script> --phase NAME ...` in its own process, which prints
one JSON line last; the parent reads it and adds the child's peak resident memory, so the peak
of one phase is not hidden by an earlier, larger one.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PIAF = ROOT / ".." / "shared" / "data" / "piaf-v1.0.json"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Ý«\"])")


def machine() -> dict[str, object]:
    """CPU model, cores, memory and library versions of this machine."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) * 1024 for line in open("/proc/meminfo")
                   if line.startswith("MemTotal")), 0)
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                  if line.startswith("flags")), [])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1),
            "avx512": "avx512f" in flags, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_parts_mib() -> dict[str, float]:
    """Resident memory of this process now, split into its own (anonymous) pages and the pages
    of mapped files (page cache that the kernel can reclaim), in MiB."""
    parts = {"RssAnon:": "rss_anon_mib", "RssFile:": "rss_file_mib"}
    out = {}
    for line in open("/proc/self/status"):
        key = line.split()[0] if line.strip() else ""
        if key in parts:
            out[parts[key]] = round(int(line.split()[1]) / 1024, 1)
    return out


def folder_bytes(folder: str | os.PathLike[str]) -> int:
    """Total size of the files under a folder (or of one file)."""
    path = Path(folder)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_phase(script: str, args: list[str], *, timeout: float | None = None) -> dict:
    """Runs `python script --phase ... args` in a child process and returns its JSON line,
    with `peak_rss_mib` (the child's own peak, from /proc via ru_maxrss) and `wall_s` added.

    Raises:
        RuntimeError: With the child's stderr tail when it fails.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - start, 2)
    return result


def emit(result: dict) -> None:
    """Prints a phase's result as the last line, with its peak resident memory."""
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result), flush=True)


def split_sentences(text: str, *, min_words: int = 5) -> list[str]:
    """The sentences of a text (split after . ! ? before a capital) of at least `min_words`."""
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words]


def piaf_sentences(path: str | os.PathLike[str], *, exclude_titles: frozenset[str] = frozenset()
                   ) -> tuple[list[str], list[str], list[str]]:
    """Sentences of PIAF's paragraphs, its article titles and its questions, leaving out the
    articles whose title (underscores as spaces) is in `exclude_titles`."""
    articles = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    sentences, titles, questions = [], [], []
    for article in articles:
        title = article["title"].replace("_", " ")
        if title in exclude_titles:
            continue
        titles.append(title)
        for paragraph in article["paragraphs"]:
            sentences += split_sentences(paragraph["context"])
            questions += [qa["question"] for qa in paragraph["qas"]]
    return sentences, titles, questions


def recombined_passages(sentences: list[str], titles: list[str], count: int, *, seed: int,
                        words: int = 100) -> tuple[list[str], list[str]]:
    """`count` passages of about `words` words made of random real sentences (DPR's 100-word
    passages, with a random article title each).

    Returns:
        Titles and texts.
    """
    rng = random.Random(seed)
    out_titles, out_texts = [], []
    for _ in range(count):
        chosen, length = [], 0
        while length < words:
            sentence = rng.choice(sentences)
            chosen.append(sentence)
            length += len(sentence.split())
        out_titles.append(rng.choice(titles))
        out_texts.append(" ".join(" ".join(chosen).split()[:words]))
    return out_titles, out_texts
