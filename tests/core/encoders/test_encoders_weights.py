"""Real-weights encoders loaded for real, offline: randomly initialised torchvision weights
saved under the exact hub-cache file name in a temporary TORCH_HOME, and a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from xmr_utils.core.encoders import build_image_encoder, build_text_encoder
from xmr_utils.core.encoders.faster_rcnn import build_detector
from xmr_utils.core.encoders.images import decode_image, to_input
from xmr_utils.core.errors import XmrError


def draw_jpegs(folder: Path, n: int, size: tuple[int, int] = (160, 120)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
        ImageDraw.Draw(img).rectangle(
            (20, 10, 20 + 30 * (i + 1), 90), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
        )
        out.append(folder / f"p{i}.jpg")
        img.save(out[-1])
    return out


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    (home / "hub" / "checkpoints").mkdir(parents=True)
    return home / "hub" / "checkpoints"


def save_random(builder: str, path: Path, seed: int = 0, **kwargs: object) -> torch.nn.Module:
    """Save random weights of torchvision's ``builder`` at ``path``; return that model.

    Weights are drawn directly (N(0, 1/fan_in), BatchNorm as identity), which is much faster
    than torchvision's own initialisation of VGG's 100M-weight fc6.
    """
    import torchvision.models
    import torchvision.models.detection

    from xmr_utils.core.encoders.weights import build_with_weights

    module = getattr(torchvision.models, builder, None) or getattr(
        torchvision.models.detection, builder
    )
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in module(weights=None, **kwargs).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            state[key] = torch.ones(shape)
        elif len(shape) <= 1:
            state[key] = torch.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    torch.save(state, path)
    return build_with_weights(lambda: module(weights=None, **kwargs), path, builder).eval()


def test_missing_weights_say_which_file_where_and_the_alternative(torch_home: Path) -> None:
    enc = build_image_encoder("resnet50")
    with pytest.raises(XmrError) as err:
        enc.weights_id()
    msg = str(err.value)
    assert "resnet50-11ad3fa6.pth" in msg and str(torch_home) in msg
    assert "weights=PATH" in msg and "'efficientnet_lite0'" in msg
    with pytest.raises(XmrError, match=r"fasterrcnn_resnet50_fpn_v2_coco-dd69338a\.pth"):
        build_image_encoder("faster_rcnn").encode_images([Path("x.jpg")], progress=False)
    with pytest.raises(XmrError, match=r"vgg19-dcbb9e9d\.pth"):
        build_image_encoder("vgg19").weights_id()
    with pytest.raises(XmrError, match=r"weights file .*nope\.pth .* does not exist"):
        build_image_encoder("resnet152", weights=torch_home / "nope.pth").weights_id()


def test_resnet50_from_hub_cache_matches_torchvision(tmp_path: Path, torch_home: Path) -> None:
    reference = save_random("resnet50", torch_home / "resnet50-11ad3fa6.pth")
    paths = draw_jpegs(tmp_path / "img", 3)
    enc = build_image_encoder("resnet50")
    feats = enc.encode_images(paths, batch_size=2, num_workers=0, progress=False)
    assert feats.shape == (3, 2048) and feats.dtype == np.float32
    assert enc.weights_id().startswith("resnet50-11ad3fa6.pth:")
    assert "short=232 crop=224" in enc.preprocessing_id()
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        x = to_input([decode_image(p, enc.pipeline) for p in paths], enc.pipeline, "cpu")
        np.testing.assert_allclose(feats, reference(x).numpy(), rtol=1e-4, atol=1e-4)

    # an explicit weights= file wins over the cache
    other = tmp_path / "mine.pth"
    save_random("resnet50", other, seed=1)
    explicit = build_image_encoder("resnet50", weights=other)
    assert explicit.weights_id().startswith("mine.pth:")
    assert not np.allclose(explicit.encode_images(paths, num_workers=0, progress=False), feats)


def test_wrong_or_corrupt_checkpoint(tmp_path: Path, torch_home: Path) -> None:
    save_random("resnet50", torch_home / "resnet152-f82ba261.pth")  # wrong architecture
    paths = draw_jpegs(tmp_path / "img", 1)
    with pytest.raises(XmrError, match=r"does not fit resnet152: \d+ missing keys"):
        build_image_encoder("resnet152").encode_images(paths, num_workers=0, progress=False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(XmrError, match=r"junk\.pth cannot be read as a PyTorch state dict"):
        build_image_encoder("resnet50", weights=junk).encode_images(paths, progress=False)


def test_vgg16_fc7_is_post_relu(tmp_path: Path, torch_home: Path) -> None:
    reference = save_random("vgg16", torch_home / "vgg16-397923af.pth")
    paths = draw_jpegs(tmp_path / "img", 2)
    enc = build_image_encoder("vgg16")
    feats = enc.encode_images(paths, num_workers=0, progress=False)
    assert feats.shape == (2, 4096) and (feats >= 0).all() and (feats > 0).any()
    with torch.inference_mode():
        x = to_input([decode_image(p, enc.pipeline) for p in paths], enc.pipeline, "cpu")
        fc7 = reference.classifier[:5](torch.flatten(reference.avgpool(reference.features(x)), 1))
    np.testing.assert_allclose(feats, fc7.numpy(), rtol=1e-3, atol=1e-4)


def test_faster_rcnn_regions_and_backbone(tmp_path: Path, torch_home: Path) -> None:
    save_random(
        "fasterrcnn_resnet50_fpn_v2",
        torch_home / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
        weights_backbone=None,
    )
    paths = draw_jpegs(tmp_path / "img", 2, size=(200, 150))
    enc = build_image_encoder(
        "faster_rcnn:regions", max_regions=5, score_threshold=0.0, min_size=160, proposals=20
    )
    assert enc.spec == (
        "faster_rcnn:regions+max_regions=5+min_size=160+proposals=20+score_threshold=0.0"
    )
    pooled, extras = enc.encode_images_with_extras(paths, num_workers=0, progress=False)
    assert pooled.shape == (2, 1024) and extras["regions"].shape == (2, 5, 1024)
    assert extras["boxes"].shape == (2, 5, 4) and extras["scores"].shape == (2, 5)
    counts = extras["counts"]
    assert ((counts >= 1) & (counts <= 5)).all()
    for i, k in enumerate(counts):
        np.testing.assert_allclose(
            pooled[i], extras["regions"][i, :k].mean(0), rtol=1e-5, atol=1e-6
        )
        assert not extras["regions"][i, k:].any() and not extras["scores"][i, k:].any()
        boxes = extras["boxes"][i, :k]
        assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    # a classifier with zero weights gives every class 1/91 < 0.5: nothing is detected, so
    # each image gets one whole-image region
    strict = build_image_encoder("faster_rcnn", score_threshold=0.5, min_size=160, proposals=36)
    cls_score = strict._detector("cpu").roi_heads.box_predictor.cls_score
    torch.nn.init.zeros_(cls_score.weight)
    torch.nn.init.zeros_(cls_score.bias)
    _, ex = strict.encode_images_with_extras(paths[:1], num_workers=0, progress=False)
    assert ex["counts"].tolist() == [1]
    np.testing.assert_allclose(ex["boxes"][0, 0], [0, 0, 1, 1], atol=1e-6)

    backbone = build_image_encoder("faster_rcnn:backbone")
    assert backbone.encode_images(paths, num_workers=0, progress=False).shape == (2, 2048)

    # the seed's feature: C4 (layer3) of the squashed 224 x 224 image, mean-pooled
    res4 = build_image_encoder("faster_rcnn:res4")
    feats = res4.encode_images(paths, num_workers=0, progress=False)
    rows = build_image_encoder("faster_rcnn:res4?pool=rows").encode_images(
        paths, num_workers=0, progress=False
    )
    assert feats.shape == (2, 1024) and rows.shape == (2, 1024 * 14)
    np.testing.assert_allclose(rows.reshape(2, 1024, 14).mean(2), feats, rtol=1e-4, atol=1e-5)
    body = build_detector(torch_home / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth").backbone.body
    with torch.inference_mode():
        x = to_input([decode_image(p, res4.pipeline) for p in paths], res4.pipeline, "cpu")
        c4 = body(x)["2"]  # IntermediateLayerGetter: layer3 -> "2"
    assert tuple(c4.shape) == (2, 1024, 14, 14)
    np.testing.assert_allclose(feats, c4.mean((2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rows, c4.mean(3).flatten(1).numpy(), rtol=1e-4, atol=1e-5)


def test_seed_pixels_are_the_image_squashed_to_224(tmp_path: Path) -> None:
    import torchvision.transforms as T

    from xmr_utils.core.encoders.faster_rcnn import SEED_PIPELINE

    (path,) = draw_jpegs(tmp_path / "img", 1, size=(160, 120))
    assert "squash=224" in SEED_PIPELINE.id()
    want = np.asarray(T.Resize((224, 224))(Image.open(path).convert("RGB")))  # the seed's
    np.testing.assert_array_equal(decode_image(path, SEED_PIPELINE), want)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = "a the dog cat runs sits on in park grass red blue man woman".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "##s"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def test_bert_from_local_folder(tiny_bert: Path) -> None:
    texts = ["a dog runs in the park", "the cat sits", "a red man", "", "zzz"]
    got = {}
    for pooling in ("mean", "cls", "pooler"):
        enc = build_text_encoder(f"bert:{pooling}", model=tiny_bert)
        assert enc.spec.startswith(f"bert:{pooling}+model=tiny-bert")
        got[pooling] = enc.encode_texts(texts, batch_size=2, progress=False)
        assert got[pooling].shape == (5, 32) and got[pooling].dtype == np.float32
        assert enc.dim == 32 and enc.weights_id().startswith("model.safetensors:")
        # the empty caption and the all-[UNK] caption have no known word: zero rows
        assert enc.last_report.n_no_known_word == 2 and not got[pooling][3:].any()
        single = enc.encode_texts([texts[0]], progress=False)
        np.testing.assert_allclose(single[0], got[pooling][0], atol=1e-5)  # padding-invariant
    assert not np.allclose(got["mean"][:3], got["cls"][:3])
    assert np.abs(got["pooler"]).max() <= 1.0  # tanh pooler


def test_bert_missing_offline_names_the_bundled_alternative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_text_encoder("bert", model="no-such-org/no-such-bert")
    with pytest.raises(
        XmrError,
        match=r"'no-such-org/no-such-bert', which is not in the offline "
        r"cache .*use text encoder 'minilm'",
    ):
        enc.encode_texts(["a dog"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(XmrError, match="has no config.json"):
        build_text_encoder("bert", model=tmp_path / "empty").weights_id()
