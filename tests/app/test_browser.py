"""The query browser's callbacks, driven without a browser."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmr_utils.app.browser import ModelIndex, QueryBrowser
from xmr_utils.app.study import split_view
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError

WORDS = ("red", "green", "blue", "yellow")


class IdentityModel:
    """Stands in for a trained DualEncoder: text features are already joint-space vectors."""

    similarity = "dot"

    def encode_texts(self, feats: torch.Tensor) -> torch.Tensor:
        return feats


def encode(texts: list[str]) -> np.ndarray:
    """Bag of colour words: a caption's vector has a 1 for each colour word it contains."""
    return np.array([[float(w in t.split()) for w in WORDS] for t in texts], dtype=np.float32)


@pytest.fixture
def browser(tmp_path: Path) -> QueryBrowser:
    files = []
    for colour in WORDS:
        files.append(tmp_path / f"{colour}.jpg")
        Image.new("RGB", (32, 32), colour).save(files[-1])
    captions = tuple(f"a {c} square" for c in WORDS) + tuple(f"the {c} one" for c in WORDS)
    corpus = CaptionCorpus(
        "toy",
        tmp_path,
        tuple(files),
        captions,
        np.tile(np.arange(4), 2),
        {"train": np.array([], dtype=np.int64), "val": np.array([0]), "test": np.array([1, 2, 3])},
    )
    view = split_view(corpus, "test")
    image_emb = np.eye(4, dtype=np.float32)[view.images]
    caption_emb = encode([corpus.captions[c] for c in view.captions])
    index = ModelIndex(IdentityModel(), image_emb, caption_emb)
    return QueryBrowser(corpus, view, {"toy/img2txt": index, "toy/txt2img": index}, encode, k=2)


def test_text_query_ranks_the_matching_image_first(browser: QueryBrowser) -> None:
    hits = browser.search_text("a blue square", "toy/img2txt")
    assert [browser.corpus.image_files[h.index].name for h in hits][0] == "blue.jpg"
    assert hits[0].relevant  # the typed text is a corpus caption of blue.jpg
    assert [h.rank for h in hits] == [1, 2]


def test_image_query_returns_its_own_captions(browser: QueryBrowser) -> None:
    hits = browser.search_image(3, "toy/txt2img")  # yellow.jpg
    assert {browser.corpus.captions[h.index] for h in hits} == {"a yellow square", "the yellow one"}
    assert all(h.relevant for h in hits)


def test_widget_callbacks_update_the_results(browser: QueryBrowser) -> None:
    box = browser.widget()
    assert box is not None
    controls = browser._controls()
    controls["model"].value = "toy/txt2img"
    controls["query"].value = "green"
    controls["search"].click()  # the Search button's on_click callback
    assert browser.corpus.image_files[browser.last_hits[0].index].name == "green.jpg"
    assert (
        "green.jpg" in controls["results"].value
        and "data:image/jpeg;base64" in controls["results"].value
    )
    controls["image"].value = 2  # pick blue.jpg: the observer fires
    assert "a blue square" in controls["results"].value and "✓" in controls["results"].value
    assert "blue.jpg" in controls["query_image"].value


def test_bad_queries_are_explained_not_raised_in_the_widget(browser: QueryBrowser) -> None:
    controls = browser._controls()
    controls["query"].value = "   "
    browser.on_search()
    assert "the query is empty" in controls["results"].value and browser.last_hits == []
    with pytest.raises(XmrError, match="unknown model 'nope'"):
        browser.search_text("red", "nope")
    with pytest.raises(XmrError, match="not in the test split"):
        browser.search_image(0, "toy/img2txt")
