"""Kaggle Flickr30k layout: results.csv quirks, nested folders, missing images, splits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLICKR30K_IMAGES, caption, karpathy_json, results_csv_lines

from xmr_utils.core.data import load_corpus, validate
from xmr_utils.core.errors import XmrError


@pytest.mark.parametrize(("crlf", "bom"), [(False, False), (True, False), (True, True)])
def test_quirk_row_is_parsed_into_caption_4_and_reported(flickr30k_kaggle, crlf, bom):
    corpus = load_corpus(flickr30k_kaggle(crlf=crlf, bom=bom))
    assert corpus.name == "flickr30k"
    assert corpus.n_images == len(FLICKR30K_IMAGES)
    assert corpus.n_captions == 5 * len(FLICKR30K_IMAGES)
    quirk_image = [p.name for p in corpus.image_files].index("2199200615.jpg")
    captions = [corpus.captions[i] for i in np.flatnonzero(corpus.owner == quirk_image)]
    assert captions[4] == "A dog runs across the grass ."
    assert captions[0] == caption("2199200615.jpg", 0)
    assert corpus.captions[0] == caption("1000.jpg", 0)  # BOM did not leak into the name/text
    assert corpus.image_files[0].name == "1000.jpg"
    (fixed,) = validate(corpus).rows_fixed
    assert (fixed.file, fixed.line, fixed.item) == ("results.csv", 2 + 8 * 5 + 4, "2199200615.jpg")
    assert "results.csv:46" in " ".join(corpus.notes)


def test_nested_image_folder_is_found(flickr30k_kaggle):
    corpus = load_corpus(flickr30k_kaggle(nested=True))
    assert corpus.image_files[0].parent.name == "flickr30k_images"
    assert corpus.image_files[0].parent.parent.name == "flickr30k_images"
    assert all(p.is_file() for p in corpus.image_files)


def test_row_without_separator_fails_with_file_and_line(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[6] = "1001.jpg A caption without any separator"
    with pytest.raises(XmrError, match=r"results\.csv:7: row '1001\.jpg A caption"):
        load_corpus(flickr30k_kaggle(lines))


def test_non_numeric_comment_number_fails_with_line(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[3] = "1000.jpg| two| A caption ."
    with pytest.raises(XmrError, match=r"results\.csv:4: comment_number 'two'"):
        load_corpus(flickr30k_kaggle(lines))


def test_wrong_header_names_the_file(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[0] = "image,caption"
    with pytest.raises(XmrError, match=r"results\.csv:1: expected the header"):
        load_corpus(flickr30k_kaggle(lines))


def test_caption_containing_a_bar_is_kept_whole_and_reported(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[1] = "1000.jpg| 0| A sign reads | open | ."
    corpus = load_corpus(flickr30k_kaggle(lines))
    assert corpus.captions[0] == "A sign reads | open | ."
    assert [e.line for e in validate(corpus).rows_fixed] == [2, 46]


def test_blank_line_is_skipped_and_reported(flickr30k_kaggle):
    lines = results_csv_lines()
    lines.insert(3, "   ")
    corpus = load_corpus(flickr30k_kaggle(lines))
    assert corpus.n_captions == 5 * len(FLICKR30K_IMAGES)
    assert [(e.kind, e.line) for e in validate(corpus).rows_skipped] == [("skipped_row", 4)]


def test_missing_image_fails_naming_it_and_drop_reports_it(flickr30k_kaggle):
    root = flickr30k_kaggle()
    (root / "flickr30k_images" / "1003.jpg").unlink()
    message = r"1 image\(s\).*'1003\.jpg' \(results\.csv:17\).*on_missing='drop'"
    with pytest.raises(XmrError, match=message):
        load_corpus(root)
    corpus = load_corpus(root, on_missing="drop")
    names = [p.name for p in corpus.image_files]
    assert "1003.jpg" not in names and len(names) == len(FLICKR30K_IMAGES) - 1
    assert corpus.n_captions == 5 * (len(FLICKR30K_IMAGES) - 1)
    assert not any("1003" in c for c in corpus.captions)
    report = validate(corpus)
    assert report.missing_images == ("1003.jpg",)
    assert not report.ok


def test_many_missing_images_show_first_few_and_the_count(flickr30k_kaggle):
    root = flickr30k_kaggle()
    for name in FLICKR30K_IMAGES[:7]:
        (root / "flickr30k_images" / name).unlink()
    with pytest.raises(XmrError, match=r"7 image\(s\).*'1004\.jpg'.* and 2 more"):
        load_corpus(root)


def test_empty_caption_is_dropped_and_reported_with_line(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[2] = "1000.jpg| 1|   "
    corpus = load_corpus(flickr30k_kaggle(lines))
    assert np.bincount(corpus.owner)[0] == 4
    (empty,) = validate(corpus).empty_captions
    assert (empty.file, empty.line, empty.item) == ("results.csv", 3, "1000.jpg")


def test_image_whose_captions_are_all_empty_is_left_out_and_reported(flickr30k_kaggle):
    lines = results_csv_lines()
    lines[1:6] = [f"1000.jpg| {k}| " for k in range(5)]
    corpus = load_corpus(flickr30k_kaggle(lines))
    assert "1000.jpg" not in [p.name for p in corpus.image_files]
    report = validate(corpus)
    assert len(report.empty_captions) == 5
    assert "1000.jpg" in report.uncaptioned_images


def test_uncaptioned_image_on_disk_is_reported(flickr30k_kaggle):
    root = flickr30k_kaggle(images=(*FLICKR30K_IMAGES, "9999.jpg"))
    corpus = load_corpus(root)
    assert corpus.n_images == len(FLICKR30K_IMAGES)
    assert validate(corpus).uncaptioned_images == ("9999.jpg",)


def test_seeded_split_is_recorded_and_depends_on_the_seed(flickr30k_kaggle):
    root = flickr30k_kaggle()
    first = load_corpus(root, split_seed=0)
    again = load_corpus(root, split_seed=0)
    other = load_corpus(root, split_seed=1)
    assert first.split_source == "seeded (seed=0), not the Karpathy split"
    sizes = {k: len(v) for k, v in first.splits.items()}
    assert sizes == {"train": 7, "val": 1, "test": 1}
    assert first.split_fingerprint() == again.split_fingerprint()
    assert first.split_fingerprint() != other.split_fingerprint()
    assert sorted(np.concatenate(list(first.splits.values())).tolist()) == list(range(9))


def test_karpathy_json_beside_results_csv_supplies_the_splits(flickr30k_kaggle):
    root = flickr30k_kaggle()
    splits = dict.fromkeys(FLICKR30K_IMAGES[:5], "train")
    splits |= {FLICKR30K_IMAGES[5]: "restval", FLICKR30K_IMAGES[6]: "val"}
    splits |= {FLICKR30K_IMAGES[7]: "test"}  # 2199200615.jpg is in no split
    (root / "dataset_flickr30k.json").write_text(karpathy_json(splits))
    corpus = load_corpus(root)
    names = [p.name for p in corpus.image_files]
    assert corpus.split_source.startswith("karpathy (dataset_flickr30k.json")
    assert [names[i] for i in corpus.splits["train"]] == list(FLICKR30K_IMAGES[:6])
    assert [names[i] for i in corpus.splits["val"]] == [FLICKR30K_IMAGES[6]]
    assert [names[i] for i in corpus.splits["test"]] == [FLICKR30K_IMAGES[7]]
    assert corpus.captions[-1] == "A dog runs across the grass ."  # captions from results.csv
    (unsplit,) = validate(corpus).other_events
    assert (unsplit.kind, unsplit.item) == ("unsplit_image", "2199200615.jpg")
