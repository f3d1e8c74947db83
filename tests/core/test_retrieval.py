"""xmr_utils.core.retrieval against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr_utils.core import retrieval
from xmr_utils.core.errors import XmrError
from xmr_utils.core.retrieval import iter_score_blocks, score_matrix, stable_topk_block, topk


def np_similarity(a: np.ndarray, b: np.ndarray, similarity: str) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    if similarity == "dot":
        return a @ b.T
    return -((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
def test_similarity_matches_numpy(similarity: str) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    got = score_matrix(a, b, similarity)
    assert got.shape == (7, 11) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), np_similarity(a, b, similarity), atol=1e-12)
    got32 = score_matrix(a.astype(np.float32), torch.from_numpy(b.astype(np.float32)), similarity)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), np_similarity(a, b, similarity), atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 4, 100, None])
def test_score_blocks_tile_the_full_matrix(chunk: int | None) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(-3, 4, (10, 4)), rng.integers(-3, 4, (6, 4))
    full = score_matrix(a, b, "neg_sqeuclidean")
    blocks = list(iter_score_blocks(a, b, "neg_sqeuclidean", chunk))
    assert [s for s, _ in blocks] == list(range(0, 10, chunk or 10))
    assert torch.equal(torch.cat([blk for _, blk in blocks]), full)


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
@pytest.mark.parametrize(
    ("levels", "k", "chunk"), [(None, 5, 3), (3, 4, 2), (2, 10, 64), (1, 3, 5)]
)
def test_topk_matches_stable_argsort(
    similarity: str, levels: int | None, k: int, chunk: int, score_path: str
) -> None:
    rng = np.random.default_rng(2)
    shape_q, shape_i = (13, 3), (40, 3)
    if levels is None:
        q, it = rng.standard_normal(shape_q), rng.standard_normal(shape_i)
    else:  # few distinct values: many exact ties at and around the k-th score
        q, it = rng.integers(0, levels, shape_q), rng.integers(0, levels, shape_i)
    q, it = q.astype(np.float64), it.astype(np.float64)
    scores, idx = topk(q, it, k, similarity, chunk_size=chunk, backend="torch")
    full = np_similarity(q, it, similarity)
    want = np.argsort(-full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx.numpy(), want)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(full, want, 1), atol=1e-9)


def test_stable_topk_block_repairs_torch_tie_order() -> None:
    # 300 equal scores: torch.topk alone may return any 5 of them; the rule wants 0..4
    block = torch.zeros(2, 300)
    block[1, 250] = 1.0
    vals, idx = stable_topk_block(block, 5)
    assert idx.tolist() == [[0, 1, 2, 3, 4], [250, 0, 1, 2, 3]]
    assert vals.tolist() == [[0.0] * 5, [1.0, 0.0, 0.0, 0.0, 0.0]]


def test_topk_k_larger_than_items_and_no_queries(score_path: str) -> None:
    s, i = topk(np.eye(3), np.eye(2, 3), 10, backend="torch")
    assert i.tolist() == [[0, 1], [1, 0], [0, 1]] and s.shape == (3, 2)
    s, i = topk(np.zeros((0, 3)), np.eye(2, 3), 1, backend="torch")
    assert s.shape == (0, 1) and i.shape == (0, 1)


def test_faiss_backend_without_faiss_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "faiss_available", lambda: False)
    with pytest.raises(XmrError, match=r"pip install -e \.\[faiss\]"):
        topk(np.eye(2), np.eye(2), 1, backend="faiss")


def test_auto_backend_is_ours_with_the_tie_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(retrieval, "_faiss_topk", lambda *a: calls.append("faiss"))
    scores, idx = topk(np.zeros((2, 3)), np.ones((4, 3)), 3, backend="auto")  # all tied
    assert idx.tolist() == [[0, 1, 2], [0, 1, 2]] and calls == []


@pytest.mark.skipif(not retrieval.faiss_available(), reason="faiss-cpu not installed")
@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
def test_faiss_backend_matches_torch(similarity: str) -> None:
    rng = np.random.default_rng(4)
    q, it = rng.standard_normal((20, 8)), rng.standard_normal((200, 8))
    s_t, i_t = topk(q, it, 5, similarity, backend="torch")
    s_f, i_f = topk(q, it, 5, similarity, backend="faiss")
    assert torch.equal(i_t, i_f)
    np.testing.assert_allclose(s_t.numpy(), s_f.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: score_matrix(np.ones((2, 3)), np.ones((2, 4))), "different embedding sizes"),
        (lambda: score_matrix(np.ones(3), np.ones((2, 3))), "2-D"),
        (lambda: score_matrix([[1.0]], np.ones((1, 1))), "numpy array or torch tensor"),
        (lambda: score_matrix(np.array([[np.inf]]), np.ones((1, 1))), "NaN or infinite"),
        (lambda: score_matrix(np.ones((1, 1)), np.ones((1, 1)), "cos"), "unknown similarity"),
        (lambda: topk(np.ones((1, 1)), np.ones((1, 1)), 0), "k must be at least 1"),
        (lambda: topk(np.ones((1, 1)), np.ones((0, 1)), 1), "items is empty"),
        (lambda: topk(np.ones((1, 1)), np.ones((1, 1)), 1, backend="gpu"), "unknown search"),
        (lambda: topk(np.ones((1, 1)), np.ones((1, 1)), 1, chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_raises_clear_error(call: object, match: str) -> None:
    with pytest.raises(XmrError, match=match):
        call()  # type: ignore[operator]


def test_central_row_is_the_input_row_nearest_the_joint_mean() -> None:
    rng = np.random.default_rng(6)
    a, b = (
        torch.from_numpy(rng.standard_normal((7, 3))),
        torch.from_numpy(rng.standard_normal((5, 3))),
    )
    both = torch.cat([a, b])
    want = both[torch.argmin(((both - both.mean(0)) ** 2).sum(1))]
    assert torch.equal(retrieval.central_row(a, b), want)
    assert torch.equal(
        retrieval.central_row(a[:0], b), b[torch.argmin(((b - b.mean(0)) ** 2).sum(1))]
    )
    q, it = retrieval.centre_pair(a, b, "dot")
    assert q is a and it is b  # dot products are not moved


def test_neg_sqeuclidean_keeps_its_precision_in_the_collapse_regime(
    collapse_regime: tuple[np.ndarray, np.ndarray, np.ndarray], score_path: str
) -> None:
    img, txt, _ = collapse_regime
    exact = np_similarity(img, txt, "neg_sqeuclidean")  # float64 from the same float32 inputs
    got = score_matrix(img, txt, "neg_sqeuclidean").numpy().astype(np.float64)
    # expanding around the origin: 1e4-sized terms cancel to ~1e-4 distances (max rel. err ~400)
    assert np.max(np.abs(got - exact) / np.abs(exact)) < 1e-4
    assert (got < 0).all()  # no distance collapses to 0
    for chunk in (7, None):
        _, idx = topk(img, txt, 10, "neg_sqeuclidean", chunk_size=chunk, backend="torch")
        np.testing.assert_array_equal(
            idx.numpy(), np.argsort(-exact, axis=1, kind="stable")[:, :10]
        )
    if retrieval.faiss_available():
        _, idx = topk(img, txt, 10, "neg_sqeuclidean", backend="faiss")
        np.testing.assert_array_equal(
            idx.numpy(), np.argsort(-exact, axis=1, kind="stable")[:, :10]
        )


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_topk_is_bit_identical_to_the_torch_path(
    similarity: str, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random floats at real tile sizes: 1000 queries in blocks of 300 rows (a 100-row
    small-kernel tail kept whole), 4100 items in two column tiles, rows split in 2 threads."""
    rng = np.random.default_rng(8)
    q, it = (
        rng.standard_normal((1000, 96)).astype(dtype),
        rng.standard_normal((4100, 96)).astype(dtype),
    )
    monkeypatch.setattr(retrieval, "FUSED_MIN_SCORES", 2**62)
    want = topk(q, it, 10, similarity, chunk_size=300, backend="torch")
    monkeypatch.setattr(retrieval, "FUSED_MIN_SCORES", 0)
    got = topk(q, it, 10, similarity, chunk_size=300, backend="torch")
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
    assert got[0].dtype == want[0].dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("buffer_rows", [1, 3, 512])
def test_central_row_through_a_small_buffer_is_the_whole_array_answer(
    dtype: torch.dtype, buffer_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 and 3 rows of 4096-d per buffer: at width 1024 every pass crosses several chunks
    monkeypatch.setattr(retrieval, "CENTRAL_ROWS", buffer_rows)
    gen = torch.Generator().manual_seed(3)
    for n_a, n_b, spread in [(9, 14, 1.0), (1, 30, 1e-6), (0, 17, 1e3)]:
        a = (torch.randn(n_a, 1024, generator=gen) * spread + 5.0).to(dtype)
        b = (torch.randn(n_b, 1024, generator=gen) * spread + 5.0).to(dtype)
        both = torch.cat([a, b]).to(torch.float64)
        mean = (a.sum(0, dtype=torch.float64) + b.sum(0, dtype=torch.float64)) / len(both)
        want = torch.cat([a, b])[torch.argmin(((both - mean) ** 2).sum(1))]
        assert torch.equal(retrieval.central_row(a, b), want)
    dup = torch.ones(4, 1024, dtype=dtype)  # all rows equally near: the first one
    assert torch.equal(retrieval.central_row(dup, dup), dup[0])
