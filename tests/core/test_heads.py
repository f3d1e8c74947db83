"""Projection heads: the seed's exact layer stacks, normalisation, numpy embedding helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmr_utils.core.config import RECIPES, HeadConfig
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder, ProjectionHead


def describe(head: ProjectionHead) -> list[tuple]:
    out = []
    for m in head.layers:
        if isinstance(m, nn.Linear):
            out.append(("Linear", m.in_features, m.out_features))
        elif isinstance(m, nn.Dropout):
            out.append(("Dropout", m.p))
        else:
            out.append((type(m).__name__,))
    return out


def test_seed_heads_are_the_seed_layer_stacks() -> None:
    model = DualEncoder.from_recipe(RECIPES["seed"], image_dim=4096, text_dim=300)
    assert describe(model.image_head) == [
        ("Linear", 4096, 2048),
        ("PReLU",),
        ("Linear", 2048, 4096),
        ("Dropout", 0.5),
    ]
    assert describe(model.text_head) == [
        ("Linear", 300, 1024),
        ("PReLU",),
        ("Linear", 1024, 2048),
        ("PReLU",),
        ("Linear", 2048, 4096),
        ("Dropout", 0.1),
    ]
    assert model.similarity == "neg_sqeuclidean" and model.embed_dim == 4096
    model.eval()
    emb = model.encode_images(torch.randn(3, 4096))
    assert emb.shape == (3, 4096)
    assert not torch.allclose(emb.norm(dim=1), torch.ones(3))  # no L2 normalisation


def test_vsepp_heads_normalise_and_share_the_space() -> None:
    model = DualEncoder.from_recipe(RECIPES["vsepp"], image_dim=32, text_dim=16)
    assert describe(model.image_head) == [
        ("Linear", 32, 256),
        ("PReLU",),
        ("Dropout", 0.2),
        ("Linear", 256, 512),
    ]
    assert model.similarity == "dot"
    img = model.encode_images(torch.randn(5, 32))
    txt = model.encode_texts(torch.randn(7, 16))
    assert img.shape == (5, 512) and txt.shape == (7, 512)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(7))


def test_activation_choices() -> None:
    head = ProjectionHead(4, HeadConfig(hidden=(8, 8), out_dim=2, activation="gelu", dropout=0))
    assert [type(m).__name__ for m in head.layers] == ["Linear", "GELU", "Linear", "GELU", "Linear"]


def test_embed_numpy_is_batched_eval_mode_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = DualEncoder.from_recipe(RECIPES["seed"], image_dim=12, text_dim=6)
    rng = np.random.default_rng(0)
    img = rng.standard_normal((37, 12)).astype(np.float32)
    txt = rng.standard_normal((23, 6))  # float64 input is accepted
    model.train()
    a_img, a_txt = model.embed_numpy(img, txt, batch_size=5)
    b_img, b_txt = model.embed_numpy(img, txt, batch_size=1000)
    assert model.training  # mode restored
    assert a_img.dtype == np.float32 and a_img.shape == (37, 4096) and a_txt.shape == (23, 4096)
    np.testing.assert_allclose(a_img, b_img, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a_txt, b_txt, rtol=1e-5, atol=1e-6)
    model.eval()
    with torch.no_grad():  # dropout off: equals one eval-mode forward
        want = model.encode_images(torch.from_numpy(img)).numpy()
    np.testing.assert_allclose(a_img, want, rtol=1e-5, atol=1e-6)


def test_scores_use_the_model_similarity() -> None:
    model = DualEncoder.from_recipe(RECIPES["seed"], image_dim=4, text_dim=4)
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(model.scores(a, b), torch.tensor([[-1.0], [-1.0]]))
    model = DualEncoder.from_recipe(RECIPES["vsepp"], image_dim=4, text_dim=4)
    torch.testing.assert_close(model.scores(a, b), torch.tensor([[0.0], [1.0]]))


def test_bad_inputs_raise_xmr_error() -> None:
    model = DualEncoder.from_recipe(RECIPES["vsepp"], image_dim=8, text_dim=4)
    with pytest.raises(XmrError, match=r"head expects input \[N, 8\], got \(2, 4\)"):
        model.encode_images(torch.zeros(2, 4))
    with pytest.raises(XmrError, match=r"features must be \[N, 4\]"):
        model.embed_texts_numpy(np.zeros((3, 5)))
    with pytest.raises(XmrError, match="must share out_dim"):
        DualEncoder(8, 4, HeadConfig(out_dim=4), HeadConfig(out_dim=8))
    with pytest.raises(XmrError, match="unknown similarity 'cos'"):
        DualEncoder(8, 4, HeadConfig(), HeadConfig(), similarity="cos")
    with pytest.raises(XmrError, match="in_dim > 0"):
        ProjectionHead(0, HeadConfig())


def test_identity_heads_are_the_normalised_features() -> None:
    model = DualEncoder.from_recipe(RECIPES["zeroshot"], image_dim=8, text_dim=8)
    assert list(model.parameters()) == [] and model.embed_dim == 8
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    want = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed_images_numpy(x, batch_size=2), want, atol=1e-6)
    np.testing.assert_allclose(model.embed_texts_numpy(x), want, atol=1e-6)
    with pytest.raises(XmrError, match=r"image features are 8-d, caption features 6-d"):
        DualEncoder.from_recipe(RECIPES["zeroshot"], image_dim=8, text_dim=6)


def test_identity_init_starts_a_linear_head_at_the_input() -> None:
    model = DualEncoder.from_recipe(RECIPES["clip_linear"], image_dim=6, text_dim=6)
    assert describe(model.image_head) == [("Linear", 6, 6)]
    x = torch.randn(4, 6)
    torch.testing.assert_close(model.encode_images(x), torch.nn.functional.normalize(x, dim=1))
    assert sum(p.numel() for p in model.parameters()) == 2 * (36 + 6)  # trainable
    with pytest.raises(XmrError, match="init 'identity' needs out_dim equal to the input"):
        ProjectionHead(6, HeadConfig(hidden=(), out_dim=4, init="identity"))


def test_sqrt_l2_input_norm_is_signed_square_root_then_unit_rows() -> None:
    config = HeadConfig(hidden=(), out_dim=3, dropout=0.0, input_norm="sqrt_l2")
    head = ProjectionHead(4, config)
    x = torch.tensor([[4.0, -9.0, 0.0, 1.0], [0.25, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        want = head.layers(torch.tensor([[2.0, -3.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
        want[0] = head.layers(torch.tensor([[2.0, -3.0, 0.0, 1.0]]) / math.sqrt(14.0))[0]
        torch.testing.assert_close(head(x), nn.functional.normalize(want, dim=1))
        # scaling an input row changes nothing: the head sees its direction only
        torch.testing.assert_close(head(3.0 * x), head(x))
    plain = ProjectionHead(4, HeadConfig(hidden=(), out_dim=3, dropout=0.0, input_norm="l2"))
    with torch.no_grad():
        torch.testing.assert_close(plain(3.0 * x), plain(x))
        torch.testing.assert_close(
            plain(x[:1]), nn.functional.normalize(plain.layers(x[:1] / math.sqrt(98.0)), dim=1)
        )
    assert HeadConfig.from_dict({"hidden": []}).input_norm == "none"  # older JSON reads as before
    with pytest.raises(XmrError, match="input_norm"):
        HeadConfig(input_norm="pca")


def test_a_bf16_model_embeds_under_autocast_everywhere_and_returns_float32() -> None:
    from xmr_utils.core.config import recipe_with

    recipe = recipe_with(RECIPES["vsepp"], **{"train.precision": "bf16"})
    torch.manual_seed(0)
    bf16 = DualEncoder.from_recipe(recipe, image_dim=24, text_dim=16)
    fp32 = DualEncoder.from_recipe(RECIPES["vsepp"], image_dim=24, text_dim=16)
    fp32.load_state_dict(bf16.state_dict())
    assert (bf16.precision, fp32.precision) == ("bf16", "fp32")
    feats = np.random.default_rng(0).standard_normal((10, 24)).astype(np.float32)
    got = bf16.embed_images_numpy(feats, batch_size=4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = bf16.eval().encode_images(torch.from_numpy(feats)).float().numpy()
    assert got.dtype == np.float32 and np.array_equal(got, want)
    plain = fp32.embed_images_numpy(feats)
    assert not np.array_equal(got, plain) and np.allclose(got, plain, atol=0.05)
    with pytest.raises(XmrError, match="unknown precision 'fp8'"):
        DualEncoder(24, 16, RECIPES["vsepp"].image_head, RECIPES["vsepp"].text_head, "dot", "fp8")
