"""Training recipes as frozen dataclasses, saved and loaded as plain JSON.

A :class:`Recipe` bundles one concern per dataclass: the two projection heads
(:class:`HeadConfig`), the loss (:data:`LossConfig`: a :class:`TripletConfig` with its
negative miner, or an :class:`InfoNCEConfig`), the
optimiser and schedule (:class:`OptimConfig`) and the loop (:class:`TrainConfig`).
Presets live in :data:`RECIPES` (``seed``, ``vsepp`` — the default —, ``semihard``,
``infonce``); :func:`recipe_with` derives a variant from dotted overrides::

    recipe = recipe_with(RECIPES["vsepp"], **{"train.epochs": 2, "loss.margin": 0.1})

Every dataclass validates itself on construction and raises :class:`XmrError` with one
sentence naming the field, so a recipe read back from JSON is as safe as a preset.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar, TypeAlias, TypeVar

from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.registry import Registry
from xmr_utils.core.similarity import (
    COSINE,
    LEGACY_NAMES,
    LOSS_SIMILARITIES,
    check_similarity,
    score_similarity,
)

ACTIVATIONS: tuple[str, ...] = ("prelu", "relu", "gelu")
HEAD_INITS: tuple[str, ...] = ("default", "identity")
#: What a head does to its input features first: nothing, L2 normalisation, or signed square
#: root then L2 normalisation (power normalisation, as for pooled CNN features in retrieval).
INPUT_NORMS: tuple[str, ...] = ("none", "l2", "sqrt_l2")
MINER_NAMES: tuple[str, ...] = ("random", "semihard", "hardest")
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
EPOCH_PAIRS: tuple[str, ...] = ("all", "one_per_image")
DEFAULT_RECIPE = "vsepp"
#: The two models of a recipe: image anchors (``img2txt``) and caption anchors (``txt2img``).
DIRECTIONS: tuple[str, ...] = ("img2txt", "txt2img")

C = TypeVar("C")


def _check_choice(kind: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise unknown_choice(kind, value, accepted)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise XmrError(message)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the resolved type ``hint`` (JSON lists become tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        present = tuple(o for o in options if o is not type(None))
        if len(present) > 1:  # configs of several kinds (the loss)
            return _from_kind(value, present, where)
        return _coerce(value, present[0], where)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise XmrError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise XmrError(f"{where} must be a mapping of {hint.__name__} fields, got {value!r}")
        return _from_dict(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise XmrError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise XmrError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise XmrError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise XmrError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"no JSON coercion for {hint!r} at {where}")  # programming error


def _from_dict(cls: type[C], data: dict[str, Any], where: str) -> C:
    """Build dataclass ``cls`` from ``data``; unknown or missing keys raise XmrError."""
    upgrade = getattr(cls, "upgrade", None)
    if upgrade is not None:
        data = upgrade(data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise unknown_choice(f"{where} field", unknown[0], names)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise XmrError(f"{where or cls.__name__}: {exc}") from None


def _from_kind(value: Any, options: tuple[Any, ...], where: str) -> Any:
    """One of several config types, picked by ``value["kind"]`` (the first type's kind when
    absent); each option is a dataclass with a ``kind`` class attribute."""
    if isinstance(value, options):
        return value
    by_kind = {o.kind: o for o in options}
    if not isinstance(value, dict):
        raise XmrError(
            f"{where} must be a mapping with a kind ({', '.join(by_kind)}), got {value!r}"
        )
    kind = value.get("kind", options[0].kind)
    if kind not in by_kind:
        raise unknown_choice(f"{where} kind", kind, by_kind)
    return _from_dict(by_kind[kind], {k: v for k, v in value.items() if k != "kind"}, where)


def _to_dict(obj: Any) -> Any:
    """:func:`dataclasses.asdict` that also writes a config's ``kind`` (a class attribute)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        kind = getattr(type(obj), "kind", None)
        out: dict[str, Any] = {"kind": kind} if isinstance(kind, str) else {}
        out.update({f.name: _to_dict(getattr(obj, f.name)) for f in fields(obj)})
        return out
    if isinstance(obj, tuple):
        return tuple(_to_dict(v) for v in obj)
    return obj


