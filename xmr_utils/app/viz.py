"""Every figure of the study. Each function returns a :class:`StudyFigure` — a matplotlib
``Figure`` built without pyplot (no global state, so a notebook shows it exactly once) that
renders itself as a PNG when it is a cell's value or passed to ``display`` — and :func:`save`
writes it under ``<run_dir>/figures/``. The notebook tables (:func:`results_view`) live here too:
what a notebook shows is this module's job, what it computes is the study's.

Every legend names its ``loc``: one left at matplotlib's default place ("best") warns
"Creating legend with loc='best' can be slow" whenever placing it took over a second — on a busy
machine, a pink warning block under a figure. Naming the place, even "best", never warns."""

from __future__ import annotations

import io
import os
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from matplotlib.figure import Figure

from xmr_utils.app import umap_neighbours
from xmr_utils.app.env import tool_defaults
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.diagnostics import MAX_MEAN_COSINE, MIN_DISTINCT_TOP1, MIN_EFFECTIVE_RANK
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    from matplotlib.container import BarContainer

MODALITY_COLOURS = {"image": "#1f77b4", "caption": "#ff7f0e"}

#: Resolution of every PNG, on disk (:func:`save`) and inline (:meth:`StudyFigure._repr_png_`).
PNG_DPI = 110
#: UMAP computes exact neighbours below this many points (its small-data path).
SMALL_UMAP = 4096


class StudyFigure(Figure):
    """A ``Figure`` that shows itself inline in Jupyter without pyplot or an active backend.

    IPython asks a displayed object for ``_repr_png_``; a bare ``Figure`` has none (the inline
    backend registers a PNG printer only once pyplot has chosen it), so it printed as the text
    ``<Figure size ...>``. This one answers with the PNG :func:`save` writes, so live cells,
    papermill's executed copies and JupyterLab reopening them all hold an ``image/png`` output.
    When the inline backend is active its printer (registered for ``Figure``) is used instead:
    still one PNG.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight")
        return buf.getvalue()


def save(fig: Figure, run_dir: str | Path, name: str) -> Path:
    """Write ``fig`` to ``<run_dir>/figures/<name>.png`` and return the path."""
    return save_as(fig, Path(run_dir) / "figures" / f"{name}.png")


def _thumbnail(path: Path, size: int = 160) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as src:
        img = src.convert("RGB")
        img.thumbnail((size, size))
        return np.asarray(img)


def caption_lengths(corpus: CaptionCorpus) -> Figure:
    """Histogram of caption lengths in words, one colour per split."""
    import pandas as pd
    import seaborn as sns

    split_of_image = np.full(corpus.n_images, "unassigned", dtype=object)
    for name, idx in corpus.splits.items():
        split_of_image[idx] = name
    frame = pd.DataFrame(
        {
            "words": [len(c.split()) for c in corpus.captions],
            "split": split_of_image[corpus.owner],
        }
    )
    fig = StudyFigure(figsize=(7, 3.2))
    ax = fig.subplots()
    sns.histplot(frame, x="words", hue="split", discrete=True, multiple="stack", ax=ax)
    sns.move_legend(ax, "upper right")  # loc named: see the module docstring
    ax.set_title(f"{corpus.name}: caption length (words), {corpus.n_captions} captions")
    return fig


def sample_grid(corpus: CaptionCorpus, image_indices: Sequence[int], width: int = 48) -> Figure:
    """Images with all of their captions underneath, one column per image."""
    n = len(image_indices)
    fig = StudyFigure(figsize=(3.3 * n, 5.2))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, i in zip(axes, image_indices, strict=True):
        ax.imshow(_thumbnail(corpus.image_files[i], 224))
        ax.set_axis_off()
        caps = [corpus.captions[c] for c in np.flatnonzero(corpus.owner == i)]
        text = "\n".join(textwrap.fill(f"• {c}", width) for c in caps)
        ax.set_title(corpus.image_files[i].name, fontsize=8)
        ax.text(0, -0.04, text, transform=ax.transAxes, va="top", fontsize=7)
    return fig


def history_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    keys: Sequence[str] = ("loss", "val_rsum"),
    titles: Mapping[str, str] | None = None,
    log_keys: Sequence[str] = ("loss", "loss_over_margin"),
) -> Figure:
    """One panel per history key, one line per labelled run (x = epoch); ``log_keys`` use a
    log scale (a warm-up epoch's sum of hinges dwarfs the later losses)."""
    fig = StudyFigure(figsize=(4.2 * len(keys), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys, strict=True):
        for label, rows in histories.items():
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=label)
        if key in log_keys:
            ax.set_yscale("log")
        ax.set_title((titles or {}).get(key, key))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")  # loc named: see the module docstring
    fig.tight_layout()
    return fig


def metrics_bars(table: Any, value: str = "rsum") -> Figure:
    """Grouped bars of one metric from a results frame with columns recipe, model, ``value``."""
    import seaborn as sns

    fig = StudyFigure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.barplot(data=table, x="recipe", y=value, hue="model", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1))  # beside the bars; loc named
    ax.set_title(f"{value} on the test split")
    return fig


