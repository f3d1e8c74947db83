"""Recipes: presets as specified, JSON round trips, dotted overrides and clear errors."""

from __future__ import annotations

import json

import pytest

from xmr_utils.core.config import (
    DEFAULT_RECIPE,
    RECIPES,
    HeadConfig,
    LossConfig,
    OptimConfig,
    Recipe,
    TrainConfig,
    recipe_with,
)
from xmr_utils.core.errors import XmrError


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_preset_round_trips_through_json(name: str) -> None:
    recipe = RECIPES[name]
    text = json.dumps(recipe.to_dict())
    assert Recipe.from_dict(json.loads(text)) == recipe
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.name == name


def test_presets_present_and_default() -> None:
    assert set(RECIPES) == {"seed", "vsepp", "semihard", "infonce", "infonce_linear"}
    assert DEFAULT_RECIPE == "vsepp"


def test_seed_preset_is_the_seed_recipe() -> None:
    r = RECIPES["seed"]
    assert r.image_head == HeadConfig(
        hidden=(2048,), out_dim=4096, dropout=0.0, l2_normalize=False, final_dropout=0.5
    )
    assert r.text_head == HeadConfig(
        hidden=(1024, 2048), out_dim=4096, dropout=0.0, l2_normalize=False, final_dropout=0.1
    )
    assert (r.loss.kind, r.loss.similarity, r.loss.margin, r.loss.miner) == (
        "triplet",
        "neg_sqeuclidean",
        1.0,
        "random",
    )
    assert r.loss.warmup_epochs == 0
    assert (r.optim.lr, r.optim.step_size, r.optim.gamma, r.optim.grad_clip) == (1e-3, 8, 0.1, None)
    assert (r.train.batch_size, r.train.epochs, r.train.patience) == (1024, 50, None)
    assert r.train.epoch_pairs == "one_per_image"  # its epoch: one random caption per image
    assert r.score_similarity == "neg_sqeuclidean"


def test_vsepp_semihard_infonce_presets() -> None:
    v = RECIPES["vsepp"]
    assert v.image_head.l2_normalize and v.text_head.l2_normalize
    assert (v.loss.similarity, v.loss.margin, v.loss.miner, v.loss.warmup_epochs) == (
        "cosine",
        0.2,
        "hardest",
        1,
    )
    assert (v.optim.lr, v.optim.grad_clip, v.train.batch_size) == (2e-4, 2.0, 128)
    assert v.score_similarity == "dot"
    assert RECIPES["semihard"].loss.miner == "semihard"
    nce = RECIPES["infonce"].loss
    assert (nce.kind, nce.temperature, nce.learn_temperature) == ("infonce", 0.07, True)


def test_recipe_with_dotted_overrides() -> None:
    base = RECIPES["vsepp"]
    r = recipe_with(base, **{"train.epochs": 2, "loss.margin": 0.1, "name": "short"})
    assert (r.train.epochs, r.loss.margin, r.name) == (2, 0.1, "short")
    assert r.image_head == base.image_head and base.train.epochs == 30  # base untouched
    r = recipe_with(base, **{"image_head.hidden": [256, 128], "optim.grad_clip": None})
    assert r.image_head.hidden == (256, 128) and r.optim.grad_clip is None
    assert recipe_with(base, **{"loss.margin": 1}).loss.margin == 1.0  # ints are numbers


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"train.epoch": 2}, "unknown recipe field 'train.epoch'; accepted: train.batch_size"),
        ({"trian.epochs": 2}, "unknown recipe section 'trian'"),
        ({"colour": 2}, "unknown recipe field 'colour'"),
        ({"loss": 2}, "'loss' is a section"),
        ({"loss.margin": "big"}, "loss.margin must be a number"),
        ({"train.epochs": 2.5}, "train.epochs must be an integer"),
        ({"train.epochs": True}, "train.epochs must be an integer"),
        ({"loss.miner": "hard"}, "unknown miner 'hard'; accepted: hardest, random, semihard"),
        ({"loss.margin": -1.0}, "margin must be >= 0"),
        ({"image_head.out_dim": 256}, "must share out_dim"),
        ({"image_head.l2_normalize": False}, "need l2_normalize=True"),
        ({"train.batch_size": 1}, "batch_size must be >= 2"),
    ],
)
def test_recipe_with_errors_are_one_clear_sentence(overrides: dict, needle: str) -> None:
    with pytest.raises(XmrError) as info:
        recipe_with(RECIPES["vsepp"], **overrides)
    assert needle in str(info.value)


