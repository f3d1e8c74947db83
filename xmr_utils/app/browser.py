"""The ipywidgets query browser of notebook 06.

Type a caption and see the top-k images; pick a test image and see the top-k captions; choose
which trained model answers. Ranking is :func:`xmr_utils.core.retrieval.topk`'s; this module only
wires widgets to it and renders HTML, so tests drive the callbacks without a browser.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.app.runs import resolve_path
from xmr_utils.app.study import load_run_data, split_embeddings, split_view, trained_models
from xmr_utils.core import features
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.retrieval import topk

if TYPE_CHECKING:
    from xmr_utils.core.data.corpus import CaptionCorpus
    from xmr_utils.core.data.views import SplitView
    from xmr_utils.core.heads import DualEncoder


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
    """One model's embeddings of the browsed split: images ``[n, D]``, captions ``[m, D]``."""

    model: DualEncoder
    image_emb: np.ndarray
    caption_emb: np.ndarray


@lru_cache(maxsize=512)
def _thumbnail_uri(path: str, size: int = 128) -> str:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
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
        self.indexes = dict(indexes)
        self.encode_query = encode_query
        self.k = k
        self.last_hits: list[Hit] = []
        self._widgets: dict[str, Any] | None = None

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
        """Thumbnails of image hits with rank, score and file name (green = relevant)."""
        cells = []
        for hit in hits:
            path = self.corpus.image_files[hit.index]
            border = "#2ca02c" if hit.relevant else "#cccccc"
            cells.append(
                f'<figure style="display:inline-block;margin:4px;text-align:center">'
                f'<img src="{_thumbnail_uri(str(path))}" style="border:4px solid {border}"/>'
                f"<figcaption>{hit.rank}. {html.escape(path.name)}<br/>{hit.score:.3f}"
                f"</figcaption></figure>"
            )
        return "".join(cells)

    def captions_html(self, hits: Sequence[Hit]) -> str:
        """Ranked caption hits (✓ = a caption of the query image)."""
        items = "".join(
            f"<li>{'✓ ' if hit.relevant else ''}{html.escape(self.corpus.captions[hit.index])}"
            f" <small>({hit.score:.3f})</small></li>"
            for hit in hits
        )
        return f"<ol>{items}</ol>"

    def query_image_html(self, image_index: int) -> str:
        path = self.corpus.image_files[image_index]
        return f'<img src="{_thumbnail_uri(str(path), 224)}"/><div>{html.escape(path.name)}</div>'

    # ------------------------------------------------------------------ widgets

    def widget(self) -> Any:
        """The browser as one ipywidgets box (display it as a notebook cell's last line)."""
        import ipywidgets as w

        names = [self.corpus.image_files[i].name for i in self.view.images]
        self._widgets = {
            "model": w.Dropdown(options=list(self.indexes), description="model"),
            "k": w.IntSlider(value=self.k, min=1, max=20, description="top k"),
            "query": w.Text(
                placeholder="type a caption, press Enter or Search",
                description="caption",
                continuous_update=False,
                layout=w.Layout(width="60%"),
            ),
            "search": w.Button(description="Search", button_style="primary"),
            "image": w.Dropdown(
                options=list(zip(names, self.view.images.tolist(), strict=True)),
                description="image",
            ),
            "results": w.HTML(),
            "query_image": w.HTML(),
        }
        ws = self._widgets
        ws["search"].on_click(self.on_search)
        ws["query"].observe(self.on_search, names="value")  # fires on Enter / leaving the box
        ws["image"].observe(self.on_image, names="value")
        text_tab = w.VBox([w.HBox([ws["query"], ws["search"]])])
        image_tab = w.VBox([ws["image"], ws["query_image"]])
        tabs = w.Tab(children=[text_tab, image_tab])
        tabs.set_title(0, "text → image")
        tabs.set_title(1, "image → text")
        return w.VBox([w.HBox([ws["model"], ws["k"]]), tabs, ws["results"]])

    def _controls(self) -> dict[str, Any]:
        if self._widgets is None:
            self.widget()
        assert self._widgets is not None
        return self._widgets

    def on_search(self, _: Any = None) -> None:
        """Callback of the Search button and of the caption box (on Enter)."""
        ws = self._controls()
        try:
            self.last_hits = self.search_text(ws["query"].value, ws["model"].value, ws["k"].value)
        except XmrError as err:
            self.last_hits = []
            ws["results"].value = f"<b>{html.escape(str(err))}</b>"
            return
        ws["results"].value = self.images_html(self.last_hits)

    def on_image(self, _: Any = None) -> None:
        """Callback of the image picker."""
        ws = self._controls()
        image_index = int(ws["image"].value)
        ws["query_image"].value = self.query_image_html(image_index)
        self.last_hits = self.search_image(image_index, ws["model"].value, ws["k"].value)
        ws["results"].value = self.captions_html(self.last_hits)


def build_browser(run_dir: Path, split: str = "auto", k: int = 5) -> QueryBrowser:
    """A browser over ``split`` with every model trained in the run and its text encoder."""

    data = load_run_data(run_dir)
    view = split_view(data.corpus, split)
    indexes = {}
    for (recipe, direction), model in trained_models(run_dir).items():
        img, txt = split_embeddings(model, data, view)
        indexes[f"{recipe}/{direction}"] = ModelIndex(model, img, txt)
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