#: The columns of the compact results view: what tells models apart at a glance.
COMPACT_COLUMNS: tuple[str, ...] = (
    "rsum",
    "i2t_R@1",
    "i2t_R@5",
    "i2t_R@10",
    "t2i_R@1",
    "t2i_R@5",
    "t2i_R@10",
)


def results_view(table: Any, *, full: bool = False, digits: int = 1) -> Any:
    """A results frame (``study.results_frame``: one row per recipe and model) sized for a
    notebook: indexed by (recipe, model), rsum and the six R@K (in %) rounded to ``digits``.

    ``full=True`` keeps every metric column (mAP@k, AP@k, medr, meanr: about 20 columns) at
    three decimals — the same numbers as ``metrics.json``.
    """
    frame = table.set_index(["recipe", "model"])
    if full:
        return frame.round(3)
    missing = [c for c in COMPACT_COLUMNS if c not in frame.columns]
    if missing:
        raise XmrError(f"the results table lacks {missing}; pass full=True to see what it has")
    return frame[list(COMPACT_COLUMNS)].round(digits)


def umap_2d(points: np.ndarray, seed: int = 0, metric: str = "cosine") -> np.ndarray:
    """UMAP projection ``[N, D] -> [N, 2]``. Numba's compiled code is cached under
    ``data/cache/numba`` (unless ``NUMBA_CACHE_DIR`` is set) so only the first run pays ~50 s.
    Below UMAP's small-data size its exact neighbours come from
    :func:`xmr_utils.app.umap_neighbours.exact_neighbours`: the same projection to the bit,
    without UMAP's per-pair Python loop (an 1800-point panel took ~5 s in it)."""

    os.environ.setdefault("NUMBA_CACHE_DIR", tool_defaults()["NUMBA_CACHE_DIR"])
    import umap  # noqa: PLC0415 — heavy, imported on use

    n_neighbors = min(15, len(points) - 1)
    exact: dict[str, Any] = {}
    if len(points) < SMALL_UMAP and metric in umap_neighbours.METRICS:
        exact["precomputed_knn"] = umap_neighbours.exact_neighbours(points, n_neighbors, metric)
    # n_jobs=1 is what a seeded UMAP runs with anyway; saying so spares the UserWarning that
    # umap prints on every fit otherwise ("n_jobs value 1 overridden to 1 by setting random_state")
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=0.1,
        metric=metric,
        random_state=seed,
        n_jobs=1,
        **exact,
    )
    with warnings.catch_warnings():
        # neighbours handed over without a search index: only transform() would need one
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return reducer.fit_transform(points)


