"""Caption features of a corpus, cached; text encoders fitted on the training split."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders import build_text_encoder, split_concatenated
from xmr_utils.core.encoders.base import TextEncoder, TextReport
from xmr_utils.core.encoders.concat import ConcatenatedTextEncoder
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.locks import entry_lock
from xmr_utils.core.features.lookup import Entry, find_or_extract, link_tree
from xmr_utils.core.features.store import (
    DTYPE,
    FORMAT,
    CachePaths,
    cache_paths,
    read_manifest,
    why_stale,
    write_json_atomic,
)
from xmr_utils.core.features.writer import Chunk, extract_chunks

log = logging.getLogger(__name__)


def text_expected(corpus: CaptionCorpus, encoder: TextEncoder) -> dict[str, Any]:
    """The manifest fields a caption cache of ``encoder`` on ``corpus`` must have."""
    dataset: dict[str, str] = {"name": corpus.name, "captions": corpus.caption_fingerprint()}
    if encoder.needs_fit:
        dataset["splits"] = corpus.split_fingerprint()
    return {
        "format": FORMAT,
        "kind": "text",
        "spec": encoder.spec,
        "weights_id": encoder.weights_id(),
        "preprocessing": "raw caption strings",
        "dataset": dataset,
        "dtype": DTYPE,
        "shape": [corpus.n_captions, int(encoder.dim)],
    }


def _fit_key(corpus: CaptionCorpus, encoder: TextEncoder) -> dict[str, Any]:
    return {
        "spec": encoder.spec,
        "weights_id": encoder.weights_id(),
        "captions": corpus.caption_fingerprint(),
        "splits": corpus.split_fingerprint(),
    }


def _adopt_fit(paths: CachePaths, cache_dir: Path, key: dict[str, Any]) -> bool:
    """Link a model fitted for ``key`` from another dataset folder of ``cache_dir``."""
    for folder in sorted(p for p in Path(cache_dir).iterdir() if p.is_dir()):
        other = CachePaths(folder, paths.stem).model_dir
        if folder != paths.folder and read_manifest(other / "fit.json") == key:
            link_tree(other, paths.model_dir)
            log.warning("adopted the fitted model %s as %s", other, paths.model_dir)
            return True
    return False


def _load_fit(encoder: TextEncoder, paths: CachePaths, key: dict[str, Any]) -> bool:
    saved = read_manifest(paths.model_dir / "fit.json")
    if saved == key:
        try:
            encoder.load(paths.model_dir)
            return True
        except XmrError as exc:
            log.warning("refitting %s because %s", encoder.spec, exc)
    elif saved is not None:
        log.warning("refitting %s because %s", encoder.spec, why_stale(saved, key))
    return False


def ensure_fitted(
    corpus: CaptionCorpus, encoder: TextEncoder, paths: CachePaths, cache_dir: Path
) -> None:
    """Load the fitted state saved beside the features (or adopted from another folder of
    ``cache_dir``), or fit on the train split and save; under the entry's lock."""
    if not encoder.needs_fit:
        return
    key = _fit_key(corpus, encoder)
    with entry_lock(paths):
        if _load_fit(encoder, paths, key):
            return
        if not paths.model_dir.exists() and _adopt_fit(paths, cache_dir, key):
            if _load_fit(encoder, paths, key):
                return
        train = [corpus.captions[i] for i in corpus.split_captions("train")]
        log.info("fitting %s on %d training captions", encoder.spec, len(train))
        encoder.fit(train)
        tmp = paths.model_dir.with_name(paths.model_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        encoder.save(tmp)
        write_json_atomic(tmp / "fit.json", key)
        shutil.rmtree(paths.model_dir, ignore_errors=True)
        tmp.replace(paths.model_dir)


def text_features(
    corpus: CaptionCorpus,
    spec: str,
    cache_dir: Path,
    *,
    batch_size: int = 64,
    progress: bool = True,
    chunk_size: int = 8192,
    encoder: TextEncoder | None = None,
    device: str | None = None,
    **encoder_options: Any,
) -> np.ndarray:
    """Caption features ``[N_cap, D]`` float32 of ``corpus`` for encoder ``spec``, cached.

    Encoders that need fitting (fastText) are trained on the training split's captions only
    and saved beside the features (``<stem>.model/``); their cache also depends on the split.
    Captions with no known word are zero rows, counted in the manifest (``no_known_word``);
    the manifest's ``text_report`` also counts the captions cut at the encoder's token limit
    (read back with :func:`cached_text_report`). ``a+b`` puts the features of several
    encoders side by side (``[N_cap, Da + Db]``, each cached on its own), e.g.
    ``minilm:mean+tfidf``.
    ``device`` (None: the encoder's own, ``auto``) is where transformer encoders run.
    """
    if chunk_size < 1:
        raise XmrError(f"chunk_size={chunk_size} must be at least 1")
    cache_dir = Path(cache_dir)
    parts = split_concatenated(spec) if encoder is None else (spec,)
    if len(parts) > 1:
        options: dict[str, Any] = {
            "batch_size": batch_size,
            "progress": progress,
            "chunk_size": chunk_size,
            "device": device,
        }
        blocks = [text_features(corpus, p, cache_dir, **options, **encoder_options) for p in parts]
        return np.concatenate(blocks, axis=1)
    enc = encoder if encoder is not None else build_text_encoder(spec, **encoder_options)
    paths = cache_paths(cache_dir, corpus, enc.spec)
    expected = text_expected(corpus, enc)
    captions = list(corpus.captions)

    def encode(start: int, stop: int) -> Chunk:
        feats = enc.encode_texts(
            captions[start:stop], batch_size=batch_size, progress=progress, device=device
        )
        return feats, {}, enc.last_report

    def extract() -> object:
        ensure_fitted(corpus, enc, paths, cache_dir)
        return extract_chunks(
            paths,
            expected,
            encode,
            chunk_size=chunk_size,
            progress=progress,
            desc=enc.spec,
            run_info=lambda: dict(getattr(enc, "last_run", {})),
        )

    return find_or_extract(Entry(paths, expected, cache_dir, corpus), extract)


def cached_text_report(
    corpus: CaptionCorpus, spec: str, cache_dir: Path, **encoder_options: Any
) -> TextReport | None:
    """What the encoder saw when it filled the cache of ``spec`` for ``corpus`` (captions with
    no known word, captions cut at its token limit; indices are caption indices), or None when
    nothing matching is cached or the cache predates these counts. A ``a+b`` spec gives None:
    each part keeps its own report, and theirs do not add up to the concatenation's."""
    if len(split_concatenated(spec)) > 1:
        return None
    enc = build_text_encoder(spec, **encoder_options)
    manifest = read_manifest(cache_paths(Path(cache_dir), corpus, enc.spec).manifest)
    if manifest is None or not isinstance(manifest.get("text_report"), dict):
        return None
    if why_stale(manifest, text_expected(corpus, enc)) is not None:
        return None  # the cache is of other captions
    return TextReport.from_dict(manifest["text_report"])


def fitted_text_encoder(
    corpus: CaptionCorpus, spec: str, cache_dir: Path, **encoder_options: Any
) -> TextEncoder | ConcatenatedTextEncoder:
    """The text encoder ``spec`` ready to encode new query strings.

    fastText and tfidf load the model fitted on ``corpus``'s training split from the cache
    (fitting and saving it first when absent); pretrained encoders are returned as built. A
    ``a+b`` spec gives a :class:`~xmr_utils.core.encoders.concat.ConcatenatedTextEncoder`.
    """
    parts = split_concatenated(spec)
    if len(parts) > 1:
        return ConcatenatedTextEncoder(
            [_fitted_part(corpus, part, Path(cache_dir), encoder_options) for part in parts]
        )
    return _fitted_part(corpus, spec, Path(cache_dir), encoder_options)


def _fitted_part(
    corpus: CaptionCorpus, spec: str, cache_dir: Path, encoder_options: dict[str, Any]
) -> TextEncoder:
    """One (not concatenated) encoder of :func:`fitted_text_encoder`, fitted if it needs it."""
    enc: TextEncoder = build_text_encoder(spec, **encoder_options)
    ensure_fitted(corpus, enc, cache_paths(cache_dir, corpus, enc.spec), cache_dir)
    return enc


__all__ = [
    "cached_text_report",
    "ensure_fitted",
    "fitted_text_encoder",
    "text_expected",
    "text_features",
]
