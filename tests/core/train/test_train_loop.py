"""The training loop: determinism, resume after a kill, checkpoints, early stop, errors,
and the sanity check that matters (vsepp learns a synthetic retrieval task)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tqdm.notebook import tqdm as notebook_tqdm

import xmr_utils.core.train as train_mod
import xmr_utils.core.train.loop as loop_mod
import xmr_utils.core.train.state as state_mod
from xmr_utils.core.config import RECIPES, Recipe, recipe_with
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.recording import StatsRecorder
from xmr_utils.core.train import TrainData, load_model, load_snapshots, train_model
from xmr_utils.core.train.loop import _end_bar_early, _record_step


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP waits
    on descheduled threads make each step ~50x slower; the thread count is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = {
    "image_head.hidden": [32],
    "image_head.out_dim": 16,
    "text_head.hidden": [32],
    "text_head.out_dim": 16,
    "train.batch_size": 16,
    "optim.lr": 1e-3,
}


def synthetic(
    n_images: int = 40, caps: int = 5, di: int = 24, dt: int = 12, noise: float = 0.5, seed: int = 0
) -> dict[str, np.ndarray]:
    """Captions are noisy linear functions of their image's features; 3/4 train, 1/4 val."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_images, di)).astype(np.float32)
    w = rng.standard_normal((di, dt)).astype(np.float32) / np.sqrt(di)
    owner = np.repeat(np.arange(n_images), caps)
    txt = (img[owner] @ w + noise * rng.standard_normal((len(owner), dt))).astype(np.float32)
    perm = rng.permutation(n_images)
    cut = n_images * 3 // 4
    return {
        "image_feats": img,
        "text_feats": txt,
        "owner": owner,
        "train_images": np.sort(perm[:cut]),
        "val_images": np.sort(perm[cut:]),
    }


def small(name: str = "vsepp", **overrides: object) -> Recipe:
    return recipe_with(RECIPES[name], **{**SMALL, **overrides})


