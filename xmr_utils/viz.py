"""Every figure of the study. Each function returns a matplotlib ``Figure`` (no pyplot state,
so a notebook shows it exactly once) and :func:`save` writes it under ``<run_dir>/figures/``."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from xmr_utils.data.corpus import CaptionCorpus

MODALITY_COLOURS = {"image": "#1f77b4", "caption": "#ff7f0e"}


def save(fig: Figure, run_dir: str | Path, name: str) -> Path:
    """Write ``fig`` to ``<run_dir>/figures/<name>.png`` and return the path."""
    path = Path(run_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _thumbnail(path: Path, size: int = 160) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
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
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    sns.histplot(frame, x="words", hue="split", discrete=True, multiple="stack", ax=ax)
    ax.set_title(f"{corpus.name}: caption length (words), {corpus.n_captions} captions")
    return fig


def sample_grid(corpus: CaptionCorpus, image_indices: Sequence[int], width: int = 48) -> Figure:
    """Images with all of their captions underneath, one column per image."""
    n = len(image_indices)
    fig = Figure(figsize=(3.3 * n, 5.2))
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
    fig = Figure(figsize=(4.2 * len(keys), 3.2))
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
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def metrics_bars(table: Any, value: str = "rsum") -> Figure:
    """Grouped bars of one metric from a results frame with columns recipe, model, ``value``."""
    import seaborn as sns

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.barplot(data=table, x="recipe", y=value, hue="model", ax=ax)
    ax.set_title(f"{value} on the test split")
    return fig


def umap_2d(points: np.ndarray, seed: int = 0, metric: str = "cosine") -> np.ndarray:
    """UMAP projection ``[N, D] -> [N, 2]``. Numba's compiled code is cached under
    ``data/cache/numba`` (unless ``NUMBA_CACHE_DIR`` is set) so only the first run pays ~50 s."""
    from xmr_utils.runs import resolve_path

    os.environ.setdefault("NUMBA_CACHE_DIR", str(resolve_path("data/cache/numba")))
    import umap  # noqa: PLC0415 — heavy, imported on use

    reducer = umap.UMAP(
        n_neighbors=min(15, len(points) - 1), min_dist=0.1, metric=metric, random_state=seed
    )
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
        fig = Figure(figsize=(5, 5))
        ax = fig.subplots()
    for i, c in pairs:
        ax.plot(
            [image_xy[i, 0], caption_xy[c, 0]], [image_xy[i, 1], caption_xy[c, 1]],
            color="grey", lw=0.4, alpha=0.5,
        )
    ax.scatter(*caption_xy.T, s=6, c=MODALITY_COLOURS["caption"], label="caption", alpha=0.7)
    ax.scatter(*image_xy.T, s=10, c=MODALITY_COLOURS["image"], label="image", alpha=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    return fig if fig is not None else ax.figure


def joint_space_panels(panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Several :func:`joint_space` plots side by side: title -> (image_xy, caption_xy, pairs)."""
    fig = Figure(figsize=(4.2 * len(panels), 4.4))
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
    fig = Figure(figsize=(10, 2.3 * q))
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
    fig.suptitle(f"{title}  image → text: top captions (✓ = a caption of the query image)",
                 fontsize=10)
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
    fig = Figure(figsize=(1.9 * k, 2.25 * q))
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
        axes[row, 0].set_title(textwrap.shorten(corpus.captions[c], 16 * k), loc="left",
                               fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.35 / q, wspace=0.06,
                        hspace=0.3)
    fig.suptitle(f"{title}  text → image: top images (green frame = the caption's image)",
                 fontsize=10)
    return fig
