"""The notebooks' steps: each public function here is one notebook cell's worth of work,
composed from the modules that own the science (data, features, train, metrics, ...).

Notebooks call these and display the results; they hold no logic of their own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.app import viz
from xmr_utils.app.ablation import read_results
from xmr_utils.app.runs import (
    RunLayout,
    RunView,
    create_run,
    open_for_writing,
    open_view,
    read_json,
    read_params,
    record_params,
    resolve_path,
    update_json,
)
from xmr_utils.app.viz import umap_2d
from xmr_utils.core import features
from xmr_utils.core.config import DIRECTIONS, RECIPES, Recipe, parse_recipes, recipe_with
from xmr_utils.core.data import DATASET_NAMES, load_corpus
from xmr_utils.core.data.load import STUDY_SPLITS
from xmr_utils.core.data.validate import text_encoding_report
from xmr_utils.core.data.views import SplitView
from xmr_utils.core.diagnostics import collapse_stats
from xmr_utils.core.encoders.base import resolve_device
from xmr_utils.core.encoders.weights import allow_downloads
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.features.cluster import dask_client
from xmr_utils.core.metrics import retrieval_metrics
from xmr_utils.core.overrides import apply_overrides, field_of, parse_overrides
from xmr_utils.core.retrieval import score_matrix, topk
from xmr_utils.core.train import ModelDir, Snapshot, TrainData, embed, train_model

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd

    from xmr_utils.core.data.corpus import CaptionCorpus
    from xmr_utils.core.heads import DualEncoder


@dataclass(frozen=True)
class RunData:
    """What a notebook after 01 works on: the run's corpus and its cached features.

    ``image_feats [N_img, D_i]`` and ``text_feats [N_cap, D_t]`` are indexed like the corpus.
    """

    run_dir: Path
    params: dict[str, Any]
    corpus: CaptionCorpus
    image_feats: np.ndarray
    text_feats: np.ndarray


#: The report split a notebook uses by default: ``test``, or ``val`` when the dataset has no
#: test images (the Flickr8k copy with only train and dev files, say).
AUTO_SPLIT = "auto"


def resolve_split(corpus: CaptionCorpus, split: str) -> str:
    """``split`` itself, or for ``"auto"``: ``"test"`` when it has images, else ``"val"``."""
    if split != AUTO_SPLIT:
        return split
    return "test" if len(corpus.split_images("test")) else "val"


def split_view(corpus: CaptionCorpus, split: str) -> SplitView:
    """The images, captions and local caption->image owner of ``split`` (``"auto"``: see
    :func:`resolve_split`); the view's ``name`` is the resolved split."""
    split = resolve_split(corpus, split)
    images = corpus.split_images(split)
    if len(images) == 0:
        raise XmrError(
            f"split {split!r} of {corpus.name} is empty; choose another split, or "
            f"{AUTO_SPLIT!r} (test when it has images, else val)"
        )
    return SplitView.of(split, images, corpus.owner)


def load_corpus_for(params: dict[str, Any]) -> CaptionCorpus:
    """The corpus named by a run's recorded data parameters (those of notebook 00); the
    splits the study trains and selects on (:data:`~xmr_utils.core.data.load.STUDY_SPLITS`)
    must not be empty."""

    dataset = params["dataset"]
    return load_corpus(
        dataset if dataset in DATASET_NAMES else resolve_path(dataset),
        data_dir=resolve_path(params.get("data_dir", "data")),
        split_seed=int(params.get("split_seed", 0)),
        synthetic_images=int(params.get("synthetic_images", 600)),
        on_missing=params.get("on_missing", "error"),
        split_overlap=params.get("split_overlap", "error"),
        required_splits=STUDY_SPLITS,
    )


def load_run_data(run_dir: Path) -> RunData:
    """Corpus and features of a run, from its ``params.json`` and the feature cache."""

    params = read_params(run_dir)
    for key in ("dataset", "image_encoder", "text_encoder"):
        if key not in params:
            raise XmrError(
                f"{run_dir / 'params.json'} has no {key!r}; run notebooks 00 and 01 for this run"
            )
    corpus = load_corpus_for(params)
    cache = resolve_path(params.get("features_dir", "data/features"))
    image_feats = features.image_features(corpus, params["image_encoder"], cache, progress=False)
    text_feats = features.text_features(corpus, params["text_encoder"], cache, progress=False)
    return RunData(Path(run_dir), params, corpus, image_feats, text_feats)


