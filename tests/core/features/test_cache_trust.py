"""A cache that cannot lie: keyed by dataset identity, adopted on upgrade, checksummed."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from feature_fakes import FakeImageEncoder, LoggingEncoder, make_corpus, read_log

from xmr_utils.core.errors import XmrError
from xmr_utils.core.features import (
    cache_paths,
    dataset_folder,
    fitted_text_encoder,
    image_features,
    import_vgg_feats_mat,
    read_manifest,
    text_features,
)
from xmr_utils.core.features import writer as feature_writer

ROOT = Path(__file__).resolve().parents[3]
LOGGER = "xmr_utils.core.features"


def legacy_entry(cache: Path, corpus, enc: FakeImageEncoder) -> Path:
    """What xmr wrote before dataset keys and checksums: ``cache/<name>/<stem>.npy`` and a
    manifest without checksums. Returns the array file."""
    folder = cache / corpus.name
    folder.mkdir(parents=True)
    feats = enc.encode_images(list(corpus.image_files))
    np.save(folder / "fake__pool.npy", feats)
    manifest = {
        "format": 1,
        "kind": "image",
        "spec": enc.spec,
        "weights_id": enc.weights_id(),
        "preprocessing": enc.preprocessing_id(),
        "dataset": {"name": corpus.name, "images": corpus.image_fingerprint()},
        "dtype": "float32",
        "shape": list(feats.shape),
        "extras": {},
        "created": "2026-11-30T10:00:00+0000",
        "xmr_version": "0.1.0",
        "origin": "extracted",
        "no_known_word": 0,
    }
    (folder / "fake__pool.manifest.json").write_text(json.dumps(manifest))
    return folder / "fake__pool.npy"


# ---------------------------------------------------------------- keyed by dataset identity


def test_two_folders_of_one_layout_never_evict_each_other(tmp_path: Path) -> None:
    """A full and a small folder of the same layout (same name) keep a cache each."""
    full = make_corpus(tmp_path / "full", n_images=7, name="flickr30k")
    small = make_corpus(tmp_path / "small", n_images=3, name="flickr30k")
    cache = tmp_path / "cache"
    first = image_features(full, "fake", cache, encoder=FakeImageEncoder(), progress=False)
    image_features(small, "fake", cache, encoder=FakeImageEncoder(), progress=False)
    again = FakeImageEncoder()
    np.testing.assert_array_equal(
        image_features(full, "fake", cache, encoder=again, progress=False), first
    )
    assert again.calls == []  # the small folder did not evict the full one
    assert dataset_folder(cache, full) != dataset_folder(cache, small)
    assert json.loads((dataset_folder(cache, full) / "dataset.json").read_text()) == {
        "name": "flickr30k",
        "root": str((tmp_path / "full").resolve()),
    }


def test_legacy_cache_is_adopted_not_reextracted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    old = legacy_entry(cache, corpus, FakeImageEncoder())
    old_manifest = old.with_name("fake__pool.manifest.json").read_text()
    caplog.set_level(logging.WARNING, logger=LOGGER)
    enc = FakeImageEncoder()
    feats = image_features(corpus, "fake", cache, encoder=enc, progress=False)
    assert enc.calls == []  # nothing re-extracted
    np.testing.assert_array_equal(feats, np.load(old))
    paths = cache_paths(cache, corpus, "fake:pool")
    assert paths.features.samefile(old)  # hard-linked: no second copy on disk
    manifest = read_manifest(paths.manifest)
    assert manifest["adopted_from"] == str(old)
    assert manifest["checksums"]["fake__pool.npy"].startswith("sha256:")
    assert "not verified against the original" in manifest["checksums_note"]
    assert "adopted" in caplog.text and str(old) in caplog.text
    assert old.with_name("fake__pool.manifest.json").read_text() == old_manifest  # untouched

    # a legacy entry of other images (another folder of that layout) is not adopted
    other = make_corpus(tmp_path / "other", n_images=5)
    enc = FakeImageEncoder()
    image_features(other, "fake", cache, encoder=enc, progress=False)
    assert len(enc.calls) == 1


def test_interrupted_extraction_of_the_old_layout_is_resumed(tmp_path: Path) -> None:
    """An earlier xmr was killed (or is still running) mid-extraction into cache/<name>/."""
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        image_features(
            corpus,
            "fake",
            cache,
            encoder=FakeImageEncoder(fail_after_calls=2),
            chunk_size=2,
            progress=False,
        )
    legacy = cache / corpus.name
    dataset_folder(cache, corpus).rename(legacy)  # where the old layout had it
    before = {p.name: p.read_bytes() for p in legacy.glob("*.partial.*")}
    enc = FakeImageEncoder()
    feats = image_features(corpus, "fake", cache, encoder=enc, chunk_size=2, progress=False)
    assert enc.calls == [["im04.jpg", "im05.jpg"], ["im06.jpg"]]  # only the rest
    reference = image_features(
        corpus, "fake", tmp_path / "ref", encoder=FakeImageEncoder(), progress=False
    )
    np.testing.assert_array_equal(feats, reference)
    assert {p.name: p.read_bytes() for p in legacy.glob("*.partial.*")} == before  # untouched


def test_same_images_in_another_folder_are_adopted(tmp_path: Path) -> None:
    """A copy of a dataset (same names and sizes) reuses the features of the original."""
    corpus = make_corpus(tmp_path / "a")
    image_features(corpus, "fake", tmp_path / "cache", encoder=FakeImageEncoder(), progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = make_corpus(tmp_path / "b")
    enc = FakeImageEncoder()
    image_features(copy, "fake", tmp_path / "cache", encoder=enc, progress=False)
    assert enc.calls == []


def test_fitted_text_model_is_adopted_with_its_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmr_utils.core.encoders.word_vectors import FastTextTrained

    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    opts = {"dim": 8, "epochs": 2, "min_count": 1}
    feats = text_features(corpus, "fasttext", cache, progress=False, **opts)
    legacy = cache / corpus.name
    dataset_folder(cache, corpus).rename(legacy)  # where the old layout had it
    (legacy / "dataset.json").unlink()

    def no_fit(self, captions):
        raise AssertionError("refitted instead of adopting the fitted model")

    monkeypatch.setattr(FastTextTrained, "fit", no_fit)
    np.testing.assert_array_equal(
        text_features(corpus, "fasttext", cache, progress=False, **opts), feats
    )
    stem = "fasttext__mean+dim=8+epochs=2+min_count=1"
    assert (dataset_folder(cache, corpus) / f"{stem}.model" / "fit.json").is_file()
    query = fitted_text_encoder(corpus, "fasttext", cache, **opts)
    np.testing.assert_allclose(
        query.encode_texts([corpus.captions[3]], progress=False)[0], feats[3], rtol=1e-6
    )


@pytest.mark.realdata
def test_real_flickr8k_cache_of_the_old_layout_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of a real cache written by the previous xmr (``data/features/flickr8k``)."""
    from xmr_utils.core.data import load_corpus

    source = Path(os.environ.get("XMR_LEGACY_FEATURES", ROOT / "data" / "features" / "flickr8k"))
    dataset = ROOT.parent / "shared" / "datasets" / "flickr8k"
    if not dataset.is_dir():
        dataset = ROOT.parents[1] / "shared" / "datasets" / "flickr8k"
    stem = "efficientnet_lite0__tta"
    if not (source / f"{stem}.manifest.json").is_file() or not dataset.is_dir():
        pytest.skip("no legacy Flickr8k cache or dataset here")
    corpus = load_corpus(dataset)
    legacy = tmp_path / "cache" / "flickr8k"
    legacy.mkdir(parents=True)
    for suffix in (".npy", ".manifest.json"):
        shutil.copy(source / f"{stem}{suffix}", legacy / f"{stem}{suffix}")
    if read_manifest(legacy / f"{stem}.manifest.json")["dataset"]["images"] != (
        corpus.image_fingerprint()
    ):
        pytest.skip("that cache was made from other Flickr8k images")

    def refuse(*args, **kwargs):
        raise AssertionError("re-extracted a valid legacy cache")

    monkeypatch.setattr(feature_writer, "_fill", refuse)
    feats = image_features(corpus, "efficientnet_lite0:tta", tmp_path / "cache", progress=False)
    assert feats.shape == (corpus.n_images, 1280)
    np.testing.assert_array_equal(feats, np.load(legacy / f"{stem}.npy"))
    assert read_manifest(
        cache_paths(tmp_path / "cache", corpus, "efficientnet_lite0:tta").manifest
    )["checksums"]


