"""The zeroshot recipe through train_model: nothing trained, the model folder written like a
trained one (epoch 0), its val numbers those of plain cosine retrieval on the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xmr_utils.core.config import RECIPES, recipe_with
from xmr_utils.core.metrics import retrieval_metrics
from xmr_utils.core.train import ModelDir, TrainData, load_model, load_snapshots, train_model


def joint_space_data(seed: int = 0) -> TrainData:
    """40 images and 2 noisy captions each in one 16-d space (as CLIP's two towers give)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((40, 16)).astype(np.float32)
    captions = np.repeat(images, 2, axis=0) + rng.standard_normal((80, 16)).astype(np.float32)
    owner = np.repeat(np.arange(40), 2)
    return TrainData(images, captions, owner, np.arange(28), np.arange(28, 40))


def test_zeroshot_scores_the_encoders_space_once(tmp_path: Path) -> None:
    data = joint_space_data()
    result = train_model(RECIPES["zeroshot"], "img2txt", data, tmp_path / "z", progress=False)
    assert result.best_epoch == 0 and len(result.history) == 1
    # the naive way: cosine of the raw val features
    img = data.image_feats[28:] / np.linalg.norm(data.image_feats[28:], axis=1, keepdims=True)
    txt = data.text_feats[56:] / np.linalg.norm(data.text_feats[56:], axis=1, keepdims=True)
    naive = retrieval_metrics(img @ txt.T, data.owner[56:] - 28)
    assert result.best_val["val_rsum"] == naive["rsum"]
    assert result.best_val["val_i2t_R@1"] == naive["i2t_R@1"]
    folder = ModelDir(tmp_path / "z")
    assert folder.best.is_file() and not folder.last.exists()
    (row,) = folder.read_history()
    assert row["epoch"] == 0 and "loss" not in row and row["val_rsum"] == naive["rsum"]
    (snap,) = load_snapshots(tmp_path / "z")
    assert snap.epoch == 0 and snap.similarity == "dot"
    model, recipe, meta = load_model(folder.best)
    assert recipe.name == "zeroshot" and meta["epoch"] == 0 and meta["device"] == {"device": "cpu"}
    # both directions are the same model: the same scores
    other = train_model(RECIPES["zeroshot"], "txt2img", data, tmp_path / "t", progress=False)
    assert other.best_val == result.best_val
    again = train_model(RECIPES["zeroshot"], "img2txt", data, tmp_path / "z", progress=False)
    assert again.best_val == result.best_val  # rerunning into the folder rewrites it


def test_linear_probe_starts_from_zeroshot_and_records_its_device(tmp_path: Path) -> None:
    data = joint_space_data(1)
    probe = recipe_with(RECIPES["clip_linear"], **{"train.epochs": 2, "train.batch_size": 16})
    before = train_model(RECIPES["zeroshot"], "img2txt", data, tmp_path / "z", progress=False)
    result = train_model(probe, "img2txt", data, tmp_path / "p", progress=False)
    assert result.best_epoch >= 1 and len(result.history) == 2
    # lr 1e-5 for a few steps: still close to the identity it started from
    weight = result.model.image_head.layers[0].weight.detach()
    assert torch.allclose(weight, torch.eye(16), atol=1e-3)
    assert abs(result.best_val["val_rsum"] - before.best_val["val_rsum"]) <= 50
    for name in ("best.pt", "last.pt"):
        saved = torch.load(tmp_path / "p" / name, weights_only=True)
        assert saved["device"] == {"device": "cpu"}
