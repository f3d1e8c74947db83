"""The notebook steps' own logic (the notebooks run end to end in test_end_to_end)."""

from pathlib import Path

import numpy as np
import pytest

from xmr_utils.app import study
from xmr_utils.core import config
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError


def corpus(tmp_path: Path) -> CaptionCorpus:
    files = tuple(tmp_path / f"{i}.jpg" for i in range(5))
    owner = np.array([0, 0, 1, 2, 2, 2, 3, 4])  # images own 2, 1, 3, 1, 1 captions
    return CaptionCorpus(
        "toy",
        tmp_path,
        files,
        tuple(f"c{i}" for i in range(8)),
        owner,
        {"train": np.array([0, 1]), "val": np.array([], dtype=np.int64), "test": np.array([4, 2])},
    )


def test_split_view_maps_captions_to_local_image_rows(tmp_path: Path) -> None:
    view = study.split_view(corpus(tmp_path), "test")
    np.testing.assert_array_equal(view.images, [2, 4])
    np.testing.assert_array_equal(view.captions, [3, 4, 5, 7])
    np.testing.assert_array_equal(view.owner, [0, 0, 0, 1])
    with pytest.raises(XmrError, match="split 'val' of toy is empty"):
        study.split_view(corpus(tmp_path), "val")


def test_auto_split_is_test_or_val_when_there_is_no_test(tmp_path: Path) -> None:
    toy = corpus(tmp_path)
    assert study.resolve_split(toy, "auto") == "test"
    assert study.split_view(toy, "auto").name == "test"
    no_test = CaptionCorpus(
        "f8k",
        tmp_path,
        toy.image_files,
        toy.captions,
        toy.owner,
        {"train": np.array([0, 1]), "val": np.array([4, 2]), "test": np.array([], dtype=np.int64)},
    )
    view = study.split_view(no_test, "auto")
    assert view.name == "val"
    np.testing.assert_array_equal(view.images, [2, 4])
    assert study.resolve_split(no_test, "train") == "train"
    with pytest.raises(XmrError, match="choose another split, or 'auto'"):
        study.split_view(no_test, "test")


def test_fuse_scores_puts_both_models_on_one_scale() -> None:
    rng = np.random.default_rng(0)
    cosine = rng.uniform(-1, 1, size=(4, 6))
    sq_l2 = -1000.0 * rng.uniform(0, 1, size=(4, 6))  # a much larger scale
    fused = study.fuse_scores(cosine, sq_l2)
    # the scale and offset of either model's scores change nothing: both count the same
    np.testing.assert_allclose(study.fuse_scores(3.0 * cosine + 1.0, sq_l2 / 1000.0 - 7.0), fused)
    np.testing.assert_allclose(study.fuse_scores(sq_l2, cosine), fused)
    # a model fused with a rescaled copy of itself: its ranking, on one unit scale
    own = study.fuse_scores(cosine, 1000.0 * cosine)
    np.testing.assert_array_equal(np.argsort(own, axis=1), np.argsort(cosine, axis=1))
    assert abs(own.mean()) < 1e-12 and own.std() == pytest.approx(1.0)
    # so the large-scale model does not outvote the other by its scale alone
    big = np.zeros((1, 3))
    big[0] = [-1000.0, -1001.0, -3000.0]  # prefers 0 over 1 by a margin small on its scale
    small = np.array([[0.0, 1.0, 0.5]])  # prefers 1 strongly
    assert int(study.fuse_scores(big, small).argmax()) == 1
    assert int(big.argmax()) == 0
    flat = study.fuse_scores(cosine, np.zeros((4, 6)))  # a constant model: no NaN, no say
    assert np.isfinite(flat).all()
    np.testing.assert_array_equal(np.argsort(flat, axis=1), np.argsort(cosine, axis=1))


def test_parse_recipes_checks_every_name() -> None:
    assert config.parse_recipes(" vsepp, seed ,") == ["vsepp", "seed"]
    with pytest.raises(XmrError, match="unknown recipe 'vse'"):
        config.parse_recipes("vsepp,vse")
    with pytest.raises(XmrError, match="no recipe named"):
        config.parse_recipes(" , ")


def test_model_dir_and_sample_images(tmp_path: Path) -> None:
    assert study.model_dir(tmp_path, "img2txt", "seed") == tmp_path / "models" / "img2txt-seed"
    with pytest.raises(XmrError, match="unknown direction 'i2t'"):
        study.model_dir(tmp_path, "i2t", "seed")
    picks = study.sample_images(corpus(tmp_path), n=5, seed=1)
    assert picks == [0, 1]  # only the training split, at most its size


