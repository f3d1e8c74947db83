"""Flickr8k official and Kaggle layouts: stray entries, split files, CSV quoting."""

from __future__ import annotations

import pytest
from conftest import FLICKR8K_IMAGES, STRAY, caption, write_images, write_text

from xmr_utils.core.data import load_corpus, validate
from xmr_utils.core.errors import XmrError


@pytest.mark.parametrize(("crlf", "bom"), [(False, False), (True, True)])
def test_official_layout_with_stray_entries_and_no_test_file(flickr8k_official, crlf, bom):
    corpus = load_corpus(flickr8k_official(crlf=crlf, bom=bom))
    names = [p.name for p in corpus.image_files]
    assert corpus.name == "flickr8k"
    assert names == list(FLICKR8K_IMAGES)
    assert corpus.n_captions == 5 * len(FLICKR8K_IMAGES)
    assert corpus.captions[0] == caption(FLICKR8K_IMAGES[0], 0)
    assert not any("stray" in c for c in corpus.captions)
    assert [names[i] for i in corpus.splits["train"]] == list(FLICKR8K_IMAGES[:5])
    assert [names[i] for i in corpus.splits["val"]] == list(FLICKR8K_IMAGES[5:])
    assert corpus.splits["test"].size == 0
    assert corpus.split_source == "official Flickr8k split files"
    report = validate(corpus)
    strays = [e for e in report.rows_skipped if e.kind == "stray_entry"]
    assert [e.line for e in strays] == [21, 22, 23, 24, 25]
    assert {e.item for e in strays} == {STRAY + ".1"}
    kinds = {(e.kind, e.file, e.item) for e in report.other_events}
    text, test_file = "Flickr8k_text/", "Flickr_8k.testImages.txt"
    assert ("missing_split_file", text + test_file, test_file) in kinds
    assert ("split_without_captions", text + "Flickr_8k.trainImages.txt", STRAY) in kinds
    assert report.ok


def test_present_but_empty_test_file_gives_an_empty_split_without_a_note(flickr8k_official):
    corpus = load_corpus(flickr8k_official(with_test=True))
    assert corpus.splits["test"].size == 0
    assert not [e for e in corpus.events if e.kind == "missing_split_file"]


def test_alternative_image_folder_name(flickr8k_official):
    corpus = load_corpus(flickr8k_official(image_folder="Flickr8k_Dataset"))
    assert corpus.image_files[0].parent.name == "Flickr8k_Dataset"


def test_image_listed_only_in_a_split_file_and_missing_fails_with_file_and_line(flickr8k_official):
    root = flickr8k_official(extra_train=["404_gone.jpg"])
    where = r"'404_gone\.jpg' \(Flickr8k_text/Flickr_8k\.trainImages\.txt:7\)"
    with pytest.raises(XmrError, match=where):
        load_corpus(root)
    corpus = load_corpus(root, on_missing="drop")
    assert validate(corpus).missing_images == ("404_gone.jpg",)


def test_malformed_token_row_fails_with_line(flickr8k_official):
    root = flickr8k_official()
    token = root / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = token.read_text().splitlines()
    lines[2] = "no_hash_here.jpg\tA caption ."
    token.write_text("\n".join(lines) + "\n")
    with pytest.raises(XmrError, match=r"Flickr8k\.token\.txt:3: caption id 'no_hash_here\.jpg'"):
        load_corpus(root)


def test_token_row_with_spaces_instead_of_tab_is_repaired(flickr8k_official):
    root = flickr8k_official()
    token = root / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = token.read_text().splitlines()
    lines[1] = lines[1].replace("\t", "   ")
    token.write_text("\n".join(lines) + "\n")
    corpus = load_corpus(root)
    assert corpus.captions[1] == caption(FLICKR8K_IMAGES[0], 1)
    assert [e.line for e in validate(corpus).rows_fixed] == [2]


def test_kaggle_layout_handles_quotes_and_commas(flickr8k_kaggle):
    corpus = load_corpus(flickr8k_kaggle(crlf=True, bom=True))
    assert corpus.name == "flickr8k"
    assert corpus.n_images == 3 and corpus.n_captions == 15
    assert corpus.captions[0] == caption(FLICKR8K_IMAGES[0], 0)
    assert corpus.captions[4] == 'A "quoted" word, and a comma .'
    assert corpus.split_source.startswith("seeded (seed=0)")


def test_kaggle_unquoted_commas_are_rejoined_and_reported(flickr8k_kaggle):
    lines = ["image,caption", f"{FLICKR8K_IMAGES[0]},A dog , a cat , and a bird ."]
    lines += [f"{n},Something ." for n in FLICKR8K_IMAGES[1:3]]
    corpus = load_corpus(flickr8k_kaggle(lines))
    assert corpus.captions[0] == "A dog , a cat , and a bird ."
    (fixed,) = validate(corpus).rows_fixed
    assert (fixed.file, fixed.line) == ("captions.txt", 2)


def test_kaggle_wrong_header_and_bad_row_name_the_file(flickr8k_kaggle):
    with pytest.raises(XmrError, match=r"captions\.txt:1: expected the header 'image,caption'"):
        load_corpus(flickr8k_kaggle(["name,text", f"{FLICKR8K_IMAGES[0]},x"]))


def test_kaggle_row_without_caption_fails_with_line(flickr8k_kaggle, tmp_path):
    lines = ["image,caption", f"{FLICKR8K_IMAGES[0]},A dog .", FLICKR8K_IMAGES[1]]
    with pytest.raises(XmrError, match=r"captions\.txt:3: row .* is not 'image,caption'"):
        load_corpus(flickr8k_kaggle(lines))


def test_token_file_at_root_with_split_files_beside_it(tmp_path):
    root = tmp_path / "flat"
    write_images(root / "Flicker8k_Dataset", FLICKR8K_IMAGES[:2])
    write_text(root / "Flickr8k.token.txt", [f"{n}#0\tA thing ." for n in FLICKR8K_IMAGES[:2]])
    write_text(root / "Flickr_8k.trainImages.txt", FLICKR8K_IMAGES[:1])
    write_text(root / "Flickr_8k.devImages.txt", FLICKR8K_IMAGES[1:2])
    corpus = load_corpus(root)
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 1, "val": 1, "test": 0}
