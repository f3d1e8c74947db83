"""Recipe overrides as text: parsing, the checks recipe_with makes, and the record they leave."""

from __future__ import annotations

import pytest

from xmr_utils.core.config import RECIPES, Recipe
from xmr_utils.core.errors import XmrError
from xmr_utils.core.overrides import (
    apply_overrides,
    check_overrides,
    format_overrides,
    parse_overrides,
    parse_value,
)


def test_parse_reads_json_values_bare_strings_and_keeps_order() -> None:
    text = (
        "loss.margin=0.2, image_head.l2_normalize=True,optim.grad_clip=none,"
        'image_head.hidden=[512, 256],loss.miner=semihard,train.precision="bf16",train.epochs=3'
    )
    assert list(parse_overrides(text).items()) == [
        ("loss.margin", 0.2),
        ("image_head.l2_normalize", True),
        ("optim.grad_clip", None),
        ("image_head.hidden", [512, 256]),
        ("loss.miner", "semihard"),
        ("train.precision", "bf16"),
        ("train.epochs", 3),
    ]
    assert parse_overrides("") == {} and parse_overrides(" , ") == {}
    assert parse_value("FALSE") is False and parse_value("null") is None
    assert parse_value("1e-4") == 1e-4 and isinstance(parse_value("3"), int)


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss.margin": 0.2, "image_head.l2_normalize": True, "optim.grad_clip": None},
        {"image_head.hidden": [512, 256], "loss.miner": "semihard", "train.precision": "bf16"},
        {"loss.kind": "infonce", "loss.temperature": 0.05, "text_head.hidden": []},
    ],
)
def test_format_is_the_inverse_of_parse(overrides: dict) -> None:
    assert parse_overrides(format_overrides(overrides)) == overrides


def test_apply_sets_the_fields_and_records_the_overrides() -> None:
    seed = RECIPES["seed"]
    text = "image_head.l2_normalize=true,text_head.l2_normalize=true,loss.margin=0.5"
    recipe = apply_overrides(seed, text)
    assert recipe.image_head.l2_normalize and recipe.text_head.l2_normalize
    assert recipe.loss.margin == 0.5 and recipe.name == "seed"
    assert recipe.overrides == (
        "image_head.l2_normalize=true",
        "text_head.l2_normalize=true",
        "loss.margin=0.5",
    )
    # every other field is the preset's
    assert recipe.optim == seed.optim and recipe.train == seed.train
    # the record travels with the recipe (a checkpoint stores recipe.to_dict())
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    again = apply_overrides(recipe, {"optim.lr": 1e-4})
    assert again.overrides[-1] == "optim.lr=0.0001" and len(again.overrides) == 4
    assert apply_overrides(seed, "") is seed


def test_a_recipe_saved_before_overrides_existed_reads_with_none() -> None:
    data = RECIPES["vsepp"].to_dict()
    del data["overrides"]
    assert Recipe.from_dict(data).overrides == ()


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        # unknown field: the accepted fields of that section are listed
        ("loss.marg=0.2", ("loss.marg", "loss.margin", "loss.miner", "loss.warmup_epochs")),
        ("image_head.widht=5", ("image_head.widht", "image_head.out_dim", "image_head.hidden")),
        # wrong type: the field and the value are named
        ("loss.margin=abc", ("loss.margin", "number", "'abc'")),
        ("image_head.l2_normalize=1", ("image_head.l2_normalize", "true or false", "1")),
        ("train.batch_size=12.5", ("train.batch_size", "integer", "12.5")),
        # a value the dataclass refuses
        ("loss.miner=hard", ("miner", "'hard'", "hardest")),
        ("image_head.l2_normalize=false", ("cosine recipes need l2_normalize",)),
        # syntax
        ("loss.margin", ("section.field=value",)),
        ("margin=0.2", ("section.field", "loss.margin")),
        ("heads.image.out_dim=5", ("section.field",)),
        ("foo.bar=1", ("unknown section 'foo'", "image_head, text_head, loss, optim, train")),
        ("loss.margin=1,loss.margin=2", ("twice",)),
        ("image_head.hidden=[1,2", ("unclosed",)),
        # recipe scopes
        ("sed:train.precision=bf16", ("unknown recipe 'sed'", "seed", "vsepp")),
        (":train.precision=bf16", ("recipe:section.field",)),
        ("seed:vsepp:loss.margin=1", ("recipe:section.field",)),
        ("vsepp:train.precison=bf16", ("train.precison", "train.precision")),
    ],
)
def test_bad_overrides_are_one_clear_sentence(text: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(XmrError) as err:
        apply_overrides(RECIPES["vsepp"], text)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_check_overrides_against_the_named_recipes_or_any_preset() -> None:
    assert check_overrides("loss.temperature=0.05") == {"loss.temperature": 0.05}  # infonce's
    check_overrides("loss.margin=0.5", ["seed", "vsepp"])
    with pytest.raises(XmrError, match="recipe 'infonce'.*loss.margin"):
        check_overrides("loss.margin=0.5", ["vsepp", "infonce"])
    with pytest.raises(XmrError, match="recipe 'vsepp'"):  # fits no preset: the default's error
        check_overrides("loss.margin=abc")


def test_a_recipe_scoped_item_sets_that_recipe_only_and_wins_over_an_unscoped_one() -> None:
    text = "train.precision=fp32, seed:train.precision=bf16, optim.lr=0.01"
    seed = apply_overrides(RECIPES["seed"], text)
    assert (seed.train.precision, seed.optim.lr) == ("bf16", 0.01)
    assert seed.overrides == ("train.precision=bf16", "optim.lr=0.01")  # recorded unscoped
    vsepp = apply_overrides(RECIPES["vsepp"], text)
    assert (vsepp.train.precision, vsepp.optim.lr) == ("fp32", 0.01)
    assert apply_overrides(RECIPES["vsepp"], "seed:loss.margin=5") == RECIPES["vsepp"]
    assert parse_overrides(" seed : loss.margin=5") == {"seed:loss.margin": 5}
    with pytest.raises(XmrError, match="twice"):
        parse_overrides("seed:loss.margin=1,seed :loss.margin=2")
    check_overrides("seed:loss.margin=0.5", ["seed", "infonce"])  # infonce has no margin


def test_the_run_recipes_refuse_a_scoped_seed_and_epochs_too() -> None:
    from xmr_utils.app.study import run_recipes

    with pytest.raises(XmrError, match="train.seed"):
        run_recipes("seed,vsepp", recipe_overrides="seed:train.seed=3")
    with pytest.raises(XmrError, match="train.epochs"):
        run_recipes("seed", epochs=2, recipe_overrides="seed:train.epochs=3")
    built = run_recipes("vsepp,seed", epochs=2, recipe_overrides="seed:train.precision=bf16")
    assert built["seed"].train.precision == "bf16" and built["vsepp"].train.precision == "fp32"
