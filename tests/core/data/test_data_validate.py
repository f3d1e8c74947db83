"""validate(): counts, histograms, duplicates, corrupt images, table and JSON forms."""

from __future__ import annotations

import json

import pandas as pd
from conftest import FLICKR30K_IMAGES, results_csv_lines

from xmr_utils.core.data import ValidationReport, load_corpus, validate


def test_report_counts_and_histogram(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[5] = "1000.jpg| 4|"  # one empty caption -> 4 captions for 1000.jpg
    report = validate(load_corpus(flickr30k_kaggle(lines)))
    assert isinstance(report, ValidationReport)
    assert (report.images, report.captions) == (9, 44)
    assert report.captions_per_image == ((4, 1), (5, 8))
    assert report.split_sizes == (("train", 7), ("val", 1), ("test", 1))
    assert report.corrupt_images == () and not report.images_opened
    assert report.ok


def test_duplicate_captions_are_listed_with_their_images(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[1] = "1000.jpg| 0| A dog runs across the grass ."
    lines[6] = "1001.jpg| 0| a dog  runs across the grass ."
    report = validate(load_corpus(flickr30k_kaggle(lines)))
    (dup,) = report.duplicate_captions
    assert dup.text == "a dog runs across the grass ."
    assert dup.count == 3
    assert dup.images == ("1000.jpg", "1001.jpg", "2199200615.jpg")


def test_zero_byte_and_garbage_images_are_reported_only_when_opened(flickr30k_kaggle):
    root = flickr30k_kaggle()
    (root / "flickr30k_images" / "1001.jpg").write_bytes(b"")
    (root / "flickr30k_images" / "1002.jpg").write_bytes(b"not a jpeg at all")
    truncated = (root / "flickr30k_images" / "1003.jpg").read_bytes()[:200]
    (root / "flickr30k_images" / "1003.jpg").write_bytes(truncated)
    corpus = load_corpus(root)
    assert validate(corpus).corrupt_images == ()
    report = validate(corpus, open_images=True)
    bad = dict(report.corrupt_images)
    assert set(bad) == {"1001.jpg", "1002.jpg", "1003.jpg"}
    assert bad["1001.jpg"] == "empty file (0 bytes)"
    assert "UnidentifiedImageError" in bad["1002.jpg"]
    assert not report.ok


def test_image_deleted_after_loading_is_reported_missing(flickr30k_kaggle):
    root = flickr30k_kaggle()
    corpus = load_corpus(root)
    (root / "flickr30k_images" / "1005.jpg").unlink()
    assert validate(corpus).missing_images == ("1005.jpg",)


def test_table_and_json_forms(flickr30k_kaggle):
    root = flickr30k_kaggle()
    (root / "flickr30k_images" / "1001.jpg").write_bytes(b"")
    report = validate(load_corpus(root), open_images=True)
    frame = report.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["check", "value", "details"]
    table = {check: (value, details) for check, value, details in report.rows()}
    assert table["images"][0] == "9"
    assert table["rows fixed"][0] == "1" and "results.csv:46" in table["rows fixed"][1]
    assert table["corrupt images"] == ("1", "1001.jpg: empty file (0 bytes)")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["captions_per_image"] == {"5": len(FLICKR30K_IMAGES)}
    assert data["rows_fixed"][0]["line"] == 46
    assert data["corrupt_images"] == [{"image": "1001.jpg", "reason": "empty file (0 bytes)"}]
    assert data["ok"] is False