# ---------------------------------------------------------------- run folders


def start_run(run_dir: str, **params: Any) -> Path:
    """Notebook 00: ``run_dir`` (a pipeline's run, or a new folder to create there), or for
    ``""`` a new run that becomes ``LATEST``; records the data parameters."""
    if run_dir and not RunLayout(resolve_path(run_dir)).params.exists():
        folder = create_run(params, run_dir=run_dir, created_by="notebook")
    elif run_dir:
        folder = open_for_writing(run_dir)
    else:
        folder = create_run(params, created_by="notebook")
    record_params(folder, params)
    return folder


def continue_run(run_dir: str, **params: Any) -> Path:
    """Notebooks 01-03: ``run_dir``, or for ``""`` the ``LATEST`` run (never a new one), and
    record this notebook's parameters beside those of the notebooks before it."""
    folder = open_for_writing(run_dir)
    record_params(folder, params)
    return folder


def open_results(run_dir: str, **params: Any) -> RunView:
    """Notebooks 04-06: the run to read — ``run_dir``, or for ``""`` the ``LATEST`` run (else
    the newest finished one) — and where this notebook writes. A finished run is viewed
    read-only: ``view.out`` is then ``views/<run_id>/`` and the run itself is never written;
    the notebook's parameters are recorded in ``view.out``."""
    view = open_view(run_dir)
    if not view.read_only:
        record_params(view.run, params)
    for name, value in params.items():  # a view records what it was opened with
        update_json(view.out / "view_params.json", (name,), value)
    return view


def view_note(view: RunView) -> str:
    """One markdown line for notebooks 04-06: which run they read and where they write."""
    if view.read_only:
        return (
            f"Viewing the finished run `{view.run}` **read-only**; this notebook's figures and "
            f"tables go to `{view.out}`."
        )
    return f"Working on the run `{view.run}` (not finished yet): outputs are written into it."


# ---------------------------------------------------------------- notebook 00: data


def split_table(corpus: CaptionCorpus) -> pd.DataFrame:
    """Images and captions per split, and where the split came from."""
    import pandas as pd

    rows = []
    for name, idx in corpus.splits.items():
        n_caps = int(np.isin(corpus.owner, idx).sum())
        rows.append({"split": name, "images": len(idx), "captions": n_caps})
    frame = pd.DataFrame(rows).set_index("split")
    frame.attrs["split_source"] = corpus.split_source
    return frame


def sample_images(corpus: CaptionCorpus, n: int = 4, seed: int = 0) -> list[int]:
    """``n`` seeded random image indices from the training split (for the sample grid)."""
    pool = corpus.splits.get("train", np.arange(corpus.n_images))
    pool = pool if len(pool) else np.arange(corpus.n_images)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool, size=min(n, len(pool)), replace=False))


# ---------------------------------------------------------------- notebook 01: features


@dataclass(frozen=True)
class FeatureSummary:
    """Features of both modalities and a table of shapes, timings and cache paths."""

    image_feats: np.ndarray
    text_feats: np.ndarray
    table: pd.DataFrame


def extract_features(
    corpus: CaptionCorpus,
    image_encoder: str,
    text_encoder: str,
    features_dir: str | Path,
    *,
    batch_size: int = 32,
    device: str = "auto",
    scheduler: str = "",
    download_weights: bool = False,
) -> FeatureSummary:
    """Extract (or load from the cache) both modalities' features and time each.

    ``scheduler``: ``""`` extracts image features in this process; a Dask scheduler address,
    a scheduler file or ``"local:N"`` shards them over its workers
    (:func:`xmr_utils.core.features.cluster.dask_client`). ``batch_size`` 0 picks one per
    device (more on a GPU); ``download_weights`` turns the download switch on for this
    extraction (:func:`~xmr_utils.core.encoders.weights.allow_downloads`): missing standard
    weights are fetched into the torch hub / HF caches (by this process, before any shard).
    """
    import pandas as pd

    cache = resolve_path(features_dir)
    rows = []
    with allow_downloads(download_weights):
        start = time.perf_counter()
        with dask_client(scheduler) as client:
            image_feats = features.image_features(
                corpus, image_encoder, cache, batch_size=batch_size, device=device, client=client
            )
        rows.append(("image", image_encoder, image_feats, time.perf_counter() - start))
        start = time.perf_counter()
        text_feats = features.text_features(corpus, text_encoder, cache, device=device)
        rows.append(("caption", text_encoder, text_feats, time.perf_counter() - start))
    table = pd.DataFrame(
        [
            {
                "modality": modality,
                "encoder": spec,
                "shape": tuple(feats.shape),
                "seconds (0 = cached)": round(seconds, 2),
                "items/s": round(len(feats) / seconds, 1) if seconds > 0 else None,
                "finite": bool(np.isfinite(feats).all()),
            }
            for modality, spec, feats, seconds in rows
        ]
    )
    table.attrs["cache"] = str(features.dataset_folder(cache, corpus))
    return FeatureSummary(image_feats, text_feats, table)


