"""Builds a faiss index from embedding shards in bounded memory (`make_index` is the one place a
faiss index is made from a factory string). Steps and the folder's files: docs/SCALE.md, section 2.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk
from tqdm import tqdm

from dpr.index.idmap import IdList, IdMapWriter
from dpr.index.shards import (
    Shard,
    encoding_of,
    find_shards,
    iter_chunks,
    open_shards,
    read_ids,
    sample_rows,
    with_checksum,
)
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import staged_folder

logger = logging.getLogger(__name__)

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
INDEX_FILE = "index.faiss"
IVFDATA_FILE = "index.ivfdata"
SETTINGS_FILE = "build.json"
SETTINGS_FORMAT = 1


@dataclass(frozen=True)
class BuildOptions:
    """How to build an index (the flags of `python -m dpr.index build`)."""

    factory: str  # faiss index-factory string: "Flat", "HNSW32", "IVF1024,PQ32"...
    metric: str = "ip"  # inner product (DPR's) or "l2"
    train_sample: int = 200_000  # vectors sampled for training (all when there are fewer)
    seed: int = 0
    on_disk: bool = False  # each shard into its own IVF block, the lists merged on disk
    threads: int | None = None  # faiss (OpenMP) threads; None keeps faiss' default
    chunk_rows: int = 65_536
    checksum: bool = True  # record each shard's SHA-256 in the build settings
    quiet: bool = False
    ef_construction: int | None = None  # HNSW candidate list size while adding (faiss: 40)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"--metric must be one of {sorted(METRICS)}, got {self.metric!r}")
        for name in ("train_sample", "chunk_rows"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--num_threads must be >= 1, got {self.threads}")


def faiss_reason(err: Exception) -> str:
    """The useful end of a faiss C++ error message (after "failed:" or "Error:")."""
    message = str(err).strip()
    for mark in ("failed: ", "Error: ", ": "):
        if mark in message:
            message = message.rsplit(mark, 1)[1]
            break
    return message.splitlines()[0] if message else type(err).__name__


def make_index(options: BuildOptions, dim: int) -> faiss.Index:
    """An empty index from the options' faiss index-factory string; UsageError naming
    `--factory` when faiss refuses the string for this dimension."""
    try:
        index = faiss.index_factory(dim, options.factory, METRICS[options.metric])
    except RuntimeError as err:
        raise UsageError(f"--factory {options.factory!r}: faiss refuses it for vectors of size "
                         f"{dim}: {faiss_reason(err)}") from err
    top = faiss.downcast_index(index)
    if options.ef_construction is not None and isinstance(top, faiss.IndexHNSW):
        top.hnsw.efConstruction = options.ef_construction
    return index


def train(index: faiss.Index, shards: list[Shard], options: BuildOptions) -> dict | None:
    """Trains the index on a seeded sample when it needs training; returns what it was
    trained on (None: no training), or UsageError when faiss cannot train the factory on the
    sample (too few vectors)."""
    if index.is_trained:
        return None
    start = time.perf_counter()
    sample = sample_rows(shards, options.train_sample, seed=options.seed)  # [n × D]
    logger.info("Training %s on %d sampled vectors (seed %d)", options.factory, len(sample),
                options.seed)
    try:
        index.train(sample)
    except RuntimeError as err:
        raise UsageError(f"--factory {options.factory!r}: cannot be trained on {len(sample)} "
                         f"vectors (--train_sample): {faiss_reason(err)}") from err
    seconds = time.perf_counter() - start
    logger.info("Trained in %.1f s", seconds)
    return {"rows": len(sample), "requested": options.train_sample, "seed": options.seed,
            "seconds": round(seconds, 3)}


def _add_shard(index: faiss.Index, shard: Shard, *, first_row: int, with_ids: bool,
               chunk_rows: int, bar: tqdm) -> None:
    """Adds one shard's vectors, chunk by chunk (with explicit row ids for on-disk blocks)."""
    row = first_row
    for chunk in iter_chunks(shard, chunk_rows):  # [c × D] float32
        if with_ids:
            index.add_with_ids(chunk, np.arange(row, row + len(chunk), dtype=np.int64))
        else:
            index.add(chunk)
        row += len(chunk)
        bar.update(len(chunk))


def add_shards(index: faiss.Index, shards: list[Shard], options: BuildOptions,
               ids: IdMapWriter | IdList, *, folder: Path | None = None
               ) -> tuple[faiss.Index, list[Shard]]:
    """Adds every shard in order, their passage ids to `ids` (checked unique at the end).

    Args:
        folder: The index's staging folder (for `on_disk` blocks); None in memory.

    Returns:
        The filled index (for `on_disk`, the merged one backed by `folder/index.ivfdata`) and
        the shards with their checksums.
    """
    total = sum(s.rows for s in shards)
    trained = Path(folder or ".") / "trained.index"
    blocks: list[str] = []
    if options.on_disk:
        faiss.write_index(index, str(trained))
        (trained.parent / "blocks").mkdir()
    done: list[Shard] = []
    with tqdm(total=total, unit=" vec", unit_scale=True, desc="Adding",
              disable=options.quiet) as bar:
        for shard in shards:
            ids.add(read_ids(shard), source=shard.ids_path or shard.path)
            target = faiss.read_index(str(trained)) if options.on_disk else index
            _add_shard(target, shard, first_row=ids.count - shard.rows,
                      with_ids=options.on_disk, chunk_rows=options.chunk_rows, bar=bar)
            if options.on_disk:
                blocks.append(str(trained.parent / "blocks" / f"{len(blocks)}.index"))
                faiss.write_index(target, blocks[-1])
                del target
            # the checksum read while the file is in the page cache
            done.append(with_checksum(shard) if options.checksum else shard)
        ids.finish()
    if options.on_disk:
        index = faiss.read_index(str(trained))
        merge_ondisk(index, blocks, str(trained.parent / IVFDATA_FILE))
        shutil.rmtree(trained.parent / "blocks")
        trained.unlink()
    return index, done


