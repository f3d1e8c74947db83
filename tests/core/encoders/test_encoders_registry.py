"""Registry, spec grammar and import cost of xmr_utils.core.encoders."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from xmr_utils.core.encoders import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    build_image_encoder,
    build_text_encoder,
    parse_spec,
    spec_file_stem,
)
from xmr_utils.core.encoders.catalog import split_options
from xmr_utils.core.errors import XmrError


def test_registries_hold_the_agreed_encoders() -> None:
    assert set(IMAGE_ENCODERS) == {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "vgg16",
        "vgg19",
        "resnet50",
        "resnet152",
        "faster_rcnn",
        "clip",
    }
    assert set(TEXT_ENCODERS) == {"minilm", "glove", "fasttext", "bert", "clip", "tfidf"}


@pytest.mark.parametrize(
    ("spec", "options", "canonical", "dim"),
    [
        ("efficientnet_lite0", {}, "efficientnet_lite0:pool", 1280),
        ("vgg16", {}, "vgg16:fc7", 4096),
        ("vgg19:fc7", {}, "vgg19:fc7", 4096),
        ("resnet50", {}, "resnet50:pool", 2048),
        ("resnet152", {}, "resnet152:pool", 2048),
        ("faster_rcnn", {}, "faster_rcnn:regions", 1024),
        ("faster_rcnn:regions", {"max_regions": 10}, "faster_rcnn:regions+max_regions=10", 1024),
        ("faster_rcnn:backbone", {}, "faster_rcnn:backbone", 2048),
        ("faster_rcnn:res4", {}, "faster_rcnn:res4", 1024),
        ("faster_rcnn:res4?pool=rows", {}, "faster_rcnn:res4+pool=rows", 14336),
        ("faster_rcnn:regions?max_regions=10", {}, "faster_rcnn:regions+max_regions=10", 1024),
    ],
)
def test_image_specs_are_canonical(spec: str, options: dict, canonical: str, dim: int) -> None:
    enc = build_image_encoder(spec, **options)
    assert enc.spec == canonical
    assert enc.dim == dim


@pytest.mark.parametrize(
    ("spec", "options", "canonical"),
    [
        ("minilm", {}, "minilm:mean"),
        ("minilm:cls", {}, "minilm:cls"),
        ("glove", {}, "glove:mean"),
        ("glove:sum", {}, "glove:sum"),
        ("fasttext", {}, "fasttext:mean"),
        ("fasttext:sum", {"dim": 32}, "fasttext:sum+dim=32"),
        ("fasttext", {"vectors": "/x/cc.en.300.bin"}, "fasttext:mean+vectors=cc.en.300"),
        ("bert", {}, "bert:mean"),
        ("bert:pooler", {"model": "prajjwal1/bert-tiny"}, "bert:pooler+model=prajjwal1-bert-tiny"),
    ],
)
def test_text_specs_are_canonical(spec: str, options: dict, canonical: str) -> None:
    assert build_text_encoder(spec, **options).spec == canonical


def test_unknown_name_lists_accepted() -> None:
    with pytest.raises(XmrError, match=r"unknown image encoder 'vgg17'; accepted: .*vgg16"):
        build_image_encoder("vgg17")
    with pytest.raises(
        XmrError,
        match=r"unknown text encoder 'word2vec'; accepted: bert, clip, "
        r"fasttext, glove, minilm",
    ):
        build_text_encoder("word2vec")


def test_unknown_variant_lists_accepted() -> None:
    with pytest.raises(
        XmrError,
        match=r"variant of text encoder 'minilm' 'max'; accepted: "
        r"cls, mean",
    ):
        build_text_encoder("minilm:max")
    with pytest.raises(XmrError, match=r"accepted: backbone, regions, res4"):
        build_image_encoder("faster_rcnn:boxes")


def test_unknown_option_lists_accepted() -> None:
    with pytest.raises(XmrError, match=r"'glove' has no option 'dim'; accepted: none"):
        build_text_encoder("glove", dim=300)
    with pytest.raises(
        XmrError,
        match=r"no option 'pretrained'; accepted: amp, channels_last, "
        r"weights",
    ):
        build_image_encoder("vgg16", pretrained=True)
    with pytest.raises(XmrError, match="apply to training only"):
        build_text_encoder("fasttext", vectors="a.vec", dim=300)


@pytest.mark.parametrize("bad", ["", "a:b:c", "fasttext:mean+dim=3", "fasttext:mean?dim=3"])
def test_malformed_specs_are_refused(bad: str) -> None:
    with pytest.raises(XmrError, match="encoder spec"):
        parse_spec(bad)


def test_options_in_the_spec_are_typed_and_checked() -> None:
    base, options = split_options("fasttext:mean?dim=300,epochs=2,vectors=/a/b.vec,x=0.5,y=true")
    assert base == "fasttext:mean"
    assert options == {"dim": 300, "epochs": 2, "vectors": "/a/b.vec", "x": 0.5, "y": True}
    assert split_options("clip:ViT-B-32?pretrained=none") == ("clip:ViT-B-32", {"pretrained": None})
    assert split_options("glove") == ("glove", {})
    # the same encoder as the keyword form, same cache key
    assert build_text_encoder("fasttext:mean?dim=50").spec == (
        build_text_encoder("fasttext:mean", dim=50).spec
    )
    for bad, why in [
        ("fasttext:mean?dim", "is not key=value"),
        ("fasttext:mean?dim=", "is not key=value"),
        ("fasttext:mean?dim=3,dim=4", "twice"),
    ]:
        with pytest.raises(XmrError, match=why):
            build_text_encoder(bad)
    with pytest.raises(XmrError, match=r"both set \['dim'\]"):
        build_text_encoder("fasttext:mean?dim=3", dim=4)
    with pytest.raises(XmrError, match="has no option 'nope'"):
        build_image_encoder("vgg16?nope=1")


def test_cache_stem_is_filesystem_safe() -> None:
    stem = spec_file_stem(build_text_encoder("fasttext", vectors="/a b/c:d.vec").spec)
    assert stem == "fasttext__mean+vectors=c-d"
    assert "/" not in stem and ":" not in stem and " " not in stem


def test_import_is_cheap() -> None:
    code = (
        "import sys, xmr_utils.core.encoders, xmr_utils.core.features; "
        "print(sorted(m for m in ('torch', 'torchvision', 'transformers', 'gensim', 'PIL',"
        " 'scipy', 'open_clip', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_text_specs_side_by_side_build_one_encoder_per_part() -> None:
    from xmr_utils.core.encoders import build_text_encoders

    parts = build_text_encoders("minilm:mean+tfidf")
    assert [p.spec for p in parts] == ["minilm:mean", "tfidf:log"]
    with pytest.raises(XmrError, match="empty part"):
        build_text_encoders("minilm:mean+")
    with pytest.raises(XmrError, match="accepted"):
        build_text_encoders("minilm:mean+bow")


def _keyword_options(method: object) -> set[str]:
    params = inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("name", sorted(TEXT_ENCODERS))
def test_every_text_encoder_takes_the_protocols_options(name: str) -> None:
    """The registry holds factories (typed Any), so the type checker cannot see whether what
    they build is a TextEncoder; features.text_features passes ``device`` to every one."""
    from xmr_utils.core.encoders.base import TextEncoder

    encoder = build_text_encoder(name)
    assert _keyword_options(encoder.encode_texts) == _keyword_options(TextEncoder.encode_texts)
    for method in ("weights_id", "fit", "save", "load"):
        assert callable(getattr(encoder, method)), (name, method)


def test_side_by_side_text_encoder_takes_the_protocols_options() -> None:
    from xmr_utils.core.encoders.base import TextEncoder
    from xmr_utils.core.encoders.concat import ConcatenatedTextEncoder

    method = ConcatenatedTextEncoder.encode_texts
    assert _keyword_options(method) == _keyword_options(TextEncoder.encode_texts)
