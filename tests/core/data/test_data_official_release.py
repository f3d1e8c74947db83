"""The official Flickr8k release as shipped, rebuilt with its quirks (conftest.flickr8k_release)."""

from __future__ import annotations

import pytest
from conftest import (
    RELEASE_ABSENT,
    RELEASE_ABSENT_AT,
    RELEASE_IMAGES,
    RELEASE_SPLIT_FILES,
    RELEASE_SPLITS,
)

from xmr_utils.core.data import load_corpus, validate
from xmr_utils.core.data.load import STUDY_SPLITS
from xmr_utils.core.errors import XmrError

ABSENT_LINE = 5 * RELEASE_ABSENT_AT + 1  # first token line of the absent image


def test_the_release_loads_as_8091_images_40455_captions_6000_1000_1000(flickr8k_release):
    corpus = load_corpus(flickr8k_release, required_splits=STUDY_SPLITS)
    assert corpus.name == "flickr8k"
    assert (corpus.n_images, corpus.n_captions) == (8091, 40_455)
    assert {k: len(v) for k, v in corpus.splits.items()} == {
        "train": 6000,
        "val": 1000,
        "test": 1000,
    }
    names = [p.name for p in corpus.image_files]
    assert names == list(RELEASE_IMAGES)
    for split, (start, stop) in RELEASE_SPLITS.items():
        assert [names[i] for i in corpus.splits[split]] == list(RELEASE_IMAGES[start:stop])
    assert not any("stray" in c or "train ," in c for c in corpus.captions)


def test_every_quirk_of_the_release_is_in_the_report(flickr8k_release):
    report = validate(load_corpus(flickr8k_release))
    assert report.ok
    assert report.captions_per_image == ((5, 8091),)
    token = "Flickr8k_text/Flickr8k.token.txt"
    # the stray .jpg.1 entries: skipped rows, with their lines
    strays = [(e.kind, e.file, e.line, e.item) for e in report.rows_skipped]
    stray_lines = range(ABSENT_LINE + 5, ABSENT_LINE + 10)
    assert strays == [("stray_entry", token, n, RELEASE_ABSENT + ".1") for n in stray_lines]
    # the captioned image the archive does not ship: skipped and reported by name
    (skipped,) = report.images_skipped
    assert (skipped.file, skipped.line, skipped.item) == (token, ABSENT_LINE, RELEASE_ABSENT)
    assert "5 caption(s)" in skipped.message and "no split file" in skipped.message
    # the 91 present images that no split file lists
    unsplit = [e.item for e in report.other_events if e.kind == "unsplit_image"]
    assert unsplit == list(RELEASE_IMAGES[8000:])
    assert [e.kind for e in report.other_events] == ["unsplit_image"] * 91
    assert report.missing_images == () and report.uncaptioned_images == ()
    findings = report.findings()
    assert len(findings) == 3
    assert any(
        RELEASE_ABSENT in line and line.startswith("1 × captioned image") for line in findings
    )
    assert any(line.startswith("5 × stray caption entry") for line in findings)
    assert any(line.startswith("91 × captioned image in no split") for line in findings)
    assert report.to_dict()["findings"] == findings


def test_an_image_named_in_a_split_file_must_exist(flickr8k_release):
    gone = RELEASE_IMAGES[7000]  # the first test image
    (flickr8k_release / "Flicker8k_Dataset" / gone).unlink()
    where = rf"'{gone}' \(Flickr8k_text/Flickr8k\.token\.txt:{5 * 7000 + 11}\)"
    with pytest.raises(XmrError, match=rf"1 image\(s\) referenced .* missing .*{where}"):
        load_corpus(flickr8k_release)


def test_an_uncaptioned_image_named_in_a_split_file_must_exist(flickr8k_release):
    test_file = flickr8k_release / "Flickr8k_text" / RELEASE_SPLIT_FILES["test"]
    test_file.write_text(test_file.read_text() + "999_listed_only.jpg\n")
    where = r"'999_listed_only\.jpg' \(Flickr8k_text/Flickr_8k\.testImages\.txt:1001\)"
    with pytest.raises(XmrError, match=where):
        load_corpus(flickr8k_release)


def test_an_absent_captioned_image_in_a_split_still_fails(flickr8k_release):
    train_file = flickr8k_release / "Flickr8k_text" / RELEASE_SPLIT_FILES["train"]
    train_file.write_text(train_file.read_text() + RELEASE_ABSENT + "\n")
    with pytest.raises(XmrError, match=rf"'{RELEASE_ABSENT}' \(Flickr8k_text/Flickr8k\.token"):
        load_corpus(flickr8k_release)
