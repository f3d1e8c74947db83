"""Training pairs: the seed's one-caption-per-image epoch, batching, direction seeds."""

from __future__ import annotations

import numpy as np
import torch

from xmr_utils.core.train import TrainPairs, direction_seed


def _pairs(owner: np.ndarray, epoch_pairs: str) -> TrainPairs:
    n_img = int(owner.max()) + 1
    return TrainPairs(
        image_feats=torch.zeros(n_img, 2),
        text_feats=torch.zeros(len(owner), 2),
        pair_images=torch.from_numpy(owner),
        pair_captions=torch.arange(len(owner)),
        epoch_pairs=epoch_pairs,
    )


def test_one_pair_per_image_epoch_draws_each_image_once_with_a_uniform_caption():
    # images with 1, 3, 7 and 5 captions, listed out of order
    owner = np.array([3, 0, 2, 1, 2, 1, 2, 3, 2, 2, 1, 2, 3, 2, 3, 3], dtype=np.int64)
    pairs = _pairs(owner, "one_per_image")
    assert len(pairs) == 4 and pairs.n_batches(2) == 2 and pairs.n_batches(3) == 1
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(len(owner))
    for _ in range(3000):
        order = pairs.epoch_order(gen).numpy()
        assert sorted(owner[order]) == [0, 1, 2, 3]  # every image once
        counts[order] += 1
    for image in range(4):
        mine = counts[owner == image]
        np.testing.assert_allclose(mine / 3000, 1 / len(mine), atol=0.03)  # uniform
    again = pairs.epoch_order(torch.Generator().manual_seed(5))
    assert torch.equal(again, pairs.epoch_order(torch.Generator().manual_seed(5)))
    assert len(_pairs(owner, "all")) == len(owner)


def test_batches_cover_each_pair_once_and_drop_a_lone_last_pair() -> None:
    owner = np.repeat(np.arange(5), 3)  # 15 pairs
    pairs = TrainPairs(
        image_feats=torch.arange(5.0)[:, None],
        text_feats=torch.arange(15.0)[:, None],
        pair_images=torch.from_numpy(owner),
        pair_captions=torch.arange(15),
    )
    assert pairs.n_batches(7) == 2  # 7 + 7, the 15th pair alone has no negative
    assert pairs.n_batches(4) == 4  # 4 + 4 + 4 + 3
    seen = []
    for image_x, text_x, ids in pairs.batches(4, torch.Generator().manual_seed(0)):
        assert torch.equal(image_x[:, 0], ids.float())  # the pair's image row
        assert torch.equal(torch.from_numpy(owner)[text_x[:, 0].long()], ids)
        seen += text_x[:, 0].long().tolist()
    assert sorted(seen) == list(range(15))


def test_direction_seeds() -> None:
    assert direction_seed(7, "img2txt") == 7
    assert direction_seed(7, "txt2img") == 1007
