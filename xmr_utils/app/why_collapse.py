"""Notebook 07's steps: the collapse ladder's latest results, its verdict and its figures.

The ladder is trained by ``make bench-collapse`` (``benchmarks/bench_collapse.py``), which
writes ``outputs/collapse/<name>/`` and points ``outputs/collapse/LATEST`` at it; this module
only reads. Without results :func:`open_ladder` returns a view whose note says how to make
them, so notebook 07 runs in every pipeline (``make demo``, the smoke test) in a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xmr_utils.app import ladder_figures
from xmr_utils.app.ladder import (
    DEFAULT_LADDER_ROOT,
    SELECTIONS,
    LadderResults,
    find_ladder,
    histories,
    read_ladder,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

HOW_TO = (
    "No collapse-ladder results under `{root}` yet. Run `make bench-collapse` (the whole "
    "ladder on the study features; `python -m benchmarks.bench_collapse --help` runs a part "
    "of it, e.g. `--cells seed,l2 --seeds 0`), then run this notebook again."
)


@dataclass(frozen=True)
class LadderView:
    """What notebook 07 shows: a markdown ``note`` (which ladder, how it was made, or how to
    make one), the ladder ``verdict`` (markdown), the ``table`` (markdown) and the two
    figures; all but the note are None without results."""

    note: str
    verdict: str | None = None
    table: str | None = None
    ladder_figure: Figure | None = None
    mechanism_figure: Figure | None = None
    results: LadderResults | None = None


def open_ladder(
    ladder: str = "latest", root: str | Path = DEFAULT_LADDER_ROOT, model: str = "img2txt"
) -> LadderView:
    """The view of ladder folder ``ladder`` (``latest``: the last one ``make bench-collapse``
    wrote under ``root``); the mechanism curves are those of ``model``'s histories."""
    folder = find_ladder(ladder, root)
    if folder is None or not (folder / "ladder.json").is_file():
        return LadderView(HOW_TO.format(root=root))
    read = read_ladder(folder)
    if not read.results:
        return LadderView(f"The ladder `{folder}` has no finished model yet.", results=read)
    cells = ladder_figures.mechanism_cells(read)
    mechanism = None
    if cells and any(r.model == model for r in read.results):
        mechanism = ladder_figures.mechanism_figure(histories(folder, cells, model=model))
    return LadderView(
        note=describe(read),
        verdict=verdict(read.table),
        table=read.markdown,
        ladder_figure=ladder_figures.ladder_figure(read),
        mechanism_figure=mechanism,
        results=read,
    )


def describe(read: LadderResults) -> str:
    """One markdown paragraph: which ladder this is, on what, and the command that made it."""
    m = read.ladder
    n_models = len(read.results)
    return (
        f"Ladder `{m['name']}` in `{read.folder}` ({n_models} trained models): features "
        f"`{m['image_encoder']}` + `{m['text_encoder']}`, seeds {m['seeds']}, models "
        f"{', '.join(m['models'])}, schedule `{m['schedule'] or 'each recipe its own'}`. "
        f"Made by `{m['command']}`. rsum is on the Flickr8k val split (max 600); *best* is the "
        "epoch with the best rsum on 500 held-out train images, *last* the last epoch (what "
        "the seed kept); collapsed = the rule of `xmr_utils.core.diagnostics.COLLAPSE_RULE`."
    )


def verdict(table: pd.DataFrame) -> str:
    """Markdown bullets read off the ladder table, per selection mode: which single changes
    of the seed recipe leave no seed collapsed, and which single changes of vsepp make some
    seed collapse (only the cells that ran; a direction without its base cell is skipped)."""
    lines = []
    for mode in SELECTIONS:
        for direction, base, wanted, words in (
            ("seed_to_fix", "seed", 0, "prevent the collapse (0 of n seeds collapsed)"),
            ("fix_to_seed", "vsepp", None, "make vsepp collapse (in k of n seeds)"),
        ):
            part = table[table["direction"] == direction]
            if part.empty:
                continue
            hits = [
                f"`{r.cell}`/{r.model} ({r[f'{mode}_collapsed']}/{r.seeds}, rsum "
                f"{r[f'{mode}_rsum']:.1f} ± {r[f'{mode}_rsum_std']:.1f})"
                for _, r in part.iterrows()
                if r.cell != base
                and (r[f"{mode}_collapsed"] == 0 if wanted == 0 else r[f"{mode}_collapsed"] > 0)
            ]
            lines.append(
                f"- **{mode} epoch**, single changes that {words}: " + (", ".join(hits) or "none")
            )
    return "\n".join(lines)
