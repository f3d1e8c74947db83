"""Where a cached array lives, what its manifest says, and a verified load of it.

A dataset's arrays live in ``cache_dir/<name>-<root hash>/``: the folder is keyed by the
dataset's resolved root folder (its identity), so two folders of one layout (a full
Flickr30k and a 1000-image subset in Kaggle layout) never share, or evict, a cache. The
manifest beside each array records the content fingerprint (image names and sizes, or the
captions) and a sha256 checksum of every array's data bytes; a load verifies both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xmr_utils
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders import spec_file_stem

FORMAT = 1  # bump when the cache layout changes; older caches are then re-extracted
DTYPE = "float32"
NOTHING_CACHED = "nothing is cached yet"
#: Elements hashed and checked per step (4 MB of float32): memory stays bounded on mmaps.
BLOCK = 1 << 20


@dataclass(frozen=True)
class CachePaths:
    """The files of one cached feature array (all in ``folder``, named after ``stem``)."""

    folder: Path
    stem: str

    @property
    def features(self) -> Path:
        return self.folder / f"{self.stem}.npy"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.stem}.manifest.json"

    @property
    def progress(self) -> Path:
        return self.folder / f"{self.stem}.partial.json"

    @property
    def lock(self) -> Path:
        """The writer's lock file (held while anything writes this entry)."""
        return self.folder / f"{self.stem}.lock"

    @property
    def model_dir(self) -> Path:
        """Where a fitted text encoder (fastText) is saved beside its features."""
        return self.folder / f"{self.stem}.model"

    @property
    def shard_dir(self) -> Path:
        """Where the shards of a sharded (Dask) extraction are written until assembled."""
        return self.folder / f"{self.stem}.shards"

    def array(self, name: str | None, partial: bool = False) -> Path:
        """The main array (``name=None``) or an extra output, finished or ``.partial``."""
        middle = f".{name}" if name else ""
        return self.folder / f"{self.stem}{middle}{'.partial' if partial else ''}.npy"


def dataset_key(corpus: CaptionCorpus) -> str:
    """``<name>-<sha256 of the resolved root>[:10]``: the cache folder name of ``corpus``."""
    root = str(Path(corpus.root).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", corpus.name) or "dataset"
    return f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:10]}"


def dataset_folder(cache_dir: Path, corpus: CaptionCorpus) -> Path:
    """The folder under ``cache_dir`` that holds ``corpus``'s cached arrays."""
    return Path(cache_dir) / dataset_key(corpus)


def cache_paths(cache_dir: Path, corpus: CaptionCorpus, spec: str) -> CachePaths:
    """Paths for canonical ``spec`` of ``corpus`` under ``cache_dir``."""
    return CachePaths(dataset_folder(cache_dir, corpus), spec_file_stem(spec))


