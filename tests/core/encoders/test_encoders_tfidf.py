"""tfidf: checked against a naive formula and scikit-learn's TfidfVectorizer; fitted state
round-trips; a mismatched saved vocabulary is refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from xmr_utils.core.encoders import build_text_encoder
from xmr_utils.core.encoders.tfidf import TfidfEncoder
from xmr_utils.core.errors import XmrError

TRAIN = (
    "a dog runs on the grass",
    "a dog plays with a ball",
    "the dog and the cat",
    "a cat sleeps",
    "kids swim in a lake",
)


def naive_row(encoder: TfidfEncoder, text: str) -> np.ndarray:
    """The documented formula, one word at a time."""
    n = len(TRAIN)
    words = text.lower().replace(".", " ").split()
    row = np.zeros(encoder.dim)
    for word in set(words):
        if word not in encoder.vocabulary:
            continue
        df = sum(word in caption.split() for caption in TRAIN)
        idf = math.log((1 + n) / (1 + df)) + 1
        row[encoder.vocabulary[word]] = (1 + math.log(words.count(word))) * idf
    norm = np.linalg.norm(row)
    return row / norm if norm else row


def test_vocabulary_is_the_most_frequent_training_words_then_alphabetical() -> None:
    enc = TfidfEncoder(dim=4, min_df=2)
    enc.fit(TRAIN)
    # df: a 4, dog 3, the 2, cat 2 (ties by word); words seen once are dropped
    assert sorted(enc.vocabulary, key=enc.vocabulary.get) == ["a", "dog", "cat", "the"]


def test_rows_match_the_naive_formula_and_zero_for_unknown_words() -> None:
    enc = TfidfEncoder(dim=10, min_df=2)
    enc.fit(TRAIN)
    texts = ["The dog, the dog and a cat.", "zebras graze", ""]
    rows = enc.encode_texts(texts, progress=False)
    assert rows.shape == (3, 10) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0], naive_row(enc, "the dog the dog and a cat"), rtol=1e-6)
    assert not rows[1:].any()  # no vocabulary word: zero rows, counted in the report
    assert enc.last_report.n_no_known_word == 2
    assert not rows[0, len(enc.vocabulary) :].any()  # fewer words than dim: zero columns


def test_matches_scikit_learn_sublinear_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    enc = TfidfEncoder(dim=100, min_df=1)
    enc.fit(TRAIN)
    words = sorted(enc.vocabulary, key=enc.vocabulary.get)
    ref = TfidfVectorizer(vocabulary=words, sublinear_tf=True, token_pattern=r"[^\W_]+")
    ref.fit(TRAIN)
    query = ["a dog and a dog and a ball", "the cat sleeps on the grass"]
    np.testing.assert_allclose(
        enc.encode_texts(query)[:, : len(words)], ref.transform(query).toarray(), rtol=1e-5
    )


def test_count_variant_uses_raw_term_frequencies() -> None:
    enc = build_text_encoder("tfidf:count", min_df=1)
    assert enc.spec == "tfidf:count+min_df=1"
    enc.fit(TRAIN)
    row = enc.encode_texts(["dog dog cat"])[0]
    dog, cat = enc.vocabulary["dog"], enc.vocabulary["cat"]
    assert row[dog] / row[cat] == pytest.approx(2 * enc.idf[dog] / enc.idf[cat], rel=1e-6)


def test_save_load_round_trip_and_refuses_another_recipe(tmp_path: Path) -> None:
    enc = TfidfEncoder(min_df=2)
    enc.fit(TRAIN)
    enc.save(tmp_path / "m")
    again = TfidfEncoder(min_df=2)
    again.load(tmp_path / "m")
    np.testing.assert_array_equal(again.encode_texts(TRAIN), enc.encode_texts(TRAIN))
    assert again.fit_id == enc.fit_id
    with pytest.raises(XmrError, match="delete it to refit"):
        TfidfEncoder(min_df=1).load(tmp_path / "m")
    with pytest.raises(XmrError, match="no readable fitted tfidf"):
        TfidfEncoder().load(tmp_path / "missing")


def test_unfitted_or_unfittable_encoders_raise_clear_errors() -> None:
    with pytest.raises(XmrError, match="call fit"):
        TfidfEncoder().encode_texts(["a dog"])
    with pytest.raises(XmrError, match="pass min_df=1"):
        TfidfEncoder(min_df=3).fit(["one caption only"])
    with pytest.raises(XmrError, match="accepted"):
        build_text_encoder("tfidf:bm25")
