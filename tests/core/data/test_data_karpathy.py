"""Karpathy JSON on its own: captions and splits from the JSON, restval -> train."""

from __future__ import annotations

import json

import pytest
from conftest import caption, karpathy_json, write_images

from xmr_utils.core.data import load_corpus
from xmr_utils.core.errors import XmrError

SPLITS = {"a.jpg": "train", "b.jpg": "restval", "c.jpg": "val", "d.jpg": "test"}


def _root(tmp_path, text: str):
    root = tmp_path / "karpathy"
    write_images(root / "images", SPLITS)
    (root / "dataset_flickr8k.json").write_text(text)
    return root


def test_captions_and_splits_come_from_the_json(tmp_path):
    corpus = load_corpus(_root(tmp_path, karpathy_json(SPLITS, sentences=3)))
    names = [p.name for p in corpus.image_files]
    assert corpus.name == "flickr8k"
    assert names == list(SPLITS) and corpus.n_captions == 12
    assert corpus.captions[3] == caption("b.jpg", 0)
    assert [names[i] for i in corpus.splits["train"]] == ["a.jpg", "b.jpg"]
    assert [names[i] for i in corpus.splits["val"]] == ["c.jpg"]
    assert [names[i] for i in corpus.splits["test"]] == ["d.jpg"]
    assert "restval -> train" in corpus.split_source


def test_coco_style_filepath_is_part_of_the_image_name(tmp_path):
    root = tmp_path / "coco"
    write_images(root, ["val2014/x.jpg"])
    entry = {"filepath": "val2014", "filename": "x.jpg", "split": "val"}
    entry["sentences"] = [{"raw": "A cat ."}]
    (root / "dataset_coco.json").write_text(json.dumps({"images": [entry]}))
    corpus = load_corpus(root)
    assert corpus.image_files[0] == (root / "val2014" / "x.jpg").resolve()
    assert corpus.splits["val"].tolist() == [0]


def test_invalid_json_names_file_and_line(tmp_path):
    with pytest.raises(XmrError, match=r"dataset_flickr8k\.json:2: not valid JSON"):
        load_corpus(_root(tmp_path, '{"images": [\n  oops]}'))


def test_unknown_split_value_names_the_entry(tmp_path):
    text = karpathy_json({**SPLITS, "d.jpg": "holdout"})
    with pytest.raises(XmrError, match=r"images\[3\] \(d\.jpg\) has split 'holdout'"):
        load_corpus(_root(tmp_path, text))


def test_missing_images_list_is_explained(tmp_path):
    with pytest.raises(XmrError, match=r"has no 'images' list"):
        load_corpus(_root(tmp_path, '{"dataset": "flickr8k"}'))
