"""Extract features once, then reuse them: ``cache_dir/<corpus.name>/<spec>.npy`` + manifest.

Every cached array has a ``<stem>.manifest.json`` beside it recording the encoder spec, the
weights id (file name + hash), the preprocessing, the dataset fingerprint, dtype, shape, the
creation time and the xmr version. A cache is reused only when its manifest matches what the
encoder and the corpus would produce now; otherwise it is re-extracted and the log says why.

Extraction is chunked and resumable: chunks are written into ``<stem>.partial.npy`` (a
``numpy.lib.format.open_memmap``) and ``<stem>.partial.json`` records how many items are
done, so a killed extraction restarts at the last finished chunk. The finished file is
renamed into place atomically; features stream to disk, so memory stays bounded by a chunk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xmr_utils
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders import (
    build_image_encoder,
    build_text_encoder,
    spec_file_stem,
    split_concatenated,
)
from xmr_utils.core.encoders.base import ImageEncoder, TextEncoder
from xmr_utils.core.encoders.concat import ConcatenatedTextEncoder
from xmr_utils.core.encoders.weights import weights_id_of
from xmr_utils.core.errors import XmrError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the cache layout changes; older caches are then re-extracted
DTYPE = "float32"
IMPORTED_VGG_SPEC = "vgg16:fc7"

Chunk = tuple[np.ndarray, dict[str, np.ndarray], int]  # features, extras, no-known-word count


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
    def model_dir(self) -> Path:
        """Where a fitted text encoder (fastText) is saved beside its features."""
        return self.folder / f"{self.stem}.model"

    def array(self, name: str | None, partial: bool = False) -> Path:
        """The main array (``name=None``) or an extra output, finished or ``.partial``."""
        middle = f".{name}" if name else ""
        return self.folder / f"{self.stem}{middle}{'.partial' if partial else ''}.npy"


def cache_paths(cache_dir: Path, corpus_name: str, spec: str) -> CachePaths:
    """Paths for canonical ``spec`` of corpus ``corpus_name`` under ``cache_dir``."""
    return CachePaths(Path(cache_dir) / corpus_name, spec_file_stem(spec))


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when it is missing or not valid JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _why_stale(manifest: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str | None:
    """None when ``manifest`` matches every field of ``expected``; else the first difference."""
    if manifest is None:
        return "its manifest is missing or unreadable"
    for key, want in expected.items():
        have = manifest.get(key)
        if have != want:
            return f"{key} changed ({have!r} -> {want!r})"
    return None


def _array_ok(path: Path, shape: tuple[int, ...], dtype: str) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return tuple(arr.shape) == tuple(shape) and str(arr.dtype) == dtype


def _expected_arrays(expected: Mapping[str, Any]) -> dict[str | None, tuple[tuple[int, ...], str]]:
    arrays: dict[str | None, tuple[tuple[int, ...], str]] = {
        None: (tuple(expected["shape"]), expected["dtype"])
    }
    for name, (shape, dtype) in expected.get("extras", {}).items():
        arrays[name] = (tuple(shape), dtype)
    return arrays


def _cached(paths: CachePaths, expected: Mapping[str, Any]) -> tuple[bool, str]:
    """``(True, "")`` when the finished cache matches ``expected``; else ``(False, why)``."""
    if not paths.features.exists():
        return False, "nothing is cached yet"
    why = _why_stale(read_manifest(paths.manifest), expected)
    if why:
        return False, why
    for name, (shape, dtype) in _expected_arrays(expected).items():
        if not _array_ok(paths.array(name), shape, dtype):
            return False, f"{paths.array(name).name} is truncated or has the wrong shape"
    return True, ""


def _extract(
    paths: CachePaths,
    expected: dict[str, Any],
    encode: Callable[[int, int], Chunk],
    *,
    chunk_size: int,
    progress: bool,
    desc: str,
) -> dict[str, Any]:
    """Fill the cache for ``expected`` with ``encode(start, stop)``, resuming when possible.

    Returns the manifest written.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise XmrError(f"chunk_size={chunk_size} must be at least 1")
    paths.folder.mkdir(parents=True, exist_ok=True)
    arrays = _expected_arrays(expected)
    n = int(expected["shape"][0])
    record = read_manifest(paths.progress)
    done, no_word = 0, 0
    if (
        record is not None
        and record.get("key") == expected
        and all(_array_ok(paths.array(k, partial=True), *v) for k, v in arrays.items())
    ):
        done, no_word = int(record["done"]), int(record.get("no_known_word", 0))
        log.warning("resuming %s at item %d of %d", paths.features, done, n)
        mode = "r+"
    else:
        mode = "w+"
    maps = {
        name: np.lib.format.open_memmap(
            paths.array(name, partial=True), mode=mode, dtype=dtype, shape=shape
        )
        for name, (shape, dtype) in arrays.items()
    }
    with tqdm(total=n, initial=done, desc=desc, unit="item", disable=not progress) as bar:
        for start in range(done, n, chunk_size):
            stop = min(n, start + chunk_size)
            feats, extras, missing = encode(start, stop)
            for name, values in ((None, feats), *extras.items()):
                if name not in maps:
                    continue
                values = np.asarray(values)
                want = (stop - start, *arrays[name][0][1:])
                if values.shape != want:
                    raise XmrError(
                        f"{expected['spec']} returned {values.shape} for items "
                        f"{start}:{stop}, expected {want}"
                    )
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    raise XmrError(
                        f"{expected['spec']} produced NaN/inf features for items "
                        f"{start}:{stop}; check its weights file"
                    )
                maps[name][start:stop] = values
                maps[name].flush()
            no_word += int(missing)
            _write_json_atomic(
                paths.progress, {"key": expected, "done": stop, "no_known_word": no_word}
            )
            bar.update(stop - start)
    for name in maps:
        maps[name].flush()
    del maps
    for name in arrays:
        os.replace(paths.array(name, partial=True), paths.array(name))

    manifest = {
        **expected,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "xmr_version": xmr_utils.__version__,
        "origin": "extracted",
        "no_known_word": no_word,
    }
    _write_json_atomic(paths.manifest, manifest)
    paths.progress.unlink(missing_ok=True)
    if no_word:
        log.warning(
            "%s: %d of %d captions have no known word and were encoded as zero vectors",
            expected["spec"],
            no_word,
            n,
        )
    return manifest


