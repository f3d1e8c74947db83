"""Losses: vectorised triplet/InfoNCE against naive per-anchor loops, hand cases, edges."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmr_utils.core.config import InfoNCEConfig, TripletConfig
from xmr_utils.core.errors import XmrError
from xmr_utils.core.losses import (
    InfoNCELoss,
    TripletLoss,
    build_loss,
    positive_mask,
)
from xmr_utils.core.miners import build_miner
from xmr_utils.core.similarity import pairwise


def batch(seed: int, b: int = 20, d: int = 6, n_images: int = 6) -> tuple[torch.Tensor, ...]:
    """anchors [B, D], candidates [B, D] (float64) and image ids [B] with duplicates."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, n_images, (b,), generator=g)
    a = torch.randn(b, d, generator=g, dtype=torch.float64)
    c = torch.randn(b, d, generator=g, dtype=torch.float64)
    return a, c, ids


def naive_sim(x: torch.Tensor, y: torch.Tensor, similarity: str) -> float:
    if similarity == "cosine":
        return float(x @ y / (x.norm() * y.norm()))
    return -float(((x - y) ** 2).sum())


def naive_triplet(a, c, ids, margin, similarity, miner, warmup) -> float:
    """Per-anchor loop: pick negatives by the named rule, sum the hinges, mean over anchors."""
    return naive_triplet_stats(a, c, ids, margin, similarity, miner, warmup)["loss"]


def naive_triplet_stats(a, c, ids, margin, similarity, miner, warmup) -> dict[str, float]:
    """The loss and its recorded statistics, from a loop over anchors and their triplets."""
    total, triplets, active, pos_total, neg_total, gap_total = 0.0, 0, 0, 0.0, 0.0, 0.0
    for i in range(len(a)):
        pos = naive_sim(a[i], c[i], similarity)
        negs = [(naive_sim(a[i], c[j], similarity), j) for j in range(len(c)) if ids[j] != ids[i]]
        if warmup:
            chosen = negs
        elif miner == "hardest":
            chosen = [max(negs, key=lambda t: t[0])] if negs else []
        else:  # semihard
            easier = [t for t in negs if t[0] < pos]
            pool = easier or negs
            chosen = [max(pool, key=lambda t: t[0])] if pool else []
        total += sum(max(0.0, margin - pos + s) for s, _ in chosen)
        pos_total += pos
        for s, _ in chosen:
            triplets += 1
            active += margin - pos + s > 0
            neg_total += s
            gap_total += (pos - s) / margin
    stats = {
        "loss": total / len(a),
        "active_triplets": active / triplets,
        "pos_similarity": pos_total / len(a),
        "neg_similarity": neg_total / triplets,
        "gap_over_margin": gap_total / triplets,
    }
    if similarity == "neg_sqeuclidean":  # d(a, p) and d(a, n), from the loop's distances
        stats["pos_distance"] = sum(float(((a[i] - c[i]) ** 2).sum()) for i in range(len(a))) / len(
            a
        )
        stats["neg_distance"] = -neg_total / triplets
    return stats


@pytest.mark.parametrize("similarity", ["cosine", "neg_sqeuclidean"])
@pytest.mark.parametrize("miner", ["hardest", "semihard"])
@pytest.mark.parametrize("seed", range(4))
def test_triplet_matches_naive_loop(similarity: str, miner: str, seed: int) -> None:
    a, c, ids = batch(seed)
    margin = 0.3 if similarity == "cosine" else 4.0
    loss = TripletLoss(margin, similarity, build_miner(miner, warmup_epochs=1))
    for epoch, warmup in ((0, True), (1, False)):
        got = float(loss(a, c, ids, epoch=epoch))
        want = naive_triplet_stats(a, c, ids, margin, similarity, miner, warmup)
        assert got == pytest.approx(want["loss"], rel=1e-9, abs=1e-9)
        stats = loss.epoch_stats(got)  # one step: the step's statistics
        want["loss_over_margin"] = want.pop("loss") / margin
        assert stats == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_triplet_random_miner_loss_uses_the_drawn_negative() -> None:
    a, c, ids = batch(5)
    loss = TripletLoss(0.5, "cosine", build_miner("random"))
    got = float(loss(a, c, ids, generator=torch.Generator().manual_seed(1)))
    sim = pairwise(a, c, "cosine")
    chosen = build_miner("random")(
        sim, positive_mask(ids), sim.diagonal(), generator=torch.Generator().manual_seed(1)
    )
    want = 0.0
    for i, j in chosen.nonzero().tolist():
        want += max(0.0, 0.5 - naive_sim(a[i], c[i], "cosine") + naive_sim(a[i], c[j], "cosine"))
    assert got == pytest.approx(want / len(a), rel=1e-9)


