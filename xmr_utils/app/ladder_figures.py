"""The collapse ladder's figures (notebook 07, ``benchmarks/bench_collapse.py``).

* :func:`ladder_figure` — per ladder direction, rsum of every cell (mean ± std over seeds) for
  each model at its best-val and at its last epoch; cells where a seed collapsed are marked
  with a red ring and ``k/n``.
* :func:`mechanism_figure` — what the hinge sees, epoch by epoch, for a few cells side by side
  (the seed recipe against the smallest change that prevents its collapse): one panel per
  entry of :data:`MECHANISM_PANELS`, one colour per cell, a line per seed.

Each returns a matplotlib ``Figure`` (no pyplot state); :func:`save` writes a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from xmr_utils.app.ladder import LADDER_DIRECTIONS, SELECTIONS, LadderResults

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODEL_COLOURS: dict[str, str] = {"img2txt": "#1f77b4", "txt2img": "#ff7f0e"}
SELECTION_MARKERS: dict[str, dict[str, Any]] = {
    "best": {"marker": "o", "fillstyle": "full"},
    "last": {"marker": "s", "fillstyle": "none"},
}
DIRECTION_TITLES: dict[str, str] = {
    "seed_to_fix": "seed → fix: the seed recipe with one factor changed toward vsepp",
    "fix_to_seed": "fix → seed: vsepp with one factor changed toward the seed",
}


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to the PNG file ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _cell_points(ax: Axes, frame: Any, model: str, mode: str, offset: float) -> None:
    """One series: this model and selection mode at every cell, error bars over seeds,
    collapsed cells ringed in red with ``k/n``."""
    x = [i + offset for i in range(len(frame))]
    y = frame[f"{mode}_rsum"].to_numpy()
    ax.errorbar(
        x,
        y,
        yerr=frame[f"{mode}_rsum_std"].to_numpy(),
        color=MODEL_COLOURS.get(model, "grey"),
        ls="none",
        ms=6,
        capsize=2,
        label=f"{model}, {mode} epoch",
        **SELECTION_MARKERS[mode],
    )
    for xi, yi, k, n in zip(x, y, frame[f"{mode}_collapsed"], frame["seeds"], strict=True):
        if k:
            ax.plot(xi, yi, "o", ms=12, mfc="none", mec="red", mew=1.3)
            ax.annotate(
                f"{k}/{n}",
                (xi, yi),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color="red",
            )


def ladder_figure(read: LadderResults) -> Figure:
    """rsum per cell, one panel per ladder direction (see the module docstring)."""
    table = read.table
    directions = [d for d in LADDER_DIRECTIONS if d in set(table["direction"])]
    widths = [max(len(set(table[table["direction"] == d]["cell"])), 1) for d in directions]
    fig = Figure(figsize=(max(6.0, 0.75 * sum(widths) + 2), 4.2 * len(directions)))
    axes = fig.subplots(len(directions), 1, squeeze=False)[:, 0]
    models = [m for m in MODEL_COLOURS if m in set(table["model"])]
    step = 0.8 / max(len(models) * len(SELECTIONS), 1)
    for ax, direction in zip(axes, directions, strict=True):
        part = table[table["direction"] == direction]
        cells = list(dict.fromkeys(part["cell"]))
        for i, (model, mode) in enumerate((m, s) for m in models for s in SELECTIONS):
            frame = part[part["model"] == model].set_index("cell").reindex(cells).reset_index()
            _cell_points(ax, frame.dropna(subset=["seeds"]), model, mode, -0.4 + step * (i + 0.5))
        ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("val rsum (max 600)")
        ax.set_title(DIRECTION_TITLES.get(direction, direction), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"collapse ladder {read.ladder['name']}: red ring = collapsed in k of n seeds")
    fig.tight_layout()
    return fig


#: Panels of :func:`mechanism_figure`: title -> history keys drawn in it (solid, dashed).
MECHANISM_PANELS: dict[str, tuple[str, ...]] = {
    "val rsum (selection split)": ("val_rsum",),
    "active triplets (share with loss > 0)": ("active_triplets",),
    "loss / margin": ("loss_over_margin",),
    "(s(a,p) - s(a,n)) / margin": ("gap_over_margin",),
    "d(a,p) solid, d(a,n) dashed": ("pos_distance", "neg_distance"),
    "embedding norm: image solid, caption dashed": ("img_norm", "txt_norm"),
    "gradient norm: image head solid, text head dashed": (
        "grad_norm_image_head",
        "grad_norm_text_head",
    ),
    "norm share of the ranking (val): i2t solid, t2i dashed": (
        "val_i2t_norm_share",
        "val_t2i_norm_share",
    ),
}


def mechanism_cells(read: LadderResults) -> list[str]:
    """The cells the mechanism figure compares: the ladder's ``mechanism`` entry, those that
    ran."""
    ran = {f"{r.direction}/{r.cell}" for r in read.results}
    return [key for key in read.ladder.get("mechanism", []) if key in ran]


def mechanism_figure(curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> Figure:
    """Per-epoch statistics of each cell's seeds (``cell -> [history rows per seed]``, as
    :func:`xmr_utils.app.ladder.histories` returns): one colour per cell, one line per seed,
    a panel per :data:`MECHANISM_PANELS` entry that any history has (log scale where the
    values span more than a factor 100)."""
    from matplotlib import colormaps

    panels = {
        title: keys
        for title, keys in MECHANISM_PANELS.items()
        if any(k in row for runs in curves.values() for rows in runs for row in rows for k in keys)
    }
    colours = {cell: colormaps["tab10"](i % 10) for i, cell in enumerate(curves)}
    cols = 4
    rows_n = -(-len(panels) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows_n))
    axes = fig.subplots(rows_n, cols, squeeze=False).ravel()
    for ax, (title, keys) in zip(axes, panels.items(), strict=False):
        values = []
        for cell, runs in curves.items():
            for rows in runs:
                for key, style in zip(keys, ("-", "--"), strict=False):
                    pts = [(r["epoch"], float(r[key])) for r in rows if r.get(key) is not None]
                    if pts:
                        ax.plot(
                            *zip(*pts, strict=True),
                            style,
                            color=colours[cell],
                            lw=1.1,
                            marker=".",
                            ms=3,
                        )
                        values += [v for _, v in pts]
        positive = [v for v in values if v > 0]
        if positive and len(positive) == len(values) and max(positive) > 100 * min(positive):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=cell) for cell, c in colours.items()]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncols=len(handles),
        fontsize=8,
        bbox_to_anchor=(0.5, 1.04),
    )
    fig.tight_layout()
    return fig
