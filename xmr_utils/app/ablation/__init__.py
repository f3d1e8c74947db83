"""Ablation grids: one pipeline run per cell of a parameter grid, and their combined table.

    python -m xmr_utils.pipeline --grid configs/ablation.yaml
    python -m xmr_utils.pipeline --grid configs/ablation.yaml --workers 2       # local Dask
    python -m xmr_utils.pipeline --grid configs/ablation.yaml --scheduler sched.json

A grid file (YAML) names a ``preset`` (one of :data:`xmr_utils.app.runner.PRESETS`), optional
fixed ``params`` applied to every cell, ``axes`` (parameter -> list of values; the cells are
their cartesian product, first axis slowest), optional ``notebooks`` and an optional ``name``::

    name: recipes-x-text          # default: the file name without .yaml
    preset: demo
    params: {epochs: 8}
    axes:
      recipes: [seed, vsepp]      # a value may list several recipes: "vsepp,seed"
      text_encoder: [minilm:mean, glove:mean]
    notebooks: "00,01,02,03,04"   # the default

Every name must be a parameter some notebook declares, every value a string, number or
boolean of the type that notebook declares; recipes and encoders are checked against their
registries. A name with a dot is a recipe field (``loss.margin: [0.1, 0.2]``), folded into each
cell's ``recipe_overrides`` (:mod:`xmr_utils.app.ablation.grid`). A bad file raises
:class:`~xmr_utils.core.errors.XmrError` naming the file and key.

The default ``notebooks`` are 00-04: 04 writes ``metrics.json``, everything the table needs.
05 (UMAP and collapse curves, about 25 s per cell on the demo set) and 06 (the widget
browser) write nothing the table reads; add them to ``notebooks`` to keep their figures.

What a grid writes, under ``outputs/ablations/<name>/``::

    grid.yaml        the grid as used (with any -p overrides folded into params)
    runs/<cell-id>/  one ordinary run folder per cell (params.json, executed/, metrics.json ...)
    results.csv      one row per (cell, recipe, model), with the cell's axis values as columns
    results.md       the same as a markdown table
    comparison.png   rsum per cell and recipe, one bar per model

A cell's run is sealed (``finished.json``) once its notebooks ran, and never written again:
running the grid again skips finished cells, so an interrupted grid resumes and a grid with
a value added runs only the new cells. A failed or interrupted attempt is kept for reading
and the cell is retried in a fresh folder ``runs/<cell-id>.try2`` (``.try3`` ...). A finished
cell whose recorded parameters differ from what the grid now asks for is refused (exit 2):
give the changed grid a new ``name``. Features are cached in ``features_dir`` (default
``data/features``), so cells sharing encoders extract them once.

``--workers N`` / ``--scheduler`` run the same cells as Dask tasks with the same rules and
table (:mod:`.cluster`); without them Dask is not imported.

Modules: :mod:`.grid` (the file, its checks, the cells), :mod:`.cells` (attempt folders and
running one cell), :mod:`.sequential` and :mod:`.cluster` (the two runners), :mod:`.tasks`
(what runs on a Dask worker), :mod:`.results` (the table), :mod:`.command`.
"""

from xmr_utils.app.ablation.cells import (
    CellJob,
    CellOutcome,
    cell_attempts,
    cell_job,
    check_finished_cells,
    finished_attempt,
    next_attempt,
    run_cell,
    run_record,
)
from xmr_utils.app.ablation.cluster import ClusterOptions, run_grid_on_cluster
from xmr_utils.app.ablation.command import run_grid_command, summary
from xmr_utils.app.ablation.grid import (
    DEFAULT_NOTEBOOKS,
    GRID_KEYS,
    LATEST_FILE,
    GridCell,
    GridSpec,
    cell_id,
    expand_cells,
    load_grid,
    read_grid_file,
    safe_token,
)
from xmr_utils.app.ablation.results import (
    DEFAULT_ABLATIONS_ROOT,
    MODELS,
    RUN_COLUMNS,
    AblationResults,
    collect_metrics,
    find_ablation,
    markdown_table,
    metric_columns,
    plot_labels,
    read_results,
    results_markdown,
    results_table,
    write_results,
)
from xmr_utils.app.ablation.sequential import run_grid

__all__ = [
    "DEFAULT_ABLATIONS_ROOT",
    "DEFAULT_NOTEBOOKS",
    "GRID_KEYS",
    "LATEST_FILE",
    "MODELS",
    "RUN_COLUMNS",
    "AblationResults",
    "CellJob",
    "CellOutcome",
    "ClusterOptions",
    "GridCell",
    "GridSpec",
    "cell_attempts",
    "cell_id",
    "cell_job",
    "check_finished_cells",
    "collect_metrics",
    "expand_cells",
    "find_ablation",
    "finished_attempt",
    "load_grid",
    "markdown_table",
    "metric_columns",
    "next_attempt",
    "plot_labels",
    "read_grid_file",
    "read_results",
    "results_markdown",
    "results_table",
    "run_cell",
    "run_grid",
    "run_grid_command",
    "run_grid_on_cluster",
    "run_record",
    "safe_token",
    "summary",
    "write_results",
]
