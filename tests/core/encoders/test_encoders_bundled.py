"""The bundled offline encoders: efficientnet_lite0, minilm, glove and trained fasttext."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from xmr_utils.core.encoders import build_image_encoder, build_text_encoder, tokenize
from xmr_utils.core.errors import XmrError

CAPTIONS = (
    "A brown dog runs across the green grass .",
    "Two children are playing football in a park",
    "A man rides a red bicycle down the street.",
    "A woman in a blue dress sits on a bench",
    "A black dog jumps over a log in the park",
    "Children swim in the blue lake",
)


def draw_jpegs(folder: Path, n: int, size: tuple[int, int] = (120, 90)) -> list[Path]:
    """``n`` distinct JPEGs: coloured background with a coloured ellipse."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
        w, h = size
        ImageDraw.Draw(img).ellipse(
            (w // 5, h // 5, w - w // 4, h - h // 6),
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
        path = folder / f"img_{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lite0():
    return build_image_encoder("efficientnet_lite0")


def test_efficientnet_lite0_features(tmp_path: Path, lite0) -> None:
    paths = draw_jpegs(tmp_path, 5, size=(120, 90))
    paths.append(draw_jpegs(tmp_path / "big", 1, size=(500, 375))[0])
    feats = lite0.encode_images(paths, batch_size=4, num_workers=0, progress=False)
    assert feats.shape == (6, 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert (feats.std(axis=0) > 0).any()  # different images give different features
    assert not np.allclose(feats[0], feats[1])
    again = lite0.encode_images(paths[::-1], batch_size=3, num_workers=2, progress=False)
    np.testing.assert_allclose(again[::-1], feats, rtol=1e-4, atol=1e-4)
    assert lite0.weights_id().startswith("efficientnet-lite0-57934424.pth:")
    assert "crop=224" in lite0.preprocessing_id()


def test_efficientnet_lite0_loads_the_bundled_imagenet_weights(tmp_path: Path, lite0) -> None:
    import torch

    from xmr_utils.core.encoders.efficientnet import EfficientNetLite0, bundled_weights

    state = torch.load(bundled_weights(), map_location="cpu", weights_only=True)
    plain = EfficientNetLite0(optimize=False)
    module = plain.module("cpu")
    torch.testing.assert_close(
        module.net._conv_stem.weight.contiguous(), state["_conv_stem.weight"]
    )
    torch.testing.assert_close(module.net._bn1.running_var, state["_bn1.running_var"])
    # the folded-BatchNorm module used by default computes the same features
    paths = draw_jpegs(tmp_path, 3)
    np.testing.assert_allclose(
        lite0.encode_images(paths, num_workers=0, progress=False),
        plain.encode_images(paths, num_workers=0, progress=False),
        rtol=1e-4,
        atol=1e-4,
    )


def test_tta_view_sees_the_whole_square_and_is_mirror_symmetric(tmp_path: Path) -> None:
    from PIL import ImageOps

    tta = build_image_encoder("efficientnet_lite0:tta")
    assert tta.spec == "efficientnet_lite0:tta"
    assert "short=224 crop=224" in tta.preprocessing_id()  # nothing cropped from a square
    (path,) = draw_jpegs(tmp_path / "a", 1, size=(224, 224))
    mirrored = tmp_path / "mirrored.png"  # lossless, so the mirror is exact
    with Image.open(path) as img:
        img.save(tmp_path / "orig.png")
        ImageOps.mirror(img).save(mirrored)
    feats = tta.encode_images([tmp_path / "orig.png", mirrored], num_workers=0, progress=False)
    np.testing.assert_allclose(feats[0], feats[1], rtol=1e-4, atol=1e-4)
    pool = build_image_encoder("efficientnet_lite0").encode_images(
        [tmp_path / "orig.png", mirrored], num_workers=0, progress=False
    )
    assert not np.allclose(pool[0], pool[1], atol=1e-3)  # one view alone is not symmetric


@pytest.mark.parametrize(
    ("model", "side"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
)
def test_larger_lite_models_load_their_bundled_weights(
    tmp_path: Path, model: str, side: int
) -> None:
    import torch

    from xmr_utils.core.encoders.efficientnet import LITE_MODELS

    encoder = build_image_encoder(model)
    assert encoder.weights_id().startswith(model.replace("_", "-") + "-")
    assert f"crop={side}" in encoder.preprocessing_id()
    state = torch.load(LITE_MODELS[model].bundled_weights(), map_location="cpu", weights_only=True)
    assert state["_conv_head.weight"].shape[0] == 1280
    feats = encoder.encode_images(draw_jpegs(tmp_path, 2), num_workers=0, progress=False)
    assert feats.shape == (2, 1280) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    with pytest.raises(XmrError, match="accepted: pool, tta"):
        build_image_encoder(f"{model}:grid")


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_jpeg_names_the_file(tmp_path: Path, lite0, workers: int) -> None:
    paths = draw_jpegs(tmp_path, 3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 3])  # truncated JPEG
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    with pytest.raises(XmrError, match=r"cannot decode image .*img_001\.jpg"):
        lite0.encode_images(paths, batch_size=2, num_workers=workers, progress=False)
    with pytest.raises(XmrError, match=r"cannot decode image .*not_an_image\.jpg"):
        lite0.encode_images([paths[0], bad], batch_size=1, num_workers=workers, progress=False)


def test_negative_workers_refused(tmp_path: Path, lite0) -> None:
    with pytest.raises(XmrError, match="num_workers=-1"):
        lite0.encode_images(draw_jpegs(tmp_path, 1), num_workers=-1, progress=False)


def test_minilm_mean_and_cls() -> None:
    texts = [*CAPTIONS, ""]
    mean = build_text_encoder("minilm")
    feats = mean.encode_texts(texts, batch_size=3, progress=False)
    assert feats.shape == (7, 384) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats[:-1], axis=1), 1.0, atol=1e-5)
    assert not np.isnan(feats).any() and not feats[-1].any()
    assert mean.last_report.n_no_known_word == 1 and mean.last_report.examples == (6,)
    # batching and length-sorting do not change a caption's vector
    single = mean.encode_texts([CAPTIONS[2]], progress=False)
    np.testing.assert_allclose(single[0], feats[2], atol=1e-5)
    # the two dog captions are closer to each other than to the bicycle caption
    assert feats[0] @ feats[4] > feats[0] @ feats[2]
    cls = build_text_encoder("minilm:cls").encode_texts(CAPTIONS[:2], progress=False)
    assert cls.shape == (2, 384) and not np.allclose(cls, feats[:2], atol=1e-3)
    assert mean.weights_id().startswith("model.safetensors:")


def test_tokenize() -> None:
    assert tokenize("A dog's TOY, 2 balls!") == ["a", "dog", "s", "toy", "2", "balls"]
    assert tokenize("  ...  ") == []


def test_glove_mean_sum_and_unknown_words() -> None:
    texts = ["the dog", "dog the zzzqqxx", "zzzqqxx", ""]
    mean = build_text_encoder("glove")
    m = mean.encode_texts(texts, progress=False)
    s = build_text_encoder("glove:sum").encode_texts(texts, progress=False)
    assert m.shape == (4, 50) and m.dtype == np.float32
    np.testing.assert_allclose(m[0], m[1], atol=1e-6)  # the unknown word is skipped
    np.testing.assert_allclose(s[0], 2 * m[0], atol=1e-5)
    assert not m[2:].any() and not np.isnan(m).any()
    assert mean.last_report.n_no_known_word == 2 and mean.last_report.examples == (2, 3)
    seqs = mean.encode_token_sequences(texts)
    assert [len(q) for q in seqs] == [2, 2, 0, 0]
    assert "2 of 4 captions have no known word" in mean.last_report.message()


def test_fasttext_trained_is_deterministic_and_handles_oov(tmp_path: Path) -> None:
    a = build_text_encoder("fasttext", dim=16, epochs=3, min_count=1)
    b = build_text_encoder("fasttext", dim=16, epochs=3, min_count=1)
    assert a.needs_fit
    with pytest.raises(XmrError, match="not been fitted"):
        a.encode_texts(["a dog"], progress=False)
    a.fit(CAPTIONS * 4)
    b.fit(CAPTIONS * 4)
    queries = ["a dog runs", "a doggies runs", "", "!!!"]
    fa = a.encode_texts(queries, progress=False)
    np.testing.assert_array_equal(fa, b.encode_texts(queries, progress=False))
    assert fa.shape == (4, 16) and fa.dtype == np.float32
    assert np.abs(fa[1]).sum() > 0  # "doggies" is out of vocabulary: built from n-grams
    assert not fa[2:].any() and a.last_report.n_no_known_word == 2
    summed = build_text_encoder("fasttext:sum", dim=16, epochs=3, min_count=1)
    summed.fit(CAPTIONS * 4)
    np.testing.assert_allclose(
        summed.encode_texts(queries[:1], progress=False)[0], 3 * fa[0], rtol=1e-5, atol=1e-6
    )
    a.save(tmp_path / "ft")
    c = build_text_encoder("fasttext", dim=16, epochs=3, min_count=1)
    c.load(tmp_path / "ft")
    np.testing.assert_array_equal(c.encode_texts(queries, progress=False), fa)
    other = build_text_encoder("fasttext", dim=16, epochs=4, min_count=1)
    with pytest.raises(XmrError, match="trained with"):
        other.load(tmp_path / "ft")


def test_fasttext_same_vectors_across_interpreters(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np; from xmr_utils.core.encoders import build_text_encoder as b; "
        f"e = b('fasttext', dim=8, epochs=2, min_count=1); e.fit({list(CAPTIONS)!r}); "
        "np.save(sys.argv[1], e.encode_texts(['a dog in the park'], progress=False))"
    )
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"v{seed}.npy"
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        outs.append(np.load(out))
    np.testing.assert_array_equal(*outs)


def test_fasttext_training_needs_words() -> None:
    enc = build_text_encoder("fasttext")
    with pytest.raises(XmrError, match="no caption with a word"):
        enc.fit(["", "..."])
    with pytest.raises(XmrError, match="min_count=50"):
        build_text_encoder("fasttext", min_count=50).fit(CAPTIONS)


def test_fasttext_pretrained_vec_and_bin(tmp_path: Path) -> None:
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    vec = tmp_path / "tiny.vec"
    vec.write_text("3 2\ndog 1 0\npark 0 1\nthe 1 1\n")
    enc = build_text_encoder("fasttext", vectors=vec)
    assert not enc.needs_fit and enc.dim == 2
    out = enc.encode_texts(["The dog", "zebra", "dog park"], progress=False)
    np.testing.assert_allclose(out, [[1.0, 0.5], [0.0, 0.0], [0.5, 0.5]])
    assert enc.last_report.n_no_known_word == 1
    assert enc.weights_id().startswith("tiny.vec:")
    seqs = enc.encode_token_sequences(["the dog zebra park"])
    np.testing.assert_allclose(seqs[0], [[1, 1], [1, 0], [0, 1]])

    model = FastText(vector_size=8, min_count=1, epochs=2, seed=0, workers=1, bucket=1000)
    sentences = [tokenize(c) for c in CAPTIONS]
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=2)
    binary = tmp_path / "tiny.bin"
    save_facebook_model(model, str(binary))
    fb = build_text_encoder("fasttext:sum", vectors=binary)
    got = fb.encode_texts(["dog", "doggo"], progress=False)
    np.testing.assert_allclose(got[0], model.wv["dog"], atol=1e-5)
    assert np.abs(got[1]).sum() > 0 and fb.last_report.n_no_known_word == 0  # sub-words


def test_fasttext_pretrained_bad_files(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match=r"must end in \.bin"):
        build_text_encoder("fasttext", vectors=tmp_path / "v.txt.gz")
    with pytest.raises(XmrError, match="does not exist"):
        build_text_encoder("fasttext", vectors=tmp_path / "missing.bin").weights_id()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(XmrError, match=r"cannot read fasttext vectors .*junk\.bin"):
        build_text_encoder("fasttext", vectors=junk).encode_texts(["a"], progress=False)