def test_triplet_hand_computed_tiny_case() -> None:
    # Two images, unit vectors on the plane: anchors a0=(1,0), a1=(0,1);
    # candidates c0=(0.6,0.8) (image 0), c1=(0.8,0.6) (image 1).
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    ids = torch.tensor([0, 1])
    # cosine: s(a0,c0)=0.6, s(a0,c1)=0.8 -> 0.2+0.8-0.6=0.4 ; s(a1,c1)=0.6, s(a1,c0)=0.8 -> 0.4
    assert float(TripletLoss(0.2, "cosine")(a, c, ids)) == pytest.approx(0.4)
    assert float(TripletLoss(0.2, "cosine", reduction="sum")(a, c, ids)) == pytest.approx(0.8)
    # squared euclidean: d(a0,c0)=0.16+0.64=0.8, d(a0,c1)=0.04+0.36=0.4 -> 1+0.8-0.4=1.4 (both)
    assert float(TripletLoss(1.0, "neg_sqeuclidean")(a, c, ids)) == pytest.approx(1.4)


def test_margin_behaviour() -> None:
    # Perfectly separated batch: every positive beats every negative by exactly 1 in cosine.
    a = torch.eye(4)
    c = torch.eye(4)
    ids = torch.arange(4)
    assert float(TripletLoss(0.0)(a, c, ids)) == 0.0
    assert float(TripletLoss(0.99)(a, c, ids)) == 0.0
    assert float(TripletLoss(1.5)(a, c, ids)) == pytest.approx(0.5)
    # Collapsed embeddings: every similarity equal -> loss = margin exactly (the signature).
    same = torch.ones(4, 3)
    assert float(TripletLoss(0.2)(same, same, ids)) == pytest.approx(0.2)
    assert float(
        TripletLoss(1.0, "neg_sqeuclidean", build_miner("random"))(
            same, same, ids, generator=torch.Generator().manual_seed(0)
        )
    ) == pytest.approx(1.0)


def test_warmup_sum_of_hinges_is_at_least_max_violation() -> None:
    a, c, ids = batch(2)
    loss = TripletLoss(0.5, "cosine", build_miner("hardest", warmup_epochs=1))
    assert float(loss(a, c, ids, epoch=0)) >= float(loss(a, c, ids, epoch=1)) > 0


def test_same_image_caption_is_never_a_negative_hand_case() -> None:
    # Pairs 0 and 1 share image 0. c1 is maximally similar to anchor 0: were it used as
    # anchor 0's negative the hinge would be 0.2 - 0 + 1 = 1.2. Expected per anchor
    # (hardest, margin 0.2): a0 -> only c2 (s=-1): 0; a1 -> c2 (s=0): 0.2; a2 -> c0: 0.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    ids = torch.tensor([0, 0, 1])
    assert float(TripletLoss(0.2, reduction="sum")(a, c, ids)) == pytest.approx(0.2)
    warm = TripletLoss(0.2, miner=build_miner("hardest", warmup_epochs=1), reduction="sum")
    # warm-up: a0 -> c2: 0; a1 -> c2: 0.2; a2 -> c0: 0.2-1+0 <0, c1: 0.2-1-1 <0 -> 0.2
    assert float(warm(a, c, ids, epoch=0)) == pytest.approx(0.2)