def describe(index: faiss.Index, shards: list[Shard], options: BuildOptions, *,
             encoder: dict | None, training: dict | None, seconds: dict[str, float]) -> dict:
    """The build settings written to `build.json`."""
    ivf = faiss.try_extract_index_ivf(index)
    return {
        "format": SETTINGS_FORMAT, "factory": options.factory, "metric": options.metric,
        "dim": index.d, "count": int(index.ntotal), "encoder": encoder,
        "index_class": type(faiss.downcast_index(index)).__name__,
        "nlist": None if ivf is None else int(ivf.nlist), "on_disk": options.on_disk,
        "train": training,
        "shards": [{**asdict(s), "abspath": os.path.abspath(s.path)} for s in shards],
        "faiss_version": faiss.__version__, "numpy_version": np.__version__,
        "threads": faiss.omp_get_max_threads(), "chunk_rows": options.chunk_rows,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


def fill_index(shards: list[Shard], options: BuildOptions, ids: IdMapWriter | IdList, *,
               folder: Path | None = None) -> tuple[faiss.Index, dict]:
    """Makes, trains and fills an index from checked shards (one vector size), their passage
    ids added to `ids`; returns it with its build settings (`describe`).

    Args:
        folder: The index's staging folder; None builds in memory (no `on_disk`).

    Raises:
        UsageError: For a factory faiss refuses or cannot train, or `on_disk` with a non-IVF
            factory or in memory.
        InputError: For a passage id in several rows, or shards of two encodings.
    """
    if options.on_disk and folder is None:
        raise UsageError("--on_disk builds an index folder, not an index in memory")
    if options.threads is not None:
        faiss.omp_set_num_threads(options.threads)
    index = make_index(options, shards[0].dim)
    if options.on_disk and faiss.try_extract_index_ivf(index) is None:
        raise UsageError(f"--on_disk needs an IVF index (inverted lists); --factory "
                         f"{options.factory!r} has none")
    encoder = encoding_of([s.path for s in shards])
    start = time.perf_counter()
    training = train(index, shards, options)
    added = time.perf_counter()
    index, shards = add_shards(index, shards, options, ids, folder=folder)
    seconds = {"train": added - start, "add": time.perf_counter() - added}
    return index, describe(index, shards, options, encoder=encoder, training=training,
                           seconds=seconds)


def build_index(shards: list[Shard], output_dir: str | os.PathLike[str],
                options: BuildOptions, *, overwrite: bool = False) -> dict:
    """Builds, trains, fills and saves an index from checked shards (`fill_index`) into a
    folder written through a staging folder; returns the build settings (`build.json`).
    Besides `fill_index`'s errors: UsageError for an existing folder without `overwrite`,
    InputError when the shards hold no vectors."""
    if Path(output_dir).exists() and not overwrite:
        raise UsageError(f"--output_dir {output_dir}: exists (choose another folder or pass "
                         "--overwrite)")
    if not sum(s.rows for s in shards):
        raise InputError(f"{shards[0].path}: the shards hold no vectors")
    start = time.perf_counter()
    with staged_folder(output_dir, overwrite=overwrite) as staging:
        with IdMapWriter(staging) as ids:
            index, settings = fill_index(shards, options, ids, folder=staging)
        written = time.perf_counter()
        faiss.write_index(index, str(staging / INDEX_FILE))
        settings["seconds"].update(write=round(time.perf_counter() - written, 3),
                                   total=round(time.perf_counter() - start, 3))
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
    if settings["encoder"] is None:
        logger.warning("%s: no manifest beside the shards (DPR's or hand-made): nothing "
                       "records which model encoded them, so no model searching the index "
                       "can be checked against it", shards[0].path)
    logger.info("Built %s over %d vectors in %.1f s: %s", options.factory, settings["count"],
                settings["seconds"]["total"], output_dir)
    return settings


def build_from_glob(pattern: str, output_dir: str | os.PathLike[str], options: BuildOptions,
                    *, allow_pickle: bool = False, overwrite: bool = False) -> dict:
    """`build_index` over the shards a glob matches (see `dpr.index.shards.find_shards`)."""
    shards = open_shards(find_shards(pattern), allow_pickle=allow_pickle)
    return build_index(shards, output_dir, options, overwrite=overwrite)