# ---------------------------------------------------------------- content checked on load


def zero_inside(path: Path, n_bytes: int = 100_000) -> None:
    """Overwrite ``n_bytes`` in the middle of ``path`` with zeros (the size is unchanged)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2 - n_bytes // 2)
        f.write(b"\0" * n_bytes)
    assert path.stat().st_size == size


def test_same_size_corruption_is_detected_and_reextracted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = make_corpus(tmp_path / "data", n_images=7)
    cache = tmp_path / "cache"
    wide = {"log": tmp_path / "calls.log", "dim": 4096}  # 7 x 4096 float32: 115 kB
    first = image_features(corpus, "fake", cache, encoder=LoggingEncoder(**wide), progress=False)
    paths = cache_paths(cache, corpus, "fake:pool")
    zero_inside(paths.features)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = image_features(corpus, "fake", cache, encoder=LoggingEncoder(**wide), progress=False)
    np.testing.assert_array_equal(again, first)
    assert len(read_log(tmp_path / "calls.log")) == 2  # extracted, then re-extracted
    assert f"re-extracting {paths.features}" in caplog.text
    assert "does not match the checksum" in caplog.text


@pytest.mark.parametrize("legacy", [False, True])
def test_nan_in_a_cache_is_reported_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, legacy: bool
) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    if legacy:
        path = legacy_entry(cache, corpus, FakeImageEncoder())
    else:
        image_features(corpus, "fake", cache, encoder=FakeImageEncoder(), progress=False)
        path = cache_paths(cache, corpus, "fake:pool").features
    arr = np.load(path)
    arr[3, 1] = np.nan
    np.save(path, arr)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    enc = FakeImageEncoder()
    feats = image_features(corpus, "fake", cache, encoder=enc, progress=False)
    assert np.isfinite(feats).all() and len(enc.calls) == 1
    assert f"{path} holds 1 NaN/inf values (rows [3]" in caplog.text


def test_checksum_of_an_old_manifest_is_recorded_once_then_verified(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = make_corpus(tmp_path / "data")
    cache = tmp_path / "cache"
    image_features(corpus, "fake", cache, encoder=FakeImageEncoder(), progress=False)
    paths = cache_paths(cache, corpus, "fake:pool")
    manifest = read_manifest(paths.manifest)
    recorded = manifest.pop("checksums")
    paths.manifest.write_text(json.dumps(manifest))  # as written before checksums
    caplog.set_level(logging.WARNING, logger=LOGGER)
    enc = FakeImageEncoder()
    image_features(corpus, "fake", cache, encoder=enc, progress=False)
    assert enc.calls == [] and "recorded its checksum now" in caplog.text
    upgraded = read_manifest(paths.manifest)
    assert upgraded["checksums"] == recorded
    assert "not verified against the original" in upgraded["checksums_note"]
    caplog.clear()
    image_features(corpus, "fake", cache, encoder=enc, progress=False)
    assert "recorded" not in caplog.text  # once


def test_damaged_imported_features_name_the_fix(tmp_path: Path) -> None:
    import scipy.io

    corpus = make_corpus(tmp_path / "data", n_images=2)
    scipy.io.savemat(tmp_path / "vgg_feats.mat", {"feats": np.ones((4096, 2))})
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"images": [{"filename": "im00.jpg"}, {"filename": "im01.jpg"}]}))
    path = import_vgg_feats_mat(tmp_path / "vgg_feats.mat", dataset, corpus, tmp_path / "cache")
    zero_inside(path, 8_000)
    vgg = FakeImageEncoder(spec="vgg16:fc7")  # stands in for VGG16: no weights are read
    with pytest.raises(XmrError, match=r"imported features .*vgg16__fc7\.npy cannot be used: .*"
                       r"checksum.*import_vgg_feats_mat"):  # fmt: skip
        image_features(corpus, "vgg16", tmp_path / "cache", encoder=vgg, progress=False)


def test_finished_cache_load_reads_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verified load costs one read of the file (np.load of a memory map, then copied)."""
    corpus = make_corpus(tmp_path / "data")
    image_features(corpus, "fake", tmp_path / "cache", encoder=FakeImageEncoder(), progress=False)
    opened: list[str] = []
    real_load = np.load

    def counting_load(file, *args, **kwargs):
        opened.append(Path(file).name)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    image_features(corpus, "fake", tmp_path / "cache", encoder=FakeImageEncoder(), progress=False)
    assert opened == ["fake__pool.npy"]
