"""Exact nearest neighbours for UMAP fits of a few thousand points, computed at compiled speed.

For fewer than 4096 points ``umap.UMAP`` computes every pairwise distance through
scikit-learn's ``pairwise_distances`` with a numba metric as a Python callable: one Python
call per pair (1.6 million for the 1800 points of a joint-space panel, ~5 s), then its
neighbours with a ``parallel=True`` numba kernel that is compiled anew in every process
(~8 s; umap does not cache it). :func:`exact_neighbours` computes the same matrix with the
same numba metric in one compiled loop (cached on disk under ``NUMBA_CACHE_DIR``) and the
same neighbours (a stable sort of each row, as umap's mergesort), and hands them to UMAP as
``precomputed_knn``: the fit is the same to the bit (``tests/app/test_umap_neighbours.py``
compares both ways), only faster.
"""

from __future__ import annotations

import numba
import numpy as np
from umap.distances import cosine, euclidean
from umap.umap_ import DISCONNECTION_DISTANCES

#: The metrics :func:`exact_neighbours` computes, by UMAP's name.
METRICS: tuple[str, ...] = ("euclidean", "cosine")


@numba.njit(cache=True)
def _pairwise_euclidean(x):  # pragma: no cover - compiled by numba
    """``[N, N]`` float32 distances, as scikit-learn fills them: the upper triangle pair by
    pair, mirrored, and the diagonal from ``d(x, x)``."""
    n = x.shape[0]
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            d = euclidean(x[i], x[j])
            out[i, j] = d
            out[j, i] = d
        out[i, i] = euclidean(x[i], x[i])
    return out


@numba.njit(cache=True)
def _pairwise_cosine(x):  # pragma: no cover - compiled by numba
    """:func:`_pairwise_euclidean` with UMAP's cosine distance."""
    n = x.shape[0]
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            d = cosine(x[i], x[j])
            out[i, j] = d
            out[j, i] = d
        out[i, i] = cosine(x[i], x[i])
    return out


def pairwise_distances(points: np.ndarray, metric: str) -> np.ndarray:
    """UMAP's distance matrix ``[N, N]`` float32 of ``points [N, D]`` (cast to float32, as
    UMAP casts its input), bit for bit what its small-data path computes."""
    x = np.ascontiguousarray(points, dtype=np.float32)
    if metric == "euclidean":
        return _pairwise_euclidean(x)
    if metric == "cosine":
        return _pairwise_cosine(x)
    raise ValueError(f"exact neighbours know the metrics {METRICS}, not {metric!r}")


def exact_neighbours(points: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row of ``points [N, D]``, itself included:
    ``(indices [N, k] int32, distances [N, k] float32)``, nearest first, equal distances by
    the lower index, and distances at or beyond UMAP's disconnection distance for the metric
    set to ``inf`` before the neighbours are chosen -- UMAP's small-data path, step by step."""
    dmat = pairwise_distances(points, metric)
    dmat[dmat >= DISCONNECTION_DISTANCES.get(metric, np.inf)] = np.inf
    indices = np.argsort(dmat, axis=1, kind="stable")[:, :k].astype(np.int32)
    return indices, np.take_along_axis(dmat, indices, axis=1)
