"""Miners: fast vectorised selection against naive per-anchor loops, and the rules' edges."""

from __future__ import annotations

import pytest
import torch

from xmr_utils.core.errors import XmrError
from xmr_utils.core.miners import MINERS, HardestMiner, RandomMiner, SemiHardMiner, build_miner


def random_batch(seed: int, b: int = 24, n_images: int = 7) -> tuple[torch.Tensor, ...]:
    """sim [B, B], pos_mask [B, B], pos_sim [B] with duplicated image ids in the batch."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, n_images, (b,), generator=g)
    sim = torch.randn(b, b, generator=g, dtype=torch.float64)
    pos_mask = ids[:, None] == ids[None, :]
    return sim, pos_mask, sim.diagonal().clone()


def naive_hardest(sim: torch.Tensor, pos_mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(pos_mask)
    for i in range(sim.shape[0]):
        best_j, best = None, None
        for j in range(sim.shape[1]):
            if not pos_mask[i, j] and (best is None or sim[i, j] > best):
                best_j, best = j, sim[i, j]
        if best_j is not None:
            out[i, best_j] = True
    return out


def naive_semihard(
    sim: torch.Tensor, pos_mask: torch.Tensor, pos_sim: torch.Tensor
) -> torch.Tensor:
    out = torch.zeros_like(pos_mask)
    for i in range(sim.shape[0]):
        negs = [j for j in range(sim.shape[1]) if not pos_mask[i, j]]
        easier = [j for j in negs if sim[i, j] < pos_sim[i]]
        pool = easier or negs
        if pool:
            out[i, max(pool, key=lambda j: (float(sim[i, j]), -j))] = True
    return out


@pytest.mark.parametrize("seed", range(8))
def test_hardest_matches_naive_loop(seed: int) -> None:
    sim, pos_mask, pos_sim = random_batch(seed)
    assert torch.equal(HardestMiner()(sim, pos_mask, pos_sim), naive_hardest(sim, pos_mask))


@pytest.mark.parametrize("seed", range(8))
def test_semihard_matches_naive_loop(seed: int) -> None:
    sim, pos_mask, pos_sim = random_batch(seed)
    got = SemiHardMiner()(sim, pos_mask, pos_sim)
    assert torch.equal(got, naive_semihard(sim, pos_mask, pos_sim))


def test_semihard_hand_case_and_fallback() -> None:
    # anchor 0: positive 0.5; negatives 0.9 (harder than positive), 0.4, 0.1 -> picks 0.4.
    # anchor 1: positive 0.0; negatives all above it -> falls back to the hardest (0.8).
    sim = torch.tensor([[0.5, 0.9, 0.4, 0.1], [0.3, 0.0, 0.8, 0.6]])
    pos_mask = torch.tensor([[True, False, False, False], [False, True, False, False]])
    got = SemiHardMiner()(sim, pos_mask, torch.tensor([0.5, 0.0]))
    assert got.tolist() == [[False, False, True, False], [False, False, True, False]]
    assert HardestMiner()(sim, pos_mask, torch.tensor([0.5, 0.0])).tolist() == [
        [False, True, False, False],
        [False, False, True, False],
    ]


@pytest.mark.parametrize("name", ["random", "hardest", "semihard"])
def test_no_positive_is_ever_a_negative_and_one_per_anchor(name: str) -> None:
    miner = build_miner(name)
    for seed in range(20):
        sim, pos_mask, pos_sim = random_batch(seed, b=16, n_images=4)
        g = torch.Generator().manual_seed(seed)
        chosen = miner(sim, pos_mask, pos_sim, generator=g)
        assert not (chosen & pos_mask).any()
        has_neg = (~pos_mask).any(dim=1)
        assert torch.equal(chosen.sum(dim=1), has_neg.long())


@pytest.mark.parametrize("name", ["random", "hardest", "semihard"])
def test_warmup_uses_every_negative_then_one(name: str) -> None:
    sim, pos_mask, pos_sim = random_batch(3)
    miner = build_miner(name, warmup_epochs=2)
    for epoch in (0, 1):
        assert torch.equal(miner(sim, pos_mask, pos_sim, epoch=epoch), ~pos_mask)
    after = miner(sim, pos_mask, pos_sim, epoch=2, generator=torch.Generator().manual_seed(0))
    assert int(after.sum(dim=1).max()) == 1


def test_anchor_without_negatives_gets_none() -> None:
    sim = torch.randn(3, 3)
    pos_mask = torch.ones(3, 3, dtype=torch.bool)
    for name in MINERS:
        assert not build_miner(name)(sim, pos_mask, sim.diagonal()).any()


def test_random_is_uniform_over_non_positives_and_seeded() -> None:
    ids = torch.tensor([0, 0, 1, 2, 3, 3, 4])  # anchor 0: positives {0, 1}; negatives {2..6}
    sim = torch.randn(7, 7)
    pos_mask = ids[:, None] == ids[None, :]
    miner = RandomMiner()
    g = torch.Generator().manual_seed(0)
    draws = 5000
    counts = torch.zeros(7)
    for _ in range(draws):
        counts += miner(sim, pos_mask, sim.diagonal(), generator=g)[0].float()
    assert counts[:2].sum() == 0
    expected = draws / 5
    # 5 equally likely outcomes: sd ~ sqrt(5000 * 0.2 * 0.8) = 28; 5 sd tolerance.
    assert (counts[2:] - expected).abs().max() < 150
    a = miner(sim, pos_mask, sim.diagonal(), generator=torch.Generator().manual_seed(7))
    b = miner(sim, pos_mask, sim.diagonal(), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_mining_does_not_track_gradients() -> None:
    sim, pos_mask, pos_sim = random_batch(1)
    sim.requires_grad_(True)
    assert not HardestMiner()(sim, pos_mask, pos_sim).requires_grad


def test_bad_inputs_raise_xmr_error() -> None:
    with pytest.raises(XmrError, match="unknown miner 'hard'"):
        build_miner("hard")
    with pytest.raises(XmrError, match="miner expects sim"):
        HardestMiner()(torch.zeros(3, 4), torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3))
    with pytest.raises(XmrError, match="warmup_epochs"):
        HardestMiner(warmup_epochs=-1)
