"""ModelDir: the model folder's history, snapshots and checkpoint formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmr_utils.core.config import RECIPES, recipe_with
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.train import (
    CHECKPOINT_FORMAT,
    ModelDir,
    SnapshotSample,
    TrainData,
    check_data,
    data_fingerprint,
    load_model,
    load_snapshots,
    train_model,
)


def test_history_append_read_and_truncate(tmp_path: Path) -> None:
    folder = ModelDir(tmp_path / "img2txt-vsepp")
    assert folder.read_history() == []  # no folder, no file
    folder.create()
    rows = [{"epoch": e, "loss": 1.0 / e, "val_rsum": None} for e in (1, 2, 3)]
    for row in rows:
        folder.append_history(row)
    assert folder.read_history() == rows
    assert folder.read_history(upto_epoch=2) == rows[:2]
    folder.write_history(rows[:1])  # a resume from epoch 1 drops what a killed run wrote
    assert folder.history.read_text() == '{"epoch": 1, "loss": 1.0, "val_rsum": null}\n'
    assert folder.history == tmp_path / "img2txt-vsepp" / "history.jsonl"


def test_snapshots_round_trip_clear_and_read_older_files(tmp_path: Path) -> None:
    folder = ModelDir(tmp_path)
    sample = SnapshotSample(
        image_ids=np.array([3, 7]),
        caption_ids=np.array([10, 11, 30]),
        owner=np.array([0, 0, 1]),
        image_x=np.zeros((2, 4), np.float32),
        text_x=np.zeros((3, 4), np.float32),
    )
    emb = (np.ones((2, 5), np.float32), np.full((3, 5), 2.0, np.float32))
    for epoch in (4, 1, 12):
        folder.save_snapshot(epoch, sample, emb, "neg_sqeuclidean")
    snaps = folder.snapshots()
    assert [s.epoch for s in snaps] == [1, 4, 12] and snaps[0].path.name == "epoch_001.npz"
    assert snaps[0].similarity == "neg_sqeuclidean"
    np.testing.assert_array_equal(snaps[2].caption_ids, sample.caption_ids)
    np.testing.assert_array_equal(snaps[2].text_emb, emb[1])
    # a file written before "similarity" was the word stores the score as "metric"
    np.savez(
        folder.snapshot_path(2),
        epoch=np.int64(2),
        image_ids=sample.image_ids,
        caption_ids=sample.caption_ids,
        owner=sample.owner,
        image_emb=emb[0],
        text_emb=emb[1],
        metric=np.str_("dot"),
    )
    assert [s.similarity for s in load_snapshots(tmp_path)] == [
        "neg_sqeuclidean",
        "dot",
        "neg_sqeuclidean",
        "neg_sqeuclidean",
    ]
    folder.clear_snapshots(after_epoch=4)
    assert [s.epoch for s in folder.snapshots()] == [1, 2, 4]
    folder.snapshot_path(3).write_bytes(b"half-written")
    with pytest.raises(XmrError, match="epoch_003.npz is not a readable snapshot"):
        folder.snapshots()
    folder.clear()
    assert folder.snapshots() == [] and not folder.best.exists()


def test_best_checkpoint_format_and_load_model(tmp_path: Path) -> None:
    folder = ModelDir(tmp_path)
    recipe = RECIPES["seed"]
    model = DualEncoder.from_recipe(recipe, 6, 3)
    folder.save_best(model, recipe, "txt2img", 5, {"val_rsum": 42.0})
    saved = torch.load(folder.best, weights_only=True)
    assert saved["format"] == CHECKPOINT_FORMAT and saved["recipe"]["loss"]["kind"] == "triplet"
    loaded, loaded_recipe, meta = load_model(folder.best)
    assert loaded_recipe == recipe and not loaded.training
    assert meta == {
        "direction": "txt2img",
        "epoch": 5,
        "val": {"val_rsum": 42.0},
        "image_dim": 6,
        "text_dim": 3,
        "device": {"device": "cpu"},  # where it was trained
    }
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert folder.load_best()[2] == meta


def test_fingerprint_follows_the_splits_not_the_values() -> None:
    owner = np.repeat(np.arange(6), 2)
    base = TrainData(np.zeros((6, 3)), np.zeros((12, 2)), owner, np.arange(4), np.array([4, 5]))
    same = TrainData(np.ones((6, 3)), np.ones((12, 2)), owner, np.arange(4), np.array([4, 5]))
    other = TrainData(np.zeros((6, 3)), np.zeros((12, 2)), owner, np.arange(1, 5), np.array([0, 5]))
    fp = data_fingerprint(check_data(base))
    assert fp == data_fingerprint(check_data(same)) and len(fp) == 16
    assert fp != data_fingerprint(check_data(other))


def test_load_last_is_the_model_after_the_last_epoch_not_the_best(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(10), 2)
    image_feats = rng.normal(size=(10, 6)).astype(np.float32)
    text_feats = rng.normal(size=(20, 6)).astype(np.float32)  # unrelated: val rsum is noise
    data = TrainData(image_feats, text_feats, owner, np.arange(6), np.arange(6, 10))
    recipe = recipe_with(RECIPES["vsepp"], **{"train.epochs": 3, "train.batch_size": 4})
    result = train_model(recipe, "img2txt", data, tmp_path, progress=False, resume=False)
    folder = ModelDir(tmp_path)
    model, saved_recipe, state = folder.load_last(6, 6)
    assert saved_recipe == recipe and state.epoch == 3 and not model.training
    # the last.pt weights are those after epoch 3; best.pt's after result.best_epoch
    last_weights = torch.load(folder.last, weights_only=True)["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, last_weights[name])
    if result.best_epoch != 3:
        best = result.model.state_dict()
        assert any(not torch.equal(best[k], v) for k, v in model.state_dict().items())
    with pytest.raises(XmrError, match="train the model first"):
        ModelDir(tmp_path / "none").load_last(6, 6)
