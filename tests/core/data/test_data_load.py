"""load_corpus: names vs paths, layout detection and its errors, argument checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLICKR8K_IMAGES, write_images, write_text

from xmr_utils.core.data import CaptionCorpus, load_corpus
from xmr_utils.core.errors import XmrError


def test_unknown_on_missing_lists_the_accepted_values(flickr30k_kaggle):
    with pytest.raises(XmrError, match=r"unknown on_missing 'skip'; accepted: drop, error"):
        load_corpus(flickr30k_kaggle(), on_missing="skip")


def test_nonexistent_path_names_it(tmp_path):
    with pytest.raises(XmrError, match=r"'.*nowhere' is neither a folder that exists"):
        load_corpus(str(tmp_path / "nowhere"))


def test_a_file_instead_of_a_folder_points_at_the_folder(flickr30k_kaggle):
    root = flickr30k_kaggle()
    with pytest.raises(XmrError, match=r"results\.csv is a file; pass the dataset folder"):
        load_corpus(root / "results.csv")


def test_folder_without_a_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(XmrError, match=r"no known dataset layout; looked for results\.csv") as err:
        load_corpus(tmp_path)
    for wanted in ("Flickr8k.token.txt", "captions.txt", "dataset_flickr30k.json"):
        assert wanted in str(err.value)


def test_two_layouts_in_one_folder_is_ambiguous(flickr30k_kaggle):
    root = flickr30k_kaggle()
    write_images(root / "Images", FLICKR8K_IMAGES[:1])
    write_text(root / "captions.txt", ["image,caption", f"{FLICKR8K_IMAGES[0]},A cat ."])
    with pytest.raises(
        XmrError, match=r"more than one dataset layout \(flickr30k_kaggle, flickr8k_kaggle\)"
    ):
        load_corpus(root)


def test_two_karpathy_files_are_ambiguous(tmp_path):
    for name in ("dataset_flickr8k.json", "dataset_coco.json"):
        (tmp_path / name).write_text('{"images": []}')
    with pytest.raises(XmrError, match=r"several Karpathy files"):
        load_corpus(tmp_path)


def test_caption_file_without_image_folder_says_where_images_go(tmp_path):
    write_text(tmp_path / "results.csv", ["image_name| comment_number| comment"])
    with pytest.raises(XmrError, match=r"has results\.csv but no image folder \(flickr30k_images"):
        load_corpus(tmp_path)


def test_named_dataset_is_read_from_data_dir(flickr30k_kaggle, tmp_path):
    flickr30k_kaggle(name="flickr30k")
    corpus = load_corpus("flickr30k", data_dir=tmp_path)
    assert isinstance(corpus, CaptionCorpus)
    assert corpus.name == "flickr30k" and corpus.n_images == 9
    assert corpus.root == (tmp_path / "flickr30k").resolve()


def test_named_dataset_absent_from_data_dir_says_where_to_put_it(tmp_path):
    with pytest.raises(XmrError, match=r"dataset folder .*flickr8k does not exist; put flickr8k"):
        load_corpus("flickr8k", data_dir=tmp_path)


def test_synthetic_name_generates_once_under_data_dir(tmp_path):
    corpus = load_corpus("synthetic", data_dir=tmp_path, synthetic_images=20, split_seed=3)
    assert corpus.name == "synthetic_20_s3"
    assert corpus.root == (tmp_path / "synthetic_20_s3").resolve()
    assert corpus.n_images == 20 and corpus.n_captions == 100
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 16, "val": 2, "test": 2}
    assert corpus.split_source == "seeded (seed=3), not the Karpathy split"
    stamp = (tmp_path / "synthetic_20_s3" / "results.csv").stat().st_mtime_ns
    again = load_corpus("synthetic", data_dir=tmp_path, synthetic_images=20, split_seed=3)
    assert again.caption_fingerprint() == corpus.caption_fingerprint()
    assert (tmp_path / "synthetic_20_s3" / "results.csv").stat().st_mtime_ns == stamp


def test_path_to_a_synthetic_folder_is_named_after_the_folder(tmp_path):
    from xmr_utils.core.data import generate

    root = generate(tmp_path / "my_shapes", 6, seed=1)
    assert load_corpus(Path(root)).name == "my_shapes"


def test_invalid_utf8_names_file_and_line(flickr30k_kaggle):
    root = flickr30k_kaggle()
    data = (root / "results.csv").read_bytes().replace(b"Caption 2 of image 1001", b"Caption \xff")
    (root / "results.csv").write_bytes(data)
    with pytest.raises(XmrError, match=r"results\.csv:9: byte 0xff is not valid UTF-8"):
        load_corpus(root)


def test_importing_the_package_is_cheap():
    code = (
        "import sys, xmr_utils.core.data; "
        "print(sorted(m for m in ('PIL', 'pandas', 'torch') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
