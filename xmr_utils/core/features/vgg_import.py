"""Import neuraltalk's precomputed ``vgg_feats.mat`` as a ready ``vgg16`` feature cache."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import xmr_utils
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders.weights import weights_id_of
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features.images import IMPORTED_VGG_SPEC
from xmr_utils.core.features.locks import entry_lock
from xmr_utils.core.features.store import (
    DTYPE,
    FORMAT,
    CachePaths,
    cache_paths,
    digest,
    note_dataset,
    write_json_atomic,
)

log = logging.getLogger(__name__)


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


def _imported_manifest(
    mat_path: Path, corpus: CaptionCorpus, values: np.ndarray, paths: CachePaths
) -> dict[str, Any]:
    return {
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
        "checksums": {paths.features.name: digest(values)[0]},
    }


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
    paths = cache_paths(Path(cache_dir), corpus, IMPORTED_VGG_SPEC)
    with entry_lock(paths):
        note_dataset(paths.folder, corpus)
        tmp = paths.folder / f"{paths.stem}.{os.getpid()}.import.npy"
        np.save(tmp, values)
        os.replace(tmp, paths.features)
        write_json_atomic(paths.manifest, _imported_manifest(mat_path, corpus, values, paths))
    log.info("imported %d x %d features from %s", *values.shape, mat_path)
    return paths.features


__all__ = ["import_vgg_feats_mat"]
