"""Image features of a corpus: cached, verified, extracted here or sharded on Dask."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders import build_image_encoder, split_concatenated
from xmr_utils.core.encoders.base import ImageEncoder
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.encoding import (
    ExtractOptions,
    image_chunk_encoder,
    image_expected,
    split_options,
)
from xmr_utils.core.features.lookup import Entry, find, find_or_extract
from xmr_utils.core.features.shards import extract_sharded
from xmr_utils.core.features.store import DTYPE, FORMAT, cache_paths, read_manifest, why_stale
from xmr_utils.core.features.writer import extract_chunks

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
IMPORTED_VGG_SPEC = "vgg16:fc7"


def imported_expected(corpus: CaptionCorpus, spec: str) -> dict[str, Any]:
    """The manifest fields of imported features (:func:`import_vgg_feats_mat`) usable for
    ``spec`` on ``corpus``: no weights are needed to check them."""
    return {
        "format": FORMAT,
        "kind": "image",
        "spec": spec,
        "origin": "imported",
        "dataset": {"name": corpus.name, "images": corpus.image_fingerprint()},
        "dtype": DTYPE,
    }


def _extract_one(
    corpus: CaptionCorpus,
    enc: ImageEncoder,
    cache_dir: Path,
    run: ExtractOptions,
    client: Client | None,
    source: tuple[str, tuple[tuple[str, Any], ...], ImageEncoder | None],
) -> np.ndarray:
    """Features of one (not concatenated) encoder: imported, cached or extracted now."""
    paths = cache_paths(cache_dir, corpus, enc.spec)
    wanted = imported_expected(corpus, enc.spec)
    imported, why = find(Entry(paths, wanted, cache_dir, corpus))
    if imported is not None:
        log.info("using imported features %s", paths.features)
        return imported
    if why_stale(read_manifest(paths.manifest), wanted) is None:
        raise XmrError(
            f"the imported features {paths.features} cannot be used: {why}; import them "
            "again with xmr_utils.core.features.import_vgg_feats_mat"
        )
    expected = image_expected(corpus, enc)
    files = list(corpus.image_files)

    def extract() -> object:
        if client is not None:
            return extract_sharded(client, paths, expected, files, run, source)
        encode = image_chunk_encoder(enc, files, run)
        return extract_chunks(
            paths,
            expected,
            encode,
            chunk_size=run.chunk_size,
            progress=run.progress,
            desc=expected["spec"],
        )

    return find_or_extract(Entry(paths, expected, cache_dir, corpus), extract)


def image_features(
    corpus: CaptionCorpus,
    spec: str,
    cache_dir: Path,
    *,
    encoder: ImageEncoder | None = None,
    client: Client | None = None,
    **options: Any,
) -> np.ndarray:
    """Image features ``[N_img, D]`` float32 of ``corpus`` for encoder ``spec``, cached.

    Args:
        spec: ``name`` or ``name:variant`` of :data:`~xmr_utils.core.encoders.IMAGE_ENCODERS`;
            ``a+b`` puts the features of several encoders side by side (``[N_img, Da + Db]``,
            each cached on its own).
        cache_dir: feature cache root; files go to ``cache_dir/<name>-<root hash>/``
            (:func:`~xmr_utils.core.features.store.dataset_folder`).
        encoder: an already built encoder to use instead of building ``spec``.
        client: a Dask ``distributed.Client``: the images are split into shards encoded by
            its workers (:mod:`~xmr_utils.core.features.shards`); None: this process.
        options: run options (:class:`~.encoding.ExtractOptions`: ``batch_size=32``,
            ``device="auto"``, ``num_workers=None``, ``progress=True``, ``chunk_size=512``);
            the rest go to :func:`~xmr_utils.core.encoders.build_image_encoder`.

    Imported features (:func:`import_vgg_feats_mat`) for the same spec and images are reused
    without loading any weights. A cache is reused only when its manifest, checksum and
    finiteness check out; a cache with the same manifest in another folder of ``cache_dir``
    (e.g. the pre-identity ``cache_dir/<name>/``) is adopted instead of re-extracted.
    """
    run, encoder_options = split_options(options)
    parts = split_concatenated(spec) if encoder is None else (spec,)
    if len(parts) > 1:
        blocks = [
            image_features(corpus, part, cache_dir, client=client, **options) for part in parts
        ]
        return np.concatenate(blocks, axis=1)
    enc = encoder if encoder is not None else build_image_encoder(spec, **encoder_options)
    source = (spec, tuple(sorted(encoder_options.items())), encoder)
    return _extract_one(corpus, enc, Path(cache_dir), run, client, source)


def region_features(
    corpus: CaptionCorpus,
    cache_dir: Path,
    spec: str = "faster_rcnn:regions",
    **options: Any,
) -> dict[str, np.ndarray]:
    """Per-region arrays of a region encoder, extracted or loaded (memory-mapped, read-only).

    Returns ``{"pooled": [N, 1024], "regions": [N, R, 1024], "boxes": [N, R, 4],
    "scores": [N, R], "counts": [N]}``; ``options`` as for :func:`image_features`.
    """
    encoder_keys = ("weights", "max_regions", "score_threshold", "min_size", "proposals")
    enc = options.pop("encoder", None) or build_image_encoder(
        spec, **{k: options.pop(k) for k in encoder_keys if k in options}
    )
    extras = getattr(enc, "extra_outputs", None)
    if not extras:
        raise XmrError(
            f"image encoder {enc.spec!r} has no per-region outputs; use 'faster_rcnn:regions'"
        )
    image_features(corpus, spec, cache_dir, encoder=enc, **options)
    paths = cache_paths(Path(cache_dir), corpus, enc.spec)
    out = {"pooled": np.load(paths.features, mmap_mode="r")}
    out.update({name: np.load(paths.array(name), mmap_mode="r") for name in extras})
    return out


__all__ = ["IMPORTED_VGG_SPEC", "image_features", "imported_expected", "region_features"]
