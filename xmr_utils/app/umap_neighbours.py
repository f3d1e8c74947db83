"""Exact nearest neighbours for UMAP fits of a few thousand points, computed at compiled speed.

For fewer than 4096 points ``umap.UMAP`` computes every pairwise distance through
scikit-learn's ``pairwise_distances`` with a numba metric as a Python callable: one Python
call per pair (1.6 million for the 1800 points of a joint-space panel, ~5 s), then its
neighbours with a ``parallel=True`` numba kernel that is compiled anew in every process
(~8 s; umap does not cache it). :func:`exact_neighbours` computes the same matrix with the
same numba metric in one compiled loop and the same neighbours (a stable sort of each row,
as umap's mergesort), which :func:`xmr_utils.app.viz.umap_2d` hands to UMAP as
``precomputed_knn``: the fit is the same to the bit (``tests/app/test_umap_neighbours.py``
compares both ways), only faster. umap and numba are imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

#: The metrics :func:`exact_neighbours` computes, by UMAP's name.
METRICS: tuple[str, ...] = ("euclidean", "cosine")


def _pairwise(x, metric):  # pragma: no cover - compiled by numba
    """``[N, N]`` float32 distances of the rows of ``x`` under the numba function ``metric``,
    as scikit-learn fills them: the upper triangle pair by pair, mirrored, and the diagonal
    from ``metric(x, x)``."""
    n = x.shape[0]
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            d = metric(x[i], x[j])
            out[i, j] = d
            out[j, i] = d
        out[i, i] = metric(x[i], x[i])
    return out


@functools.cache
def _compiled_pairwise() -> Callable[..., np.ndarray]:
    """:func:`_pairwise`, compiled (once per process and metric: well under a second)."""
    import numba

    return numba.njit(_pairwise)


def pairwise_distances(points: np.ndarray, metric: str) -> np.ndarray:
    """UMAP's distance matrix ``[N, N]`` float32 of ``points [N, D]`` (cast to float32, as
    UMAP casts its input), bit for bit what its small-data path computes."""
    from umap.distances import named_distances

    if metric not in METRICS:
        raise ValueError(f"exact neighbours know the metrics {METRICS}, not {metric!r}")
    x = np.ascontiguousarray(points, dtype=np.float32)
    return _compiled_pairwise()(x, named_distances[metric])


def exact_neighbours(points: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row of ``points [N, D]``, itself included:
    ``(indices [N, k] int32, distances [N, k] float32)``, nearest first, equal distances by
    the lower index, and distances at or beyond UMAP's disconnection distance for the metric
    set to ``inf`` before the neighbours are chosen -- UMAP's small-data path, step by step."""
    from umap.umap_ import DISCONNECTION_DISTANCES

    dmat = pairwise_distances(points, metric)
    dmat[dmat >= DISCONNECTION_DISTANCES.get(metric, np.inf)] = np.inf
    indices = np.argsort(dmat, axis=1, kind="stable")[:, :k].astype(np.int32)
    return indices, np.take_along_axis(dmat, indices, axis=1)