def test_nearest_neighbours_excludes_the_query_itself() -> None:
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    table = study.nearest_neighbours(feats, ["a", "a'", "b", "b'"], queries=4, k=1)
    pairs = dict(zip(table["query"], table["neighbour"], strict=True))
    assert pairs == {"a": "a'", "a'": "a", "b": "b'", "b'": "b"}


def test_split_note_states_the_split_and_the_val_caveat() -> None:
    metrics = {"split": "test", "dataset": "toy", "n_images": 2, "n_captions": 4, "caveat": ""}
    assert study.split_note(metrics) == (
        "Reported on the **test** split of toy: 2 images, 4 captions."
    )
    val = {**metrics, "split": "val", "caveat": study.SELECTION_CAVEAT}
    assert study.split_note(val).endswith(f"**Note:** {study.SELECTION_CAVEAT}.")


def toy_run(tmp_path: Path, images: int = 12, dim: int = 8) -> study.RunData:
    """A run of ``images`` images with 2 captions each (train: the first 8, val: the rest)
    and random features: enough to train and evaluate in a second."""
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(images), 2)
    toy = CaptionCorpus(
        "toy",
        tmp_path,
        tuple(tmp_path / f"{i}.jpg" for i in range(images)),
        tuple(f"c{i}" for i in range(len(owner))),
        owner,
        {"train": np.arange(8), "val": np.arange(8, images), "test": np.array([], dtype=np.int64)},
    )
    image_feats = rng.normal(size=(images, dim)).astype(np.float32)
    text_feats = (image_feats[owner] + 0.1 * rng.normal(size=(len(owner), dim))).astype(np.float32)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return study.RunData(
        run_dir, {"image_encoder": "x", "text_encoder": "y"}, toy, image_feats, text_feats
    )


def test_run_recipes_apply_overrides_then_the_seed_and_epochs_parameters() -> None:
    built = study.run_recipes(
        "seed,vsepp", epochs=2, seed=7, recipe_overrides="loss.margin=0.5,optim.lr=1e-4"
    )
    assert list(built) == ["seed", "vsepp"]
    for name, recipe in built.items():
        assert (recipe.loss.margin, recipe.optim.lr) == (0.5, 1e-4)
        assert (recipe.train.seed, recipe.train.epochs) == (7, 2)
        assert recipe.overrides == ("loss.margin=0.5", "optim.lr=0.0001")
        assert recipe.loss.miner == config.RECIPES[name].loss.miner
    assert study.run_recipes("seed", recipe_overrides="train.epochs=3")["seed"].train.epochs == 3
    with pytest.raises(XmrError, match="set the seed parameter"):
        study.run_recipes("seed", recipe_overrides="train.seed=3")
    with pytest.raises(XmrError, match="epochs parameter is 2; keep one"):
        study.run_recipes("seed", epochs=2, recipe_overrides="train.epochs=3")
    with pytest.raises(XmrError, match="recipe 'infonce'.*unknown recipe field 'loss.margin'"):
        study.run_recipes("vsepp,infonce", recipe_overrides="loss.margin=0.5")


def test_recipe_overrides_reach_the_checkpoint_metrics_json_and_the_table(tmp_path: Path) -> None:
    data = toy_run(tmp_path)
    text = "loss.margin=0.5,train.batch_size=4"
    rows = study.train_direction(data, "img2txt", "vsepp", epochs=1, recipe_overrides=text)
    assert rows.loc["vsepp", "overrides"] == text
    study.train_direction(data, "txt2img", "vsepp", epochs=1, recipe_overrides="train.batch_size=4")
    recipes = {k: r for k, (_, r) in study.trained_with_recipes(data.run_dir).items()}
    assert recipes[("vsepp", "img2txt")].loss.margin == 0.5
    assert recipes[("vsepp", "img2txt")].overrides == ("loss.margin=0.5", "train.batch_size=4")
    metrics = study.evaluate(data, "val")
    assert metrics["recipe_overrides"] == {
        "vsepp": "img2txt: loss.margin=0.5,train.batch_size=4; txt2img: train.batch_size=4"
    }
    assert study.read_metrics(data.run_dir)["recipe_overrides"] == metrics["recipe_overrides"]
    table = study.results_frame(metrics)
    assert list(table.columns[:3]) == ["recipe", "overrides", "model"]
    assert "rsum" in table.columns and len(table) == 3  # img2txt, txt2img, fused
    plain = {**metrics, "recipe_overrides": {"vsepp": ""}}
    assert "overrides" not in study.results_frame(plain).columns