def _load_or_extract(
    paths: CachePaths,
    expected: dict[str, Any],
    encode: Callable[[int, int], Chunk],
    *,
    chunk_size: int,
    progress: bool,
) -> np.ndarray:
    ok, why = _cached(paths, expected)
    if ok:
        log.info("reusing %s", paths.features)
    else:
        if why != "nothing is cached yet":
            log.warning("re-extracting %s because %s", paths.features, why)
        _extract(
            paths, expected, encode, chunk_size=chunk_size, progress=progress, desc=expected["spec"]
        )
    return np.load(paths.features)


def _image_expected(corpus: CaptionCorpus, encoder: ImageEncoder) -> dict[str, Any]:
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


def _imported_match(paths: CachePaths, corpus: CaptionCorpus, spec: str) -> bool:
    manifest = read_manifest(paths.manifest)
    if not manifest or manifest.get("origin") != "imported" or manifest.get("spec") != spec:
        return False
    fingerprint = {"name": corpus.name, "images": corpus.image_fingerprint()}
    return manifest.get("dataset") == fingerprint and _array_ok(
        paths.features, tuple(manifest["shape"]), DTYPE
    )


def image_features(
    corpus: CaptionCorpus,
    spec: str,
    cache_dir: Path,
    *,
    batch_size: int = 32,
    device: str = "auto",
    num_workers: int | None = None,
    progress: bool = True,
    chunk_size: int = 512,
    encoder: ImageEncoder | None = None,
    **encoder_options: Any,
) -> np.ndarray:
    """Image features ``[N_img, D]`` float32 of ``corpus`` for encoder ``spec``, cached.

    Args:
        spec: ``name`` or ``name:variant`` of :data:`~xmr_utils.core.encoders.IMAGE_ENCODERS`;
            ``a+b`` puts the features of several encoders side by side (``[N_img, Da + Db]``,
            each cached on its own).
        cache_dir: feature cache root; files go to ``cache_dir/<corpus.name>/``.
        num_workers: image-decoding processes (None: ``min(2, cpu count)``).
        chunk_size: images per resumable chunk.
        encoder: an already built encoder to use instead of building ``spec``.
        encoder_options: passed to :func:`~xmr_utils.core.encoders.build_image_encoder`.

    Imported features (:func:`import_vgg_feats_mat`) for the same spec and images are reused
    without loading any weights.
    """
    parts = split_concatenated(spec) if encoder is None else (spec,)
    if len(parts) > 1:
        return np.concatenate(
            [
                image_features(
                    corpus,
                    part,
                    cache_dir,
                    batch_size=batch_size,
                    device=device,
                    num_workers=num_workers,
                    progress=progress,
                    chunk_size=chunk_size,
                    **encoder_options,
                )
                for part in parts
            ],
            axis=1,
        )
    enc = encoder if encoder is not None else build_image_encoder(spec, **encoder_options)
    paths = cache_paths(Path(cache_dir), corpus.name, enc.spec)
    if _imported_match(paths, corpus, enc.spec):
        log.info("using imported features %s", paths.features)
        return np.load(paths.features)
    expected = _image_expected(corpus, enc)
    files = list(corpus.image_files)
    with_extras = getattr(enc, "encode_images_with_extras", None) if expected["extras"] else None

    def encode(start: int, stop: int) -> Chunk:
        kwargs = {
            "batch_size": batch_size,
            "num_workers": num_workers,
            "device": device,
            "progress": progress,
        }
        if with_extras is not None:
            feats, extras = with_extras(files[start:stop], **kwargs)
            return feats, extras, 0
        return enc.encode_images(files[start:stop], **kwargs), {}, 0

    return _load_or_extract(paths, expected, encode, chunk_size=chunk_size, progress=progress)


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
    paths = cache_paths(Path(cache_dir), corpus.name, enc.spec)
    out = {"pooled": np.load(paths.features, mmap_mode="r")}
    out.update({name: np.load(paths.array(name), mmap_mode="r") for name in extras})
    return out


