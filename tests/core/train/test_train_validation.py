"""Cheap validation: rsum every epoch, the full collapse statistics on fewer epochs.

The loop takes the collapse statistics at :func:`collapse_epochs`, an early stop and the best
epoch. Checked against a run that takes them every epoch (the full computation): the same
training, the same model selection, and every statistic recorded equal to the full one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import xmr_utils.core.train.loop as loop_mod
from tests.core.train.test_train_loop import assert_rows_agree, small, synthetic, val_rows
from xmr_utils.core.config import TrainConfig
from xmr_utils.core.diagnostics import collapse_stats
from xmr_utils.core.errors import XmrError
from xmr_utils.core.train import (
    ModelDir,
    TrainData,
    collapse_epochs,
    embed,
    train_model,
    val_time_share,
)
from xmr_utils.core.train.validation import COLLAPSE_KEY, val_collapse


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread (see tests/core/train/test_train_loop.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_collapse_epochs_every_kth_the_snapshots_and_the_last() -> None:
    # 50 epochs, default snapshots (1, 17, 34, 50)
    assert collapse_epochs(TrainConfig(epochs=50)) == {1, 17, 25, 34, 50}
    assert collapse_epochs(TrainConfig(epochs=50), 20) == {1, 17, 20, 34, 40, 50}
    assert collapse_epochs(TrainConfig(epochs=50), 10) == {1, 10, 17, 20, 30, 34, 40, 50}
    assert collapse_epochs(TrainConfig(epochs=12, snapshot_epochs=()), 5) == {5, 10, 12}
    assert collapse_epochs(TrainConfig(epochs=3), 1) == {1, 2, 3}
    with pytest.raises(XmrError, match="must be >= 1"):
        collapse_epochs(TrainConfig(epochs=3), 0)


def _recipe(name: str, epochs: int = 12):
    return small(
        name,
        **{
            "train.epochs": epochs,
            "train.patience": None,
            "train.snapshot_epochs": [],
            "loss.miner": "random",
            "optim.lr": 1e-2,  # fast enough that the best epoch comes before the last
        },
    )


@pytest.mark.parametrize("name", ["vsepp", "seed"])
def test_sparse_collapse_statistics_equal_the_full_computation(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    """12 epochs, no snapshots, every 5: statistics at 5, 10, 12 and the best epoch only; the
    same rows, weights and best epoch as taking them every epoch, every value equal."""
    data = TrainData(**synthetic())
    recipe = _recipe(name)
    monkeypatch.setattr(loop_mod, "COLLAPSE_EVERY", 1)
    dense = train_model(recipe, "img2txt", data, tmp_path / "dense", progress=False)
    monkeypatch.setattr(loop_mod, "COLLAPSE_EVERY", 5)
    sparse = train_model(recipe, "img2txt", data, tmp_path / "sparse", progress=False)

    assert all(COLLAPSE_KEY in r for r in dense.history)
    with_stats = {r["epoch"] for r in sparse.history if COLLAPSE_KEY in r}
    assert with_stats == {5, 10, 12, sparse.best_epoch}
    assert sparse.best_epoch not in {5, 10, 12}, "the best epoch is completed after training"
    assert_rows_agree(val_rows(dense.history), val_rows(sparse.history))
    assert sparse.best_epoch == dense.best_epoch
    assert sparse.best_val == dense.best_val  # best.pt's val: metrics and full statistics
    dense_w, sparse_w = dense.model.state_dict(), sparse.model.state_dict()
    assert all(torch.equal(dense_w[k], sparse_w[k]) for k in dense_w)
    # the file holds what the result holds, the best row completed after training
    lines = (tmp_path / "sparse" / "history.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert rows == sparse.history
    # and the best epoch's statistics are those of the best model's val embeddings
    split = data.val_images
    captions = np.flatnonzero(np.isin(data.owner, split))
    owner = np.searchsorted(split, data.owner[captions])
    img, txt = embed(sparse.model, data.image_feats[split], data.text_feats[captions])
    full = collapse_stats(img, txt, owner, similarity=sparse.model.similarity)
    assert {k: sparse.best_val[f"val_{k}"] for k in full} == full
    assert val_collapse(img, txt, owner, sparse.model.similarity).keys() <= sparse.best_val.keys()


def test_an_early_stop_takes_the_statistics(tmp_path: Path) -> None:
    # lr so small that val rsum cannot improve after the first validation: stop at epoch 3
    recipe = small(**{"train.epochs": 30, "train.patience": 2, "optim.lr": 1e-12})
    result = train_model(recipe, "img2txt", TrainData(**synthetic()), tmp_path, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [COLLAPSE_KEY in r for r in result.history] == [True, False, True]  # 1: snapshot


def test_a_kill_before_the_best_is_completed_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch
) -> None:
    data = TrainData(**synthetic())
    recipe = _recipe("vsepp", epochs=8)  # statistics at 8 and at the best epoch (every 25)
    full = train_model(recipe, "img2txt", data, tmp_path / "full", progress=False)
    assert full.best_epoch != 8, "the test needs a best epoch that is completed afterwards"

    real = loop_mod._complete_best

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_mod, "_complete_best", killed)
    with pytest.raises(KeyboardInterrupt):
        train_model(recipe, "img2txt", data, tmp_path / "cut", progress=False)
    _, _, meta = ModelDir(tmp_path / "cut").load_best()
    assert COLLAPSE_KEY not in meta["val"]
    monkeypatch.setattr(loop_mod, "_complete_best", real)
    resumed = train_model(recipe, "img2txt", data, tmp_path / "cut", progress=False)
    assert resumed.best_val == full.best_val
    assert val_rows(resumed.history) == val_rows(full.history)


def test_val_seconds_are_recorded_and_their_share_of_the_epoch(tmp_path: Path) -> None:
    result = train_model(
        _recipe("vsepp", epochs=4), "img2txt", TrainData(**synthetic()), tmp_path, progress=False
    )
    assert all(r["val_seconds"] > 0 and r["seconds"] > 0 for r in result.history)
    share = val_time_share(result.history)
    train = sum(r["seconds"] for r in result.history)
    val = sum(r["val_seconds"] for r in result.history)
    assert share == pytest.approx(val / (train + val)) and 0 < share < 1
    assert val_time_share([{"seconds": 3.0, "val_seconds": 1.0}, {"seconds": 4.0}]) == 0.125
    assert np.isnan(val_time_share([]))


def test_writing_best_pt_is_timed_as_a_checkpoint_not_as_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from xmr_utils.core.train.model_dir import ModelDir

    save_best = ModelDir.save_best

    def slow_save_best(self: ModelDir, *args: object, **kwargs: object) -> None:
        time.sleep(0.5)
        save_best(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelDir, "save_best", slow_save_best)
    result = train_model(
        _recipe("vsepp", epochs=3), "img2txt", TrainData(**synthetic()), tmp_path, progress=False
    )
    first = result.history[0]  # always a new best
    assert first["val_seconds"] < 0.5 <= first["checkpoint_seconds"]
    assert all("checkpoint_seconds" in r for r in result.history)
