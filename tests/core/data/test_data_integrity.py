"""Nothing silently wrong: empty datasets and splits, images in two splits, Karpathy JSONs that
disagree with the caption file or belong to another dataset, duplicate comment numbers."""

from __future__ import annotations

import json

import pytest
from conftest import FLICKR8K_IMAGES, FLICKR30K_IMAGES, caption, karpathy_json, results_csv_lines

from xmr_utils.core.data import load_corpus, validate
from xmr_utils.core.data.load import STUDY_SPLITS
from xmr_utils.core.errors import XmrError

TEXT = "Flickr8k_text"
TRAIN, DEV, TEST = (f"Flickr_8k.{s}Images.txt" for s in ("train", "dev", "test"))

# ---------------------------------------------------------------- empty datasets


def test_header_only_results_csv_names_the_file(flickr30k_kaggle):
    root = flickr30k_kaggle(["image_name| comment_number| comment"])
    with pytest.raises(XmrError, match=rf"{root / 'results.csv'} holds no caption rows"):
        load_corpus(root)


def test_results_csv_of_empty_captions_names_the_file(flickr30k_kaggle):
    lines = ["image_name| comment_number| comment", "1000.jpg| 0| ", "1001.jpg| 0|   "]
    with pytest.raises(XmrError, match=r"results\.csv has 2 caption rows, all of them empty"):
        load_corpus(flickr30k_kaggle(lines))


def test_empty_token_file_names_the_file(flickr8k_official):
    root = flickr8k_official()
    (root / TEXT / "Flickr8k.token.txt").write_text("")
    with pytest.raises(XmrError, match=r"Flickr8k\.token\.txt holds no caption rows"):
        load_corpus(root)


def test_every_image_dropped_names_the_file(flickr30k_kaggle):
    root = flickr30k_kaggle()
    for path in (root / "flickr30k_images").iterdir():
        path.unlink()
    with pytest.raises(XmrError, match=r"results\.csv names 9 image\(s\), none of them in"):
        load_corpus(root, on_missing="drop")


def test_an_empty_split_the_study_needs_is_refused_naming_it(flickr8k_official):
    root = flickr8k_official()
    (root / TEXT / DEV).unlink()
    corpus = load_corpus(root)  # without required splits, an empty val is reported only
    assert corpus.splits["val"].size == 0
    with pytest.raises(
        XmrError, match=r"the val split of flickr8k .* is empty .*official Flickr8k"
    ):
        load_corpus(root, required_splits=STUDY_SPLITS)


def test_a_seeded_split_too_small_for_val_is_refused(flickr30k_kaggle):
    images = FLICKR30K_IMAGES[:4]  # 10 % of 4 images rounds to 0
    root = flickr30k_kaggle(results_csv_lines(images), images=images)
    with pytest.raises(XmrError, match=r"the val split of flickr30k .* seeded"):
        load_corpus(root, required_splits=STUDY_SPLITS)


# ---------------------------------------------------------------- images in two splits


def _add_to_split(root, file_name, names):
    path = root / TEXT / file_name
    path.write_text(path.read_text() + "".join(f"{n}\n" for n in names))


def test_an_image_in_two_split_files_is_refused_with_names_lines_and_count(flickr8k_official):
    root = flickr8k_official(with_test=True)
    _add_to_split(root, TEST, [FLICKR8K_IMAGES[0], FLICKR8K_IMAGES[6]])
    train, dev, test = (f"{TEXT}/{f}" for f in (TRAIN, DEV, TEST))
    first = f"'{FLICKR8K_IMAGES[0]}' ({train}:1; {test}:2)"  # the test file starts blank
    second = f"'{FLICKR8K_IMAGES[6]}' ({dev}:2; {test}:3)"
    with pytest.raises(XmrError, match=r"^2 image\(s\) are listed in more than one split") as err:
        load_corpus(root)
    message = str(err.value)
    assert first in message and second in message
    assert "split_overlap='keep'" in message


def test_split_overlap_keep_keeps_and_reports_each_image(flickr8k_official):
    root = flickr8k_official(with_test=True)
    _add_to_split(root, TEST, [FLICKR8K_IMAGES[0]])
    corpus = load_corpus(root, split_overlap="keep")
    assert corpus.splits["test"].tolist() == [0] and 0 in corpus.splits["train"]
    report = validate(corpus)
    (kept,) = report.split_overlaps
    assert kept.item == FLICKR8K_IMAGES[0] and "train and test" in kept.message
    assert not report.ok
    assert any("more than one split" in line for line in report.findings())


def test_an_image_twice_in_a_karpathy_json_is_refused_with_its_entries(flickr30k_kaggle):
    root = flickr30k_kaggle()
    data = json.loads(karpathy_json({n: "train" for n in FLICKR30K_IMAGES}))
    data["images"].append({**data["images"][2], "split": "test"})
    (root / "dataset_flickr30k.json").write_text(json.dumps(data))
    where = r"'1002\.jpg' \(dataset_flickr30k\.json images\[2\] \(train\); "
    where += r"dataset_flickr30k\.json images\[9\] \(test\)\)"
    with pytest.raises(XmrError, match=rf"1 image\(s\) are listed in more than one split.*{where}"):
        load_corpus(root)