def note_dataset(folder: Path, corpus: CaptionCorpus) -> None:
    """Write ``folder/dataset.json`` (name and root) once, so a person can tell folders apart."""
    marker = folder / "dataset.json"
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        root = str(Path(corpus.root).expanduser().resolve())
        write_json_atomic(marker, {"name": corpus.name, "root": root})


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when it is missing or not valid JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def why_stale(manifest: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str | None:
    """None when ``manifest`` matches every field of ``expected``; else the first difference."""
    if manifest is None:
        return "its manifest is missing or unreadable"
    for key, want in expected.items():
        have = manifest.get(key)
        if have != want:
            return f"{key} changed ({have!r} -> {want!r})"
    return None


def expected_arrays(manifest: Mapping[str, Any]) -> dict[str | None, tuple[tuple[int, ...], str]]:
    """``{None: (shape, dtype)}`` of the main array plus one entry per extra output."""
    arrays: dict[str | None, tuple[tuple[int, ...], str]] = {
        None: (tuple(manifest["shape"]), manifest["dtype"])
    }
    for name, (shape, dtype) in manifest.get("extras", {}).items():
        arrays[name] = (tuple(shape), dtype)
    return arrays


def open_array(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
    """``path`` memory-mapped read-only, or None if unreadable or not ``shape``/``dtype``."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != dtype:
        return None
    return arr


def digest(arr: np.ndarray) -> tuple[str, int]:
    """``("sha256:<hex>", non-finite count)`` of ``arr``'s C-order data bytes.

    One pass in blocks of :data:`BLOCK` elements (bounded memory on a memory map); each
    float block is summed (NaN/inf survive a sum) and only a non-finite sum is counted.
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    hasher = hashlib.sha256()
    bad = 0
    for start in range(0, flat.size, BLOCK):
        block = flat[start : start + BLOCK]
        hasher.update(block.data.cast("B"))
        if block.dtype.kind == "f" and not np.isfinite(np.add.reduce(block)):
            bad += int(np.count_nonzero(~np.isfinite(block)))
    return f"sha256:{hasher.hexdigest()}", bad


def first_bad_rows(arr: np.ndarray, n: int = 3) -> list[int]:
    """The first ``n`` row indices of ``arr`` that hold a NaN or inf."""
    rows = ~np.isfinite(np.asarray(arr).reshape(len(arr), -1)).all(axis=1)
    return [int(i) for i in np.flatnonzero(rows)[:n]]


def checksums_of(paths: CachePaths, manifest: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """``({file name: checksum}, "")`` of the finished arrays, or ``({}, why not usable)``.

    Why not usable: a file is unreadable or has the wrong shape, or holds NaN/inf.
    """
    sums: dict[str, str] = {}
    for name, (shape, dtype) in expected_arrays(manifest).items():
        path = paths.array(name)
        arr = open_array(path, shape, dtype)
        if arr is None:
            return {}, f"{path} is truncated, unreadable or has the wrong shape"
        sums[path.name], bad = digest(arr)
        if bad:
            return {}, f"{path} holds {bad} NaN/inf values (rows {first_bad_rows(arr)}, ...)"
    return sums, ""


def with_checksums(manifest: Mapping[str, Any], sums: Mapping[str, str]) -> dict[str, Any]:
    """``manifest`` plus the checksums of its arrays."""
    return {**manifest, "checksums": dict(sums)}


def legacy_note() -> str:
    """What a manifest says when its checksum was recorded after the fact."""
    return (
        f"recorded on {time.strftime('%Y-%m-%d')} by xmr {xmr_utils.__version__} from the file "
        "as found: it was made before checksums, so it was not verified against the original"
    )


def load_verified(paths: CachePaths, manifest: Mapping[str, Any]) -> tuple[np.ndarray | None, str]:
    """``(main array, "")`` when every array matches the manifest's shape and checksum and
    holds no NaN/inf; else ``(None, why)`` naming the file. One read of each file."""
    sums = manifest.get("checksums") or {}
    main: np.ndarray | None = None
    for name, (shape, dtype) in expected_arrays(manifest).items():
        path = paths.array(name)
        arr = open_array(path, shape, dtype)
        if arr is None:
            return None, f"{path.name} is truncated or has the wrong shape"
        if name is None:
            arr = np.array(arr)  # the read; verified in memory below
            main = arr
        checksum, bad = digest(arr)
        if bad:
            return None, (
                f"{path} holds {bad} NaN/inf values (rows {first_bad_rows(arr)}, ...); "
                "a cache must be finite"
            )
        if checksum != sums.get(path.name):
            return None, (
                f"{path} does not match the checksum in {paths.manifest.name} "
                "(it was modified or damaged after it was written)"
            )
    return main, ""


__all__ = [
    "BLOCK",
    "DTYPE",
    "FORMAT",
    "NOTHING_CACHED",
    "CachePaths",
    "cache_paths",
    "checksums_of",
    "dataset_folder",
    "dataset_key",
    "digest",
    "expected_arrays",
    "load_verified",
    "read_manifest",
    "why_stale",
    "write_json_atomic",
]
