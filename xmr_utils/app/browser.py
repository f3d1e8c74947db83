"""The ipywidgets query browser of notebook 06.

Type a caption and see the top-k images; pick an image of the split and see its top-k captions;
choose which trained model answers. It opens on the best model of the run that did not
collapse (by the val rsum of its kept checkpoint) and says so; collapsed models are marked in
the picker. Every control refreshes the results: the model, top k, the caption (on Enter) and
the image; each tab keeps its own results. Ranking is :func:`xmr_utils.core.retrieval.topk`'s;
this module only wires widgets to it and renders HTML, so tests drive the callbacks without a
browser.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.app.runs import resolve_path
from xmr_utils.app.study import load_run_data, split_embeddings, split_view
from xmr_utils.core import features
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.retrieval import topk
from xmr_utils.core.train import load_model

if TYPE_CHECKING:
    import pandas as pd

    from xmr_utils.core.data.corpus import CaptionCorpus
    from xmr_utils.core.data.views import SplitView
    from xmr_utils.core.heads import DualEncoder

#: Pixel sizes: result thumbnails (large enough to judge a photograph) and the query image.
THUMBNAIL_PX = 200
QUERY_IMAGE_PX = 280
RELEVANT_COLOUR = "#2ca02c"
COLLAPSED_COLOUR = "#c0392b"


@dataclass(frozen=True)
class Hit:
    """One retrieved item: its corpus index, score, rank (1-based) and whether it is relevant
    to the query (the query image's own caption, or the image of a corpus caption)."""

    rank: int
    index: int
    score: float
    relevant: bool


@dataclass(frozen=True)
class ModelIndex:
    """One model's embeddings of the browsed split — images ``[n, D]``, captions ``[m, D]`` —
    and what its kept checkpoint (``best.pt``) recorded: the epoch, its val rsum and whether
    the val collapse rule (:mod:`xmr_utils.core.diagnostics`) fired then."""

    model: DualEncoder
    image_emb: np.ndarray
    caption_emb: np.ndarray
    val_rsum: float = math.nan
    collapsed: bool = False
    epoch: int = 0


def model_order(indexes: Mapping[str, ModelIndex]) -> list[str]:
    """Model names best first: models that did not collapse before those that did, each by
    val rsum (highest first; a model without one last), then by name."""

    def key(name: str) -> tuple[bool, float, str]:
        rsum = indexes[name].val_rsum
        return (indexes[name].collapsed, -rsum if math.isfinite(rsum) else math.inf, name)

    return sorted(indexes, key=key)


def model_label(name: str, index: ModelIndex) -> str:
    """The picker's text for one model: its name, val rsum, and COLLAPSED when it is."""
    rsum = f" · val rsum {index.val_rsum:.1f}" if math.isfinite(index.val_rsum) else ""
    return f"{name}{rsum}" + (" · COLLAPSED" if index.collapsed else "")


@lru_cache(maxsize=1024)
def _thumbnail_uri(path: str, size: int = THUMBNAIL_PX) -> str:
    from PIL import Image

    with Image.open(path) as src:
        img = src.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class QueryBrowser:
    """Retrieval over one split with every trained model, plus the widgets that drive it.

    Args:
        corpus: the dataset.
        view: the split browsed (its images, captions and local owner).
        indexes: model label (e.g. ``"vsepp/img2txt"``) -> its embeddings of ``view``.
        encode_query: maps raw query strings to text features ``[q, D_t]`` (the run's text
            encoder, fitted as for training).
        k: how many results to show.
    """

    def __init__(
        self,
        corpus: CaptionCorpus,
        view: SplitView,
        indexes: Mapping[str, ModelIndex],
        encode_query: Callable[[Sequence[str]], np.ndarray],
        k: int = 5,
    ) -> None:
        if not indexes:
            raise XmrError("the query browser needs at least one trained model; run 02/03 first")
        self.corpus = corpus
        self.view = view
        self.indexes = {name: indexes[name] for name in model_order(indexes)}
        self.encode_query = encode_query
        self.k = k
        self.last_hits: list[Hit] = []
        self._widgets: dict[str, Any] | None = None

    # ------------------------------------------------------------------ models

    @property
    def default_model(self) -> str:
        """The model the browser opens on: the best (val rsum) that did not collapse, or the
        best of all when every model collapsed."""
        return next(iter(self.indexes))

    def model_note(self, model: str) -> str:
        """One HTML line saying which model answers: the default's reason (:meth:`default_note`),
        or for another model its val rsum, whether it collapsed, and which is the default."""
        if model == self.default_model:
            return self.default_note()
        index = self._index(model)
        facts = [f"val rsum {index.val_rsum:.1f}"] if math.isfinite(index.val_rsum) else []
        if index.collapsed:
            facts.append(
                f'<span style="color:{COLLAPSED_COLOUR}">collapsed: its answers hardly depend '
                "on the query</span>"
            )
        detail = f" ({'; '.join(facts)})" if facts else ""
        return (
            f"Answering with <b>{html.escape(model)}</b>{detail}. The browser opened on "
            f"<b>{html.escape(self.default_model)}</b>, the best model of this run that did "
            "not collapse."
        )

    def default_note(self) -> str:
        """One HTML line saying which model answers by default and why, and which collapsed."""
        name = self.default_model
        best = self.indexes[name]
        collapsed = [n for n, index in self.indexes.items() if index.collapsed]
        rsum = f", val rsum {best.val_rsum:.1f}" if math.isfinite(best.val_rsum) else ""
        if best.collapsed:
            why = "every model of this run collapsed; this one has the best val rsum"
        else:
            why = "the best model of this run that did not collapse" + rsum
        line = f"Answering with <b>{html.escape(name)}</b>: {why}."
        if collapsed and not best.collapsed:
            names = ", ".join(html.escape(n) for n in collapsed)
            line += (
                f' <span style="color:{COLLAPSED_COLOUR}">Collapsed (marked in the picker):'
                f" {names}</span> — their answers hardly depend on the query."
            )
        return line

    def models_frame(self) -> pd.DataFrame:
        """One row per model, best first: kept epoch, val rsum, collapsed, and the default."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": name,
                    "epoch kept": index.epoch,
                    "val rsum": round(index.val_rsum, 1),
                    "collapsed": index.collapsed,
                    "default": name == self.default_model,
                }
                for name, index in self.indexes.items()
            ]
        ).set_index("model")

    # ------------------------------------------------------------------ ranking

    def _index(self, model: str) -> ModelIndex:
        if model not in self.indexes:
            raise unknown_choice("model", model, self.indexes)
        return self.indexes[model]

    def search_text(self, query: str, model: str, k: int | None = None) -> list[Hit]:
        """Top-``k`` images of the split for a typed caption (relevant = the image of a corpus
        caption with exactly this text)."""
        import torch

        if not query.strip():
            raise XmrError("the query is empty; type a caption such as 'a dog runs on grass'")
        index = self._index(model)
        feats = np.asarray(self.encode_query([query]), dtype=np.float32)
        with torch.inference_mode():
            emb = index.model.encode_texts(torch.from_numpy(feats)).numpy()
        scores, rows = topk(
            emb,
            index.image_emb,
            k=min(k or self.k, len(index.image_emb)),
            similarity=index.model.similarity,
        )
        owners = {
            int(self.corpus.owner[c])
            for c in self.view.captions
            if self.corpus.captions[c].strip().lower() == query.strip().lower()
        }
        return self._hits(scores[0], self.view.images[np.asarray(rows[0])], owners)

    def search_image(self, image_index: int, model: str, k: int | None = None) -> list[Hit]:
        """Top-``k`` captions of the split for one of its images (corpus index)."""

        index = self._index(model)
        row = int(np.searchsorted(self.view.images, image_index))
        if row >= len(self.view.images) or self.view.images[row] != image_index:
            raise XmrError(f"image {image_index} is not in the {self.view.name} split")
        scores, cols = topk(
            index.image_emb[row : row + 1],
            index.caption_emb,
            k=min(k or self.k, len(index.caption_emb)),
            similarity=index.model.similarity,
        )
        captions = self.view.captions[np.asarray(cols[0])]
        own = set(np.flatnonzero(self.corpus.owner == image_index).tolist())
        return self._hits(scores[0], captions, own)

    @staticmethod
    def _hits(scores: Any, indices: np.ndarray, relevant: set[int]) -> list[Hit]:
        return [
            Hit(rank, int(i), float(s), int(i) in relevant)
            for rank, (s, i) in enumerate(zip(np.asarray(scores), indices, strict=True), start=1)
        ]

    # ------------------------------------------------------------------ rendering

    def images_html(self, hits: Sequence[Hit]) -> str:
        """Thumbnails of image hits with rank, score and file name (green frame = relevant)."""
        cells = []
        for hit in hits:
            path = self.corpus.image_files[hit.index]
            border = RELEVANT_COLOUR if hit.relevant else "#cccccc"
            cells.append(
                f'<figure class="xmr-hit" style="margin:4px;text-align:center;'
                f'width:{THUMBNAIL_PX + 8}px">'
                f'<img src="{_thumbnail_uri(str(path))}" alt="{html.escape(path.name)}" '
                f'style="border:4px solid {border};max-width:{THUMBNAIL_PX}px"/>'
                f'<figcaption style="font-size:12px">{hit.rank}. {html.escape(path.name)}'
                f"<br/>score {hit.score:.3f}</figcaption></figure>"
            )
        return f'<div style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>'

    def captions_html(self, hits: Sequence[Hit]) -> str:
        """Ranked caption hits (✓ = a caption of the query image)."""
        items = "".join(
            f'<li class="xmr-caption" style="margin:3px 0">'
            f"{'✓ ' if hit.relevant else ''}{html.escape(self.corpus.captions[hit.index])}"
            f" <small>({hit.score:.3f})</small></li>"
            for hit in hits
        )
        return f'<ol style="font-size:14px">{items}</ol><small>✓ = a caption of this image</small>'

    def query_image_html(self, image_index: int) -> str:
        path = self.corpus.image_files[image_index]
        return (
            f'<img src="{_thumbnail_uri(str(path), QUERY_IMAGE_PX)}" '
            f'alt="{html.escape(path.name)}"/><div>{html.escape(path.name)}</div>'
        )

    # ------------------------------------------------------------------ widgets

    def widget(self, query: str = "") -> Any:
        """The browser as one ipywidgets box (display it as a notebook cell's last line).

        ``query`` is typed into the caption box; both tabs show results from the start (the
        image tab for the split's first image).
        """
        import ipywidgets as w

        names = [self.corpus.image_files[i].name for i in self.view.images]
        self._widgets = ws = {
            "model": w.Dropdown(
                options=[(model_label(n, i), n) for n, i in self.indexes.items()],
                value=self.default_model,
                description="model",
                layout=w.Layout(width="420px"),
            ),
            "k": w.IntSlider(value=self.k, min=1, max=20, description="top k"),
            "note": w.HTML(self.default_note()),
            "query": w.Text(
                value=query,
                placeholder="type a caption, press Enter or Search",
                description="caption",
                continuous_update=False,
                layout=w.Layout(width="60%"),
            ),
            "search": w.Button(description="Search", button_style="primary"),
            "text_results": w.HTML(),
            "image": w.Dropdown(
                options=list(zip(names, self.view.images.tolist(), strict=True)),
                description="image",
            ),
            "query_image": w.HTML(),
            "image_results": w.HTML(layout=w.Layout(width="640px")),
        }
        ws["search"].on_click(self.on_search)
        ws["query"].observe(self.on_search, names="value")  # fires on Enter / leaving the box
        ws["image"].observe(self.on_image, names="value")
        ws["model"].observe(self.refresh, names="value")
        ws["k"].observe(self.refresh, names="value")
        text_tab = w.VBox([w.HBox([ws["query"], ws["search"]]), ws["text_results"]])
        image_tab = w.VBox([ws["image"], w.HBox([ws["query_image"], ws["image_results"]])])
        tabs = w.Tab(children=[text_tab, image_tab], titles=("text → image", "image → text"))
        self.refresh()
        return w.VBox([w.HBox([ws["model"], ws["k"]]), ws["note"], tabs])

    def _controls(self) -> dict[str, Any]:
        if self._widgets is None:
            self.widget()
        assert self._widgets is not None
        return self._widgets

    def refresh(self, _: Any = None) -> None:
        """Answer both tabs' current queries again (the model or top k changed)."""
        ws = self._controls()
        ws["note"].value = self.model_note(ws["model"].value)
        self.on_image()
        self.on_search()

    def on_search(self, _: Any = None) -> None:
        """Callback of the Search button and of the caption box (on Enter)."""
        ws = self._controls()
        if not ws["query"].value.strip():
            ws["text_results"].value = "<i>Type a caption and press Enter.</i>"
            self.last_hits = []
            return
        try:
            self.last_hits = self.search_text(ws["query"].value, ws["model"].value, ws["k"].value)
        except XmrError as err:
            self.last_hits = []
            ws["text_results"].value = f"<b>{html.escape(str(err))}</b>"
            return
        ws["text_results"].value = self.images_html(self.last_hits)

    def on_image(self, _: Any = None) -> None:
        """Callback of the image picker."""
        ws = self._controls()
        image_index = int(ws["image"].value)
        ws["query_image"].value = self.query_image_html(image_index)
        self.last_hits = self.search_image(image_index, ws["model"].value, ws["k"].value)
        ws["image_results"].value = self.captions_html(self.last_hits)


def _checkpoints(run_dir: Path) -> dict[str, tuple[DualEncoder, dict[str, Any]]]:
    """``"<recipe>/<direction>"`` -> (model, checkpoint meta) of every ``best.pt`` in the run."""
    found = {}
    for path in sorted((Path(run_dir) / "models").glob("*/best.pt")):
        direction, recipe = path.parent.name.split("-", 1)
        model, _, meta = load_model(path)
        found[f"{recipe}/{direction}"] = (model, meta)
    if not found:
        raise XmrError(f"no trained model under {Path(run_dir) / 'models'}; run 02/03 first")
    return found


def build_browser(run_dir: Path, split: str = "auto", k: int = 5) -> QueryBrowser:
    """A browser over ``split`` with every model trained in the run and its text encoder.

    Reads the run only (its params, checkpoints and the feature cache): a finished run can be
    browsed without writing into it.
    """

    data = load_run_data(run_dir)
    view = split_view(data.corpus, split)
    indexes = {}
    for name, (model, meta) in _checkpoints(run_dir).items():
        img, txt = split_embeddings(model, data, view)
        val = meta.get("val", {})
        indexes[name] = ModelIndex(
            model,
            img,
            txt,
            val_rsum=float(val.get("val_rsum", math.nan)),
            collapsed=bool(val.get("val_collapsed", False)),
            epoch=int(meta.get("epoch", 0)),
        )
    encoder = features.fitted_text_encoder(
        data.corpus,
        data.params["text_encoder"],
        resolve_path(data.params.get("features_dir", "data/features")),
    )
    return QueryBrowser(
        data.corpus,
        view,
        indexes,
        lambda texts: encoder.encode_texts(list(texts), progress=False),
        k=k,
    )
