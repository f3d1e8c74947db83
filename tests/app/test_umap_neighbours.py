"""UMAP's exact neighbours computed at compiled speed give the projection UMAP gives itself,
bit for bit: the distance matrix, the neighbours (ties by the lower index) and the fit."""

import warnings

import numpy as np
import pytest
import umap
from sklearn.metrics import pairwise_distances as sklearn_pairwise
from umap.distances import named_distances

from xmr_utils.app import viz
from xmr_utils.app.umap_neighbours import exact_neighbours, pairwise_distances


def _point_sets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    spread = rng.normal(size=(90, 24)).astype(np.float32)
    centre = rng.normal(size=(1, 24))
    return {
        "spread": spread,
        # exact duplicates: equal distances everywhere, the tie rule decides the neighbours
        "duplicates": np.concatenate([spread[:60], spread[:30]]),
        # a collapsed model: every point within 1e-4 of one
        "collapsed": (centre + 1e-4 * rng.normal(size=(80, 24))).astype(np.float32),
        "float64": rng.normal(size=(70, 300)),
    }


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("name", ["spread", "duplicates", "collapsed", "float64"])
def test_distances_are_umaps_own(metric: str, name: str) -> None:
    points = _point_sets()[name]
    # what UMAP's small-data path computes: scikit-learn's loop over umap's numba metric
    expected = sklearn_pairwise(points.astype(np.float32), metric=named_distances[metric])
    got = pairwise_distances(points, metric)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)


def test_neighbours_are_nearest_first_ties_by_lower_index() -> None:
    points = _point_sets()["duplicates"]
    indices, dists = exact_neighbours(points, 5, "euclidean")
    assert indices.dtype == np.int32 and dists.dtype == np.float32
    assert indices[0].tolist()[:2] == [0, 60]  # itself and its duplicate, at distance 0
    assert indices[60].tolist()[:2] == [0, 60]  # the same pair, lower index first
    assert np.all(np.diff(dists, axis=1) >= 0)
    with pytest.raises(ValueError, match="metrics"):
        exact_neighbours(points, 5, "manhattan")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("name", ["spread", "duplicates", "collapsed"])
def test_projection_is_the_same_as_umaps_own(metric: str, name: str) -> None:
    points = _point_sets()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = umap.UMAP(
            n_neighbors=15, min_dist=0.1, metric=metric, random_state=0, n_jobs=1
        ).fit_transform(points)
    got = viz.umap_2d(points, seed=0, metric=metric)
    assert np.array_equal(got, expected)
