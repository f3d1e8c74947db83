"""Figures show inline as the PNG that is saved; notebook tables are sized for a notebook."""

import io
import warnings
from pathlib import Path

import matplotlib.legend
import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter
from PIL import Image

from xmr_utils.app import viz
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError


def _figure() -> viz.StudyFigure:
    return viz.history_curves(
        {"vsepp": [{"epoch": 1, "loss": 2.0, "val_rsum": 10.0}, {"epoch": 2, "loss": 1.0}]}
    )


def test_a_figure_displays_as_the_png_that_is_saved(tmp_path: Path) -> None:
    fig = _figure()
    data, _ = DisplayFormatter().format(fig)  # what IPython puts in a cell's output
    assert "image/png" in data, "a figure must render as an image, not '<Figure size ...>'"
    inline = Image.open(io.BytesIO(data["image/png"]))
    saved = Image.open(viz.save(fig, tmp_path, "curves"))
    assert (tmp_path / "figures" / "curves.png").is_file()
    assert inline.size == saved.size and inline.format == saved.format == "PNG"
    assert np.array_equal(np.asarray(inline), np.asarray(saved))


def test_every_figure_function_returns_a_study_figure() -> None:
    frame = pd.DataFrame({"recipe": ["a", "b"], "model": ["img2txt"] * 2, "rsum": [1.0, 2.0]})
    xy = np.random.default_rng(0).normal(size=(4, 2))
    figures = [
        _figure(),
        viz.metrics_bars(frame),
        viz.joint_space(xy, xy, np.array([[0, 0], [1, 1]]), "t"),
        viz.ablation_bars(frame, ["recipe"]),
    ]
    assert all(isinstance(f, viz.StudyFigure) for f in figures)


def _results() -> pd.DataFrame:
    cols = {c: [1.234, 5.678] for c in viz.COMPACT_COLUMNS}
    extra = {f"x{i}": [0.1111, 0.2222] for i in range(15)}  # mAP@k, medr, ... in the real table
    return pd.DataFrame({"recipe": ["vsepp", "seed"], "model": ["fused"] * 2, **cols, **extra})


def test_results_view_is_compact_by_default_and_full_on_request() -> None:
    compact = viz.results_view(_results())
    assert list(compact.columns) == list(viz.COMPACT_COLUMNS)
    assert compact.index.names == ["recipe", "model"]
    assert compact.loc[("vsepp", "fused"), "rsum"] == 1.2
    full = viz.results_view(_results(), full=True)
    assert len(full.columns) == len(viz.COMPACT_COLUMNS) + 15
    assert full.loc[("seed", "fused"), "x0"] == 0.222
    with pytest.raises(XmrError, match="lacks"):
        viz.results_view(_results().drop(columns=["rsum"]))


def test_seeded_umap_prints_no_warning() -> None:
    points = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # umap's n_jobs notice was a UserWarning
        xy = viz.umap_2d(points, seed=0)
    assert xy.shape == (30, 2)


def test_no_legend_warns_that_placing_it_was_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib warns when a default-placed legend took over a second to place (a busy
    machine): make every clock reading 2 s later than the last, and draw each figure."""
    clock = iter(range(0, 10_000, 2))
    monkeypatch.setattr(matplotlib.legend.time, "perf_counter", lambda: float(next(clock)))
    corpus = CaptionCorpus(
        "toy",
        Path("."),
        (Path("a.jpg"), Path("b.jpg")),
        ("a red square", "a blue circle on grass"),
        np.array([0, 1]),
        {"train": np.array([0]), "val": np.array([1])},
    )
    row = {"epoch": 1, "loss": 1.0, "val_rsum": 1.0, "loss_over_margin": 1.0}
    row |= {k: 0.5 for keys in viz.COLLAPSE_CURVES.values() for k in keys if k}
    frame = pd.DataFrame({"recipe": ["a", "b"], "model": ["img2txt"] * 2, "rsum": [1.0, 2.0]})
    figures = (
        viz.caption_lengths(corpus),
        viz.history_curves({"vsepp": [row]}),
        viz.metrics_bars(frame),
        viz.collapse_curves({"img2txt-vsepp": [row]}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for fig in figures:
            fig._repr_png_()
