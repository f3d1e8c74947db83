"""The query browser's callbacks, driven without a browser."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from xmr_utils.app.browser import ModelIndex, QueryBrowser, model_order
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


def _toy_corpus(tmp_path: Path) -> CaptionCorpus:
    files = []
    for colour in WORDS:
        files.append(tmp_path / f"{colour}.jpg")
        Image.new("RGB", (32, 32), colour).save(files[-1])
    captions = tuple(f"a {c} square" for c in WORDS) + tuple(f"the {c} one" for c in WORDS)
    return CaptionCorpus(
        "toy",
        tmp_path,
        tuple(files),
        captions,
        np.tile(np.arange(4), 2),
        {"train": np.array([], dtype=np.int64), "val": np.array([0]), "test": np.array([1, 2, 3])},
    )


def _toy_browser(corpus: CaptionCorpus, indexes: dict[str, ModelIndex]) -> QueryBrowser:
    return QueryBrowser(corpus, split_view(corpus, "test"), indexes, encode, k=2)


def _exact_index(corpus: CaptionCorpus) -> ModelIndex:
    """Images as one-hot colour vectors, captions as bags of colour words: exact answers."""
    view = split_view(corpus, "test")
    image_emb = np.eye(4, dtype=np.float32)[view.images]
    caption_emb = encode([corpus.captions[c] for c in view.captions])
    return ModelIndex(IdentityModel(), image_emb, caption_emb)


def _good_and_flipped(corpus: CaptionCorpus) -> dict[str, ModelIndex]:
    """``good`` answers exactly; ``flipped`` ranks the matching image last (its image vectors
    are the complement of the colour)."""
    exact = _exact_index(corpus)
    return {
        "toy/good": replace(exact, val_rsum=100.0),
        "toy/flipped": replace(exact, image_emb=1.0 - exact.image_emb, val_rsum=50.0),
    }


@pytest.fixture
def browser(tmp_path: Path) -> QueryBrowser:
    corpus = _toy_corpus(tmp_path)
    index = _exact_index(corpus)
    return _toy_browser(corpus, {"toy/img2txt": index, "toy/txt2img": index})


def test_text_query_ranks_the_matching_image_first(browser: QueryBrowser) -> None:
    hits = browser.search_text("a blue square", "toy/img2txt")
    assert [browser.corpus.image_files[h.index].name for h in hits][0] == "blue.jpg"
    assert hits[0].relevant  # the typed text is a corpus caption of blue.jpg
    assert [h.rank for h in hits] == [1, 2]


def test_image_query_returns_its_own_captions(browser: QueryBrowser) -> None:
    hits = browser.search_image(3, "toy/txt2img")  # yellow.jpg
    assert {browser.corpus.captions[h.index] for h in hits} == {"a yellow square", "the yellow one"}
    assert all(h.relevant for h in hits)


def _descendants(widget: Any) -> list[Any]:
    children = list(getattr(widget, "children", ()))
    return children + [d for c in children for d in _descendants(c)]


def test_widget_callbacks_update_the_results(browser: QueryBrowser) -> None:
    box = browser.widget()
    controls = browser._controls()
    # the box shows every control the callbacks drive, in two tabs
    shown = {id(w) for w in _descendants(box)}
    assert all(id(control) in shown for control in controls.values())
    (tabs,) = [w for w in _descendants(box) if type(w).__name__ == "Tab"]
    assert tabs.titles == ("text → image", "image → text")
    controls["model"].value = "toy/txt2img"
    controls["query"].value = "green"
    controls["search"].click()  # the Search button's on_click callback
    assert browser.corpus.image_files[browser.last_hits[0].index].name == "green.jpg"
    assert (
        "green.jpg" in controls["text_results"].value
        and "data:image/jpeg;base64" in controls["text_results"].value
    )
    text_before = controls["text_results"].value
    controls["image"].value = 2  # pick blue.jpg: the observer fires
    assert "a blue square" in controls["image_results"].value
    assert "✓" in controls["image_results"].value
    assert "blue.jpg" in controls["query_image"].value
    # each tab keeps its own results: picking an image leaves the text tab's answer alone
    assert controls["text_results"].value == text_before
    assert "a blue square" not in controls["text_results"].value


def test_both_tabs_answer_from_the_start(browser: QueryBrowser) -> None:
    browser.widget(query="a red square")  # red.jpg is in val, not in the browsed test split
    controls = browser._controls()
    first = browser.view.images[0]  # green.jpg
    assert controls["image"].value == first
    assert "a green square" in controls["image_results"].value  # the first image's captions
    assert controls["text_results"].value.count("<img") == 2  # k = 2 thumbnails already


def test_model_and_top_k_changes_refresh_both_tabs(tmp_path: Path) -> None:
    corpus = _toy_corpus(tmp_path)
    browser = _toy_browser(corpus, _good_and_flipped(corpus))
    browser.widget(query="green")
    controls = browser._controls()
    assert controls["model"].value == "toy/good"
    assert "green.jpg" in controls["text_results"].value.split("2.")[0]  # ranked first
    controls["model"].value = "toy/flipped"  # ranks the images the other way round
    assert "green.jpg" not in controls["text_results"].value.split("2.")[0]
    assert "the green one" not in controls["image_results"].value
    controls["k"].value = 3
    assert controls["text_results"].value.count("<img") == 3
    assert controls["image_results"].value.count("<li") == 3


def test_default_model_is_the_best_that_did_not_collapse(tmp_path: Path) -> None:
    corpus = _toy_corpus(tmp_path)
    good = _exact_index(corpus)
    indexes = {
        "seed/img2txt": replace(good, val_rsum=300.0, collapsed=True),  # best rsum, collapsed
        "vsepp/img2txt": replace(good, val_rsum=250.0),
        "vsepp/txt2img": replace(good, val_rsum=260.0),
    }
    browser = _toy_browser(corpus, indexes)
    assert browser.default_model == "vsepp/txt2img"
    assert list(browser.indexes) == ["vsepp/txt2img", "vsepp/img2txt", "seed/img2txt"]
    note = browser.default_note()
    assert "<b>vsepp/txt2img</b>" in note and "did not collapse" in note
    assert "seed/img2txt" in note  # named as collapsed
    browser.widget()
    labels = dict((v, k) for k, v in browser._controls()["model"].options)
    assert labels["seed/img2txt"].endswith("COLLAPSED")
    assert "COLLAPSED" not in labels["vsepp/img2txt"] and "260.0" in labels["vsepp/txt2img"]
    assert browser._controls()["model"].value == "vsepp/txt2img"
    browser._controls()["model"].value = "seed/img2txt"  # the note follows the picker
    note = browser._controls()["note"].value
    assert "<b>seed/img2txt</b>" in note and "collapsed" in note and "300.0" in note
    assert "opened on <b>vsepp/txt2img</b>" in note
    frame = browser.models_frame()
    assert frame["default"].tolist() == [True, False, False]
    assert frame.loc["seed/img2txt", "collapsed"]


def test_every_model_collapsed_opens_on_the_best_and_says_so(tmp_path: Path) -> None:
    corpus = _toy_corpus(tmp_path)
    base = _exact_index(corpus)
    indexes = {
        "seed/img2txt": replace(base, val_rsum=40.0, collapsed=True),
        "seed/txt2img": replace(base, val_rsum=60.0, collapsed=True),
    }
    browser = _toy_browser(corpus, indexes)
    assert browser.default_model == "seed/txt2img"
    assert "every model of this run collapsed" in browser.default_note()


def test_model_order_puts_models_without_val_rsum_last() -> None:
    index = ModelIndex(IdentityModel(), np.eye(2), np.eye(2))
    indexes = {"b": index, "a": replace(index, val_rsum=1.0), "c": replace(index, val_rsum=2.0)}
    assert model_order(indexes) == ["c", "a", "b"]


def test_bad_queries_are_explained_not_raised_in_the_widget(browser: QueryBrowser) -> None:
    controls = browser._controls()
    controls["query"].value = "   "
    browser.on_search()
    assert "Type a caption" in controls["text_results"].value and browser.last_hits == []
    with pytest.raises(XmrError, match="the query is empty"):
        browser.search_text("  ", "toy/img2txt")
    with pytest.raises(XmrError, match="unknown model 'nope'"):
        browser.search_text("red", "nope")
    with pytest.raises(XmrError, match="not in the test split"):
        browser.search_image(0, "toy/img2txt")