def _text_expected(corpus: CaptionCorpus, encoder: TextEncoder) -> dict[str, Any]:
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


def _ensure_fitted(corpus: CaptionCorpus, encoder: TextEncoder, paths: CachePaths) -> None:
    """Load the fitted state saved beside the features, or fit on the train split and save."""
    if not encoder.needs_fit:
        return
    key = {
        "spec": encoder.spec,
        "weights_id": encoder.weights_id(),
        "captions": corpus.caption_fingerprint(),
        "splits": corpus.split_fingerprint(),
    }
    fit_file = paths.model_dir / "fit.json"
    saved = read_manifest(fit_file)
    if saved == key:
        try:
            encoder.load(paths.model_dir)
            return
        except XmrError as exc:
            log.warning("refitting %s because %s", encoder.spec, exc)
    elif saved is not None:
        log.warning("refitting %s because %s", encoder.spec, _why_stale(saved, key))
    train = [corpus.captions[i] for i in corpus.split_captions("train")]
    log.info("fitting %s on %d training captions", encoder.spec, len(train))
    encoder.fit(train)
    tmp = paths.model_dir.with_name(paths.model_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    encoder.save(tmp)
    _write_json_atomic(tmp / "fit.json", key)
    if paths.model_dir.exists():
        import shutil

        shutil.rmtree(paths.model_dir)
    os.replace(tmp, paths.model_dir)


def text_features(
    corpus: CaptionCorpus,
    spec: str,
    cache_dir: Path,
    *,
    batch_size: int = 64,
    progress: bool = True,
    chunk_size: int = 8192,
    encoder: TextEncoder | None = None,
    **encoder_options: Any,
) -> np.ndarray:
    """Caption features ``[N_cap, D]`` float32 of ``corpus`` for encoder ``spec``, cached.

    Encoders that need fitting (fastText) are trained on the training split's captions only
    and saved beside the features (``<stem>.model/``); their cache also depends on the split.
    Captions with no known word are zero rows, counted in the manifest (``no_known_word``).
    ``a+b`` puts the features of several encoders side by side (``[N_cap, Da + Db]``, each
    cached on its own), e.g. ``minilm:mean+tfidf``.
    """
    parts = split_concatenated(spec) if encoder is None else (spec,)
    if len(parts) > 1:
        options = {"batch_size": batch_size, "progress": progress, "chunk_size": chunk_size}
        blocks = [text_features(corpus, p, cache_dir, **options, **encoder_options) for p in parts]
        return np.concatenate(blocks, axis=1)
    enc = encoder if encoder is not None else build_text_encoder(spec, **encoder_options)
    paths = cache_paths(Path(cache_dir), corpus.name, enc.spec)
    expected = _text_expected(corpus, enc)
    captions = list(corpus.captions)
    fitted: list[bool] = []

    def encode(start: int, stop: int) -> Chunk:
        if not fitted:
            _ensure_fitted(corpus, enc, paths)
            fitted.append(True)
        feats = enc.encode_texts(captions[start:stop], batch_size=batch_size, progress=progress)
        return feats, {}, enc.last_report.n_no_known_word

    return _load_or_extract(paths, expected, encode, chunk_size=chunk_size, progress=progress)


def fitted_text_encoder(
    corpus: CaptionCorpus, spec: str, cache_dir: Path, **encoder_options: Any
) -> TextEncoder:
    """The text encoder ``spec`` ready to encode new query strings.

    fastText and tfidf load the model fitted on ``corpus``'s training split from the cache
    (fitting and saving it first when absent); pretrained encoders are returned as built. A
    ``a+b`` spec gives a :class:`~xmr_utils.core.encoders.concat.ConcatenatedTextEncoder`.
    """
    parts = split_concatenated(spec)
    if len(parts) > 1:
        return ConcatenatedTextEncoder(
            [fitted_text_encoder(corpus, part, cache_dir, **encoder_options) for part in parts]
        )
    enc: TextEncoder = build_text_encoder(spec, **encoder_options)
    _ensure_fitted(corpus, enc, cache_paths(Path(cache_dir), corpus.name, enc.spec))
    return enc


def _load_mat_feats(mat_path: Path) -> np.ndarray:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(mat_path), variable_names=["feats"])
    except NotImplementedError:
        raise XmrError(
            f"{mat_path} is a MATLAB v7.3 (HDF5) file; re-save it with "
            "scipy.io.savemat or MATLAB's -v7 flag"
        ) from None
    except (OSError, ValueError) as exc:
        raise XmrError(f"cannot read {mat_path} as a MATLAB file ({exc})") from None
    if "feats" not in mat:
        raise XmrError(
            f"{mat_path} has no variable 'feats'; expected neuraltalk's "
            "vgg_feats.mat (4096 x N_images)"
        )
    feats = np.asarray(mat["feats"])
    if feats.ndim != 2:
        raise XmrError(f"'feats' in {mat_path} has shape {feats.shape}; expected 4096 x N")
    return feats


