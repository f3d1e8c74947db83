"""The real Flickr8k in ../shared/datasets/flickr8k (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmr_utils.core.data import load_corpus, validate

# tests/core/data/test_*.py: parents[3] is the repository root, ../shared sits beside it
FLICKR8K = Path(__file__).resolve().parents[3].parent / "shared/datasets/flickr8k"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (FLICKR8K / "Flickr8k_text" / "Flickr8k.token.txt").is_file(),
        reason=f"real Flickr8k not found at {FLICKR8K}",
    ),
]


def test_real_flickr8k_reads_with_an_empty_reported_test_split():
    corpus = load_corpus(FLICKR8K)
    assert corpus.name == "flickr8k"
    assert corpus.n_images == 7000
    assert corpus.n_captions == 35000
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 6000, "val": 1000, "test": 0}
    assert corpus.split_source == "official Flickr8k split files"
    report = validate(corpus)
    assert report.ok
    assert report.captions_per_image == ((5, 7000),)
    assert report.missing_images == () and report.uncaptioned_images == ()
    assert [(e.kind, e.item) for e in report.other_events] == [
        ("missing_split_file", "Flickr_8k.testImages.txt")
    ]
    assert any("test split is empty" in note for note in corpus.notes)