def joint_space(
    image_xy: np.ndarray,
    caption_xy: np.ndarray,
    pairs: np.ndarray,
    title: str,
    ax: Any = None,
) -> Figure:
    """Scatter of a 2-D joint space coloured by modality, true (image, caption) pairs joined.

    ``image_xy [N, 2]``, ``caption_xy [M, 2]``; ``pairs [P, 2]`` rows of (image row, caption row).
    """
    fig = None
    if ax is None:
        fig = StudyFigure(figsize=(5, 5))
        ax = fig.subplots()
    from matplotlib.collections import LineCollection

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    # one collection, not one Line2D per pair: 1500 pairs drew in ~4 s, now in milliseconds
    segments = np.stack([image_xy[pairs[:, 0]], caption_xy[pairs[:, 1]]], axis=1)
    ax.add_collection(LineCollection(list(segments), colors="grey", linewidths=0.4, alpha=0.5))
    ax.scatter(*caption_xy.T, s=6, c=MODALITY_COLOURS["caption"], label="caption", alpha=0.7)
    ax.scatter(*image_xy.T, s=10, c=MODALITY_COLOURS["image"], label="image", alpha=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    return fig if fig is not None else ax.figure


def joint_space_panels(panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Several :func:`joint_space` plots side by side: title -> (image_xy, caption_xy, pairs)."""
    fig = StudyFigure(figsize=(4.2 * len(panels), 4.4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, (img_xy, cap_xy, pairs)) in zip(axes, panels.items(), strict=True):
        joint_space(img_xy, cap_xy, pairs, title, ax=ax)
    fig.tight_layout()
    return fig


def image_to_text_grid(
    corpus: CaptionCorpus,
    query_images: Sequence[int],
    top_captions: np.ndarray,
    width: int = 52,
    title: str = "",
) -> Figure:
    """Image queries (rows) with their top-k captions; a ✓ marks the query's own captions.

    ``top_captions [Q, k]`` are caption indices into ``corpus.captions``.
    """
    q = len(query_images)
    fig = StudyFigure(figsize=(10, 2.3 * q))
    axes = fig.subplots(q, 2, gridspec_kw={"width_ratios": (1, 3)}, squeeze=False)
    for row, (i, caps) in enumerate(zip(query_images, top_captions, strict=True)):
        axes[row, 0].imshow(_thumbnail(corpus.image_files[i]))
        axes[row, 0].set_axis_off()
        axes[row, 1].set_axis_off()
        lines = []
        for rank, c in enumerate(caps, start=1):
            mark = "✓" if corpus.owner[c] == i else " "
            lines.append(f"{rank}. {mark} " + textwrap.shorten(corpus.captions[c], width * 2))
        axes[row, 1].text(0, 0.5, "\n".join(lines), va="center", fontsize=8, family="monospace")
    fig.suptitle(
        f"{title}  image → text: top captions (✓ = a caption of the query image)", fontsize=10
    )
    return fig


def text_to_image_grid(
    corpus: CaptionCorpus,
    query_captions: Sequence[int],
    top_images: np.ndarray,
    title: str = "",
) -> Figure:
    """Caption queries (rows) with their top-k images; the true image is framed in green.

    ``top_images [Q, k]`` are image indices into ``corpus.image_files``.
    """
    q, k = np.shape(top_images)
    fig = StudyFigure(figsize=(1.9 * k, 2.25 * q))
    axes = fig.subplots(q, k, squeeze=False)
    for row, (c, imgs) in enumerate(zip(query_captions, top_images, strict=True)):
        for col, i in enumerate(imgs):
            ax = axes[row, col]
            ax.imshow(_thumbnail(corpus.image_files[i], 128))
            ax.set_xticks([])
            ax.set_yticks([])
            hit = corpus.owner[c] == i
            for spine in ax.spines.values():
                spine.set_edgecolor("#2ca02c" if hit else "#dddddd")
                spine.set_linewidth(4 if hit else 1)
        # a left-aligned title over the row; no tight_layout, which would shrink the images
        axes[row, 0].set_title(textwrap.shorten(corpus.captions[c], 16 * k), loc="left", fontsize=8)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.02, top=1 - 0.35 / q, wspace=0.06, hspace=0.3
    )
    fig.suptitle(
        f"{title}  text → image: top images (green frame = the caption's image)", fontsize=10
    )
    return fig


def save_as(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to the PNG file ``path`` with :func:`save`'s settings, for figures that
    belong to no run folder (an ablation grid's ``comparison.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
    return path


def ablation_bars(
    table: Any,
    label_columns: Sequence[str],
    value: str = "rsum",
    title: str = "",
    models: Sequence[str] = ("img2txt", "txt2img", "fused"),
) -> Figure:
    """Horizontal grouped bars of ``value`` from an ablation results frame: one group per row
    label (the ``label_columns`` values joined, in table order), one bar per model."""
    import seaborn as sns

    labels = table[list(label_columns)].astype(str).agg(" · ".join, axis=1)
    frame = table.assign(group=labels)
    groups = list(dict.fromkeys(frame["group"]))
    hue_order = [m for m in models if m in set(frame["model"])] + sorted(
        set(frame["model"]) - set(models)
    )
    fig = StudyFigure(figsize=(8, 1.0 + 0.28 * len(groups) * max(len(hue_order), 1)))
    ax = fig.subplots()
    sns.barplot(
        data=frame,
        y="group",
        x=value,
        hue="model",
        order=groups,
        hue_order=hue_order,
        orient="h",
        errorbar=None,
        ax=ax,
    )
    for container in ax.containers:  # seaborn's barplot: one BarContainer per hue level
        ax.bar_label(cast("BarContainer", container), fmt="%.0f", fontsize=7, padding=2)
    ax.set_ylabel(" · ".join(label_columns))
    ax.set_xlabel(value)
    ax.margins(x=0.1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="model", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or f"{value} per cell")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebook 05: collapse over time

#: Columns of :func:`collapse_curves`: title -> (key of the image/anchor side, key of the
#: caption side or None); the history rows are those of ``history.jsonl``.
COLLAPSE_CURVES: dict[str, tuple[str, str | None]] = {
    "triplet loss / margin": ("loss_over_margin", None),
    "mean pairwise cosine (val)": ("val_img_mean_pairwise_cosine", "val_txt_mean_pairwise_cosine"),
    "effective rank (val)": ("val_img_effective_rank", "val_txt_effective_rank"),
    "distinct top-1 share (val)": ("val_distinct_top1_i2t", "val_distinct_top1_t2i"),
    "collapsed (rule)": ("val_collapsed", None),
}


def _recipe_colours(recipes: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {r: cmap(i % 10) for i, r in enumerate(dict.fromkeys(recipes))}


def collapse_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """The collapse statistics per epoch, the recipes side by side on shared axes.

    ``histories``: ``"<direction>-<recipe>"`` -> history rows (``study.load_histories``).
    One row of panels per direction, one column per :data:`COLLAPSE_CURVES` entry, one
    colour per recipe; image-side (or i2t) statistics solid, caption-side (or t2i) dashed;
    the thresholds of :data:`xmr_utils.core.diagnostics.COLLAPSE_RULE` dotted.
    """
    from matplotlib.lines import Line2D

    thresholds = {
        "val_img_mean_pairwise_cosine": MAX_MEAN_COSINE,
        "val_img_effective_rank": MIN_EFFECTIVE_RANK,
        "val_distinct_top1_i2t": MIN_DISTINCT_TOP1,
    }
    runs = [
        (label.split("-", 1)[0], label.split("-", 1)[1], rows) for label, rows in histories.items()
    ]
    directions = list(dict.fromkeys(d for d, _, _ in runs))
    colours = _recipe_colours([r for _, r, _ in runs])
    fig = StudyFigure(figsize=(3.4 * len(COLLAPSE_CURVES), 2.9 * len(directions)))
    axes = fig.subplots(len(directions), len(COLLAPSE_CURVES), squeeze=False)
    for i, direction in enumerate(directions):
        for j, (title, keys) in enumerate(COLLAPSE_CURVES.items()):
            ax = axes[i, j]
            for d, recipe, rows in runs:
                if d != direction:
                    continue
                for key, style in zip(keys, ("-", "--"), strict=True):
                    points = [
                        (r["epoch"], float(r[key]))
                        for r in rows
                        if key is not None and r.get(key) is not None
                    ]
                    if points:
                        ax.plot(
                            *zip(*points, strict=True),
                            style,
                            marker=".",
                            ms=4,
                            color=colours[recipe],
                        )
            if keys[0] in thresholds:
                ax.axhline(thresholds[keys[0]], color="black", lw=0.8, ls=":")
            if keys[0] == "loss_over_margin":
                ax.set_yscale("log")
            if keys[0] == "val_collapsed":
                ax.set_yticks([0, 1], ["no", "yes"])
                ax.set_ylim(-0.2, 1.2)
            ax.set_title(f"{direction}: {title}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, label=r) for r, c in colours.items()]
    handles += [
        Line2D([], [], color="grey", ls="-", label="image side / i2t"),
        Line2D([], [], color="grey", ls="--", label="caption side / t2i"),
        Line2D([], [], color="black", ls=":", label="collapse threshold"),
    ]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _snapshot_title(panel: Any) -> tuple[str, bool]:
    """Title lines of one snapshot panel and whether the val collapse rule fired then."""
    s = panel.stats
    lines = [
        f"epoch {panel.epoch}" + (f" · val rsum {s['val_rsum']:.0f}" if "val_rsum" in s else "")
    ]
    if "val_img_mean_pairwise_cosine" in s:
        lines.append(
            f"mean cos img {s['val_img_mean_pairwise_cosine']:.2f} · "
            f"txt {s['val_txt_mean_pairwise_cosine']:.2f}"
        )
        lines.append(
            f"distinct top-1 i2t {s['val_distinct_top1_i2t']:.2f} · "
            f"t2i {s['val_distinct_top1_t2i']:.2f}"
        )
    collapsed = bool(s.get("val_collapsed", False))
    if "val_collapsed" in s:
        lines.append("COLLAPSED" if collapsed else "not collapsed")
    return "\n".join(lines), collapsed


def snapshot_grid(panels: Mapping[str, Sequence[Any]], title: str = "") -> Figure:
    """The joint space as training goes (``study.snapshot_panels``): one row per recipe, one
    column per snapshot epoch. Images and captions in two colours and a thin line from each
    caption to its true image, green when that image is also the one the caption retrieves
    first among the panel's images, grey otherwise; each image is drawn larger the more
    captions retrieve it first (a hub). Each title gives the epoch and that epoch's val
    collapse statistics (whole val split), in red when the collapse rule fired."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    rows = [recipe for recipe, row in panels.items() if row]
    if not rows:
        raise ValueError("snapshot_grid needs at least one panel")
    cols = max(len(panels[r]) for r in rows)
    fig = StudyFigure(figsize=(3.2 * cols, 3.8 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, recipe in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(panels[recipe]):
                ax.set_axis_off()
                continue
            p = panels[recipe][j]
            n, m = len(p.image_xy), len(p.caption_xy)
            hit = p.caption_top1 == p.pairs[:, 0]
            segments = np.stack([p.image_xy[p.pairs[:, 0]], p.caption_xy[p.pairs[:, 1]]], axis=1)
            ax.add_collection(
                LineCollection(
                    list(segments),
                    colors=np.where(
                        hit[:, None], [[0.17, 0.63, 0.17, 0.6]], [[0.5, 0.5, 0.5, 0.3]]
                    ),
                    linewidths=np.where(hit, 0.5, 0.3),
                )
            )
            ax.scatter(*p.caption_xy.T, s=5, c=MODALITY_COLOURS["caption"], alpha=0.7)
            share = np.bincount(p.caption_top1, minlength=n) / max(m, 1)
            ax.scatter(
                *p.image_xy.T,
                s=8 + 600 * share,
                c=MODALITY_COLOURS["image"],
                alpha=0.75,
                edgecolors="white",
                linewidths=0.4,
            )
            ax.autoscale_view()
            text, collapsed = _snapshot_title(p)
            text += f"\n{hit.mean():.0%} of captions first retrieve their image"
            ax.set_title(text, fontsize=8, color="#c0392b" if collapsed else "black")
            if j == 0:
                ax.set_ylabel(f"{recipe} ({p.direction})", fontsize=10)
    handles = [
        Line2D([], [], ls="", marker="o", ms=3, color=MODALITY_COLOURS["caption"], label="caption"),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=5,
            color=MODALITY_COLOURS["image"],
            label="image (size: captions retrieving it first)",
        ),
        Line2D([], [], color="#2ca02c", label="caption's first image is its own"),
        Line2D([], [], color="grey", label="caption to its image, missed"),
    ]
    axes[0, 0].legend(handles=handles, fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
