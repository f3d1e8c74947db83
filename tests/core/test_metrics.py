"""xmr_utils.core.metrics against brute-force Python loops and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr_utils.core import fused_ranks, metrics
from xmr_utils.core.errors import XmrError
from xmr_utils.core.metrics import (
    evaluate_embeddings,
    i2t_caption_ranks,
    ranks_from_embeddings,
    retrieval_metrics,
    seed_apk,
    t2i_image_ranks,
)
from xmr_utils.core.retrieval import score_matrix

KS = (1, 5, 10)


def brute_metrics(scores: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """Every similarity with loops over a stable descending argsort (the documented tie rule)."""
    n_img, n_cap = scores.shape
    out: dict[str, float] = {}
    best_ranks, map_k, mapcap_k = [], {k: [] for k in KS}, {k: [] for k in KS}
    for i in range(n_img):
        mine = [c for c in range(n_cap) if owner[c] == i]
        if not mine:
            continue
        order = list(np.argsort(-scores[i], kind="stable"))
        best_ranks.append(min(order.index(c) + 1 for c in mine))
        for k in KS:
            map_k[k].append(seed_apk([i], [int(owner[c]) for c in order[:k]], k))
            mapcap_k[k].append(seed_apk(mine, [int(c) for c in order[:k]], k))
    t2i_ranks, t2i_map = [], {k: [] for k in KS}
    for c in range(n_cap):
        order = list(np.argsort(-scores[:, c], kind="stable"))
        t2i_ranks.append(order.index(owner[c]) + 1)
        for k in KS:
            t2i_map[k].append(seed_apk([int(owner[c])], [int(i) for i in order[:k]], k))
    for name, ranks in (("i2t", best_ranks), ("t2i", t2i_ranks)):
        for k in KS:
            out[f"{name}_R@{k}"] = 100.0 * sum(r <= k for r in ranks) / len(ranks)
        srt = sorted(ranks)
        mid = len(srt) // 2
        out[f"{name}_medr"] = srt[mid] if len(srt) % 2 else (srt[mid - 1] + srt[mid]) / 2
        out[f"{name}_meanr"] = sum(ranks) / len(ranks)
    for k in KS:
        out[f"i2t_mAP@{k}"] = sum(map_k[k]) / len(map_k[k])
        out[f"i2t_mAPcap@{k}"] = sum(mapcap_k[k]) / len(mapcap_k[k])
        out[f"t2i_mAP@{k}"] = sum(t2i_map[k]) / len(t2i_map[k])
    out["rsum"] = sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in KS)
    out["n_images"] = float(len(best_ranks))
    out["n_captions"] = float(n_cap)
    return out


def brute_caption_ranks(scores: np.ndarray, owner: np.ndarray) -> list[int]:
    return [
        list(np.argsort(-scores[owner[c]], kind="stable")).index(c) + 1
        for c in range(scores.shape[1])
    ]


def brute_t2i_ranks(scores: np.ndarray, owner: np.ndarray) -> list[int]:
    return [
        list(np.argsort(-scores[:, c], kind="stable")).index(owner[c]) + 1
        for c in range(scores.shape[1])
    ]


def make_owner(counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Caption -> image owner for images with ``counts[i]`` captions, in shuffled order."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return rng.permutation(owner).astype(np.int64)


EXPECTED_KEYS = [
    *[f"i2t_R@{k}" for k in KS], "i2t_medr", "i2t_meanr",
    *[f"i2t_mAP@{k}" for k in KS], *[f"i2t_mAPcap@{k}" for k in KS],
    *[f"t2i_R@{k}" for k in KS], "t2i_medr", "t2i_meanr",
    *[f"t2i_mAP@{k}" for k in KS], "rsum", "n_images", "n_captions",
]  # fmt: skip


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == EXPECTED_KEYS
    for key in EXPECTED_KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


CASES = [
    # (seed, caption counts per image, integer scores in [0, levels) or None for floats)
    (0, [1, 3, 7, 0, 5, 5, 2], 3),
    (1, [1, 3, 7, 0, 5, 5, 2, 1, 4], None),
    (2, [5] * 12, 2),
    (3, [0, 2, 1, 7, 3, 0, 1], 5),
    (4, [5] * 20 + [1, 3, 7, 0], None),
    (5, [1] * 15, 1),  # every score equal: ranking is pure index order
]


@pytest.mark.parametrize(("seed", "counts", "levels"), CASES)
def test_everything_matches_brute_force(
    seed: int, counts: list[int], levels: int | None, score_path: str
) -> None:
    rng = np.random.default_rng(seed)
    owner = make_owner(counts, rng)
    shape = (len(counts), len(owner))
    scores = rng.integers(0, levels, shape) if levels else rng.standard_normal(shape)
    want = brute_metrics(scores.astype(np.float64), owner)
    assert_same(retrieval_metrics(scores, owner), want)
    assert_same(retrieval_metrics(torch.from_numpy(scores), torch.from_numpy(owner)), want)
    np.testing.assert_array_equal(
        i2t_caption_ranks(scores, owner), brute_caption_ranks(scores, owner)
    )
    np.testing.assert_array_equal(t2i_image_ranks(scores, owner), brute_t2i_ranks(scores, owner))


@pytest.mark.parametrize(("seed", "counts", "levels"), CASES)
def test_chunked_equals_unchunked(
    seed: int,
    counts: list[int],
    levels: int | None,
    monkeypatch: pytest.MonkeyPatch,
    score_path: str,
) -> None:
    rng = np.random.default_rng(seed)
    owner = make_owner(counts, rng)
    shape = (len(counts), len(owner))
    scores = rng.integers(0, levels, shape) if levels else rng.standard_normal(shape)
    whole = retrieval_metrics(scores, owner)
    caps = i2t_caption_ranks(scores, owner)
    monkeypatch.setattr("xmr_utils.core.retrieval.BLOCK_ELEMENTS", 2 * shape[1])  # 2-row blocks
    assert retrieval_metrics(scores, owner) == whole
    np.testing.assert_array_equal(i2t_caption_ranks(scores, owner), caps)


def test_best_rank_is_min_of_caption_ranks() -> None:
    rng = np.random.default_rng(7)
    owner = make_owner([1, 3, 7, 0, 2], rng)
    scores = rng.integers(0, 3, (5, len(owner)))
    caps = i2t_caption_ranks(scores, owner)
    ranks = metrics.ranks_from_scores(scores, owner)
    for i in range(5):
        mine = caps[owner == i]
        assert ranks.i2t_best_rank[i] == (mine.min() if mine.size else 0)


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
@pytest.mark.parametrize("chunk", [1, 3, None])
def test_evaluate_embeddings_equals_materialised(
    similarity: str, chunk: int | None, score_path: str
) -> None:
    rng = np.random.default_rng(11)
    owner = make_owner([1, 3, 7, 0, 5, 5, 2, 4, 1], rng)
    # small integers: every score is exact, with many ties, whatever the summation order
    img = rng.integers(-2, 3, (9, 6)).astype(np.float32)
    txt = rng.integers(-2, 3, (len(owner), 6)).astype(np.float32)
    want = retrieval_metrics(score_matrix(img, txt, similarity), owner)
    assert_same(evaluate_embeddings(img, txt, owner, similarity, chunk_size=chunk), want)
    assert_same(
        want, brute_metrics(score_matrix(img, txt, similarity).numpy().astype(float), owner)
    )


def test_evaluate_embeddings_random_floats_and_torch_inputs(score_path: str) -> None:
    gen = torch.Generator().manual_seed(3)
    owner = torch.from_numpy(make_owner([5] * 40 + [1, 3, 7, 0], np.random.default_rng(3)))
    img = torch.nn.functional.normalize(torch.randn(44, 16, generator=gen), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(len(owner), 16, generator=gen), dim=1)
    got = evaluate_embeddings(img, txt, owner, chunk_size=7)
    assert_same(got, retrieval_metrics(score_matrix(img, txt), owner))


def test_collapsed_embeddings_take_the_exact_second_pass(
    monkeypatch: pytest.MonkeyPatch, score_path: str
) -> None:
    rng = np.random.default_rng(5)
    owner = make_owner([2, 3, 1, 4, 0, 2], rng)
    img = np.ones((6, 4), dtype=np.float32)  # every score ties: the band holds everything
    txt = rng.integers(0, 2, (len(owner), 4)).astype(np.float32)
    want = retrieval_metrics(score_matrix(img, txt), owner)
    monkeypatch.setattr(metrics, "MAX_BAND_ENTRIES", 3)
    monkeypatch.setattr(fused_ranks, "MAX_BAND_ENTRIES", 3)
    ranks = ranks_from_embeddings(img, txt, owner, chunk_size=2)
    np.testing.assert_array_equal(ranks.t2i_rank, owner + 1)  # ties -> lowest image index wins
    assert_same(metrics.metrics_from_ranks(ranks), want)


def test_hand_computed_case() -> None:
    # 2 images; image 0 owns captions 0, 2; image 1 owns caption 1.
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    owner = np.array([0, 1, 0])
    m = retrieval_metrics(scores, owner, ks=(1, 2))
    # image 0 row order: c1(.9) c2(.5) c0(.1): own captions at ranks 2, 3 -> best 2
    # image 1 row order: c2(.8) c0(.3) c1(.2): own caption at rank 3
    assert m["i2t_R@1"] == 0.0 and m["i2t_R@2"] == 50.0
    assert m["i2t_medr"] == 2.5 and m["i2t_meanr"] == 2.5
    assert m["i2t_mAP@2"] == pytest.approx((1 / 2 + 0) / 2)
    # mAPcap@2: image 0 hits at position 2 -> (1/2)/min(2,2) = 0.25; image 1 -> 0
    assert m["i2t_mAPcap@2"] == pytest.approx(0.125)
    # t2i columns: c0 -> [i1 .3, i0 .1] rank 2; c1 -> [i0 .9, i1 .2] rank 2; c2 -> i1 .8 rank 2
    assert m["t2i_R@1"] == 0.0 and m["t2i_R@2"] == 100.0 and m["t2i_medr"] == 2.0
    assert m["t2i_mAP@1"] == 0.0 and m["t2i_mAP@2"] == pytest.approx(0.5)
    assert m["rsum"] == 150.0 and m["n_images"] == 2.0 and m["n_captions"] == 3.0


def test_hand_computed_ties_prefer_lower_index() -> None:
    scores = np.zeros((3, 3))
    owner = np.array([2, 1, 0])
    np.testing.assert_array_equal(i2t_caption_ranks(scores, owner), [1, 2, 3])
    np.testing.assert_array_equal(t2i_image_ranks(scores, owner), [3, 2, 1])
    m = retrieval_metrics(scores, owner, ks=(1,))
    # i2t: image 0 owns c2 (rank 3), image 1 owns c1 (rank 2), image 2 owns c0 (rank 1)
    assert m["i2t_R@1"] == pytest.approx(100 / 3) and m["i2t_meanr"] == 2.0


def test_image_without_captions_is_excluded_and_counted() -> None:
    scores = np.array([[5.0, 0.0], [9.0, 9.0], [0.0, 5.0]])
    owner = np.array([0, 2])  # image 1 owns nothing (and would win every column)
    m = retrieval_metrics(scores, owner, ks=(1,))
    assert m["n_images"] == 2.0 and m["i2t_R@1"] == 100.0 and m["t2i_R@1"] == 0.0


@pytest.mark.parametrize(
    ("scores", "owner", "match"),
    [
        (np.zeros(3), [0, 0, 0], "2-D"),
        (np.zeros((2, 3)), [0, 1], "2 entries but there are 3 captions"),
        (np.zeros((2, 3)), [0, 1, 2], "outside the 2 image rows"),
        (np.zeros((2, 3)), [0, -1, 1], "outside the 2 image rows"),
        (np.zeros((2, 3)), [0.0, 1.0, 1.0], "integer array"),
        (np.array([[0.0, np.nan, 1.0], [0, 0, 0]]), [0, 1, 1], "NaN"),
        (np.zeros((2, 0)), np.zeros(0, dtype=int), "no captions"),
    ],
)
def test_bad_input_raises_clear_error(scores: np.ndarray, owner: list, match: str) -> None:
    with pytest.raises(XmrError, match=match):
        retrieval_metrics(scores, np.asarray(owner))


def test_bad_ks_and_similarity() -> None:
    with pytest.raises(XmrError, match="distinct positive"):
        retrieval_metrics(np.zeros((1, 1)), [0], ks=(0, 1))
    with pytest.raises(XmrError, match="unknown similarity 'cosine'"):
        evaluate_embeddings(np.ones((1, 2)), np.ones((1, 2)), [0], similarity="cosine")
    with pytest.raises(XmrError, match="different sizes"):
        evaluate_embeddings(np.ones((1, 2)), np.ones((1, 3)), [0])


def test_wrong_pair_estimate_is_caught_and_recounted(
    monkeypatch: pytest.MonkeyPatch, score_path: str
) -> None:
    rng = np.random.default_rng(9)
    owner = make_owner([2, 3, 1, 4, 2], rng)
    img = rng.integers(-2, 3, (5, 4)).astype(np.float32)
    txt = rng.integers(-2, 3, (len(owner), 4)).astype(np.float32)
    want = retrieval_metrics(score_matrix(img, txt), owner)
    real = metrics._pair_targets

    def off_by_100(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        approx, eps = real(*args)
        return approx + 100.0, eps  # the band misses every true pair

    def bands_off_by_100(*args: object) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = real_bands(*args)
        return lo + 100, hi + 100

    real_bands = fused_ranks.pair_estimates
    monkeypatch.setattr(metrics, "_pair_targets", off_by_100)
    monkeypatch.setattr(fused_ranks, "pair_estimates", bands_off_by_100)
    assert_same(evaluate_embeddings(img, txt, owner, chunk_size=2), want)


@pytest.mark.parametrize("chunk", [7, None])
def test_neg_sqeuclidean_metrics_are_exact_in_the_collapse_regime(
    chunk: int | None, collapse_regime: tuple[np.ndarray, np.ndarray, np.ndarray], score_path: str
) -> None:
    img, txt, owner = collapse_regime
    exact = -((img.astype(np.float64)[:, None] - txt.astype(np.float64)[None]) ** 2).sum(-1)
    want = retrieval_metrics(exact, owner)
    assert want["rsum"] == 600.0  # exact arithmetic retrieves every pair
    assert_same(evaluate_embeddings(img, txt, owner, "neg_sqeuclidean", chunk_size=chunk), want)
    assert_same(retrieval_metrics(score_matrix(img, txt, "neg_sqeuclidean"), owner), want)


def test_seed_apk_is_the_seeds_average_precision() -> None:
    assert seed_apk([1], [1, 2, 3]) == 1.0
    assert seed_apk([3], [1, 2, 3]) == pytest.approx(1 / 3)
    assert seed_apk([3], [1, 2, 3], k=2) == 0.0
    assert seed_apk([], [1, 2]) == 0.0
    assert seed_apk([1, 2], [2, 2, 1]) == pytest.approx((1 + 2 / 3) / 2)  # a repeat counts once
    assert seed_apk([1, 2, 3], [1, 9], k=2) == pytest.approx(1 / 2)  # divided by min(3, k)
