"""CLIP encoders offline: a tiny open_clip architecture with random weights (``pretrained=none``),
checked against open_clip's own calls; weights from a file; the offline errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmr_utils.core import features
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.encoders import build_image_encoder, build_text_encoder
from xmr_utils.core.encoders.clip import ClipSource, load_clip, token_lengths
from xmr_utils.core.encoders.images import decode_image, to_input
from xmr_utils.core.errors import XmrError

TINY = "xmr-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
CAPTIONS = [
    "a dog runs on the grass!",
    "the cat",
    "",
    "a man in a red shirt rides a bicycle down a long hill while it rains " * 4,  # > 77 tokens
    "two people",
]


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register the tiny architecture with open_clip (a config file, as users add their own)."""
    import open_clip

    path = tmp_path_factory.mktemp("clip-config") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


def draw_pngs(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        pixels[:, : w // 3] = (200, 30, 30)  # an asymmetric image: its mirror differs
        paths.append(folder / f"im{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_specs_dims_and_weights_ids() -> None:
    image = build_image_encoder(f"clip:{TINY}?pretrained=none")
    text = build_text_encoder(f"clip:{TINY}", pretrained=None)
    assert image.spec == f"clip:{TINY}+pretrained=none+tower=image"
    assert text.spec == f"clip:{TINY}+pretrained=none+tower=text"  # never the same cache file
    assert image.dim == text.dim == 16
    assert image.weights_id() == text.weights_id()
    assert image.weights_id().startswith("random init (torch.manual_seed(0), open_clip 3.")
    tta = build_image_encoder(f"clip:{TINY}?pretrained=none,view=tta,seed=3")
    assert tta.spec == f"clip:{TINY}+pretrained=none+seed=3+tower=image+view=tta"
    assert "bicubic short=32 crop=32" in image.preprocessing_id()
    # ViT-B-32 defaults to OpenAI's weights, which were trained with QuickGELU
    source = ClipSource.checked("ViT-B-32", "", 0, None)
    assert source.pretrained == "openai" and source.quick and source.embed_dim == 512
    assert build_text_encoder("clip").spec == "clip:ViT-B-32+tower=text"
    assert not ClipSource.checked("ViT-B-32", "laion2b_s34b_b79k", 0, None).quick


def test_text_batches_by_length_exactly_as_encode_text() -> None:
    enc = build_text_encoder(f"clip:{TINY}?pretrained=none")
    feats = enc.encode_texts(CAPTIONS, batch_size=2, progress=False)
    assert feats.shape == (5, 16) and feats.dtype == np.float32
    assert enc.last_report.n_no_known_word == 1 and enc.last_report.examples == (2,)
    assert not feats[2].any()
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(np.linalg.norm(feats[keep], axis=1), 1.0, atol=1e-5)
    model = load_clip(enc.source)
    with torch.inference_mode():  # the naive way: every caption padded to 77 tokens
        full = model.encode_text(enc.tokenizer(CAPTIONS), normalize=True).numpy()
    np.testing.assert_allclose(feats[keep], full[keep], atol=1e-5)
    one_batch = enc.encode_texts(CAPTIONS, batch_size=64, progress=False)
    np.testing.assert_allclose(one_batch, feats, atol=1e-5)


def test_token_lengths_count_up_to_the_last_token() -> None:
    tokens = torch.tensor([[5, 0, 7, 0, 0], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    assert token_lengths(tokens).tolist() == [3, 5, 0]  # token id 0 inside a caption is '!'


def test_image_pool_is_open_clips_own_preprocessing(tmp_path: Path) -> None:
    import open_clip

    paths = draw_pngs(tmp_path / "img", [(50, 40), (40, 70), (32, 32)])
    enc = build_image_encoder(f"clip:{TINY}?pretrained=none")
    feats = enc.encode_images(paths, batch_size=2, progress=False)
    assert feats.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    model = load_clip(enc.source)
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    with torch.inference_mode():
        x = torch.stack([preprocess(Image.open(p)) for p in paths])
        reference = model.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(feats, reference, atol=2e-3)  # PIL vs torchvision rounding
    # the pipeline's own tensors match open_clip's transform to uint8 rounding
    ours = to_input([decode_image(p, enc.pipeline) for p in paths], enc.pipeline, "cpu")
    assert (ours - x).abs().max() < 0.03


def test_tta_is_mirror_symmetric(tmp_path: Path) -> None:
    (path,) = draw_pngs(tmp_path / "img", [(48, 40)])
    mirrored = tmp_path / "img" / "mirror.png"
    Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    tta = build_image_encoder(f"clip:{TINY}?pretrained=none,view=tta")
    pool = build_image_encoder(f"clip:{TINY}?pretrained=none")
    both = tta.encode_images([path, mirrored], progress=False)
    np.testing.assert_allclose(both[0], both[1], atol=1e-5)
    plain = pool.encode_images([path, mirrored], progress=False)
    assert not np.allclose(plain[0], plain[1], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)


def test_random_weights_follow_the_seed_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_text_encoder(f"clip:{TINY}?pretrained=none").encode_texts(["a dog"], progress=False)
    assert torch.equal(torch.rand(3), expected)
    b = build_text_encoder(f"clip:{TINY}?pretrained=none,seed=1").encode_texts(
        ["a dog"], progress=False
    )
    again = build_text_encoder(f"clip:{TINY}?pretrained=none").encode_texts(
        ["a dog"], progress=False
    )
    np.testing.assert_array_equal(a, again)
    assert not np.allclose(a, b)


def test_weights_from_a_file_and_a_wrong_file(tmp_path: Path) -> None:
    import open_clip

    torch.manual_seed(7)
    model = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    enc = build_text_encoder(f"clip:{TINY}", pretrained=str(path))
    assert enc.spec.startswith(f"clip:{TINY}+pretrained=mine-")
    assert enc.weights_id().startswith("mine.pt:")
    with torch.inference_mode():
        want = model.encode_text(enc.tokenizer(["a dog"]), normalize=True).numpy()
    np.testing.assert_allclose(enc.encode_texts(["a dog"], progress=False), want, atol=1e-5)
    other = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(2)}, other)
    with pytest.raises(XmrError, match=r"cannot load the clip checkpoint .*other\.pt"):
        build_text_encoder(f"clip:{TINY}", pretrained=str(other)).encode_texts(
            ["a"], progress=False
        )


def test_bad_names_and_missing_weights_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    with pytest.raises(XmrError, match=r"'ViT-Q-99' is not an open_clip architecture"):
        build_image_encoder("clip:ViT-Q-99")
    with pytest.raises(XmrError, match=r"pretrained 'laion9' is not one of its .*openai"):
        build_text_encoder("clip:ViT-B-32?pretrained=laion9")
    with pytest.raises(XmrError, match=r"clip view 'crop'"):
        build_image_encoder(f"clip:{TINY}?pretrained=none,view=crop")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("XMR_DOWNLOAD_WEIGHTS", raising=False)
    with pytest.raises(XmrError) as err:
        build_image_encoder("clip:ViT-B-32").weights_id()
    message = str(err.value)
    assert "timm/vit_base_patch32_clip_224.openai" in message and "empty-cache" in message
    assert "open_clip_model.safetensors or open_clip_pytorch_model.bin" in message
    assert "-p download_weights True" in message


def test_missing_open_clip_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(XmrError, match=r"open_clip_torch.*\[clip\]"):
        build_text_encoder("clip")


def test_feature_cache_records_where_it_ran(tmp_path: Path) -> None:
    paths = draw_pngs(tmp_path / "img", [(40, 40)] * 3)
    corpus = CaptionCorpus(
        name="tiny",
        root=tmp_path,
        image_files=tuple(paths),
        captions=("a dog", "a cat", "two dogs", "a bird", "", "a red car"),
        owner=np.array([0, 0, 1, 1, 2, 2]),
        splits={"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([2])},
    )
    cache = tmp_path / "features"
    img = features.image_features(corpus, f"clip:{TINY}?pretrained=none", cache, progress=False)
    txt = features.text_features(corpus, f"clip:{TINY}?pretrained=none", cache, progress=False)
    assert img.shape == (3, 16) and txt.shape == (6, 16)
    for tower in ("image", "text"):
        paths = features.cache_paths(cache, corpus, f"clip:{TINY}+pretrained=none+tower={tower}")
        manifest = features.read_manifest(paths.manifest)
        assert manifest is not None and manifest["run"] == {"device": "cpu", "precision": "fp32"}
        assert manifest["no_known_word"] == (1 if tower == "text" else 0)
    # joint space: image and caption features are comparable by cosine
    assert np.isfinite(img @ txt.T).all()
