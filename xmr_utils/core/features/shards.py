"""Sharded image-feature extraction on Dask: one task per shard, assembled when all are done.

The images are cut into contiguous shards whose boundaries fall on chunk boundaries
(``chunk_size``), so every forward batch holds the same images as in a single-process run
and the assembled array is bit-identical to one (at the same torch thread count; Dask
workers run with ``OMP_NUM_THREADS=1``). Each shard is an ordinary cache entry of its own
in ``<stem>.shards/<start>-<stop>.*``: written by :func:`~.writer.extract_chunks` under its
own lock (never two writers on one chunk, even if Dask runs a task twice), resumable at its
last finished chunk when its worker is killed, and checksummed. The client holds the lock of
the whole entry, submits the unfinished shards, waits for all of them, then streams the
verified shards into the final array and writes the manifest. A failed or interrupted run
keeps its finished shards for the next call.

The workers must see the image files and ``cache_dir`` at the same paths (shared storage).
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.core.encoders import build_image_encoder
from xmr_utils.core.encoders.base import ImageEncoder
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.encoding import ExtractOptions, image_chunk_encoder
from xmr_utils.core.features.locks import entry_lock
from xmr_utils.core.features.store import (
    CachePaths,
    expected_arrays,
    open_array,
    read_manifest,
    why_stale,
)
from xmr_utils.core.features.writer import extract_chunks, finish, made_now

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

#: At most this many shards (whole chunks each): the plan depends on the data alone, never
#: on how many workers are up, so a rerun after a lost worker finds the same shards.
MAX_SHARDS = 64
_WORKER_ENCODERS: dict[tuple[str, tuple[tuple[str, Any], ...]], ImageEncoder] = {}


def shard_ranges(n: int, chunk_size: int, n_shards: int) -> list[tuple[int, int]]:
    """At most ``n_shards`` contiguous ``(start, stop)`` ranges of ``n`` items, each a whole
    number of chunks (the last one may end short)."""
    chunks = math.ceil(n / chunk_size)
    per_shard = math.ceil(chunks / max(1, min(n_shards, chunks)))
    step = per_shard * chunk_size
    return [(start, min(n, start + step)) for start in range(0, n, step)]


@dataclass(frozen=True)
class ShardTask:
    """What one Dask task needs to encode one shard (plain data: it travels to a worker)."""

    folder: str
    stem: str
    expected: Mapping[str, Any]
    files: tuple[str, ...]
    run: ExtractOptions
    spec: str
    encoder_options: tuple[tuple[str, Any], ...] = ()

    @property
    def paths(self) -> CachePaths:
        return CachePaths(Path(self.folder), self.stem)

    @property
    def bounds(self) -> tuple[int, int]:
        start, stop = self.expected["shard"]
        return int(start), int(stop)


def shard_tasks(
    paths: CachePaths,
    expected: Mapping[str, Any],
    files: Sequence[Path],
    run: ExtractOptions,
    spec_and_options: tuple[str, tuple[tuple[str, Any], ...]],
    n_shards: int,
) -> list[ShardTask]:
    """One task per shard of the entry ``paths``/``expected``."""
    tasks = []
    for start, stop in shard_ranges(len(files), run.chunk_size, n_shards):
        rows = stop - start
        shard_expected = {
            **expected,
            "shape": [rows, *expected["shape"][1:]],
            "extras": {k: [[rows, *s[1:]], d] for k, (s, d) in expected["extras"].items()},
            "shard": [start, stop],
        }
        tasks.append(
            ShardTask(
                str(paths.shard_dir),
                f"{start:09d}-{stop:09d}",
                shard_expected,
                tuple(str(p) for p in files[start:stop]),
                run.on_worker(),
                *spec_and_options,
            )
        )
    return tasks


def _finished(task: ShardTask) -> dict[str, Any] | None:
    manifest = read_manifest(task.paths.manifest)
    if task.paths.features.exists() and why_stale(manifest, task.expected) is None:
        return manifest
    return None


def _worker_encoder(spec: str, options: tuple[tuple[str, Any], ...]) -> ImageEncoder:
    """The encoder ``spec`` built once per worker process."""
    key = (spec, options)
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS[key] = build_image_encoder(spec, **dict(options))
    return _WORKER_ENCODERS[key]


def encode_shard(task: ShardTask, encoder: ImageEncoder | None = None) -> dict[str, Any]:
    """Dask task: encode the shard ``task`` into its chunk files (or find it finished).

    Returns the shard's manifest. Runs on a worker; ``encoder`` is a scattered encoder
    object, or None to build ``task.spec`` there.
    """
    with entry_lock(task.paths):  # a second run of this task waits here, then reuses
        done = _finished(task)
        if done is not None:
            return done
        enc = encoder if encoder is not None else _worker_encoder(task.spec, task.encoder_options)
        encode = image_chunk_encoder(enc, [Path(f) for f in task.files], task.run)
        return extract_chunks(
            task.paths,
            dict(task.expected),
            encode,
            chunk_size=task.run.chunk_size,
            progress=False,
            desc=f"{task.spec} {task.stem}",
        )


def _run_tasks(client: Client, tasks: list[ShardTask], encoder: Any, progress: bool) -> None:
    """Submit the unfinished ``tasks`` and wait for all; an XmrError names failed shards."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    todo = [t for t in tasks if _finished(t) is None]
    if len(todo) < len(tasks):
        log.warning("reusing %d finished shard(s) of %d", len(tasks) - len(todo), len(tasks))
    scattered = None
    if encoder is not None:
        scattered = client.scatter(encoder, broadcast=True, hash=False)
    run_id = uuid.uuid4().hex[:8]
    futures = [
        client.submit(encode_shard, t, scattered, key=f"xmr-shard-{t.stem}-{run_id}", pure=False)
        for t in todo
    ]
    failed: list[tuple[ShardTask, BaseException]] = []
    by_key = {f.key: t for f, t in zip(futures, todo, strict=True)}
    done = len(tasks) - len(todo)
    with tqdm(total=len(tasks), initial=done, desc="shards", disable=not progress) as bar:
        for future in as_completed(futures):
            if future.status == "error":
                failed.append((by_key[future.key], future.exception()))
            elif future.status != "finished":
                failed.append((by_key[future.key], RuntimeError(f"task {future.status}")))
            bar.update(1)
    if failed:
        task, exc = failed[0]
        raise XmrError(
            f"{len(failed)} of {len(tasks)} shards of {task.expected['spec']} failed (first: shard "
            f"{task.stem}: {type(exc).__name__}: {exc}); the finished shards are kept in "
            f"{task.folder} and reused by the next call"
        )