def naive_infonce(a, c, ids, temperature) -> float:
    """Per-row and per-column softmax over {own pair} + other-image entries."""
    n = len(a)
    sim = [[naive_sim(a[i], c[j], "cosine") / temperature for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        row = [sim[i][j] for j in range(n) if j == i or ids[j] != ids[i]]
        col = [sim[j][i] for j in range(n) if j == i or ids[j] != ids[i]]
        total += 0.5 * (math.log(sum(math.exp(x) for x in row)) - sim[i][i])
        total += 0.5 * (math.log(sum(math.exp(x) for x in col)) - sim[i][i])
    return total / n


@pytest.mark.parametrize("seed", range(4))
def test_infonce_matches_naive_loop(seed: int) -> None:
    a, c, ids = batch(seed)
    got = float(InfoNCELoss(0.1, learnable=False).double()(a, c, ids))
    assert got == pytest.approx(naive_infonce(a, c, ids, 0.1), rel=1e-6)  # T stored as fp32


def test_infonce_with_distinct_images_is_clip_loss() -> None:
    a, c, _ = batch(9)
    ids = torch.arange(len(a))
    logits = F.normalize(a, dim=1) @ F.normalize(c, dim=1).T / 0.07
    target = torch.arange(len(a))
    want = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    got = InfoNCELoss(0.07, learnable=False).double()(a, c, ids)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_infonce_learnable_temperature_gets_gradient_and_is_clamped() -> None:
    a, c, ids = batch(1)
    loss = InfoNCELoss(0.07, learnable=True).double()
    loss(a, c, ids).backward()
    assert loss.log_scale.grad is not None and torch.isfinite(loss.log_scale.grad)
    assert loss.temperature == pytest.approx(0.07)
    with torch.no_grad():
        loss.log_scale.fill_(math.log(1 / 0.001))
    assert loss.temperature == pytest.approx(0.01)
    fixed = InfoNCELoss(0.07, learnable=False)
    assert list(fixed.parameters()) == [] and "log_scale" in fixed.state_dict()


@pytest.mark.parametrize("kind", ["triplet", "infonce"])
@pytest.mark.parametrize("miner", ["random", "hardest", "semihard"])
def test_gradients_finite_including_zero_and_duplicate_rows(kind: str, miner: str) -> None:
    a, c, ids = batch(0, b=10)
    a = a.float().clone()
    c = c.float().clone()
    a[3] = 0.0  # a zero embedding (cosine of a zero vector must not be NaN)
    c[4] = c[5]  # identical candidates
    a.requires_grad_(True)
    c.requires_grad_(True)
    config = TripletConfig(miner=miner, warmup_epochs=0) if kind == "triplet" else InfoNCEConfig()
    loss = build_loss(config)
    value = loss(a, c, ids, generator=torch.Generator().manual_seed(0))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(a.grad).all() and torch.isfinite(c.grad).all()


def test_build_loss_and_bad_inputs() -> None:
    t = build_loss(TripletConfig(similarity="neg_sqeuclidean", margin=1.0, miner="random"))
    assert isinstance(t, TripletLoss) and t.similarity == "neg_sqeuclidean" and t.margin == 1.0
    assert isinstance(build_loss(InfoNCEConfig()), InfoNCELoss)
    with pytest.raises(XmrError, match="unknown similarity 'l1'"):
        TripletLoss(0.2, "l1")
    with pytest.raises(XmrError, match="anchors and candidates must both be"):
        TripletLoss()(torch.zeros(3, 2), torch.zeros(4, 2), torch.arange(3))
    with pytest.raises(XmrError, match="image_ids must be"):
        InfoNCELoss()(torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(4))


def test_recorded_statistics_are_means_over_the_steps_and_cleared() -> None:
    a, c, ids = batch(1)
    loss = TripletLoss(0.3, "cosine", build_miner("hardest"))
    want = [
        naive_triplet_stats(x, y, ids, 0.3, "cosine", "hardest", False) for x, y in ((a, c), (c, a))
    ]
    values = [float(loss(a, c, ids)), float(loss(c, a, ids))]
    stats = loss.epoch_stats(sum(values) / 2)
    for key in ("active_triplets", "pos_similarity", "neg_similarity", "gap_over_margin"):
        assert stats[key] == pytest.approx((want[0][key] + want[1][key]) / 2, rel=1e-9), key
    assert loss.epoch_stats(0.0) == {"loss_over_margin": 0.0}  # nothing recorded since
    assert TripletLoss(0.0).epoch_stats(1.0) == {"loss_over_margin": None}


def test_infonce_records_positive_and_negative_cosines() -> None:
    a, c, ids = batch(2)
    loss = InfoNCELoss(temperature=0.1, learnable=False)
    loss(a, c, ids)
    pos = [naive_sim(a[i], c[i], "cosine") for i in range(len(a))]
    neg = [
        naive_sim(a[i], c[j], "cosine")
        for i in range(len(a))
        for j in range(len(c))
        if ids[i] != ids[j]
    ]
    stats = loss.epoch_stats(1.0)
    assert stats["temperature"] == pytest.approx(0.1)
    assert stats["pos_similarity"] == pytest.approx(sum(pos) / len(pos), rel=1e-9)
    assert stats["neg_similarity"] == pytest.approx(sum(neg) / len(neg), rel=1e-9)