class _JsonMixin:
    """``to_dict``/``from_dict`` and ``to_json``/``from_json`` for the frozen configs."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists when dumped); a per-kind config also
        writes its ``kind``."""
        return dict(_to_dict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; raises XmrError for unknown fields or wrong types."""
        if not isinstance(data, dict):
            raise XmrError(f"{cls.__name__} must be read from a mapping, got {type(data).__name__}")
        kind = getattr(cls, "kind", None)
        if isinstance(kind, str):
            if data.get("kind", kind) != kind:
                raise XmrError(f"{cls.__name__} is kind {kind!r}, not {data['kind']!r}")
            data = {k: v for k, v in data.items() if k != "kind"}
        return _from_dict(cls, data, cls.__name__)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class HeadConfig(_JsonMixin):
    """One projection MLP: ``[Linear -> activation -> Dropout(dropout)] per hidden width``,
    then ``Linear(-> out_dim)``, ``Dropout(final_dropout)`` and optionally L2 normalisation.

    Input ``[N, D_in]`` -> output ``[N, out_dim]``. Dropout layers with p = 0 are omitted.
    ``input_norm`` acts on each input row first: ``l2`` L2-normalises it, ``sqrt_l2`` maps
    ``x`` to ``sign(x) sqrt(|x|)`` and then L2-normalises it. The seed's image head is
    ``HeadConfig(hidden=(2048,), out_dim=4096, dropout=0.0, l2_normalize=False,
    final_dropout=0.5)``.

    Heads over a joint space the encoders already share (``clip:<model>`` on both sides):
    ``identity=True`` has no layer at all — the features themselves, L2-normalised when
    ``l2_normalize`` (the ``zeroshot`` recipe); ``init="identity"`` starts a linear head
    (``hidden=()``) at the identity matrix with zero bias, so training starts from the
    encoders' own space. ``out_dim=0`` (linear or identity heads only) means the input's width.
    """

    hidden: tuple[int, ...] = (256,)
    out_dim: int = 512
    dropout: float = 0.2
    l2_normalize: bool = True
    activation: str = "prelu"
    final_dropout: float = 0.0
    identity: bool = False
    init: str = "default"
    input_norm: str = "none"

    def __post_init__(self) -> None:
        _check(all(h > 0 for h in self.hidden), f"head hidden widths must be > 0: {self.hidden}")
        _check(self.out_dim >= 0, f"head out_dim must be > 0, got {self.out_dim}")
        _check(
            self.out_dim > 0 or not self.hidden,
            "head out_dim 0 (the input's width) needs hidden=() (a linear or identity head)",
        )
        for name in ("dropout", "final_dropout"):
            p = getattr(self, name)
            _check(0.0 <= p < 1.0, f"head {name} must be in [0, 1), got {p}")
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("head init", self.init, HEAD_INITS)
        _check(
            self.init == "default" or not self.hidden,
            "head init 'identity' needs hidden=() (one linear layer)",
        )
        if self.identity:
            _check(
                not self.hidden and self.init == "default" and self.final_dropout == 0.0,
                "an identity head has no layers: set hidden=(), init='default', final_dropout=0.0",
            )
            _check(self.out_dim == 0, "an identity head keeps the input's width: set out_dim=0")
        _check_choice("input_norm", self.input_norm, INPUT_NORMS)


@dataclass(frozen=True)
class TripletConfig(_JsonMixin):
    """The triplet hinge ``max(0, margin - s(a,p) + s(a,n))``, ``s`` the ``similarity``
    (``cosine`` or ``neg_sqeuclidean``), over the negatives ``miner`` picks; for the first
    ``warmup_epochs`` epochs every in-batch negative is used (sum of hinges). ``reduction``
    combines the per-anchor losses of a batch. In JSON: ``{"kind": "triplet", ...}``."""

    kind: ClassVar[str] = "triplet"
    similarity: str = COSINE
    margin: float = 0.2
    miner: str = "hardest"
    warmup_epochs: int = 1
    reduction: str = "mean"

    def __post_init__(self) -> None:
        check_similarity(self.similarity, LOSS_SIMILARITIES)
        _check_choice("miner", self.miner, MINER_NAMES)
        _check_choice("reduction", self.reduction, REDUCTIONS)
        _check(self.margin >= 0.0, f"loss margin must be >= 0, got {self.margin}")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    @staticmethod
    def upgrade(data: dict[str, Any]) -> dict[str, Any]:
        """A loss dict as checkpoints before per-kind configs stored it -> this config's."""
        return _upgrade_flat(data, _FLAT_INFONCE_ONLY)


@dataclass(frozen=True)
class InfoNCEConfig(_JsonMixin):
    """Symmetric InfoNCE on cosine similarity with ``temperature`` (learnable when
    ``learn_temperature``, never below ``min_temperature``); ``reduction`` combines the
    per-pair losses of a batch. In JSON: ``{"kind": "infonce", ...}``."""

    kind: ClassVar[str] = "infonce"
    temperature: float = 0.07
    learn_temperature: bool = True
    min_temperature: float = 0.01
    reduction: str = "mean"

    def __post_init__(self) -> None:
        _check_choice("reduction", self.reduction, REDUCTIONS)
        _check(self.min_temperature > 0.0, "min_temperature must be > 0")
        _check(
            self.temperature >= self.min_temperature,
            f"temperature {self.temperature} is below min_temperature {self.min_temperature}",
        )

    @property
    def similarity(self) -> str:
        """InfoNCE is defined on cosine similarity."""
        return COSINE

    @staticmethod
    def upgrade(data: dict[str, Any]) -> dict[str, Any]:
        """A loss dict as checkpoints before per-kind configs stored it -> this config's
        (the triplet fields it carried as filler are dropped; its similarity was cosine)."""
        upgraded = _upgrade_flat(data, _FLAT_TRIPLET_ONLY)
        if "distance" in data:
            _check(
                upgraded.pop("similarity") == COSINE,
                "the infonce loss is defined on cosine similarity; set similarity to 'cosine'",
            )
        return upgraded


#: The loss of a recipe: one config type per kind, told apart by ``kind`` in JSON.
LossConfig: TypeAlias = TripletConfig | InfoNCEConfig
#: Loss kind -> its config type (the kind names are the types' ``kind``).
LOSS_CONFIGS: Registry[type[TripletConfig] | type[InfoNCEConfig]] = Registry(
    "loss kind", {cls.kind: cls for cls in (TripletConfig, InfoNCEConfig)}
)
LOSS_KINDS: tuple[str, ...] = tuple(LOSS_CONFIGS)

# The flat LossConfig that checkpoints written before per-kind configs hold: every field of
# both kinds, ``distance`` for today's ``similarity`` (it always had ``distance``, which no
# per-kind config has, so its presence marks the old format).
_FLAT_TRIPLET_ONLY = ("distance", "margin", "miner", "warmup_epochs")
_FLAT_INFONCE_ONLY = ("temperature", "learn_temperature", "min_temperature")


def _upgrade_flat(data: dict[str, Any], other_kind_fields: tuple[str, ...]) -> dict[str, Any]:
    """An old flat loss dict (it has ``distance``) without ``kind`` and the other kind's
    fields, ``distance`` renamed ``similarity`` (old names mapped); other dicts unchanged."""
    if "distance" not in data:
        return data
    dropped = ("kind", "distance", *other_kind_fields)
    upgraded = {k: v for k, v in data.items() if k not in dropped}
    distance = data["distance"]
    upgraded["similarity"] = LEGACY_NAMES.get(distance, distance)
    return upgraded


def loss_config_from_dict(data: Any, where: str = "loss") -> LossConfig:
    """The loss config a JSON mapping describes: ``kind`` picks the type (``triplet`` when
    absent, the old flat config's default); old flat dicts are read too."""
    loss: LossConfig = _from_kind(data, tuple(LOSS_CONFIGS.values()), where)
    return loss


@dataclass(frozen=True)
class OptimConfig(_JsonMixin):
    """Adam with ``weight_decay``, StepLR(``step_size`` epochs, ``gamma``), and gradient
    norm clipping at ``grad_clip`` (None: no clipping)."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    step_size: int = 15
    gamma: float = 0.1
    grad_clip: float | None = 2.0

    def __post_init__(self) -> None:
        _check(self.lr > 0.0, f"learning rate must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0.0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.step_size > 0, f"step_size must be > 0, got {self.step_size}")
        _check(0.0 < self.gamma <= 1.0, f"gamma must be in (0, 1], got {self.gamma}")
        _check(
            self.grad_clip is None or self.grad_clip > 0.0,
            f"grad_clip must be > 0 or None, got {self.grad_clip}",
        )


#: Snapshots per run when ``TrainConfig.snapshot_epochs`` is None (first, two between, last).
DEFAULT_SNAPSHOTS: int = 4


@dataclass(frozen=True)
class TrainConfig(_JsonMixin):
    """The loop: ``epochs`` passes over all training (image, caption) pairs in batches of
    ``batch_size``; validation every ``eval_every`` epochs (and after the last); early stop
    after ``patience`` validations without a better val rsum (None: never); ``seed`` fixes
    initialisation, shuffling, dropout and miner draws. ``eval_batch_size`` bounds the
    rows embedded at once during validation. ``precision="bf16"`` runs the heads' forward
    and backward under bfloat16 autocast during training, and their forward under it wherever
    the model embeds (validation, evaluation, the browser: the model is selected on the
    scores it is evaluated with); the loss, the weights, the optimiser state, the embeddings
    handed on and every score stay float32. On a CPU with native bf16 matmul (AMX) a seed
    epoch of the ``flickr8k`` preset trained in ~4.2 s and validated in ~0.7 s against 5.7 s
    and 1.3 s in float32 (``make bench-preset`` histories); small heads gain little, and a CPU
    without it is much slower.

    Snapshots: after each epoch in ``snapshot_epochs`` (1-based) the embeddings of a fixed
    seeded sample of ``snapshot_images`` val images and all their captions are saved under
    ``snapshots/`` beside the checkpoints (:func:`xmr_utils.core.train.load_snapshots`). None
    means :data:`DEFAULT_SNAPSHOTS` epochs spread evenly over the schedule, first and last
    included; an empty tuple saves none. An early stop also snapshots the epoch it stopped
    at. Snapshots never touch the random streams: training is the same with or without."""

    epochs: int = 30
    batch_size: int = 128
    patience: int | None = 6
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 4096
    precision: str = "fp32"
    epoch_pairs: str = "all"
    snapshot_epochs: tuple[int, ...] | None = None
    snapshot_images: int = 100

    def __post_init__(self) -> None:
        _check(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        _check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        _check(
            self.patience is None or self.patience > 0,
            f"patience must be > 0 or None, got {self.patience}",
        )
        _check(self.eval_every > 0, f"eval_every must be > 0, got {self.eval_every}")
        _check(self.eval_batch_size > 0, f"eval_batch_size must be > 0, got {self.eval_batch_size}")
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("epoch_pairs", self.epoch_pairs, EPOCH_PAIRS)
        if self.snapshot_epochs is not None:
            e = self.snapshot_epochs
            _check(
                all(1 <= x <= self.epochs for x in e) and list(e) == sorted(set(e)),
                f"snapshot_epochs must be increasing epochs within 1..{self.epochs}, got {e}",
            )
        _check(
            self.snapshot_images >= 2,
            f"snapshot_images must be >= 2, got {self.snapshot_images}",
        )

    def snapshot_schedule(self) -> tuple[int, ...]:
        """The 1-based epochs that are snapshotted (before any early stop), e.g. 12 epochs ->
        ``(1, 5, 8, 12)``."""
        if self.snapshot_epochs is not None:
            return self.snapshot_epochs
        n = min(DEFAULT_SNAPSHOTS, self.epochs)
        if n == 1:
            return (self.epochs,)
        spread = (1 + (self.epochs - 1) * k / (n - 1) for k in range(n))
        return tuple(sorted({int(x + 0.5) for x in spread}))


@dataclass(frozen=True)
class Recipe(_JsonMixin):
    """Everything that defines one training run apart from the data and the direction.

    ``overrides`` records how the recipe departs from the preset ``name``, as the
    ``section.field=value`` texts it was derived with by
    :func:`xmr_utils.core.overrides.apply_overrides` (the notebooks' ``recipe_overrides``
    parameter); the fields already hold the overridden values, so a checkpoint (which stores
    the recipe) says both what ran and how it differs from the preset.
    """

    name: str
    image_head: HeadConfig
    text_head: HeadConfig
    loss: LossConfig
    optim: OptimConfig
    train: TrainConfig
    description: str = ""
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(bool(self.name), "a recipe needs a non-empty name")
        _check(
            all(isinstance(o, str) and "=" in o for o in self.overrides),
            f"recipe overrides must be 'section.field=value' texts, got {self.overrides}",
        )
        _check(
            self.image_head.out_dim == self.text_head.out_dim,
            f"image and text heads must share out_dim, got {self.image_head.out_dim} "
            f"and {self.text_head.out_dim}",
        )
        if self.loss.similarity == COSINE:
            _check(
                self.image_head.l2_normalize and self.text_head.l2_normalize,
                "cosine recipes need l2_normalize=True on both heads (scores are dot products)",
            )

    @property
    def trains(self) -> bool:
        """False when both heads are identity heads: nothing to train (``zeroshot``)."""
        return not (self.image_head.identity and self.text_head.identity)

    @property
    def score_similarity(self) -> str:
        """The similarity the trained model scores with: ``dot`` for cosine recipes (their
        heads L2-normalise) or ``neg_sqeuclidean``
        (:func:`xmr_utils.core.similarity.score_similarity`)."""
        return score_similarity(self.loss.similarity)


def recipe_with(recipe: Recipe, **overrides: Any) -> Recipe:
    """A copy of ``recipe`` with dotted overrides, e.g. ``{"train.epochs": 2}``.

    Keys are ``section.field`` (sections: image_head, text_head, loss, optim, train) or a
    top-level field (``name``, ``description``). Values are type-checked as in
    :meth:`Recipe.from_dict`; an unknown key raises XmrError listing the accepted ones.
    ``loss.kind`` switches the loss to another kind's defaults (its shared fields, such as
    ``reduction``, kept) before the other overrides apply, so ``{"loss.kind": "infonce",
    "loss.temperature": 0.05}`` works from a triplet recipe.
    """
    data = recipe.to_dict()
    sections = {f.name for f in fields(Recipe) if isinstance(data[f.name], dict)}
    kind = overrides.get("loss.kind", data["loss"]["kind"])
    if kind != data["loss"]["kind"]:
        data["loss"] = _switch_kind(data["loss"], kind)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            if section in sections:
                raise XmrError(f"{key!r} is a section; override one field, e.g. '{key}.<field>'")
            if section not in data:
                raise unknown_choice("recipe field", key, [k for k in data if k not in sections])
            data[section] = value
            continue
        if section not in sections:
            raise unknown_choice("recipe section", section, sections)
        if name not in data[section]:
            raise unknown_choice("recipe field", key, [f"{section}.{n}" for n in data[section]])
        data[section][name] = value
    return Recipe.from_dict(data)


def _switch_kind(loss: dict[str, Any], kind: Any) -> dict[str, Any]:
    """The defaults of loss ``kind`` as a dict, with the fields it shares with ``loss``."""
    if not isinstance(kind, str) or kind not in LOSS_CONFIGS:
        raise unknown_choice("loss kind", kind, LOSS_CONFIGS)
    defaults = LOSS_CONFIGS[kind]().to_dict()
    return {k: loss.get(k, v) if k != "kind" else v for k, v in defaults.items()}


RECIPES: Registry[Recipe] = Registry("recipe")

RECIPES.register("seed")(
    Recipe(
        name="seed",
        description=(
            "The seed project's recipe, reproduced as a baseline: unnormalised 4096-d MLP "
            "heads, squared euclidean triplet (margin 1) with one uniformly random negative "
            "per anchor, Adam 1e-3, StepLR(8, 0.1), batch 1024, 50 epochs of one random "
            "caption per image (its epoch), no early stop."
        ),
        image_head=HeadConfig(
            hidden=(2048,), out_dim=4096, dropout=0.0, l2_normalize=False, final_dropout=0.5
        ),
        text_head=HeadConfig(
            hidden=(1024, 2048), out_dim=4096, dropout=0.0, l2_normalize=False, final_dropout=0.1
        ),
        loss=TripletConfig(
            similarity="neg_sqeuclidean", margin=1.0, miner="random", warmup_epochs=0
        ),
        optim=OptimConfig(lr=1e-3, weight_decay=0.0, step_size=8, gamma=0.1, grad_clip=None),
        train=TrainConfig(epochs=50, batch_size=1024, patience=None, epoch_pairs="one_per_image"),
    )
)

# Hidden width 256 keeps one Flickr30k-sized epoch (145k pairs, batch 128, 4096-d image
# features) within the 15 s target on 2 CPU cores: measured 11.4 ms/step (12.9 s/epoch) vs.
# 18-21 ms/step (20-23 s/epoch) with hidden 512 (benchmarks/bench_train.py).
_VSE_HEAD = HeadConfig(hidden=(256,), out_dim=512, dropout=0.2, l2_normalize=True)

RECIPES.register("vsepp")(
    Recipe(
        name="vsepp",
        description=(
            "VSE++: cosine on L2-normalised 512-d embeddings, margin 0.2, hardest in-batch "
            "negative after a one-epoch sum-of-hinges warm-up, Adam 2e-4, clip 2.0, batch 128."
        ),
        image_head=_VSE_HEAD,
        text_head=_VSE_HEAD,
        loss=TripletConfig(similarity="cosine", margin=0.2, miner="hardest", warmup_epochs=1),
        optim=OptimConfig(lr=2e-4, step_size=15, gamma=0.1, grad_clip=2.0),
        train=TrainConfig(epochs=30, batch_size=128, patience=6),
    )
)

# The other recipes on VSE++'s heads, optimiser and loop say only how they differ from it.
RECIPES.register("semihard")(
    recipe_with(
        RECIPES["vsepp"],
        name="semihard",
        description=(
            "Cosine triplet (margin 0.2) on the semi-hard negative: the most similar in-batch "
            "negative that is still less similar than the positive, else the hardest one."
        ),
        **{"loss.miner": "semihard", "loss.warmup_epochs": 0},
    )
)

RECIPES.register("infonce")(
    recipe_with(
        RECIPES["vsepp"],
        name="infonce",
        description=(
            "Symmetric InfoNCE on cosine with a learnable temperature (init 0.07, kept "
            ">= 0.01); same-image captions in the batch are masked out, not negatives."
        ),
        **{
            "loss.kind": "infonce",
            "loss.temperature": 0.07,
            "loss.learn_temperature": True,
            "loss.min_temperature": 0.01,
        },
    )
)

# Linear heads: on a small training set (Flickr8k: 6000 images) over strong frozen features, a
# hidden layer only adds capacity to overfit (the MLP recipes peak at epoch 4 and decline);
# measured on Flickr8k val in benchmarks/bench_quality.py. Otherwise `infonce`, with a fixed
# temperature and a shorter schedule.
RECIPES.register("infonce_linear")(
    recipe_with(
        RECIPES["infonce"],
        name="infonce_linear",
        description=(
            "Linear projections (no hidden layer) into a 512-d L2-normalised space, symmetric "
            "InfoNCE with a fixed temperature 0.07, Adam 2e-4, batch 256, 12 epochs, early "
            "stop after 3: the recipe for small data over strong frozen features."
        ),
        **{
            "image_head.hidden": [],
            "image_head.dropout": 0.0,
            "text_head.hidden": [],
            "text_head.dropout": 0.0,
            "loss.learn_temperature": False,
            "train.epochs": 12,
            "train.batch_size": 256,
            "train.patience": 3,
        },
    )
)

# Over the joint space of a CLIP model (clip:<model> as both encoders). Not tuned: no CLIP
# weights on the machine these recipes were written on (README, "CLIP").
RECIPES.register("zeroshot")(
    recipe_with(
        RECIPES["infonce_linear"],
        name="zeroshot",
        description=(
            "No training: the encoders' own joint space (clip:<model> for images and "
            "captions), scored by cosine. Its two models are the same identity heads, scored "
            "once on val and saved as epoch 0."
        ),
        **{
            f"{head}.{field}": value
            for head in ("image_head", "text_head")
            for field, value in (("out_dim", 0), ("identity", True))
        },
        **{"loss.temperature": 0.01, "train.epochs": 1},
    )
)
# A linear probe of that space: linear heads that start at the identity (epoch 0 is zero-shot)
# and adapt it with symmetric InfoNCE at CLIP's own fixed temperature (logit scale 100).
RECIPES.register("clip_linear")(
    recipe_with(
        RECIPES["infonce_linear"],
        name="clip_linear",
        description=(
            "A linear probe of a CLIP joint space: linear heads at its width, initialised to "
            "the identity, symmetric InfoNCE at CLIP's temperature 0.01 (fixed), Adam 1e-5, "
            "batch 256, 10 epochs, early stop after 3."
        ),
        **{
            "image_head.out_dim": 0,
            "image_head.init": "identity",
            "text_head.out_dim": 0,
            "text_head.init": "identity",
            "loss.temperature": 0.01,
            "optim.lr": 1e-5,
            "train.epochs": 10,
        },
    )
)


# Power-normalised image inputs: pooled ImageNet CNN activations are non-negative and
# heavy-tailed; the signed square root (then L2) evens them out before the linear map. On
# Flickr8k val with MiniLM + TF-IDF captions: fused rsum 348.3 vs 340.7 for infonce_linear
# (benchmarks/bench_quality.py, case infonce_linear+sqrt+tfidf, which is this recipe).
RECIPES.register("infonce_sqrt")(
    recipe_with(
        RECIPES["infonce_linear"],
        name="infonce_sqrt",
        description=(
            "infonce_linear on power-normalised image features: each image row is mapped to "
            "sign(x) sqrt(|x|) and L2-normalised before its linear projection."
        ),
        **{"image_head.input_norm": "sqrt_l2"},
    )
)


def parse_recipes(recipes: str) -> list[str]:
    """``"vsepp,seed"`` -> ``["vsepp", "seed"]``, each checked against the recipe registry."""
    names = [name.strip() for name in recipes.split(",") if name.strip()]
    if not names:
        raise XmrError(f"no recipe named in {recipes!r}; accepted: {', '.join(sorted(RECIPES))}")
    for name in names:
        RECIPES[name]  # raises a clear error for an unknown recipe
    return names
