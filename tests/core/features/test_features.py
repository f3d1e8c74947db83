"""The feature cache: extract once, reuse, re-extract when stale, resume after a kill."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from feature_fakes import CAPTIONS, FakeImageEncoder, FakeRegionEncoder, make_corpus
from PIL import Image

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features import (
    cache_paths,
    dataset_folder,
    fitted_text_encoder,
    image_features,
    import_vgg_feats_mat,
    read_manifest,
    region_features,
    text_features,
)


def test_extract_once_then_reuse(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    enc = FakeImageEncoder()
    feats = image_features(
        corpus, "fake", tmp_path / "cache", encoder=enc, chunk_size=3, progress=False
    )
    assert feats.shape == (7, 4) and feats.dtype == np.float32
    assert [len(c) for c in enc.calls] == [3, 3, 1]
    paths = cache_paths(tmp_path / "cache", corpus, "fake:pool")
    assert paths.features == dataset_folder(tmp_path / "cache", corpus) / "fake__pool.npy"
    manifest = read_manifest(paths.manifest)
    assert manifest is not None
    assert manifest["spec"] == "fake:pool" and manifest["weights_id"] == "fake.pth:0001"
    assert manifest["preprocessing"] == "mean rgb + width"
    assert manifest["dataset"] == {"name": "tiny", "images": corpus.image_fingerprint()}
    assert manifest["dtype"] == "float32" and manifest["shape"] == [7, 4]
    assert manifest["created"] and manifest["xmr_version"]
    assert not paths.progress.exists() and not paths.array(None, partial=True).exists()

    again = FakeImageEncoder()
    np.testing.assert_array_equal(
        image_features(corpus, "fake", tmp_path / "cache", encoder=again, progress=False), feats
    )
    assert again.calls == []


def test_stale_manifest_reextracts_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    image_features(corpus, "fake", cache, encoder=FakeImageEncoder(), progress=False)
    caplog.set_level(logging.WARNING, logger="xmr_utils.core.features")
    newer = FakeImageEncoder(weights="fake.pth:0002")
    image_features(corpus, "fake", cache, encoder=newer, progress=False)
    assert len(newer.calls) == 1
    assert "because weights_id changed ('fake.pth:0001' -> 'fake.pth:0002')" in caplog.text
    assert (
        read_manifest(cache_paths(cache, corpus, "fake:pool").manifest)["weights_id"]
        == "fake.pth:0002"
    )

    # an image changes on disk -> the dataset fingerprint changes
    Image.new("RGB", (300, 200), (1, 2, 3)).save(corpus.image_files[2])
    caplog.clear()
    enc = FakeImageEncoder(weights="fake.pth:0002")
    feats = image_features(corpus, "fake", cache, encoder=enc, progress=False)
    assert len(enc.calls) == 1 and "because dataset changed" in caplog.text
    assert feats[2, 3] == 300


@pytest.mark.parametrize("damage", ["manifest_junk", "manifest_missing", "npy_truncated"])
def test_damaged_cache_is_reextracted(tmp_path: Path, damage: str) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    first = image_features(corpus, "fake", cache, encoder=FakeImageEncoder(), progress=False)
    paths = cache_paths(cache, corpus, "fake:pool")
    if damage == "manifest_junk":
        paths.manifest.write_text("{not json")
    elif damage == "manifest_missing":
        paths.manifest.unlink()
    else:
        paths.features.write_bytes(paths.features.read_bytes()[:100])
    enc = FakeImageEncoder()
    np.testing.assert_array_equal(
        image_features(corpus, "fake", cache, encoder=enc, progress=False), first
    )
    assert len(enc.calls) == 1


def test_killed_extraction_resumes_from_last_finished_chunk(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    reference = image_features(
        corpus, "fake", tmp_path / "ref", encoder=FakeImageEncoder(), chunk_size=2, progress=False
    )
    cache = tmp_path / "cache"
    killed = FakeImageEncoder(fail_after_calls=2)
    with pytest.raises(KeyboardInterrupt):
        image_features(corpus, "fake", cache, encoder=killed, chunk_size=2, progress=False)
    paths = cache_paths(cache, corpus, "fake:pool")
    assert not paths.features.exists() and not paths.manifest.exists()
    assert json.loads(paths.progress.read_text())["done"] == 4

    resumed = FakeImageEncoder()
    feats = image_features(corpus, "fake", cache, encoder=resumed, chunk_size=2, progress=False)
    assert resumed.calls == [["im04.jpg", "im05.jpg"], ["im06.jpg"]]  # only the rest
    np.testing.assert_array_equal(feats, reference)
    np.testing.assert_array_equal(np.load(paths.features), reference)
    assert not paths.progress.exists() and not paths.array(None, partial=True).exists()


def test_partial_from_another_encoder_is_not_resumed(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        image_features(
            corpus,
            "fake",
            cache,
            encoder=FakeImageEncoder(fail_after_calls=1),
            chunk_size=3,
            progress=False,
        )
    other = FakeImageEncoder(weights="fake.pth:0009")
    image_features(corpus, "fake", cache, encoder=other, chunk_size=3, progress=False)
    assert [len(c) for c in other.calls] == [3, 3, 1]  # started over


def test_bad_encoder_output_is_refused(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=2)

    class NaNs(FakeImageEncoder):
        def encode_images(self, paths, **kwargs):
            return np.full((len(paths), 4), np.nan, np.float32)

    with pytest.raises(XmrError, match="NaN/inf features for items 0:2"):
        image_features(corpus, "fake", tmp_path / "c", encoder=NaNs(), progress=False)

    class Narrow(FakeImageEncoder):
        def encode_images(self, paths, **kwargs):
            return np.zeros((len(paths), 3), np.float32)

    with pytest.raises(XmrError, match=r"returned \(2, 3\) for items 0:2, expected \(2, 4\)"):
        image_features(corpus, "fake", tmp_path / "c", encoder=Narrow(), progress=False)


def test_region_outputs_are_cached_beside(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=3)
    enc = FakeRegionEncoder(spec="fakeregions:regions")
    out = region_features(corpus, tmp_path / "cache", encoder=enc, chunk_size=2, progress=False)
    assert out["pooled"].shape == (3, 4) and out["regions"].shape == (3, 3, 4)
    assert out["counts"].dtype == np.int32 and out["counts"].tolist() == [3, 3, 3]
    np.testing.assert_array_equal(out["regions"][:, 1], out["pooled"])
    manifest = read_manifest(
        cache_paths(tmp_path / "cache", corpus, "fakeregions:regions").manifest
    )
    assert manifest["extras"]["regions"] == [[3, 3, 4], "float32"]
    with pytest.raises(XmrError, match="has no per-region outputs"):
        region_features(corpus, tmp_path / "cache", encoder=FakeImageEncoder(), progress=False)


def test_efficientnet_lite0_through_the_cache(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=3)
    feats = image_features(
        corpus, "efficientnet_lite0", tmp_path / "cache", num_workers=0, progress=False
    )
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    folder = dataset_folder(tmp_path / "cache", corpus)
    manifest = read_manifest(folder / "efficientnet_lite0__pool.manifest.json")
    assert manifest["weights_id"].startswith("efficientnet-lite0-57934424.pth:")


def test_concatenated_image_spec_puts_cached_features_side_by_side(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=3)
    cache = tmp_path / "cache"
    both = image_features(
        corpus, "efficientnet_lite0+efficientnet_lite0:tta", cache, num_workers=0, progress=False
    )
    pool = image_features(corpus, "efficientnet_lite0", cache, num_workers=0, progress=False)
    tta = image_features(corpus, "efficientnet_lite0:tta", cache, num_workers=0, progress=False)
    assert both.shape == (3, 2560)
    np.testing.assert_array_equal(both, np.concatenate([pool, tta], axis=1))
    assert not np.allclose(pool, tta)  # the two views differ
    assert sorted(p.name for p in dataset_folder(cache, corpus).glob("*.npy")) == [
        "efficientnet_lite0__pool.npy",
        "efficientnet_lite0__tta.npy",
    ]
    for bad, words in (
        ("efficientnet_lite0+", "empty part"),
        ("efficientnet_lite0+efficientnet_lite0", "same encoder twice"),
    ):
        with pytest.raises(XmrError, match=words):
            image_features(corpus, bad, cache, progress=False)


def test_text_features_glove_counts_captions_without_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = make_corpus(tmp_path / "data")
    caplog.set_level(logging.WARNING, logger="xmr_utils.core.features")
    feats = text_features(corpus, "glove", tmp_path / "cache", chunk_size=5, progress=False)
    assert feats.shape == (14, 50) and feats.dtype == np.float32 and not np.isnan(feats).any()
    assert not feats[12:].any() and feats[:12].any(axis=1).all()
    folder = dataset_folder(tmp_path / "cache", corpus)
    manifest = read_manifest(folder / "glove__mean.manifest.json")
    assert manifest["no_known_word"] == 2
    assert manifest["dataset"] == {"name": "tiny", "captions": corpus.caption_fingerprint()}
    assert "2 of 14 captions have no known word" in caplog.text

    changed = make_corpus(tmp_path / "data", captions=("a cat sleeps", *CAPTIONS[1:]))
    caplog.clear()
    again = text_features(changed, "glove", tmp_path / "cache", progress=False)
    assert "because dataset changed" in caplog.text
    assert not np.allclose(again[0], feats[0]) and np.allclose(again[1:], feats[1:])


FT = {"dim": 8, "epochs": 2, "min_count": 1}


def test_fasttext_fits_on_train_split_only_and_serves_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmr_utils.core.encoders.word_vectors import FastTextTrained

    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    seen: list[list[str]] = []
    original_fit = FastTextTrained.fit

    def spy(self, captions):
        seen.append(list(captions))
        original_fit(self, captions)

    monkeypatch.setattr(FastTextTrained, "fit", spy)
    feats = text_features(corpus, "fasttext", cache, progress=False, **FT)
    assert seen == [list(CAPTIONS[:8])]  # images 0-3 are the training split
    assert feats.shape == (14, 8)
    manifest = read_manifest(
        dataset_folder(cache, corpus) / "fasttext__mean+dim=8+epochs=2+min_count=1.manifest.json"
    )
    assert manifest["dataset"]["splits"] == corpus.split_fingerprint()
    model_dir = dataset_folder(cache, corpus) / "fasttext__mean+dim=8+epochs=2+min_count=1.model"
    assert (model_dir / "fasttext.json").is_file()

    def no_refit(self, captions):
        raise AssertionError("refitted instead of loading the saved model")

    monkeypatch.setattr(FastTextTrained, "fit", no_refit)
    enc = fitted_text_encoder(corpus, "fasttext", cache, **FT)
    np.testing.assert_allclose(
        enc.encode_texts([CAPTIONS[9]], progress=False)[0], feats[9], rtol=1e-6
    )
    assert "zebras" not in enc._wv.key_to_index  # a test-split word was not trained on
    assert "dog" in enc._wv.key_to_index

    # another split -> the model is refitted and the features re-extracted
    monkeypatch.setattr(FastTextTrained, "fit", spy)
    resplit = CaptionCorpus(
        corpus.name,
        corpus.root,
        corpus.image_files,
        corpus.captions,
        corpus.owner,
        {"train": [0, 1, 2, 4], "val": [3, 5], "test": [6]},
    )
    text_features(resplit, "fasttext", cache, progress=False, **FT)
    assert seen[-1] == [CAPTIONS[i] for i in (0, 1, 2, 3, 4, 5, 8, 9)]


def write_mat(tmp_path: Path, names: list[str], feats: np.ndarray) -> tuple[Path, Path]:
    import scipy.io

    mat = tmp_path / "vgg_feats.mat"
    scipy.io.savemat(mat, {"feats": feats})
    dataset = tmp_path / "dataset.json"
    dataset.write_text(
        json.dumps({"images": [{"filename": n, "split": "train", "sentences": []} for n in names]})
    )
    return mat, dataset


def test_import_vgg_feats_mat_becomes_the_vgg16_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no VGG16 weights
    corpus = make_corpus(tmp_path / "data", n_images=4)
    names = ["other.jpg", "im03.jpg", "im01.jpg", "im00.jpg", "im02.jpg"]
    rng = np.random.default_rng(0)
    feats = rng.random((4096, 5)).astype(np.float64)
    mat, dataset = write_mat(tmp_path, names, feats)
    path = import_vgg_feats_mat(mat, dataset, corpus, tmp_path / "cache")
    assert path == dataset_folder(tmp_path / "cache", corpus) / "vgg16__fc7.npy"
    got = image_features(corpus, "vgg16", tmp_path / "cache", progress=False)
    assert got.dtype == np.float32 and got.shape == (4, 4096)
    np.testing.assert_allclose(got, feats[:, [3, 2, 4, 1]].T.astype(np.float32))
    manifest = read_manifest(path.with_name("vgg16__fc7.manifest.json"))
    assert manifest["origin"] == "imported" and manifest["weights_id"].startswith("vgg_feats.mat:")

    # images of another dataset: the cache no longer matches and VGG16 weights are needed
    other = make_corpus(tmp_path / "data", n_images=5)
    with pytest.raises(XmrError, match=r"vgg16-397923af\.pth"):
        image_features(other, "vgg16", tmp_path / "cache", progress=False)


def test_import_vgg_feats_mat_errors(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=2)
    mat, dataset = write_mat(tmp_path, ["im00.jpg", "x.jpg"], np.ones((4096, 2)))
    with pytest.raises(XmrError, match=r"1 of 2 images of tiny \(e\.g\. im01\.jpg\) are not in"):
        import_vgg_feats_mat(mat, dataset, corpus, tmp_path / "cache")
    mat, dataset = write_mat(tmp_path, ["im00.jpg", "im01.jpg", "x.jpg"], np.ones((4096, 2)))
    with pytest.raises(XmrError, match="has 2 feature columns but .* lists 3 images"):
        import_vgg_feats_mat(mat, dataset, corpus, tmp_path / "cache")
    import scipy.io

    scipy.io.savemat(tmp_path / "wrong.mat", {"features": np.ones((2, 2))})
    with pytest.raises(XmrError, match="has no variable 'feats'"):
        import_vgg_feats_mat(tmp_path / "wrong.mat", dataset, corpus, tmp_path / "cache")


def test_corrupt_jpeg_mid_extraction_names_it_and_keeps_finished_chunks(tmp_path: Path) -> None:
    """The real bundled encoder meets a corrupt file in the third chunk: the error names the
    file, the two finished chunks stay on disk, and after the fix only the rest is encoded."""
    corpus = make_corpus(tmp_path / "data")
    good = corpus.image_files[5].read_bytes()
    corpus.image_files[5].write_bytes(b"this is not a jpeg")
    cache = tmp_path / "cache"
    with pytest.raises(XmrError, match="im05.jpg"):
        image_features(corpus, "efficientnet_lite0", cache, chunk_size=2, progress=False)
    paths = cache_paths(cache, corpus, "efficientnet_lite0:pool")  # the canonical spec
    assert json.loads(paths.progress.read_text())["done"] == 4 and not paths.features.exists()

    corpus.image_files[5].write_bytes(good)
    feats = image_features(corpus, "efficientnet_lite0", cache, chunk_size=2, progress=False)
    reference = image_features(
        corpus, "efficientnet_lite0", tmp_path / "ref", chunk_size=7, progress=False
    )
    np.testing.assert_allclose(feats, reference, atol=1e-4)
