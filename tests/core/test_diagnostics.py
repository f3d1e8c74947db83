"""xmr_utils.core.diagnostics: each statistic against a loop or a closed form, and the rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from xmr_utils.core import diagnostics
from xmr_utils.core.diagnostics import collapse_reasons, collapse_stats, norm_share
from xmr_utils.core.errors import XmrError

KEYS = [
    *(f"{p}{k}" for p in ("img_", "txt_") for k in
      ("mean_norm", "mean_pairwise_cosine", "dim_std_mean", "effective_rank", "uniformity")),
    "alignment", "distinct_top1_i2t", "distinct_top1_t2i", "i2t_norm_share", "t2i_norm_share",
    "collapsed",
]  # fmt: skip


def test_pairwise_statistics_match_loops() -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((9, 4)))
    u = [v / np.linalg.norm(v) for v in x.numpy()]
    pairs = [(i, j) for i, j in itertools.permutations(range(9), 2)]
    want_cos = sum(float(u[i] @ u[j]) for i, j in pairs) / len(pairs)
    assert diagnostics.mean_pairwise_cosine(x) == pytest.approx(want_cos, abs=1e-12)
    half = list(itertools.combinations(range(9), 2))
    mean_exp = sum(math.exp(-2 * float(((u[i] - u[j]) ** 2).sum())) for i, j in half) / len(half)
    # its pairwise dots are one float32 product: within ~1e-7 of the float64 loop
    assert diagnostics.uniformity(x) == pytest.approx(math.log(mean_exp), abs=1e-6)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (64, 64), (3, 500)])
def test_effective_rank_from_the_gram_matrix_matches_a_direct_svd(shape) -> None:
    gen = torch.Generator().manual_seed(0)
    # decaying spectrum, so small singular values matter to the entropy
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    x = x * torch.logspace(0, -3, shape[1], dtype=torch.float64)
    xc = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(xc)
    p = s / s.sum()
    p = p[p > 0]
    naive = float(torch.exp(-(p * p.log()).sum()))
    assert diagnostics.effective_rank(x) == pytest.approx(naive, rel=1e-6)
    assert diagnostics.effective_rank(x.float()) == pytest.approx(naive, rel=1e-4)


def test_effective_rank_closed_forms() -> None:
    # k orthogonal directions with equal spread -> k equal singular values -> rank k
    basis = torch.eye(6, dtype=torch.float64)
    for k in (1, 2, 4):
        x = torch.cat([basis[:k], -basis[:k]])  # centred already; each direction spread equally
        assert diagnostics.effective_rank(x) == pytest.approx(k, rel=1e-9)
    assert diagnostics.effective_rank(torch.ones(5, 3)) == 0.0
    s = np.array([3.0, 1.0])
    p = s / s.sum()
    x = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert diagnostics.effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_alignment_and_distinct_shares_by_hand() -> None:
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    owner = torch.tensor([0, 1, 1])
    txt = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # last one antipodal: |.|^2 = 4
    assert diagnostics.alignment(img, txt, owner) == pytest.approx(4 / 3)
    # queries (1,0),(0,1) against items: top-1 are item 0 and item 1 -> 2 distinct / min(2, 3)
    assert diagnostics.distinct_top1_share(img, txt, "dot") == 1.0
    assert diagnostics.distinct_top1_share(torch.ones(4, 2), txt, "dot") == pytest.approx(1 / 3)


def make_pairs(n_img: int, per: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    owner = np.repeat(np.arange(n_img), per)
    return owner, np.random.default_rng(seed).standard_normal((n_img, dim))


def test_healthy_random_gaussian_is_not_collapsed() -> None:
    owner, img = make_pairs(300, 5, 64, 1)
    txt = img[owner] + 0.5 * np.random.default_rng(2).standard_normal((len(owner), 64))
    stats = collapse_stats(img.astype(np.float32), txt.astype(np.float32), owner, sample=500)
    assert list(stats) == KEYS
    assert stats["collapsed"] is False and collapse_reasons(stats) == ()
    assert abs(stats["img_mean_pairwise_cosine"]) < 0.05
    assert stats["img_effective_rank"] > 40 and stats["txt_effective_rank"] > 40
    assert stats["img_dim_std_mean"] == pytest.approx(1.0, abs=0.1)
    assert stats["img_uniformity"] < -3.5  # near the -4 of a uniform sphere in 64-d
    assert stats["distinct_top1_i2t"] > 0.5 and stats["distinct_top1_t2i"] > 0.5
    assert 0 < stats["alignment"] < 0.5


def test_point_collapse_is_flagged() -> None:
    owner, _ = make_pairs(300, 5, 64, 3)
    rng = np.random.default_rng(4)
    center = rng.standard_normal(64)
    img = center + 1e-3 * rng.standard_normal((300, 64))
    txt = center + 1e-3 * rng.standard_normal((len(owner), 64))
    stats = collapse_stats(img, txt, owner, sample=500)
    assert stats["collapsed"] is True
    assert stats["img_mean_pairwise_cosine"] > 0.99 and stats["img_uniformity"] > -0.01
    assert stats["distinct_top1_i2t"] < 0.05 and stats["alignment"] < 1e-3
    assert "img_mean_pairwise_cosine > 0.95" in collapse_reasons(stats)
    assert "distinct_top1_t2i < 0.05" in collapse_reasons(stats)


def test_line_collapse_is_flagged_by_effective_rank() -> None:
    owner, _ = make_pairs(200, 5, 32, 5)
    rng = np.random.default_rng(6)
    direction = rng.standard_normal(32)
    img = rng.standard_normal((200, 1)) * direction + 1e-4 * rng.standard_normal((200, 32))
    txt = rng.standard_normal((1000, 32))
    stats = collapse_stats(img, txt, owner, sample=300)
    assert stats["img_effective_rank"] < 2.0 and stats["txt_effective_rank"] > 20
    assert collapse_reasons(stats)[0] == "img_effective_rank < 2.0"
    assert stats["collapsed"] is True


def test_sampling_is_seeded() -> None:
    owner, img = make_pairs(100, 3, 8, 7)
    txt = np.random.default_rng(8).standard_normal((300, 8))
    a = collapse_stats(img, txt, owner, sample=50, seed=1)
    assert a == collapse_stats(img, txt, owner, sample=50, seed=1)
    assert a != collapse_stats(img, txt, owner, sample=50, seed=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"owner": np.zeros(3, dtype=int)}, "one entry per caption"),
        ({"owner": np.array([0, 1, 9, 0])}, "outside the 3 image rows"),
        ({"similarity": "cosine"}, "unknown similarity"),
        ({"sample": 1}, "at least 2 rows"),
        ({"text_emb": np.ones((4, 5))}, "different sizes"),
    ],
)
def test_bad_input_raises_clear_error(kwargs: dict, match: str) -> None:
    args = {"image_emb": np.eye(3, 2), "text_emb": np.ones((4, 2)), "owner": np.array([0, 1, 2, 0])}
    with pytest.raises(XmrError, match=match):
        collapse_stats(**{**args, **kwargs})


def test_norm_share_matches_a_per_query_loop() -> None:
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(7, 5))
    items = rng.normal(size=(11, 5)) * rng.uniform(0.5, 3.0, size=(11, 1))  # norms vary
    for similarity in ("neg_sqeuclidean", "dot"):
        expected = []
        for q in queries:
            if similarity == "dot":
                scores = items @ q
            else:
                scores = -np.array([np.sum((q - x) ** 2) for x in items])
            norms = np.array([x @ x for x in items])
            expected.append(np.corrcoef(scores, norms)[0, 1] ** 2)
        got = norm_share(torch.from_numpy(queries), torch.from_numpy(items), similarity)
        assert got == pytest.approx(float(np.mean(expected)), rel=1e-9)


def test_norm_share_is_one_for_a_norm_ranked_space_and_zero_on_the_sphere() -> None:
    rng = np.random.default_rng(1)
    # items along one axis with growing norms, queries near the origin: |x|^2 decides
    items = torch.from_numpy(np.outer(np.linspace(1, 10, 20), np.ones(8)))
    queries = torch.from_numpy(0.01 * rng.normal(size=(5, 8)))
    assert norm_share(queries, items, "neg_sqeuclidean") > 0.999
    unit = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(30, 8))), dim=1)
    assert norm_share(queries, unit.float(), "dot") == 0.0
    assert norm_share(queries, unit.float(), "neg_sqeuclidean") == 0.0


def test_mean_norm_is_the_mean_row_norm() -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(size=(9, 4)).astype(np.float32) * 3
    txt = rng.normal(size=(12, 4)).astype(np.float32)
    stats = collapse_stats(img, txt, np.repeat(np.arange(6), 2) % 9, sample=5)
    for key, x in (("img_mean_norm", img), ("txt_mean_norm", txt)):
        want = sum(math.sqrt(sum(float(v) ** 2 for v in row)) for row in x) / len(x)
        assert stats[key] == pytest.approx(want, rel=1e-6)


def test_collapse_stats_report_the_norm_share_of_both_directions() -> None:
    rng = np.random.default_rng(2)
    img = rng.normal(size=(40, 6)).astype(np.float32)
    txt = rng.normal(size=(80, 6)).astype(np.float32)
    owner = np.repeat(np.arange(40), 2)
    stats = collapse_stats(img, txt, owner, similarity="neg_sqeuclidean", sample=50)
    assert 0.0 < stats["i2t_norm_share"] < 1.0 and 0.0 < stats["t2i_norm_share"] < 1.0
    big = img * np.linspace(1, 30, 40)[:, None].astype(np.float32)  # image norms spread wide
    spread = collapse_stats(big, txt, owner, similarity="neg_sqeuclidean", sample=50)
    assert spread["t2i_norm_share"] > 0.8 > stats["t2i_norm_share"]


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
def test_one_scan_gives_the_top1_and_norm_shares_of_separate_passes(similarity: str) -> None:
    from xmr_utils.core import retrieval

    gen = torch.Generator().manual_seed(4)
    queries = torch.randn(30, 8, generator=gen)
    items = torch.cat([torch.randn(20, 8, generator=gen), torch.zeros(3, 8)])  # ties: zeros
    items[5] = items[2]  # a duplicate item: the lower index must win
    _, top = retrieval.topk(queries, items, 1, similarity, backend="torch")
    want = len(torch.unique(top)) / min(len(queries), len(items))
    assert diagnostics.distinct_top1_share(queries, items, similarity) == want
    scores = retrieval.score_matrix(queries, items, similarity)
    both = diagnostics._query_scan(queries, items, similarity)
    assert both == diagnostics._query_scan(queries, items, similarity, scores=scores)
    assert both == (want, norm_share(queries, items, similarity))


def test_collapse_stats_read_the_callers_scores_with_the_same_result() -> None:
    from xmr_utils.core import retrieval

    owner, img = make_pairs(12, 5, 6, seed=5)
    txt = img[owner] + 0.3 * np.random.default_rng(6).standard_normal((len(owner), 6))
    for similarity in ("dot", "neg_sqeuclidean"):
        scores = retrieval.score_matrix(img, txt, similarity)
        plain = collapse_stats(img, txt, owner, similarity)
        assert collapse_stats(img, txt, owner, similarity, scores=scores) == plain
        # a sample smaller than the images: the image queries are scored afresh, same result
        sampled = collapse_stats(img, txt, owner, similarity, sample=5)
        assert collapse_stats(img, txt, owner, similarity, sample=5, scores=scores) == sampled
    with pytest.raises(XmrError, match=r"scores must be \[12, 60\]"):
        collapse_stats(img, txt, owner, "dot", scores=np.zeros((12, 59)))
