"""Recipes: presets as specified, JSON round trips, dotted overrides and clear errors."""

from __future__ import annotations

import json

import pytest

from xmr_utils.core import config
from xmr_utils.core.config import (
    DEFAULT_RECIPE,
    RECIPES,
    HeadConfig,
    InfoNCEConfig,
    OptimConfig,
    Recipe,
    TrainConfig,
    TripletConfig,
    loss_config_from_dict,
    recipe_with,
)
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import ACTIVATION
from xmr_utils.core.losses import LOSSES, REDUCE
from xmr_utils.core.miners import MINERS


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
    with pytest.raises(XmrError, match="unknown InfoNCEConfig field 'similarity'"):
        InfoNCEConfig.from_dict({"kind": "infonce", "similarity": "neg_sqeuclidean"})
    with pytest.raises(XmrError, match="temperature 0.001 is below min_temperature"):
        InfoNCEConfig(temperature=0.001)
    with pytest.raises(XmrError, match="unknown similarity 'dot'; accepted: cosine, neg_sq"):
        TripletConfig(similarity="dot")
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


# ---------------------------------------------------------------- per-kind loss configs

#: A recipe as checkpoints written before per-kind loss configs store it (the flat
#: LossConfig of every kind's fields, ``distance`` for the similarity).
OLD_INFONCE_RECIPE = {
    "name": "infonce",
    "description": RECIPES["infonce"].description,
    "image_head": RECIPES["infonce"].image_head.to_dict(),
    "text_head": RECIPES["infonce"].text_head.to_dict(),
    "loss": {
        "kind": "infonce",
        "distance": "cosine",
        "margin": 0.0,
        "miner": "random",
        "warmup_epochs": 0,
        "temperature": 0.07,
        "learn_temperature": True,
        "min_temperature": 0.01,
        "reduction": "mean",
    },
    "optim": RECIPES["infonce"].optim.to_dict(),
    "train": RECIPES["infonce"].train.to_dict(),
}
OLD_SEED_LOSS = {
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


def test_loss_configs_carry_only_their_kinds_fields_and_a_kind_in_json() -> None:
    assert RECIPES["vsepp"].loss.to_dict() == {
        "kind": "triplet",
        "similarity": "cosine",
        "margin": 0.2,
        "miner": "hardest",
        "warmup_epochs": 1,
        "reduction": "mean",
    }
    nce = RECIPES["infonce"].loss
    assert nce.to_dict() == {
        "kind": "infonce",
        "temperature": 0.07,
        "learn_temperature": True,
        "min_temperature": 0.01,
        "reduction": "mean",
    }
    assert nce.similarity == "cosine" and not hasattr(nce, "margin")
    for loss in (TripletConfig(), InfoNCEConfig(learn_temperature=False)):
        assert loss_config_from_dict(json.loads(json.dumps(loss.to_dict()))) == loss
        assert type(loss).from_json(loss.to_json()) == loss
    assert loss_config_from_dict({"margin": 0.5}) == TripletConfig(margin=0.5)  # no kind: triplet
    with pytest.raises(XmrError, match="unknown loss kind 'arcface'; accepted: infonce, triplet"):
        loss_config_from_dict({"kind": "arcface"})
    with pytest.raises(XmrError, match="TripletConfig is kind 'triplet', not 'infonce'"):
        TripletConfig.from_dict({"kind": "infonce"})
    with pytest.raises(XmrError, match="unknown Recipe.loss field 'temperature'"):
        Recipe.from_dict({**RECIPES["vsepp"].to_dict(), "loss": {"temperature": 0.1}})


def test_old_flat_loss_dicts_from_checkpoints_still_read() -> None:
    assert Recipe.from_dict(OLD_INFONCE_RECIPE) == RECIPES["infonce"]
    assert loss_config_from_dict(OLD_SEED_LOSS) == RECIPES["seed"].loss
    no_kind = {k: v for k, v in OLD_SEED_LOSS.items() if k != "kind"}
    assert loss_config_from_dict(no_kind) == RECIPES["seed"].loss
    bad = {**OLD_INFONCE_RECIPE, "loss": {**OLD_INFONCE_RECIPE["loss"], "distance": "sqeuclidean"}}
    with pytest.raises(XmrError, match="infonce loss is defined on cosine"):
        Recipe.from_dict(bad)


def test_recipe_with_reaches_each_kinds_fields_and_switches_kinds() -> None:
    with pytest.raises(XmrError) as info:
        recipe_with(RECIPES["infonce"], **{"loss.margin": 0.2})
    assert str(info.value) == (
        "unknown recipe field 'loss.margin'; accepted: loss.kind, loss.learn_temperature, "
        "loss.min_temperature, loss.reduction, loss.temperature"
    )
    with pytest.raises(XmrError, match="Recipe.loss.temperature must be a number, got 'hot'"):
        recipe_with(RECIPES["infonce"], **{"loss.temperature": "hot"})
    r = recipe_with(RECIPES["vsepp"], **{"loss.kind": "infonce", "loss.temperature": 0.05})
    assert r.loss == InfoNCEConfig(temperature=0.05)
    back = recipe_with(r, **{"loss.kind": "triplet", "loss.reduction": "sum"})
    assert back.loss == TripletConfig(reduction="sum")
    with pytest.raises(XmrError, match="unknown loss kind 'arcface'"):
        recipe_with(RECIPES["vsepp"], **{"loss.kind": "arcface"})


def test_derived_presets_are_the_recipes_they_replace() -> None:
    """semihard and infonce are written as vsepp with their differences; field by field they
    are the recipes the presets spelled out in full before."""
    vse_head = HeadConfig(hidden=(256,), out_dim=512, dropout=0.2, l2_normalize=True)
    optim = OptimConfig(lr=2e-4, step_size=15, gamma=0.1, grad_clip=2.0)
    train = TrainConfig(epochs=30, batch_size=128, patience=6)
    semihard = Recipe(
        name="semihard",
        description=RECIPES["semihard"].description,
        image_head=vse_head,
        text_head=vse_head,
        loss=TripletConfig(similarity="cosine", margin=0.2, miner="semihard", warmup_epochs=0),
        optim=optim,
        train=train,
    )
    infonce = Recipe(
        name="infonce",
        description=RECIPES["infonce"].description,
        image_head=vse_head,
        text_head=vse_head,
        loss=InfoNCEConfig(temperature=0.07, learn_temperature=True, min_temperature=0.01),
        optim=optim,
        train=train,
    )
    for want in (semihard, infonce):
        got = RECIPES[want.name]
        for f in ("image_head", "text_head", "loss", "optim", "train", "name"):
            assert getattr(got, f) == getattr(want, f), (want.name, f)
        assert got == want


def test_accepted_names_are_the_registries() -> None:
    assert set(config.MINER_NAMES) == set(MINERS)
    assert set(config.LOSS_KINDS) == set(LOSSES) == set(config.LOSS_CONFIGS)
    assert set(config.REDUCTIONS) == set(REDUCE)
    assert set(config.ACTIVATIONS) == set(ACTIVATION)