def test_unknown_split_overlap_policy_is_refused(flickr8k_official):
    with pytest.raises(XmrError, match="unknown split_overlap 'drop'; accepted: error, keep"):
        load_corpus(flickr8k_official(), split_overlap="drop")


# ---------------------------------------------------------------- Karpathy JSON checks


def _karpathy_splits() -> dict[str, str]:
    splits = {n: "train" for n in FLICKR30K_IMAGES}
    splits.update({FLICKR30K_IMAGES[0]: "val", FLICKR30K_IMAGES[1]: "test"})
    return splits


def _karpathy_like_the_csv() -> dict:
    """Karpathy JSON data whose captions are those of ``results_csv_lines()``."""
    data = json.loads(karpathy_json(_karpathy_splits()))
    data["images"][-1]["sentences"][4]["raw"] = "A dog runs across the grass."  # the quirk row
    return data


def test_karpathy_captions_that_differ_from_the_csv_are_reported(flickr30k_kaggle):
    root = flickr30k_kaggle()
    data = _karpathy_like_the_csv()
    # punctuation, case and spacing do not count as a difference ...
    data["images"][0]["sentences"][0]["raw"] = caption("1000.jpg", 0).upper().replace(" ,", ",")
    # ... different words do
    data["images"][3]["sentences"][1]["raw"] = "A cat sleeps on a sofa."
    (root / "dataset_flickr30k.json").write_text(json.dumps(data))
    report = validate(load_corpus(root))
    (note,) = report.karpathy_notes
    assert (note.kind, note.item) == ("karpathy_mismatch", "1003.jpg")
    assert "images[3].sentences[1] has 'A cat sleeps on a sofa.'" in note.message
    assert f"results.csv:{1 + 3 * 5 + 2} has {caption('1003.jpg', 1)!r}" in note.message
    assert any(line.startswith("1 × Karpathy JSON that disagrees") for line in report.findings())


def test_a_karpathy_json_of_another_dataset_is_reported_and_not_used(flickr30k_kaggle):
    root = flickr30k_kaggle()
    (root / "dataset_flickr8k.json").write_text(karpathy_json(_karpathy_splits()))
    corpus = load_corpus(root)
    assert corpus.split_source.startswith("seeded")
    (note,) = validate(corpus).karpathy_notes
    assert note.kind == "foreign_karpathy" and note.item == "dataset_flickr8k.json"
    assert "for flickr8k, not flickr30k; not used" in note.message


def test_a_karpathy_json_whose_dataset_field_names_another_dataset_is_not_used(flickr8k_official):
    root = flickr8k_official()
    splits = {n: "test" for n in FLICKR8K_IMAGES}
    (root / "dataset_flickr8k.json").write_text(karpathy_json(splits))  # says "flickr30k"
    corpus = load_corpus(root)
    assert corpus.split_source == "official Flickr8k split files"
    assert corpus.splits["test"].size == 0
    (note,) = validate(corpus).karpathy_notes
    assert note.kind == "foreign_karpathy"
    assert "says its dataset is 'flickr30k', not flickr8k" in note.message


def test_a_matching_karpathy_json_gives_no_note(flickr30k_kaggle):
    root = flickr30k_kaggle()
    (root / "dataset_flickr30k.json").write_text(json.dumps(_karpathy_like_the_csv()))
    corpus = load_corpus(root)
    assert corpus.split_source.startswith("karpathy")
    assert validate(corpus).karpathy_notes == ()


# ---------------------------------------------------------------- duplicate comment numbers


def test_results_csv_rows_with_the_same_comment_number_are_reported(flickr30k_kaggle):
    lines = results_csv_lines()
    lines.insert(3, "1000.jpg| 0| A completely different caption .")  # line 4
    report = validate(load_corpus(flickr30k_kaggle(lines)))
    (dup,) = report.duplicate_comments
    assert (dup.file, dup.line, dup.item) == ("results.csv", 4, "1000.jpg")
    assert "comment 0: has 'A completely different caption .' where line 2 has" in dup.message
    assert report.captions == 5 * len(FLICKR30K_IMAGES) + 1  # both kept
    assert any("same image and comment number" in line for line in report.findings())


def test_token_rows_with_the_same_number_are_reported(flickr8k_official):
    root = flickr8k_official()
    token = root / TEXT / "Flickr8k.token.txt"
    name = FLICKR8K_IMAGES[1]
    token.write_text(token.read_text() + f"{name}#3\tAnother third caption .\n")
    (dup,) = validate(load_corpus(root)).duplicate_comments
    assert (dup.item, dup.line) == (name, 46)
    assert f"where line {5 + 4} has" in dup.message
