"""The similarity vocabulary: names said once, pairwise scores against naive loops."""

from __future__ import annotations

import pytest
import torch

from xmr_utils.core import similarity
from xmr_utils.core.config import RECIPES, LossConfig, Recipe
from xmr_utils.core.errors import XmrError
from xmr_utils.core.similarity import (
    LOSS_SIMILARITIES,
    SCORE_SIMILARITIES,
    SIMILARITIES,
    check_similarity,
    pairwise,
    score_similarity,
)


def naive(a: torch.Tensor, b: torch.Tensor, name: str) -> torch.Tensor:
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    for i in range(len(a)):
        for j in range(len(b)):
            x, y = a[i].double(), b[j].double()
            if name == "cosine":
                out[i, j] = float(x @ y) / float(x.norm() * y.norm())
            elif name == "dot":
                out[i, j] = float(x @ y)
            else:
                out[i, j] = -float(((x - y) ** 2).sum())
    return out


@pytest.mark.parametrize("name", SIMILARITIES)
def test_pairwise_matches_a_naive_loop(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, generator=g, dtype=torch.float64)
    b = torch.randn(4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pairwise(a, b, name), naive(a, b, name), rtol=1e-10, atol=1e-10)


def test_names_are_said_once() -> None:
    assert set(LOSS_SIMILARITIES) | set(SCORE_SIMILARITIES) == set(SIMILARITIES)
    assert [score_similarity(s) for s in LOSS_SIMILARITIES] == ["dot", "neg_sqeuclidean"]
    for recipe in RECIPES.values():
        assert recipe.score_similarity == score_similarity(recipe.loss.similarity)
    with pytest.raises(XmrError, match="unknown similarity 'cos'; accepted: dot, neg_sqeuclidean"):
        check_similarity("cos")
    with pytest.raises(XmrError, match="unknown similarity 'dot'; accepted: cosine, neg_sq"):
        score_similarity("dot")
    with pytest.raises(XmrError, match="unknown similarity 'l1'"):
        pairwise(torch.ones(1, 2), torch.ones(1, 2), "l1")
    assert similarity.LEGACY_NAMES == {"sqeuclidean": "neg_sqeuclidean"}


def test_a_loss_written_with_the_old_distance_field_still_reads() -> None:
    old = RECIPES["seed"].to_dict()
    del old["loss"]["similarity"]
    old["loss"]["distance"] = "sqeuclidean"  # as checkpoints written before the rename store it
    assert Recipe.from_dict(old) == RECIPES["seed"]
    assert LossConfig.from_dict({"kind": "triplet", "distance": "cosine"}) == LossConfig()