def record_text_encoding(
    run_dir: Path,
    corpus: CaptionCorpus,
    summary: FeatureSummary,
    text_encoder: str,
    features_dir: str | Path,
) -> pd.DataFrame:
    """Notebook 01: count, in the run's validation report (``corpus.json`` under
    ``validation.text_encoding``), the captions the text encoder could not read in full — no
    known word (zero vectors) and longer than its token limit (cut) — and show the counts."""
    import pandas as pd

    report = features.cached_text_report(corpus, text_encoder, resolve_path(features_dir))
    entry = text_encoding_report(corpus, text_encoder, report, summary.text_feats)
    update_json(RunLayout(Path(run_dir)).corpus, ("validation", "text_encoding"), entry)
    truncated = entry["truncated"]
    limit = f"longer than {truncated['max_tokens']} tokens" if truncated["max_tokens"] else "cut"
    rows = [
        ("captions with no known word (zero vectors)", entry["no_known_word"]["count"]),
        (f"captions {limit}, encoded from their beginning", truncated["count"]),
    ]
    frame = pd.DataFrame(rows, columns=["check", text_encoder]).set_index("check")
    return frame.fillna("not counted (cached before counting)")


def nearest_neighbours(
    feats: np.ndarray,
    labels: Sequence[str],
    *,
    queries: int = 3,
    k: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Within-modality sanity check: for a few seeded queries, the ``k`` nearest other items by
    cosine similarity of the raw features ``[N, D]`` (labels name the items)."""
    import pandas as pd

    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = feats / np.where(norms > 0, norms, 1.0)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(feats), size=min(queries, len(feats)), replace=False)
    scores, idx = topk(unit[picks], unit, k=min(k + 1, len(feats)))
    rows = []
    for q, (row_scores, row_idx) in zip(picks, zip(scores, idx, strict=True), strict=True):
        hits = [(int(j), float(s)) for j, s in zip(row_idx, row_scores, strict=True) if j != q]
        for rank, (j, s) in enumerate(hits[:k], start=1):
            rows.append(
                {"query": labels[q], "rank": rank, "neighbour": labels[j], "cosine": round(s, 3)}
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- notebooks 02/03: training


def model_dir(run_dir: Path, direction: str, recipe: str) -> Path:
    """Where one trained model lives: ``models/<direction>-<recipe>/``."""
    return RunLayout(Path(run_dir)).model_folder(direction, recipe)


def run_recipes(
    recipes: str, *, epochs: int = 0, seed: int = 0, recipe_overrides: str = ""
) -> dict[str, Recipe]:
    """The recipes notebooks 02/03 train: each preset named in ``recipes`` with
    ``recipe_overrides`` applied and recorded (:func:`~xmr_utils.core.overrides.apply_overrides`),
    then ``seed`` and ``epochs`` (0 keeps each recipe's schedule). All are built before any
    trains, so a bad override fails at once. The ``seed`` and ``epochs`` parameters own
    ``train.seed`` and ``train.epochs``; setting them in the overrides too is refused."""
    overrides = parse_overrides(recipe_overrides)
    fields = {field_of(key) for key in overrides}
    if "train.seed" in fields:
        raise XmrError("recipe_overrides sets train.seed; set the seed parameter instead")
    if epochs > 0 and "train.epochs" in fields:
        raise XmrError(
            f"recipe_overrides sets train.epochs and the epochs parameter is {epochs}; keep one"
        )
    loop: dict[str, Any] = {"train.seed": seed, **({"train.epochs": epochs} if epochs > 0 else {})}
    return {
        name: recipe_with(apply_overrides(RECIPES[name], overrides), **loop)
        for name in parse_recipes(recipes)
    }


def train_direction(
    data: RunData,
    direction: str,
    recipes: str,
    *,
    epochs: int = 0,
    seed: int = 0,
    recipe_overrides: str = "",
    device: str = "auto",
) -> pd.DataFrame:
    """Train one model per recipe for ``direction`` (``img2txt``: image anchors; ``txt2img``:
    caption anchors), selected on the val split; returns the best validation row per recipe.

    The recipes are :func:`run_recipes` (``epochs`` 0 keeps each recipe's own schedule;
    ``recipe_overrides`` such as ``"loss.margin=0.5,image_head.l2_normalize=true"``).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    built = run_recipes(recipes, epochs=epochs, seed=seed, recipe_overrides=recipe_overrides)
    for name, recipe in built.items():
        result = train_model(
            recipe,
            direction,
            TrainData(
                data.image_feats,
                data.text_feats,
                data.corpus.owner,
                data.corpus.split_images("train"),
                data.corpus.split_images("val"),
            ),
            model_dir(data.run_dir, direction, name),
            device=resolve_device(device),
        )
        best = result.best_val
        rows.append(
            {
                "recipe": name,
                "overrides": ",".join(recipe.overrides),
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                **{k: best[k] for k in ("rsum", "i2t_R@1", "t2i_R@1") if k in best},
            }
        )
    return pd.DataFrame(rows).set_index("recipe")


def load_histories(run_dir: Path, direction: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """``"<direction>-<recipe>"`` -> its per-epoch history rows (from ``history.jsonl``)."""
    histories = {}
    for path in RunLayout(Path(run_dir)).model_folders(direction).values():
        folder = ModelDir(path)
        if folder.history.exists():
            histories[path.name] = folder.read_history()
    if not histories:
        raise XmrError(f"no training history under {Path(run_dir) / 'models'}; run 02/03 first")
    return histories


def trained_models(run_dir: Path) -> dict[tuple[str, str], DualEncoder]:
    """``(recipe, direction)`` -> the best checkpoint of every model trained in the run."""
    return {key: model for key, (model, _) in trained_with_recipes(run_dir).items()}


def trained_with_recipes(run_dir: Path) -> dict[tuple[str, str], tuple[DualEncoder, Recipe]]:
    """``(recipe, direction)`` -> the best checkpoint of every model trained in the run and
    the recipe it was trained with (its ``overrides`` included)."""
    models = {}
    for key, path in RunLayout(Path(run_dir)).model_folders().items():
        folder = ModelDir(path)
        if folder.best.exists():
            model, recipe, _ = folder.load_best()
            models[key] = (model, recipe)
    if not models:
        raise XmrError(f"no trained model under {Path(run_dir) / 'models'}; run 02/03 first")
    return models


def recipe_overrides_of(recipes: dict[tuple[str, str], Recipe]) -> dict[str, str]:
    """Recipe name -> its models' overrides (``"loss.margin=0.5,..."``, ``""`` for none); the
    two directions' are joined as ``"img2txt: ...; txt2img: ..."`` when they differ."""
    by_recipe: dict[str, dict[str, str]] = {}
    for (name, direction), recipe in sorted(recipes.items()):
        by_recipe.setdefault(name, {})[direction] = ",".join(recipe.overrides)
    return {
        name: next(iter(set(texts.values())))
        if len(set(texts.values())) == 1
        else "; ".join(f"{d}: {t or 'none'}" for d, t in texts.items())
        for name, texts in by_recipe.items()
    }


def split_embeddings(
    model: DualEncoder, data: RunData, view: SplitView
) -> tuple[np.ndarray, np.ndarray]:
    """The model's embeddings of a split: images ``[n, D]``, captions ``[m, D]``."""

    return embed(model, data.image_feats[view.images], data.text_feats[view.captions])


def model_scores(model: DualEncoder, data: RunData, view: SplitView) -> np.ndarray:
    """Image×caption scores ``[n, m]`` of a split under the model's own similarity."""

    img, txt = split_embeddings(model, data, view)
    return score_matrix(img, txt, similarity=model.similarity).numpy()


def fuse_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Score-level fusion of two models: the mean of their z-scored score matrices ``[n, m]``
    (z-scoring puts a cosine model and a squared-L2 model on one scale)."""

    def z(s: np.ndarray) -> np.ndarray:
        std = float(s.std())
        return (s - s.mean()) / (std if std > 0 else 1.0)

    return (z(first) + z(second)) / 2


# ---------------------------------------------------------------- notebook 04: evaluation


SELECTION_CAVEAT = (
    "val is also the split each model's epoch was selected on, so these numbers are "
    "optimistic; report test, or hold images out of train for selection "
    "(benchmarks/bench_quality.py does)"
)


def evaluate(data: RunData, split: str = AUTO_SPLIT, *, out: Path | None = None) -> dict[str, Any]:
    """Metrics of every trained model (and the fusion of each recipe's two models) on
    ``split``, written to ``metrics.json``: ``models[recipe][model] = {i2t_*, t2i_*, rsum}``,
    and ``recipe_overrides[recipe]`` (:func:`recipe_overrides_of` its checkpoints)."""

    view = split_view(data.corpus, split)
    trained = trained_with_recipes(data.run_dir)
    scores: dict[tuple[str, str], np.ndarray] = {
        key: model_scores(model, data, view) for key, (model, _) in trained.items()
    }
    for recipe in sorted({recipe for recipe, _ in scores}):
        if all((recipe, d) in scores for d in DIRECTIONS):
            scores[(recipe, "fused")] = fuse_scores(*(scores[(recipe, d)] for d in DIRECTIONS))
    models: dict[str, dict[str, Any]] = {}
    for (recipe, model_name), matrix in scores.items():
        values = retrieval_metrics(matrix, view.owner)
        models.setdefault(recipe, {})[model_name] = {k: float(v) for k, v in values.items()}
    params = data.params
    record = {
        "dataset": data.corpus.name,
        "split": view.name,
        "image_encoder": params.get("image_encoder"),
        "text_encoder": params.get("text_encoder"),
        "n_images": int(len(view.images)),
        "n_captions": int(len(view.captions)),
        "models": models,
        "recipe_overrides": recipe_overrides_of({k: r for k, (_, r) in trained.items()}),
        # training picks each model's best epoch on val (notebooks 02/03)
        "caveat": (SELECTION_CAVEAT if view.name == "val" else ""),
    }
    path = RunLayout(Path(out) if out is not None else data.run_dir).metrics
    for key, value in record.items():
        update_json(path, (key,), value)
    return record


def split_note(metrics: dict[str, Any]) -> str:
    """One markdown line: which split ``metrics`` (of :func:`evaluate`) report, its size, and
    the selection caveat when that split is val."""
    line = (
        f"Reported on the **{metrics['split']}** split of {metrics['dataset']}: "
        f"{metrics['n_images']} images, {metrics['n_captions']} captions."
    )
    return line + (f" **Note:** {metrics['caveat']}." if metrics.get("caveat") else "")


def results_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """``metrics.json`` as a table: one row per (recipe, model), metrics as columns (and the
    recipe's ``overrides`` after its name when any recipe has some)."""
    import pandas as pd

    overrides = metrics.get("recipe_overrides") or {}
    rows = []
    for recipe, by_model in metrics["models"].items():
        row: dict[str, Any] = {"recipe": recipe}
        if any(overrides.values()):
            row["overrides"] = overrides.get(recipe, "")
        rows += [{**row, "model": model, **values} for model, values in by_model.items()]
    return pd.DataFrame(rows)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (written by notebook 04)."""
    return read_json(Path(run_dir) / "metrics.json")


def retrieval_examples(
    data: RunData,
    model: DualEncoder,
    *,
    split: str = AUTO_SPLIT,
    queries: int = 4,
    k: int = 5,
    seed: int = 0,
) -> tuple[list[int], np.ndarray, list[int], np.ndarray]:
    """Seeded example queries and ``model``'s top-``k`` results, as corpus indices:
    ``(query_images, top_captions [Q, k], query_captions, top_images [Q, k])``."""

    view = split_view(data.corpus, split)
    img, txt = split_embeddings(model, data, view)
    rng = np.random.default_rng(seed)
    q_img = rng.choice(len(view.images), size=min(queries, len(view.images)), replace=False)
    q_cap = rng.choice(len(view.captions), size=min(queries, len(view.captions)), replace=False)
    _, top_cap = topk(img[q_img], txt, k=min(k, len(txt)), similarity=model.similarity)
    _, top_img = topk(txt[q_cap], img, k=min(k, len(img)), similarity=model.similarity)
    return (
        [int(view.images[i]) for i in q_img],
        view.captions[np.asarray(top_cap)],
        [int(view.captions[c]) for c in q_cap],
        view.images[np.asarray(top_img)],
    )


def example_grids(
    data: RunData,
    *,
    split: str = AUTO_SPLIT,
    queries: int = 4,
    k: int = 5,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Retrieval grids of every trained model, saved under ``<out>/figures/`` (``out``: the
    notebook's :class:`RunView` ``out``; default the run): name -> Figure."""

    figures = {}
    for (recipe, direction), model in trained_models(data.run_dir).items():
        q_img, top_cap, q_cap, top_img = retrieval_examples(
            data, model, split=split, queries=queries, k=k, seed=seed
        )
        title = f"{recipe} / {direction} model:"
        for name, fig in (
            (
                f"04_grid_i2t_{recipe}_{direction}",
                viz.image_to_text_grid(data.corpus, q_img, top_cap, title=title),
            ),
            (
                f"04_grid_t2i_{recipe}_{direction}",
                viz.text_to_image_grid(data.corpus, q_cap, top_img, title=title),
            ),
        ):
            viz.save(fig, out if out is not None else data.run_dir, name)
            figures[name] = fig
    return figures


# ---------------------------------------------------------------- notebook 05: latent space


def collapse_table(data: RunData, split: str = AUTO_SPLIT) -> pd.DataFrame:
    """Collapse statistics of every trained model's embeddings of ``split``."""
    import pandas as pd

    view = split_view(data.corpus, split)
    rows = []
    for (recipe, direction), model in trained_models(data.run_dir).items():
        img, txt = split_embeddings(model, data, view)
        stats = collapse_stats(img, txt, view.owner, similarity=model.similarity)
        rows.append({"recipe": recipe, "model": direction, **stats})
    return pd.DataFrame(rows).set_index(["recipe", "model"])


def joint_space_panels(
    data: RunData,
    *,
    direction: str = "img2txt",
    split: str = AUTO_SPLIT,
    points: int = 300,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """UMAP of each recipe's joint space for one model direction: title -> (image_xy [n, 2],
    caption_xy [m, 2], true pairs [m, 2] of (image row, caption row)). At most ``points``
    images (and all their captions) are projected, chosen with ``seed``."""

    view = split_view(data.corpus, split)
    rng = np.random.default_rng(seed)
    chosen = np.sort(
        rng.choice(len(view.images), size=min(points, len(view.images)), replace=False)
    )
    sub = view.subset(chosen)
    panels = {}
    for (recipe, model_direction), model in trained_models(data.run_dir).items():
        if model_direction != direction:
            continue
        img, txt = split_embeddings(model, data, sub)
        xy = umap_2d(
            np.concatenate([img, txt]),
            seed=seed,
            metric="cosine" if model.similarity == "dot" else "euclidean",
        )
        pairs = np.stack([sub.owner, np.arange(len(sub.captions))], axis=1)
        panels[f"{recipe} ({direction})"] = (xy[: len(img)], xy[len(img) :], pairs)
    if not panels:
        raise XmrError(f"no {direction} model in {data.run_dir / 'models'}; run 02/03 first")
    return panels


# ---------------------------------------------------------------- notebook 04: ablation grids

if TYPE_CHECKING:
    from xmr_utils.app.ablation import AblationResults


def ablation_results(ablation: str) -> AblationResults | None:
    """Notebook 04's ablation view: ``""`` -> None (nothing shown); ``"latest"`` or an
    ablation folder -> its ``results.csv`` as a table, ``results.md`` and ``comparison.png``
    (written by ``python -m xmr_utils.pipeline --grid FILE``)."""
    if not ablation:
        return None

    return read_results(ablation)


# ---------------------------------------------------------------- notebook 05: snapshots


@dataclass(frozen=True)
class SnapshotPanel:
    """One model's joint space after ``epoch``, projected to 2-D (a panel of the snapshot grid).

    ``image_xy [n, 2]`` and ``caption_xy [m, 2]`` come from one UMAP fit of both modalities;
    ``pairs [m, 2]`` holds (image row, caption row) of every true pair; ``caption_top1 [m]``
    is the image row each caption retrieves first among the panel's images under the model's
    own score (equal to ``pairs[:, 0]`` for a hit); ``stats`` is the history row of that
    epoch (``val_*`` metrics and collapse statistics on the whole val split; empty when that
    epoch was not validated).
    """

    recipe: str
    direction: str
    epoch: int
    image_xy: np.ndarray
    caption_xy: np.ndarray
    pairs: np.ndarray
    caption_top1: np.ndarray
    stats: dict[str, Any]


def _snapshot_recipes(run_dir: Path, direction: str, recipes: str | Sequence[str]) -> list[str]:
    """The rows of the snapshot grid: ``recipes`` as given, else the run's ``recipes``
    parameter (notebooks 02/03), else every trained model of ``direction``."""
    if isinstance(recipes, str):
        names = [n.strip() for n in recipes.split(",") if n.strip()]
    else:
        names = list(recipes)
    if names:
        return names
    recorded = read_params(run_dir).get("recipes", "") if (run_dir / "params.json").exists() else ""
    names = [n.strip() for n in str(recorded).split(",") if n.strip()]
    names = [n for n in names if model_dir(run_dir, direction, n).is_dir()]
    if not names:
        prefix = f"{direction}-"
        names = sorted(p.name[len(prefix) :] for p in (run_dir / "models").glob(prefix + "*"))
    if not names:
        raise XmrError(f"no {direction} model under {run_dir / 'models'}; run 02/03 first")
    return names


def snapshot_panels(
    run_dir: Path,
    direction: str = "img2txt",
    recipes: str | Sequence[str] = "",
    *,
    points: int = 300,
    seed: int = 0,
) -> dict[str, list[SnapshotPanel]]:
    """UMAP of the training snapshots of ``direction``'s models: recipe -> panels by epoch.

    ``recipes`` (comma string or names) sets the rows and their order; empty takes the run's
    ``recipes`` parameter. At most ``points`` of the snapshot's images (seeded, the same at
    every epoch) are projected with all their captions; one UMAP fit per panel on both
    modalities together (cosine for cosine models, euclidean for squared-L2 ones). UMAP keeps
    neighbourhoods, not scale, so each panel also records which image every caption retrieves
    first (``caption_top1``): a collapsed space shows as a few hub images every caption lands on.
    """
    if direction not in DIRECTIONS:
        raise unknown_choice("direction", direction, DIRECTIONS)
    if points < 2:
        raise XmrError(f"points must be at least 2 images, got {points}")
    run_dir = Path(run_dir)
    panels: dict[str, list[SnapshotPanel]] = {}
    for recipe in _snapshot_recipes(run_dir, direction, recipes):
        folder = ModelDir(model_dir(run_dir, direction, recipe))
        snapshots = folder.snapshots()
        if not snapshots:
            raise XmrError(
                f"no training snapshots in {folder.snapshot_dir}; train {direction}-{recipe} "
                f"again (notebook 02/03) to write them"
            )
        by_epoch = {int(r["epoch"]): r for r in folder.read_history()}
        n = len(snapshots[0].image_ids)
        keep = np.arange(n)
        if n > points:
            keep = np.sort(np.random.default_rng(seed).choice(n, size=points, replace=False))
        panels[recipe] = [
            _snapshot_panel(recipe, direction, snap, n, keep, by_epoch.get(snap.epoch, {}), seed)
            for snap in snapshots
        ]
    return panels


def _snapshot_panel(
    recipe: str,
    direction: str,
    snap: Snapshot,
    n_images: int,
    keep: np.ndarray,
    history_row: Mapping[str, Any],
    seed: int,
) -> SnapshotPanel:
    """One panel of :func:`snapshot_panels`: the images ``keep`` (of the first ``n_images``) of
    ``snap`` with all their captions, projected together; ``history_row`` is the epoch's row of
    ``history.jsonl``."""
    rows = SplitView("snapshot", np.arange(n_images), np.arange(len(snap.owner)), snap.owner)
    sub = rows.subset(keep)  # images: rows of image_emb; captions: rows of text_emb
    cap_rows, owner = sub.captions, sub.owner
    img, txt = snap.image_emb[keep], snap.text_emb[cap_rows]
    xy = umap_2d(
        np.concatenate([img, txt]),
        seed=seed,
        metric="cosine" if snap.similarity == "dot" else "euclidean",
    )
    _, top1 = topk(txt, img, 1, similarity=snap.similarity, backend="torch")
    return SnapshotPanel(
        recipe=recipe,
        direction=direction,
        epoch=snap.epoch,
        image_xy=xy[: len(img)],
        caption_xy=xy[len(img) :],
        pairs=np.stack([owner, np.arange(len(cap_rows))], axis=1),
        caption_top1=top1[:, 0].numpy(),
        stats={k: v for k, v in history_row.items() if k.startswith("val_")},
    )
