"""How images are encoded into cache chunks: the run options and the manifest fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders.base import ImageEncoder
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.store import DTYPE, FORMAT
from xmr_utils.core.features.writer import Chunk, Encode


@dataclass(frozen=True)
class ExtractOptions:
    """How an extraction runs (none of these changes the cache key).

    Attributes:
        batch_size: images per forward pass.
        device: ``auto`` | ``cpu`` | ``cuda``.
        num_workers: image-decoding processes (None: the encoder's default).
        progress: show progress bars.
        chunk_size: images per resumable chunk (and the unit shards are made of).
    """

    batch_size: int = 32
    device: str = "auto"
    num_workers: int | None = None
    progress: bool = True
    chunk_size: int = 512

    def on_worker(self) -> ExtractOptions:
        """The options a Dask worker uses: decoding in-process (worker processes are
        daemons and may not start DataLoader workers) and no progress bars."""
        return replace(self, num_workers=0, progress=False)


OPTION_NAMES: frozenset[str] = frozenset(f.name for f in fields(ExtractOptions))


def split_options(options: Mapping[str, Any]) -> tuple[ExtractOptions, dict[str, Any]]:
    """``(run options, encoder options)`` from the keyword arguments of a features call."""
    run = ExtractOptions(**{k: v for k, v in options.items() if k in OPTION_NAMES})
    if run.chunk_size < 1:
        raise XmrError(f"chunk_size={run.chunk_size} must be at least 1")
    return run, {k: v for k, v in options.items() if k not in OPTION_NAMES}


def image_expected(corpus: CaptionCorpus, encoder: ImageEncoder) -> dict[str, Any]:
    """The manifest fields an image cache of ``encoder`` on ``corpus`` must have."""
    extras = getattr(encoder, "extra_outputs", None) or {}
    n = corpus.n_images
    return {
        "format": FORMAT,
        "kind": "image",
        "spec": encoder.spec,
        "weights_id": encoder.weights_id(),
        "preprocessing": encoder.preprocessing_id(),
        "dataset": {"name": corpus.name, "images": corpus.image_fingerprint()},
        "dtype": DTYPE,
        "shape": [n, int(encoder.dim)],
        "extras": {k: [[n, *shape], dtype] for k, (shape, dtype) in extras.items()},
    }


def image_chunk_encoder(
    encoder: ImageEncoder, files: Sequence[Path], run: ExtractOptions
) -> Encode:
    """``encode(start, stop)`` of ``files[start:stop]`` (with extra outputs when the encoder
    has them, e.g. the regions of ``faster_rcnn:regions``)."""
    with_extras = getattr(encoder, "encode_images_with_extras", None)
    if not getattr(encoder, "extra_outputs", None):
        with_extras = None

    def encode(start: int, stop: int) -> Chunk:
        call = with_extras if with_extras is not None else encoder.encode_images
        out = call(
            list(files[start:stop]),
            batch_size=run.batch_size,
            num_workers=run.num_workers,
            device=run.device,
            progress=run.progress,
        )
        if with_extras is not None:
            feats, extras = out
            return feats, extras, 0
        return out, {}, 0

    return encode


__all__ = ["ExtractOptions", "image_chunk_encoder", "image_expected", "split_options"]