def test_from_dict_rejects_unknown_and_missing_fields() -> None:
    data = RECIPES["vsepp"].to_dict()
    data["loss"]["marign"] = 0.3
    with pytest.raises(XmrError, match="unknown Recipe.loss field 'marign'"):
        Recipe.from_dict(data)
    data = RECIPES["vsepp"].to_dict()
    del data["optim"]
    with pytest.raises(XmrError, match="optim"):
        Recipe.from_dict(data)
    with pytest.raises(XmrError, match="mapping"):
        Recipe.from_dict([1, 2])  # type: ignore[arg-type]


def test_field_validation() -> None:
    with pytest.raises(XmrError, match="infonce loss is defined on cosine"):
        LossConfig(kind="infonce", similarity="neg_sqeuclidean")
    with pytest.raises(XmrError, match="temperature 0.001 is below min_temperature"):
        LossConfig(temperature=0.001)
    with pytest.raises(XmrError, match="dropout must be in"):
        HeadConfig(dropout=1.0)
    with pytest.raises(XmrError, match="unknown activation 'tanh'"):
        HeadConfig(activation="tanh")
    with pytest.raises(XmrError, match="grad_clip"):
        OptimConfig(grad_clip=0.0)
    with pytest.raises(XmrError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(XmrError, match="unknown recipe 'vse'"):
        RECIPES["vse"]


def test_configs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RECIPES["vsepp"].train.epochs = 3  # type: ignore[misc]


def test_snapshot_schedule_and_validation() -> None:
    assert TrainConfig(epochs=12).snapshot_schedule() == (1, 5, 8, 12)
    assert TrainConfig(epochs=50).snapshot_schedule() == (1, 17, 34, 50)
    assert TrainConfig(epochs=2).snapshot_schedule() == (1, 2)
    assert TrainConfig(epochs=1).snapshot_schedule() == (1,)
    assert TrainConfig(epochs=9, snapshot_epochs=(2, 9)).snapshot_schedule() == (2, 9)
    assert TrainConfig(epochs=9, snapshot_epochs=()).snapshot_schedule() == ()
    for bad in ((0, 3), (3, 2), (2, 2), (4, 10)):
        with pytest.raises(XmrError, match="snapshot_epochs must be increasing epochs within"):
            TrainConfig(epochs=9, snapshot_epochs=bad)
    with pytest.raises(XmrError, match="snapshot_images must be >= 2"):
        TrainConfig(snapshot_images=1)
    r = recipe_with(RECIPES["vsepp"], **{"train.snapshot_epochs": [1, 3], "train.epochs": 3})
    assert r.train.snapshot_epochs == (1, 3)  # a JSON list becomes a tuple
    assert Recipe.from_json(r.to_json()) == r
    with pytest.raises(XmrError, match="within 1..2"):
        recipe_with(r, **{"train.epochs": 2})


def test_recipe_saved_before_snapshot_fields_takes_their_defaults() -> None:
    data = RECIPES["seed"].to_dict()
    del data["train"]["snapshot_epochs"], data["train"]["snapshot_images"]
    old = Recipe.from_dict(data)
    assert old == RECIPES["seed"]
    assert (old.train.snapshot_epochs, old.train.snapshot_images) == (None, 100)