def val_rows(history: list[dict]) -> list[dict]:
    """History rows without wall-clock fields."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in history]


def snapshot_arrays(out_dir: Path) -> dict[int, dict[str, np.ndarray]]:
    """epoch -> the arrays of its snapshot file."""
    return {
        s.epoch: {
            "image_ids": s.image_ids,
            "caption_ids": s.caption_ids,
            "owner": s.owner,
            "image_emb": s.image_emb,
            "text_emb": s.text_emb,
        }
        for s in load_snapshots(out_dir)
    }


def assert_same_snapshots(a: Path, b: Path) -> None:
    sa, sb = snapshot_arrays(a), snapshot_arrays(b)
    assert sa.keys() == sb.keys() and sa
    for epoch in sa:
        for key in sa[epoch]:
            np.testing.assert_allclose(
                sa[epoch][key], sb[epoch][key], rtol=0, atol=1e-6, err_msg=f"epoch {epoch} {key}"
            )


def assert_same_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(val_rows(a), val_rows(b), strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                assert ra[k] == pytest.approx(rb[k], abs=1e-6), k
            else:
                assert ra[k] == rb[k], k


def assert_rows_agree(dense: list[dict], sparse: list[dict]) -> None:
    """``sparse`` holds a subset of each row of ``dense``, every shared value exactly equal."""
    assert len(dense) == len(sparse)
    for d, s in zip(dense, sparse, strict=True):
        assert s.keys() <= d.keys(), s["epoch"]
        assert s == {k: d[k] for k in s}, s["epoch"]


@pytest.mark.parametrize("name", ["vsepp", "semihard", "infonce", "seed", "vsepp-bf16"])
def test_same_seed_same_metrics(name: str, tmp_path: Path) -> None:
    data = synthetic()
    overrides: dict[str, object] = {"train.epochs": 2}
    if name == "vsepp-bf16":
        name = "vsepp"
        overrides["train.precision"] = "bf16"
    if name == "seed":  # the seed's 4096-d heads, shrunk so the test stays fast
        overrides.update(
            {
                "image_head.hidden": [32],
                "image_head.out_dim": 16,
                "text_head.hidden": [32, 32],
                "text_head.out_dim": 16,
                "train.batch_size": 64,
            }
        )
        recipe = recipe_with(RECIPES["seed"], **overrides)
    else:
        recipe = small(name, **overrides)
    a = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "a", progress=False)
    b = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "b", progress=False)
    assert_same_history(a.history, b.history)
    for (ka, va), (kb, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    c = train_model(
        recipe_with(recipe, **{"train.seed": 1}),
        "img2txt",
        TrainData(**data),
        out_dir=tmp_path / "c",
        progress=False,
    )
    assert c.history[0]["loss"] != a.history[0]["loss"]


def test_global_rng_state_untouched(tmp_path: Path) -> None:
    before = torch.get_rng_state()
    train_model(
        small(**{"train.epochs": 1}),
        "txt2img",
        TrainData(**synthetic()),
        out_dir=tmp_path,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), before)


class Killed(Exception):
    """Stands in for the process being killed."""


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, monkeypatch) -> None:
    data = synthetic()
    # Shuffling, dropout, the random miner's draws, Adam's moments and the StepLR count
    # (decay after epoch 3, i.e. after the kill) must all come back from last.pt.
    recipe = small("vsepp", **{"train.epochs": 4, "loss.miner": "random", "optim.step_size": 3})
    full = train_model(
        recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "full", progress=False
    )

    real_build = state_mod.build_loss
    calls = {"n": 0}
    steps_per_epoch = math.ceil(len(data["owner"]) * 3 / 4 / 16)

    def killing_build(config):
        loss = real_build(config)
        forward = loss.forward

        def forward_then_die(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2 * steps_per_epoch + 3:  # a few steps into epoch 3
                raise Killed
            return forward(*args, **kwargs)

        loss.forward = forward_then_die
        return loss

    monkeypatch.setattr(state_mod, "build_loss", killing_build)
    with pytest.raises(Killed):
        train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "cut", progress=False)
    lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    monkeypatch.setattr(state_mod, "build_loss", real_build)
    # 4 epochs -> the default schedule snapshots every epoch; 1 and 2 were written before the
    # kill and must survive untouched. A snapshot of epoch 3 left by a kill between writing
    # it and saving last.pt belongs to no saved state: it is replaced, not trusted.
    snaps = tmp_path / "cut" / "snapshots"
    before = {p.name: p.read_bytes() for p in snaps.glob("*.npz")}
    assert sorted(before) == ["epoch_001.npz", "epoch_002.npz"]
    (snaps / "epoch_003.npz").write_bytes(b"half-written")

    resumed = train_model(
        recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "cut", progress=False
    )
    assert_same_history(full.history, resumed.history)
    assert resumed.best_epoch == full.best_epoch
    assert resumed.best_val == pytest.approx(full.best_val)
    for va, vb in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(va, vb, rtol=0, atol=1e-6)
    history_file = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in history_file] == [1, 2, 3, 4]
    assert {p.name: p.read_bytes() for p in snaps.glob("epoch_00[12].npz")} == before
    assert sorted(p.name for p in snaps.iterdir()) == [f"epoch_00{e}.npz" for e in (1, 2, 3, 4)]
    assert_same_snapshots(tmp_path / "full", tmp_path / "cut")


def test_outputs_history_checkpoints_and_load_model(tmp_path: Path) -> None:
    data = synthetic()
    recipe = small(**{"train.epochs": 3})
    result = train_model(recipe, "txt2img", TrainData(**data), out_dir=tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {
        "best.pt",
        "last.pt",
        "history.jsonl",
        "snapshots",
    }
    rows = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rows == result.history and [r["epoch"] for r in rows] == [1, 2, 3]
    for key in (
        "loss",
        "loss_over_margin",
        "lr",
        "seconds",
        "val_rsum",
        "val_i2t_R@1",
        "val_t2i_R@10",
        "val_img_mean_pairwise_cosine",
        "val_txt_effective_rank",
        "val_collapsed",
    ):
        assert key in rows[0], key
    assert rows[0]["loss_over_margin"] == pytest.approx(rows[0]["loss"] / 0.2)
    best = max(rows, key=lambda r: r["val_rsum"])
    assert result.best_epoch == best["epoch"]
    assert result.best_val["val_rsum"] == best["val_rsum"]

    model, loaded_recipe, meta = load_model(result.checkpoint)
    assert loaded_recipe == recipe and meta["direction"] == "txt2img"
    assert meta["epoch"] == result.best_epoch
    img, txt = train_mod.embed(model, data["image_feats"], data["text_feats"])
    img2, txt2 = train_mod.embed(result.model, data["image_feats"], data["text_feats"])
    np.testing.assert_array_equal(img, img2)
    assert img.shape == (40, 16) and txt.shape == (200, 16)

    again = train_model(recipe, "txt2img", TrainData(**data), out_dir=tmp_path, progress=False)
    assert again.history == result.history  # a finished run is returned, not retrained


def test_early_stop_on_val_rsum(tmp_path: Path) -> None:
    # lr so small that val rsum cannot improve after the first validation.
    recipe = small(**{"train.epochs": 10, "train.patience": 2, "optim.lr": 1e-12})
    result = train_model(
        recipe, "img2txt", TrainData(**synthetic()), out_dir=tmp_path, progress=False
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1
    # schedule (1, 4, 7, 10): epoch 1, then the epoch the run stopped at
    assert recipe.train.snapshot_schedule() == (1, 4, 7, 10)
    assert [s.epoch for s in load_snapshots(tmp_path)] == [1, 3]


def test_snapshots_at_chosen_epochs_hold_the_sampled_val_pairs(tmp_path: Path) -> None:
    data = synthetic()  # 40 images x 5 captions; val = 10 images
    recipe = small(
        **{"train.epochs": 5, "train.snapshot_epochs": [2, 3, 5], "train.snapshot_images": 4}
    )
    result = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path, progress=False)
    snaps = load_snapshots(tmp_path)
    assert [s.epoch for s in snaps] == [2, 3, 5]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        "epoch_002.npz",
        "epoch_003.npz",
        "epoch_005.npz",
    ]
    first = snaps[0]
    for s in snaps:  # one fixed sample for every epoch
        np.testing.assert_array_equal(s.image_ids, first.image_ids)
        np.testing.assert_array_equal(s.caption_ids, first.caption_ids)
        assert s.similarity == "dot"
        assert s.image_emb.shape == (4, 16) and s.text_emb.shape == (20, 16)
        assert s.image_emb.dtype == np.float32 and np.isfinite(s.text_emb).all()
    assert set(first.image_ids) <= set(data["val_images"].tolist())
    np.testing.assert_array_equal(
        first.caption_ids, np.flatnonzero(np.isin(data["owner"], first.image_ids))
    )
    np.testing.assert_array_equal(first.image_ids[first.owner], data["owner"][first.caption_ids])
    assert not np.allclose(snaps[0].image_emb, snaps[-1].image_emb)  # training moved them
    # the last snapshot is the final model's embedding of exactly those rows
    model = DualEncoder.from_recipe(recipe, 24, 12)
    model.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True)["model"])
    img, txt = train_mod.embed(
        model, data["image_feats"][first.image_ids], data["text_feats"][first.caption_ids]
    )
    np.testing.assert_array_equal(img, snaps[-1].image_emb)
    np.testing.assert_array_equal(txt, snaps[-1].text_emb)
    assert result.best_epoch in {r["epoch"] for r in result.history}


@pytest.mark.parametrize("name", ["vsepp", "seed"])
def test_snapshots_do_not_change_training(name: str, tmp_path: Path) -> None:
    """Same losses, val metrics and weights with snapshots at every epoch and with none."""
    data = synthetic()
    base = small(
        name,
        **{
            "train.epochs": 3,
            "loss.miner": "random",
            "image_head.l2_normalize": name != "seed",
            "text_head.l2_normalize": name != "seed",
        },
    )
    every = recipe_with(base, **{"train.snapshot_epochs": [1, 2, 3]})
    none = recipe_with(base, **{"train.snapshot_epochs": []})
    a = train_model(every, "txt2img", TrainData(**data), out_dir=tmp_path / "a", progress=False)
    b = train_model(none, "txt2img", TrainData(**data), out_dir=tmp_path / "b", progress=False)
    assert len(load_snapshots(tmp_path / "a")) == 3 and not load_snapshots(tmp_path / "b")
    # the snapshot epochs take the collapse statistics: b has them on fewer epochs, and
    # every value both runs have is exactly equal, not approximately
    assert_rows_agree(val_rows(a.history), val_rows(b.history))
    for va, vb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb)


def test_resume_accepts_a_state_saved_before_snapshot_fields_existed(tmp_path: Path) -> None:
    data = synthetic()
    recipe = small(**{"train.epochs": 2})
    first = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("snapshot_epochs", "snapshot_images"):
        del state["recipe"]["train"][key]
    torch.save(state, tmp_path / "last.pt")
    again = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path, progress=False)
    assert again.history == first.history
    with pytest.raises(XmrError, match="another recipe or direction"):
        train_model(
            recipe_with(recipe, **{"train.snapshot_images": 5}),
            "img2txt",
            TrainData(**data),
            out_dir=tmp_path,
            progress=False,
        )


def test_resume_refuses_another_recipe_and_restart_replaces(tmp_path: Path) -> None:
    data = synthetic()
    train_model(
        small(**{"train.epochs": 1}), "img2txt", TrainData(**data), out_dir=tmp_path, progress=False
    )
    with pytest.raises(XmrError, match="another recipe or direction"):
        train_model(
            small(**{"train.epochs": 2}),
            "img2txt",
            TrainData(**data),
            out_dir=tmp_path,
            progress=False,
        )
    other = synthetic(seed=1)
    with pytest.raises(XmrError, match="other data or splits"):
        train_model(
            small(**{"train.epochs": 1}),
            "img2txt",
            TrainData(
                **{**data, "val_images": other["val_images"], "train_images": other["train_images"]}
            ),
            out_dir=tmp_path,
            progress=False,
        )
    (tmp_path / "snapshots" / "epoch_007.npz").write_bytes(b"from an older run")
    fresh = train_model(
        small(**{"train.epochs": 2}),
        "img2txt",
        TrainData(**data),
        out_dir=tmp_path,
        progress=False,
        resume=False,
    )
    assert [r["epoch"] for r in fresh.history] == [1, 2]
    assert [s.epoch for s in load_snapshots(tmp_path)] == [1, 2]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"direction": "both"}, "unknown direction 'both'; accepted: img2txt, txt2img"),
        ({"owner": np.zeros(7, dtype=np.int64)}, "owner must be an integer array [N_cap=200]"),
        ({"owner": np.full(200, 99)}, "owner refers to images outside"),
        ({"text_feats": np.zeros((200,))}, "text_feats must be a non-empty 2-D array"),
        ({"train_images": np.array([], dtype=np.int64)}, "the train split is empty"),
        ({"val_images": np.array([], dtype=np.int64)}, "the val split is empty"),
        ({"val_images": np.array([39])}, "validation needs at least 2 of each"),
        ({"val_images": np.array([0, 1])}, "train and val splits share"),
        ({"train_images": np.array([0, 0, 1])}, "lists an image more than once"),
        ({"train_images": np.array([45])}, "outside 0..39"),
    ],
)
def test_bad_input_raises_xmr_error(change: dict, needle: str, tmp_path: Path) -> None:
    args = {"direction": "img2txt", **synthetic()}
    if "val_images" in change:  # a fixed train split, images 0..29
        args["train_images"] = np.arange(0, 30)
    args.update(change)
    direction = args.pop("direction")
    with pytest.raises(XmrError) as info:
        train_model(
            small(**{"train.epochs": 1}), direction, TrainData(**args), tmp_path, progress=False
        )
    assert needle in str(info.value)


def test_non_finite_features_and_missing_checkpoint(tmp_path: Path) -> None:
    data = synthetic()
    data["text_feats"] = data["text_feats"].copy()
    data["text_feats"][3, 0] = np.nan
    with pytest.raises(XmrError, match="text_feats contains NaN"):
        train_model(
            small(**{"train.epochs": 1}),
            "img2txt",
            TrainData(**data),
            out_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(XmrError, match="no checkpoint at"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(XmrError, match="not a readable checkpoint"):
        load_model(tmp_path / "junk.pt")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sanity_vsepp_learns_synthetic_retrieval(precision: str, tmp_path: Path) -> None:
    """200 images x 5 noisy linear captions: vsepp reaches high val R@1 in a few epochs.

    Chance on this val split (50 images, 250 captions) is rsum ~ 64; R@1 ~ 2% (i2t) and
    0.4% (t2i).
    """
    data = synthetic(n_images=200, di=64, dt=32, noise=0.5)
    recipe = recipe_with(
        RECIPES["vsepp"],
        **{
            "image_head.hidden": [128],
            "image_head.out_dim": 64,
            "text_head.hidden": [128],
            "text_head.out_dim": 64,
            "train.batch_size": 64,
            "optim.lr": 1e-3,
            "train.epochs": 5,
            "train.precision": precision,
        },
    )
    for direction in ("img2txt", "txt2img"):
        result = train_model(
            recipe, direction, TrainData(**data), out_dir=tmp_path / direction, progress=False
        )
        best = result.best_val
        assert best["val_rsum"] > 400, best
        assert best["val_i2t_R@1"] > 50 and best["val_t2i_R@1"] > 50, best
        assert not best["val_collapsed"]
        losses = [r["loss"] for r in result.history]
        assert losses[-1] < losses[0]


def test_one_pair_per_image_trains_fewer_steps_and_resumes_identically(tmp_path):
    data = synthetic()
    recipe = small(**{"train.epochs": 2, "train.epoch_pairs": "one_per_image"})
    result = train_model(
        recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "a", progress=False
    )
    again = train_model(
        recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "b", progress=False
    )
    assert val_rows(result.history) == val_rows(again.history)
    full = train_model(
        small(**{"train.epochs": 2}),
        "img2txt",
        TrainData(**data),
        out_dir=tmp_path / "c",
        progress=False,
    )
    assert val_rows(result.history) != val_rows(full.history)


def test_the_two_directions_are_independently_seeded_models(tmp_path):
    # symmetric InfoNCE is the same loss in both directions: only the seed tells them apart
    data = synthetic()
    recipe = small("infonce", **{"train.epochs": 1})
    a = train_model(recipe, "img2txt", TrainData(**data), out_dir=tmp_path / "a", progress=False)
    b = train_model(recipe, "txt2img", TrainData(**data), out_dir=tmp_path / "b", progress=False)
    wa = a.model.image_head.layers[0].weight
    wb = b.model.image_head.layers[0].weight
    assert not torch.allclose(wa, wb)
    assert train_mod.direction_seed(7, "img2txt") == 7
    assert train_mod.direction_seed(7, "txt2img") != 7


def _kill_at_step(monkeypatch, step: int) -> None:
    """Make the next trained loss raise :class:`Killed` at its ``step``-th forward."""
    real_build = state_mod.build_loss
    calls = {"n": 0}

    def killing_build(config):
        loss = real_build(config)
        forward = loss.forward

        def forward_then_die(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                monkeypatch.setattr(state_mod, "build_loss", real_build)
                raise Killed
            return forward(*args, **kwargs)

        loss.forward = forward_then_die
        return loss

    monkeypatch.setattr(state_mod, "build_loss", killing_build)


def test_a_last_pt_written_before_the_refactor_still_resumes(tmp_path: Path, monkeypatch) -> None:
    """last.pt as the single-module train.py wrote it: the flat loss dict (``distance``,
    every kind's fields) in its recipe and the state as a plain dict."""
    data = TrainData(**synthetic())
    recipe = small("seed", **{"train.epochs": 3, "train.snapshot_epochs": []})
    full = train_model(recipe, "img2txt", data, tmp_path / "full", progress=False)
    monkeypatch.setattr(loop_mod, "RESUME_EVERY_S", 0.0)  # last.pt after every epoch
    _kill_at_step(monkeypatch, 2 * math.ceil(30 / 16) + 1)  # one_per_image: 30 pairs an epoch
    with pytest.raises(Killed):
        train_model(recipe, "img2txt", data, tmp_path / "cut", progress=False)
    last = tmp_path / "cut" / "last.pt"
    saved = torch.load(last, weights_only=True)
    assert saved["state"]["epoch"] == 2 and isinstance(saved["state"], dict)
    saved["recipe"]["loss"] = {
        "kind": "triplet",
        "distance": "sqeuclidean",
        "margin": 1.0,
        "miner": "random",
        "warmup_epochs": 0,
        "temperature": 0.07,
        "learn_temperature": True,
        "min_temperature": 0.01,
        "reduction": "mean",
    }
    torch.save(saved, last)
    resumed = train_model(recipe, "img2txt", data, tmp_path / "cut", progress=False)
    assert_same_history(full.history, resumed.history)
    assert resumed.best_epoch == full.best_epoch


def test_history_rows_hold_each_losss_own_statistics(tmp_path: Path) -> None:
    data = TrainData(**synthetic())
    triplet = train_model(
        small(**{"train.epochs": 2}), "img2txt", data, tmp_path / "t", progress=False
    )
    for row in triplet.history:
        assert 0.0 <= row["active_triplets"] <= 1.0
        assert -1.0 <= row["neg_similarity"] <= 1.0 and -1.0 <= row["pos_similarity"] <= 1.0
        assert row["loss_over_margin"] == pytest.approx(row["loss"] / 0.2)
        # vsepp's heads L2-normalise: every embedding has norm 1
        assert row["img_norm"] == pytest.approx(1.0) and row["txt_norm"] == pytest.approx(1.0)
        assert row["grad_norm_image_head"] > 0 and row["grad_norm_text_head"] > 0
        assert "temperature" not in row
    # epoch 1 is the warm-up (every negative): many hinges are active; gap/margin is the
    # mean of (s(a,p) - s(a,n)) / 0.2 over the mined triplets
    assert triplet.history[0]["gap_over_margin"] < 1.0
    nce = train_model(
        small("infonce", **{"train.epochs": 1}), "img2txt", data, tmp_path / "n", progress=False
    )
    row = nce.history[0]
    assert row["temperature"] < 0.07 + 1e-3 and "loss_over_margin" not in row
    assert "active_triplets" not in row and row["pos_similarity"] > row["neg_similarity"]


def test_an_early_stop_ends_the_bar_full_and_says_why(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tqdm.auto
    import tqdm.std

    # the console bar: tqdm.auto picks the widget bar once an IPython shell exists in the
    # process (earlier tests in the suite create one), and that bar writes no text to stderr
    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.std.tqdm)
    recipe = small(**{"train.epochs": 10, "train.patience": 2, "optim.lr": 1e-12})
    data = TrainData(**synthetic())
    result = train_model(recipe, "img2txt", data, tmp_path, progress=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "vsepp/img2txt: early stop at epoch 3: no better val rsum for 2 epochs" in last
    assert "100%|██████████| 30/30" in last  # 3 epochs x 10 steps: the bar ends full


def test_the_notebook_bar_of_an_early_stop_is_green() -> None:
    bar = notebook_tqdm(total=100, desc="seed/img2txt")
    bar.update(30)
    _end_bar_early(bar, "early stop at epoch 3: no better val rsum for 2 epochs")
    bar.close()
    label, widget, _ = bar.container.children
    assert widget.bar_style == "success" and widget.max == widget.value == 30
    assert "early stop at epoch 3" in label.value.replace("\u2007", " ")  # tqdm's spaces
    unfinished = notebook_tqdm(total=100)
    unfinished.update(30)
    unfinished.close()
    assert unfinished.container.children[1].bar_style == "danger"  # what the bar did before


def test_step_statistics_match_a_naive_computation() -> None:
    torch.manual_seed(0)
    model = DualEncoder.from_recipe(small("seed"), 24, 12)  # unnormalised heads
    recorder = StatsRecorder()
    want: dict[str, list[float]] = {}
    for _ in range(2):
        model.zero_grad()
        img = model.encode_images(torch.randn(5, 24))
        txt = model.encode_texts(torch.randn(5, 12))
        ((img - txt) ** 2).sum().backward()
        _record_step(recorder, model, img, txt)
        for key, emb in (("img_norm", img), ("txt_norm", txt)):
            rows = [math.sqrt(sum(float(v) ** 2 for v in row)) for row in emb.detach()]
            want.setdefault(key, []).append(sum(rows) / len(rows))
        for key, head in (("image", model.image_head), ("text", model.text_head)):
            sq = sum(float((p.grad.double() ** 2).sum()) for p in head.parameters())
            want.setdefault(f"grad_norm_{key}_head", []).append(math.sqrt(sq))
    got = recorder.means()
    assert got == pytest.approx({k: sum(v) / 2 for k, v in want.items()}, rel=1e-5)


@pytest.mark.parametrize(("every_s", "saved_after"), [(0.0, [1, 2, 3, 4]), (1e9, [1, 4])])
def test_last_pt_is_written_after_the_first_and_last_epochs_and_every_so_often(
    every_s: float, saved_after: list[int], tmp_path: Path, monkeypatch
) -> None:
    from xmr_utils.core.train.model_dir import ModelDir

    saved: list[int] = []
    save_resume = ModelDir.save_resume

    def recording(self, training, recipe, direction, fingerprint, state) -> None:  # type: ignore[no-untyped-def]
        saved.append(state.epoch)
        save_resume(self, training, recipe, direction, fingerprint, state)

    monkeypatch.setattr(ModelDir, "save_resume", recording)
    monkeypatch.setattr(loop_mod, "RESUME_EVERY_S", every_s)
    recipe = small("vsepp", **{"train.epochs": 4, "train.patience": None})
    train_model(recipe, "img2txt", TrainData(**synthetic()), tmp_path, progress=False)
    assert saved == saved_after
