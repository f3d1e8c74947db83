"""Snapshots of the joint space during training, drawn as a grid (notebook 05).

Two tiny models per direction are trained into a fake run folder; the study step projects
their snapshots with UMAP and the viz step draws and saves the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xmr_utils.app import study, viz
from xmr_utils.core.config import RECIPES, recipe_with
from xmr_utils.core.errors import XmrError
from xmr_utils.core.train import TrainData, load_snapshots, train_model

SMALL = {
    "image_head.hidden": [32],
    "image_head.out_dim": 16,
    "text_head.hidden": [32],
    "text_head.out_dim": 16,
    "train.batch_size": 16,
    "optim.lr": 1e-3,
    "train.epochs": 3,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with img2txt-seed and img2txt-vsepp trained for 3 epochs (snapshots at
    1, 2, 3 for vsepp and 1, 3 for seed) on 40 synthetic images, 5 captions each."""
    rng = np.random.default_rng(0)
    img = rng.standard_normal((40, 24)).astype(np.float32)
    owner = np.repeat(np.arange(40), 5)
    txt = (
        img[owner] @ rng.standard_normal((24, 12)).astype(np.float32) / 5
        + 0.5 * rng.standard_normal((200, 12))
    ).astype(np.float32)
    folder = tmp_path_factory.mktemp("run")
    (folder / "params.json").write_text(json.dumps({"recipes": "seed,vsepp"}))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, snaps in (("seed", [1, 3]), ("vsepp", None)):
            recipe = recipe_with(
                RECIPES[name],
                **SMALL,
                **{"train.snapshot_epochs": snaps, "train.snapshot_images": 8},
            )
            train_model(
                recipe,
                "img2txt",
                TrainData(img, txt, owner, np.arange(30), np.arange(30, 40)),
                study.model_dir(folder, "img2txt", name),
                progress=False,
            )
    finally:
        torch.set_num_threads(before)
    return folder


def test_snapshot_panels_project_every_snapshot(run_dir: Path) -> None:
    panels = study.snapshot_panels(run_dir, "img2txt", points=6, seed=0)
    assert list(panels) == ["seed", "vsepp"]  # the run's recipes parameter, in its order
    assert [p.epoch for p in panels["seed"]] == [1, 3]
    assert [p.epoch for p in panels["vsepp"]] == [1, 2, 3]
    for rows in panels.values():
        for p in rows:
            assert p.image_xy.shape == (6, 2)  # 8 sampled images capped at points=6
            assert p.caption_xy.shape == (30, 2) and p.pairs.shape == (30, 2)
            assert np.isfinite(p.image_xy).all() and np.isfinite(p.caption_xy).all()
            assert np.bincount(p.pairs[:, 0], minlength=6).tolist() == [5] * 6
            assert p.pairs[:, 1].tolist() == list(range(30))
            history = [
                json.loads(x)
                for x in (study.model_dir(run_dir, "img2txt", p.recipe) / "history.jsonl")
                .read_text()
                .splitlines()
            ]
            assert p.stats["val_rsum"] == history[p.epoch - 1]["val_rsum"]
            assert "val_collapsed" in p.stats and "loss" not in p.stats
    # explicit rows, in the order given
    assert list(study.snapshot_panels(run_dir, "img2txt", "vsepp,seed", points=6)) == [
        "vsepp",
        "seed",
    ]


def test_caption_top1_is_the_models_own_first_image(run_dir: Path) -> None:
    panels = study.snapshot_panels(run_dir, "img2txt", points=8)  # all 8 sampled images
    for recipe, rows in panels.items():
        snaps = load_snapshots(study.model_dir(run_dir, "img2txt", recipe))
        for panel, snap in zip(rows, snaps, strict=True):
            img, txt = snap.image_emb.astype(np.float64), snap.text_emb.astype(np.float64)
            if snap.similarity == "dot":
                expected = (txt @ img.T).argmax(axis=1)
            else:
                expected = ((txt[:, None, :] - img[None]) ** 2).sum(-1).argmin(axis=1)
            np.testing.assert_array_equal(panel.caption_top1, expected)
            np.testing.assert_array_equal(panel.pairs[:, 0], snap.owner)


def test_snapshot_grid_is_drawn_and_saved(run_dir: Path) -> None:
    panels = study.snapshot_panels(run_dir, "img2txt", points=8)
    fig = viz.snapshot_grid(panels, title="img2txt")
    assert isinstance(fig, Figure)
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 6 and len(drawn) == 5  # 2 x 3 grid, seed has 2 snapshots
    assert drawn[0].get_title().startswith("epoch 1 · val rsum")
    assert "mean cos img" in drawn[0].get_title()
    lines, _, images = drawn[0].collections  # pair lines, captions, images
    first = panels["seed"][0]
    share = np.bincount(first.caption_top1, minlength=8) / 40
    np.testing.assert_allclose(images.get_sizes(), 8 + 600 * share)  # hubs drawn larger
    hits = (first.caption_top1 == first.pairs[:, 0]).mean()
    assert f"{hits:.0%} of captions first retrieve their image" in drawn[0].get_title()
    assert len(lines.get_segments()) == 40
    path = viz.save(fig, run_dir, "05_snapshots_img2txt")
    assert path == run_dir / "figures" / "05_snapshots_img2txt.png"
    assert path.stat().st_size > 10_000


def test_collapse_curves_one_row_per_direction(run_dir: Path) -> None:
    fig = viz.collapse_curves(study.load_histories(run_dir))
    assert len(fig.axes) == len(viz.COLLAPSE_CURVES)  # one direction trained
    cosine = fig.axes[1]
    assert cosine.get_title() == "img2txt: mean pairwise cosine (val)"
    assert len(cosine.get_lines()) == 2 * 2 + 1  # img + txt per recipe, the threshold


def test_snapshot_panels_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(XmrError, match="unknown direction 'both'"):
        study.snapshot_panels(run_dir, "both")
    with pytest.raises(XmrError, match="no txt2img model under"):
        study.snapshot_panels(run_dir, "txt2img")
    empty = study.model_dir(tmp_path, "img2txt", "old")
    empty.mkdir(parents=True)  # a model trained before snapshots existed
    with pytest.raises(XmrError, match="no training snapshots in .*img2txt-old"):
        study.snapshot_panels(tmp_path, "img2txt")