def _shard_into(
    task: ShardTask, maps: Mapping[str | None, np.ndarray], hashers: Mapping[str | None, Any]
) -> None:
    """Copy the verified arrays of ``task``'s shard into the final ``maps``."""
    paths, (start, stop) = task.paths, task.bounds
    sums = (read_manifest(paths.manifest) or {}).get("checksums", {})
    for name, (shape, dtype) in expected_arrays(task.expected).items():
        arr = open_array(paths.array(name), shape, dtype)
        block = np.array(arr) if arr is not None else np.empty(0, np.uint8)
        sha = f"sha256:{hashlib.sha256(block.data.cast('B')).hexdigest()}"
        if arr is None or sha != sums.get(paths.array(name).name):
            paths.manifest.unlink(missing_ok=True)  # the next call re-extracts this shard
            raise XmrError(
                f"shard {paths.array(name)} is damaged (checksum or shape); it was discarded, "
                "call again to re-extract only that shard"
            )
        maps[name][start:stop] = block
        hashers[name].update(block.data.cast("B"))


def assemble(paths: CachePaths, expected: Mapping[str, Any], tasks: list[ShardTask]) -> dict:
    """Stream the finished shards, verified, into the entry's array; write its manifest."""
    arrays = expected_arrays(expected)
    maps = {
        name: np.lib.format.open_memmap(
            paths.array(name, partial=True), mode="w+", dtype=dtype, shape=shape
        )
        for name, (shape, dtype) in arrays.items()
    }
    hashers = {name: hashlib.sha256() for name in arrays}
    for task in tasks:
        _shard_into(task, maps, hashers)
    for arr in maps.values():
        arr.flush()
    del maps
    sums = {paths.array(n).name: f"sha256:{h.hexdigest()}" for n, h in hashers.items()}
    manifest = made_now(expected, no_known_word=0, sharded={"shards": len(tasks)})
    return finish(paths, manifest, sums=sums)


def extract_sharded(
    client: Client,
    paths: CachePaths,
    expected: Mapping[str, Any],
    files: Sequence[Path],
    run: ExtractOptions,
    source: tuple[str, tuple[tuple[str, Any], ...], ImageEncoder | None],
) -> dict[str, Any]:
    """Extract the entry ``paths``/``expected`` on ``client``'s workers; its manifest.

    ``source``: ``(spec, encoder options, encoder object or None)``; without an object each
    worker builds ``spec`` once.
    """
    threads = sum(client.nthreads().values())
    with entry_lock(paths):
        paths.shard_dir.mkdir(parents=True, exist_ok=True)
        tasks = shard_tasks(paths, expected, files, run, source[:2], MAX_SHARDS)
        log.info("%s: %d shards on %d worker threads", expected["spec"], len(tasks), threads)
        _run_tasks(client, tasks, source[2], run.progress)
        return assemble(paths, expected, tasks)


__all__ = ["ShardTask", "encode_shard", "extract_sharded", "shard_ranges", "shard_tasks"]
