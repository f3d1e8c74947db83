"""The chunked, resumable writer of one cache entry.

Chunks are written into ``<stem>.partial.npy`` (a ``numpy.lib.format.open_memmap``) and
``<stem>.partial.json`` records how many items are done, so a killed extraction restarts at
the last finished chunk. The finished file is renamed into place atomically and its manifest
(with the arrays' checksums) written last; features stream to disk, so memory stays bounded
by a chunk. Everything happens under the entry's lock (:mod:`.locks`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import xmr_utils
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.locks import entry_lock
from xmr_utils.core.features.store import (
    CachePaths,
    digest,
    expected_arrays,
    open_array,
    read_manifest,
    with_checksums,
    write_json_atomic,
)

log = logging.getLogger(__name__)

Chunk = tuple[np.ndarray, dict[str, np.ndarray], int]  # features, extras, no-known-word count
#: ``encode(start, stop)``: the features of items ``start:stop`` of the entry.
Encode = Callable[[int, int], Chunk]


def _resume_point(paths: CachePaths, expected: Mapping[str, Any]) -> tuple[int, int]:
    """``(items done, no-known-word count)`` of an interrupted extraction of ``expected``.

    Only called under the lock, so a ``.partial`` file found here has no live writer.
    """
    record = read_manifest(paths.progress)
    if record is None or record.get("key") != expected:
        return 0, 0
    for name, (shape, dtype) in expected_arrays(expected).items():
        if open_array(paths.array(name, partial=True), shape, dtype) is None:
            return 0, 0
    return int(record["done"]), int(record.get("no_known_word", 0))


def _checked(values: Any, want: tuple[int, ...], spec: str, start: int, stop: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != want:
        raise XmrError(f"{spec} returned {values.shape} for items {start}:{stop}, expected {want}")
    # a float64 sum of float32 values cannot overflow: it is finite iff every value is
    if values.dtype.kind == "f" and not np.isfinite(values.sum(dtype=np.float64)):
        raise XmrError(
            f"{spec} produced NaN/inf features for items {start}:{stop}; check its weights file"
        )
    return values


def _write_chunk(
    maps: Mapping[str | None, np.memmap], spec: str, chunk: Chunk, start: int, stop: int
) -> int:
    """Check and write one encoded chunk into the ``.partial`` maps; its no-known-word count.
    (Its own function so that the chunk is freed before the next one is encoded.)"""
    feats, extras, missing = chunk
    for name, values in ((None, feats), *extras.items()):
        if name in maps:
            want = (stop - start, *maps[name].shape[1:])
            maps[name][start:stop] = _checked(values, want, spec, start, stop)
            maps[name].flush()
    return int(missing)


def _fill(
    paths: CachePaths, expected: Mapping[str, Any], encode: Encode, chunk_size: int, bar: Any
) -> int:
    """Encode the items not done yet into the ``.partial`` arrays; the no-known-word count."""
    arrays = expected_arrays(expected)
    n = int(expected["shape"][0])
    done, no_word = _resume_point(paths, expected)
    if done:
        log.warning("resuming %s at item %d of %d", paths.features, done, n)
    bar.update(done)
    maps = {
        name: np.lib.format.open_memmap(
            paths.array(name, partial=True), mode="r+" if done else "w+", dtype=dtype, shape=shape
        )
        for name, (shape, dtype) in arrays.items()
    }
    for start in range(done, n, chunk_size):
        stop = min(n, start + chunk_size)
        no_word += _write_chunk(maps, expected["spec"], encode(start, stop), start, stop)
        write_json_atomic(paths.progress, {"key": expected, "done": stop, "no_known_word": no_word})
        bar.update(stop - start)
    return no_word


def finish(
    paths: CachePaths, manifest: Mapping[str, Any], sums: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Checksum the ``.partial`` arrays (unless ``sums`` gives them), rename them into place
    and write the manifest last; leftovers of other attempts (progress record, shards) are
    removed. Returns the manifest written."""
    sums = dict(sums or {})
    for name, (shape, dtype) in expected_arrays(manifest).items():
        partial = open_array(paths.array(name, partial=True), shape, dtype)
        if partial is None:
            raise XmrError(f"{paths.array(name, partial=True)} vanished or changed while writing")
        if paths.array(name).name not in sums:
            sums[paths.array(name).name] = digest(partial)[0]
        del partial
    for name in expected_arrays(manifest):
        os.replace(paths.array(name, partial=True), paths.array(name))
    written = with_checksums(manifest, sums)
    write_json_atomic(paths.manifest, written)
    paths.progress.unlink(missing_ok=True)
    if paths.shard_dir.exists():
        shutil.rmtree(paths.shard_dir, ignore_errors=True)
    return written


def made_now(expected: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """``expected`` plus when, by which xmr version and how it was made."""
    return {
        **expected,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "xmr_version": xmr_utils.__version__,
        "origin": "extracted",
        **fields,
    }


def extract_chunks(
    paths: CachePaths,
    expected: dict[str, Any],
    encode: Encode,
    *,
    chunk_size: int,
    progress: bool,
    desc: str,
) -> dict[str, Any]:
    """Fill the cache for ``expected`` with ``encode(start, stop)``, resuming when possible.

    Holds the entry's lock throughout. Returns the manifest written.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise XmrError(f"chunk_size={chunk_size} must be at least 1")
    n = int(expected["shape"][0])
    with entry_lock(paths):
        with tqdm(total=n, desc=desc, unit="item", disable=not progress) as bar:
            no_word = _fill(paths, expected, encode, chunk_size, bar)
        manifest = finish(paths, made_now(expected, no_known_word=no_word))
    if no_word:
        log.warning(
            "%s: %d of %d captions have no known word and were encoded as zero vectors",
            expected["spec"],
            no_word,
            n,
        )
    return manifest


__all__ = ["Chunk", "Encode", "extract_chunks", "finish", "made_now"]
