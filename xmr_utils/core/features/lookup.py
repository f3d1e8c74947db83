"""Find a cache entry, verified; adopt an equal one from another folder; else extract it.

Lookup order for one entry (an array of one encoder on one dataset):

1. its own folder (``cache_dir/<name>-<root hash>/``), verified without the lock: manifest
   fields, shape, sha256 checksum, finiteness;
2. under the lock: the same again (another process may just have written it), recording
   a checksum for a manifest written before checksums existed;
3. adoption: a valid entry with the *same manifest* (same encoder, weights, preprocessing
   and dataset fingerprint) in another folder of ``cache_dir`` (the pre-identity layout
   ``cache_dir/<name>/`` first, then other roots holding the same images) is hard-linked
   (copied across filesystems) into this folder; nothing is moved or deleted;
4. extraction, under the lock; an interrupted extraction of the same entry in another folder
   (an earlier xmr's ``cache_dir/<name>/<stem>.partial.npy``) is copied first and resumed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.locks import entry_lock
from xmr_utils.core.features.store import (
    NOTHING_CACHED,
    CachePaths,
    checksums_of,
    expected_arrays,
    legacy_note,
    load_verified,
    note_dataset,
    read_manifest,
    why_stale,
    with_checksums,
    write_json_atomic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One cached array: its files, the manifest fields it must match, and its dataset."""

    paths: CachePaths
    expected: Mapping[str, Any]
    cache_dir: Path
    corpus: CaptionCorpus


def _check(entry: Entry, record: bool) -> tuple[np.ndarray | None, str]:
    """``(verified main array, "")`` or ``(None, why not)``. ``record`` (only under the lock):
    give a manifest made before checksums its checksum, once, saying so."""
    paths = entry.paths
    if not paths.features.exists():
        return None, NOTHING_CACHED
    manifest = read_manifest(paths.manifest)
    why = why_stale(manifest, entry.expected)
    if why or manifest is None:
        return None, why or "its manifest is missing"
    if "checksums" not in manifest:
        if not record:
            return None, "its manifest has no checksum yet"
        sums, why = checksums_of(paths, manifest)
        if why:
            return None, why
        write_json_atomic(
            paths.manifest, {**with_checksums(manifest, sums), "checksums_note": legacy_note()}
        )
        log.warning(
            "%s was written before checksums: recorded its checksum now (it could not be "
            "verified against the original)",
            paths.features,
        )
        manifest = read_manifest(paths.manifest) or manifest
    return load_verified(paths, manifest)


def _sibling_folders(entry: Entry) -> Iterator[Path]:
    """Other dataset folders of ``cache_dir``: the pre-identity ``<name>/`` first."""
    legacy = entry.cache_dir / entry.corpus.name
    if legacy.is_dir() and legacy != entry.paths.folder:
        yield legacy
    try:
        others = sorted(p for p in entry.cache_dir.iterdir() if p.is_dir())
    except OSError:
        return
    yield from (p for p in others if p not in (legacy, entry.paths.folder))


def adoption_source(entry: Entry) -> CachePaths | None:
    """An entry in another folder whose manifest matches ``entry`` (not yet verified)."""
    for folder in _sibling_folders(entry):
        other = CachePaths(folder, entry.paths.stem)
        if (
            other.features.exists()
            and why_stale(read_manifest(other.manifest), entry.expected) is None
        ):
            return other
    return None


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link of ``src`` (a copy across filesystems), atomically."""
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.adopt")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) the folder ``src`` to ``dst`` (replaced when present)."""
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.adopt")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=lambda s, d: link_or_copy(Path(s), Path(d)))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def _adopt(entry: Entry, source: CachePaths) -> bool:
    """Verify ``source`` and link its files into ``entry``'s folder (under the lock)."""
    manifest = read_manifest(source.manifest)
    if manifest is None:
        return False
    sums, why = checksums_of(source, manifest)
    if not why and "checksums" in manifest and manifest["checksums"] != sums:
        why = f"{source.features} does not match the checksum in its manifest"
    if why:
        log.warning("not adopting %s: %s", source.features, why)
        return False
    paths = entry.paths
    note_dataset(paths.folder, entry.corpus)
    for name in expected_arrays(manifest):
        link_or_copy(source.array(name), paths.array(name))
    if source.model_dir.is_dir():
        link_tree(source.model_dir, paths.model_dir)
    adopted = {**with_checksums(manifest, sums), "adopted_from": str(source.features)}
    if "checksums" not in manifest:
        adopted["checksums_note"] = legacy_note()
    write_json_atomic(paths.manifest, adopted)
    log.warning(
        "adopted %s as %s (same encoder, weights and dataset fingerprint; linked, not moved)",
        source.features,
        paths.features,
    )
    return True


def copy_partial(entry: Entry) -> bool:
    """Copy an interrupted extraction of ``entry`` from another folder (e.g. one that an
    earlier xmr was writing into ``cache_dir/<name>/``), so that it resumes there.

    Its progress record is copied first, then the arrays: the old writer only flushes a chunk
    before recording it and never rewrites finished rows, so the copy is consistent even if
    that writer is still running (it then finishes on its own, and is adopted later).
    """
    paths = entry.paths
    if paths.progress.exists():
        return False
    for folder in _sibling_folders(entry):
        other = CachePaths(folder, paths.stem)
        record = read_manifest(other.progress)
        if record is None or record.get("key") != entry.expected:
            continue
        try:
            for name in expected_arrays(entry.expected):
                shutil.copyfile(other.array(name, partial=True), paths.array(name, partial=True))
        except OSError:  # finished (renamed) or removed meanwhile
            continue
        write_json_atomic(paths.progress, record)
        log.warning(
            "copied the interrupted extraction %s (%d of %d done) to resume it as %s",
            other.array(None, partial=True),
            int(record.get("done", 0)),
            int(entry.expected["shape"][0]),
            paths.features,
        )
        return True
    return False


def _locked_lookup(entry: Entry) -> tuple[np.ndarray | None, str]:
    arr, why = _check(entry, record=True)
    if arr is None:
        source = adoption_source(entry)
        if source is not None and _adopt(entry, source):
            arr, why = _check(entry, record=True)
    return arr, why


def find(entry: Entry) -> tuple[np.ndarray | None, str]:
    """``(verified array, "")`` from ``entry``'s folder or adopted; else ``(None, why)``.

    The lock is taken only when there is something to write (a checksum, an adoption).
    """
    arr, why = _check(entry, record=False)
    if arr is not None:
        return arr, ""
    needs_writing = why == "its manifest has no checksum yet" or (
        why == NOTHING_CACHED and adoption_source(entry) is not None
    )
    if not needs_writing:
        return None, why
    with entry_lock(entry.paths):
        return _locked_lookup(entry)


def find_or_extract(entry: Entry, extract: Callable[[], object]) -> np.ndarray:
    """The verified array of ``entry``; ``extract()`` writes it first when none is usable."""
    arr, why = find(entry)
    if arr is not None:
        return arr
    with entry_lock(entry.paths):
        arr, why = _locked_lookup(entry)  # another process may have finished it meanwhile
        if arr is not None:
            return arr
        if why != NOTHING_CACHED:
            log.warning("re-extracting %s because %s", entry.paths.features, why)
        note_dataset(entry.paths.folder, entry.corpus)
        copy_partial(entry)
        extract()
        arr, why = _check(entry, record=False)
    if arr is None:
        raise XmrError(f"{entry.paths.features} was just written but {why}")
    return arr


__all__ = ["Entry", "adoption_source", "find", "find_or_extract", "link_or_copy", "link_tree"]
