"""The similarity vocabulary: names said once, pairwise scores against naive loops."""

from __future__ import annotations

import pytest
import torch

from xmr_utils.core import similarity
from xmr_utils.core.config import RECIPES, Recipe, TripletConfig, loss_config_from_dict
from xmr_utils.core.errors import XmrError
from xmr_utils.core.losses import TripletLoss
from xmr_utils.core.miners import build_miner
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
    assert loss_config_from_dict({"kind": "triplet", "distance": "cosine"}) == TripletConfig()


def collapsed(n: int, seed: int, dim: int = 4096) -> torch.Tensor:
    """``n`` float32 points 0.005 to 0.01 from one point 100 units from the origin."""
    g = torch.Generator().manual_seed(1234)  # the common point, shared by every call
    point = torch.randn(dim, generator=g, dtype=torch.float64)
    point *= 100.0 / point.norm()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, dim, generator=g, dtype=torch.float64)
    radius = 0.005 + 0.005 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    noise *= radius / noise.norm(dim=1, keepdim=True)
    return (point + noise).float()


def expanded_float32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The uncentred expansion the loss used before: -(|a|^2 + |b|^2 - 2ab), clamped."""
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return -sq.clamp_min(0.0)


def test_neg_sqeuclidean_is_exact_in_the_collapse_regime() -> None:
    a, b = collapsed(50, seed=0), collapsed(50, seed=1)
    a64, b64 = a.double(), b.double()
    brute = torch.stack([((a64[i] - b64) ** 2).sum(1) for i in range(len(a64))])  # [50, 50]
    got = -pairwise(a, b, "neg_sqeuclidean").double()
    assert float(brute.min()) > 1e-5  # no two points come close to coinciding
    assert float(((got - brute).abs() / brute).max()) < 1e-3
    old = -expanded_float32(a, b).double()
    assert float(((old - brute).abs() / brute).max()) > 1.0  # the regime defeats the expansion
    # scored in blocks with one shared centre: every block as exact as the whole matrix
    centre = similarity.shared_centre(a, b)
    block = -similarity.neg_sqeuclidean(a[10:20], b, centre, clamp=False).double()
    assert float(((block - brute[10:20]).abs() / brute[10:20]).max()) < 1e-3


def _triplet_grad(a: torch.Tensor, c: torch.Tensor, sim) -> torch.Tensor:
    """Gradient ``[2N*D]`` of the seed's hinge (margin 1, every negative) w.r.t. a and c."""
    a, c = a.clone().requires_grad_(True), c.clone().requires_grad_(True)
    s = sim(a, c)
    hinge = (1.0 - s.diagonal()[:, None] + s).clamp_min(0.0)
    off = ~torch.eye(len(a), dtype=torch.bool)
    (hinge * off).sum(1).mean().backward()
    return torch.cat([a.grad.flatten(), c.grad.flatten()]).double()


def test_triplet_loss_gradient_matches_float64_in_the_collapse_regime() -> None:
    a, c = collapsed(50, seed=2), collapsed(50, seed=3)
    want = _triplet_grad(a.double(), c.double(), lambda x, y: pairwise(x, y, "neg_sqeuclidean"))
    cos = torch.nn.functional.cosine_similarity
    # the loss itself (warm-up: every negative is used, as in _triplet_grad)
    loss = TripletLoss(1.0, "neg_sqeuclidean", build_miner("random", warmup_epochs=1))
    x, y = a.clone().requires_grad_(True), c.clone().requires_grad_(True)
    loss(x, y, torch.arange(50), epoch=0).backward()
    got = torch.cat([x.grad.flatten(), y.grad.flatten()]).double()
    assert float(cos(got, want, dim=0)) >= 0.999
    assert float(cos(_triplet_grad(a, c, expanded_float32), want, dim=0)) < 0.9
