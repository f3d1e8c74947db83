"""Extract features once, then reuse them — only when they are provably the same.

Layout: ``cache_dir/<dataset name>-<hash of its resolved root>/<spec>.npy`` plus
``<spec>.manifest.json`` (encoder spec, weights id, preprocessing, dataset fingerprint,
dtype, shape, sha256 checksum of every array, creation time, xmr version), and a
``dataset.json`` naming the root. A cache is reused only when its manifest matches what the
encoder and the corpus would produce now *and* its content matches the checksum and is
finite; otherwise it is re-extracted and the log says why, naming the file.

- :mod:`.store`: paths, keys, manifests, checksums, the verified load;
- :mod:`.lookup`: find, adopt an equal entry from another folder, or extract;
- :mod:`.locks`: one writer per entry (a kernel file lock; held = its writer is alive);
- :mod:`.writer`: the chunked, resumable writer;
- :mod:`.shards` / :mod:`.cluster`: sharded extraction on Dask;
- :mod:`.images`, :mod:`.texts`, :mod:`.vgg_import`: the public entry points.
"""

from __future__ import annotations

from xmr_utils.core.features.encoding import ExtractOptions
from xmr_utils.core.features.images import (
    IMPORTED_VGG_SPEC,
    image_features,
    region_features,
)
from xmr_utils.core.features.store import (
    DTYPE,
    FORMAT,
    CachePaths,
    cache_paths,
    dataset_folder,
    dataset_key,
    load_verified,
    read_manifest,
)
from xmr_utils.core.features.texts import fitted_text_encoder, text_features
from xmr_utils.core.features.vgg_import import import_vgg_feats_mat
from xmr_utils.core.features.writer import Chunk, extract_chunks

__all__ = [
    "DTYPE",
    "FORMAT",
    "IMPORTED_VGG_SPEC",
    "CachePaths",
    "Chunk",
    "ExtractOptions",
    "cache_paths",
    "dataset_folder",
    "dataset_key",
    "extract_chunks",
    "fitted_text_encoder",
    "image_features",
    "import_vgg_feats_mat",
    "load_verified",
    "read_manifest",
    "region_features",
    "text_features",
]