def import_vgg_feats_mat(
    mat_path: Path, dataset_json: Path, corpus: CaptionCorpus, cache_dir: Path
) -> Path:
    """Import neuraltalk's ``vgg_feats.mat`` as a ready ``vgg16`` image-feature cache.

    ``feats`` (4096 x M) has one column per entry of ``dataset_json["images"]``; columns are
    matched to ``corpus.image_files`` by file name. Returns the written ``.npy`` path, which
    :func:`image_features` (spec ``vgg16``) then reuses without loading VGG16 weights.
    """

    mat_path, dataset_json = Path(mat_path), Path(dataset_json)
    feats = _load_mat_feats(mat_path)
    try:
        entries = json.loads(dataset_json.read_text())["images"]
        names = [str(e["filename"]) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XmrError(
            f"{dataset_json} is not a Karpathy dataset.json with images[].filename "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if feats.shape[1] != len(names):
        raise XmrError(
            f"{mat_path} has {feats.shape[1]} feature columns but {dataset_json} lists "
            f"{len(names)} images; use the dataset.json shipped with that .mat"
        )
    column = {name: j for j, name in enumerate(names)}
    missing = [p.name for p in corpus.image_files if p.name not in column]
    if missing:
        raise XmrError(
            f"{len(missing)} of {corpus.n_images} images of {corpus.name} (e.g. "
            f"{missing[0]}) are not in {dataset_json}; import features made for this "
            "dataset, or extract them with image encoder 'vgg16'"
        )
    cols = np.array([column[p.name] for p in corpus.image_files], dtype=np.int64)
    values = np.ascontiguousarray(feats[:, cols].T, dtype=np.float32)
    if not np.isfinite(values).all():
        raise XmrError(f"{mat_path} holds NaN/inf features; re-export it")
    paths = cache_paths(Path(cache_dir), corpus.name, IMPORTED_VGG_SPEC)
    paths.folder.mkdir(parents=True, exist_ok=True)
    tmp = paths.array(None, partial=True)
    np.save(tmp, values)
    os.replace(tmp, paths.features)

    _write_json_atomic(
        paths.manifest,
        {
            "format": FORMAT,
            "kind": "image",
            "spec": IMPORTED_VGG_SPEC,
            "weights_id": weights_id_of(mat_path),
            "preprocessing": f"imported from neuraltalk {mat_path.name} (Caffe VGG16 fc7)",
            "dataset": {"name": corpus.name, "images": corpus.image_fingerprint()},
            "dtype": DTYPE,
            "shape": list(values.shape),
            "extras": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "xmr_version": xmr_utils.__version__,
            "origin": "imported",
            "source": str(mat_path),
            "no_known_word": 0,
        },
    )
    log.info("imported %d x %d features from %s", *values.shape, mat_path)
    return paths.features


__all__ = [
    "CachePaths",
    "cache_paths",
    "fitted_text_encoder",
    "image_features",
    "import_vgg_feats_mat",
    "read_manifest",
    "region_features",
    "text_features",
]
