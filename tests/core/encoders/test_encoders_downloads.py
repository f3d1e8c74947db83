"""The download switch, for real, against servers on 127.0.0.1 (``local_servers``): torchvision
checkpoints through torchvision's hash-checked download into the hub cache, Hugging Face models
(BERT, CLIP) into the HF cache with ``HF_HUB_OFFLINE=1`` set, published fastText vectors; and
the failures: switch off, no server, a bad hash, a corrupt archive. Nothing leaves the machine.

The checkpoints are fakes with the real architectures' keys and shapes whose tensors are
strided views of a few thousand numbers (``tiny_state_dict``): they load into a real VGG16 or
ViT-B-32 and the file is a few hundred kB instead of 528 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from local_servers import free_port_url, serve_files, serve_hub, url_of
from test_encoders_weights import draw_jpegs

from xmr_utils.core.encoders import build_image_encoder, build_text_encoder, word_vectors
from xmr_utils.core.encoders.weights import (
    DOWNLOAD_ENV,
    allow_downloads,
    downloads_enabled,
    hub_online,
)
from xmr_utils.core.errors import XmrError

ROOT = Path(__file__).resolve().parents[3]


def tiny_state_dict(shapes: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes, each a strided (Hankel-like) view of ``sum(shape)`` random
    numbers scaled by ``1/sqrt(fan_in)``: ``torch.save`` writes only those numbers."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) <= 1:
            state[key] = torch.randn(shape, generator=gen) * 0.01 + (1.0 if "weight" in key else 0)
            continue
        fan_in = int(np.prod(shape[1:]))
        base = torch.randn(sum(shape) - len(shape) + 1, generator=gen) / fan_in**0.5
        state[key] = base.as_strided(shape, (1,) * len(shape))
    return state


def save_named_by_hash(state: dict[str, torch.Tensor], folder: Path, stem: str) -> Path:
    """Save ``state`` as ``<stem>-<first 8 hex of its sha256>.pth`` (torch.hub's naming)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return tmp.rename(folder / f"{stem}-{digest}.pth")


def fake_vgg16(folder: Path) -> Path:
    import torchvision

    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()
        }
    return save_named_by_hash(tiny_state_dict(shapes), folder, "vgg16")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(DOWNLOAD_ENV, raising=False)
    return home / "hub" / "checkpoints"


def point_vgg16_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from torchvision.models import VGG16_Weights

    monkeypatch.setattr(VGG16_Weights.IMAGENET1K_V1.value, "url", url)


def test_switch_is_off_by_default_and_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DOWNLOAD_ENV, raising=False)
    assert not downloads_enabled()
    with allow_downloads():
        assert downloads_enabled()
        with allow_downloads(False):
            assert not downloads_enabled()
    assert not downloads_enabled()
    for value, on in (("1", True), ("true", True), ("YES", True), ("0", False), ("", False)):
        monkeypatch.setenv(DOWNLOAD_ENV, value)
        assert downloads_enabled() is on
        with allow_downloads(False):  # the parameter off never overrides the variable
            assert downloads_enabled() is on


def test_hub_online_lifts_offline_mode_in_this_process_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with hub_online():
        assert constants.is_offline_mode() is False
        assert os.environ["HF_HUB_OFFLINE"] == "1"  # child processes stay offline
    assert constants.is_offline_mode() is True


def test_vgg16_downloads_through_torchvision_into_the_hub_cache(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = fake_vgg16(tmp_path / "mirror")
    images = draw_jpegs(tmp_path / "img", 2)
    with serve_files(served.parent) as server:
        point_vgg16_at(monkeypatch, f"{url_of(server)}/{served.name}")
        with pytest.raises(XmrError) as off:
            build_image_encoder("vgg16").weights_id()
        message = str(off.value)
        assert served.name in message and str(torch_home) in message
        assert "-p download_weights True" in message and "XMR_DOWNLOAD_WEIGHTS=1" in message
        assert server.requests == []  # switch off: not one request

        with allow_downloads():
            enc = build_image_encoder("vgg16")
            assert (
                enc.weights_id()
                == f"{served.name}:{hashlib.sha256(served.read_bytes()).hexdigest()[:12]}"
            )
        assert (torch_home / served.name).read_bytes() == served.read_bytes()
        assert server.requests == [f"GET /{served.name}"]
        feats = build_image_encoder("vgg16").encode_images(images, progress=False)  # cached now
        assert server.requests == [f"GET /{served.name}"]
    direct = build_image_encoder("vgg16", weights=served).encode_images(images, progress=False)
    assert feats.shape == (2, 4096) and np.isfinite(feats).all()
    np.testing.assert_array_equal(feats, direct)


def test_bad_hash_and_no_network_are_clear_errors(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = fake_vgg16(tmp_path / "mirror")
    liar = served.with_name("vgg16-00000000.pth")  # a name whose hash prefix is wrong
    served.rename(liar)
    with serve_files(liar.parent) as server, allow_downloads():
        point_vgg16_at(monkeypatch, f"{url_of(server)}/{liar.name}")
        with pytest.raises(XmrError, match=r"does not match the sha256 prefix in its name"):
            build_image_encoder("vgg16").weights_id()
    assert not torch_home.exists() or not any(torch_home.iterdir())  # nothing half-written

    dead = free_port_url()
    point_vgg16_at(monkeypatch, f"{dead}/vgg16-397923af.pth")
    with allow_downloads(), pytest.raises(XmrError) as err:
        build_image_encoder("vgg16").weights_id()
    message = str(err.value)
    assert "cannot download vgg16-397923af.pth" in message and dead in message
    assert "download_weights" in message and str(torch_home) in message


def write_vec(path: Path, words: list[str], dim: int = 300, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32)
    lines = [f"{len(words)} {dim}"] + [
        w + " " + " ".join(f"{x:.5f}" for x in v) for w, v in zip(words, vectors, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return vectors


def test_published_fasttext_vectors_download_and_unpack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv("XMR_VECTORS_DIR", str(tmp_path / "vectors"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    vec = write_vec(tmp_path / "wiki-news-300d-1M.vec", ["a", "dog", "runs"])
    with zipfile.ZipFile(mirror / "wiki-news-300d-1M.vec.zip", "w") as zf:
        zf.write(tmp_path / "wiki-news-300d-1M.vec", "wiki-news-300d-1M.vec")
    (mirror / "broken.vec.zip").write_bytes(b"PK\x03\x04 not really a zip")
    enc = build_text_encoder("fasttext:mean?vectors=wiki-news-300d-1M")
    assert enc.spec == "fasttext:mean+vectors=wiki-news-300d-1M" and enc.dim == 300
    with serve_files(mirror) as server:
        base = url_of(server)
        monkeypatch.setitem(
            word_vectors.PUBLISHED_VECTORS,
            "wiki-news-300d-1M",
            (f"{base}/wiki-news-300d-1M.vec.zip", ".vec"),
        )
        with pytest.raises(XmrError, match=r"wiki-news-300d-1M\.vec in .*download_weights"):
            enc.weights_id()
        with allow_downloads():
            feats = enc.encode_texts(["a dog", "runs", "zzz"], progress=False)
        np.testing.assert_allclose(feats[0], vec[:2].mean(0), atol=1e-5)
        np.testing.assert_allclose(feats[1], vec[2], atol=1e-5)
        assert not feats[2].any() and enc.last_report.n_no_known_word == 1
        assert sorted(p.name for p in (tmp_path / "vectors").iterdir()) == [
            "wiki-news-300d-1M.vec"  # the archive is gone, no partial file left
        ]

        monkeypatch.setitem(
            word_vectors.PUBLISHED_VECTORS, "crawl-300d-2M", (f"{base}/broken.vec.zip", ".vec")
        )
        with allow_downloads(), pytest.raises(XmrError, match=r"BadZipFile"):
            build_text_encoder("fasttext:mean?vectors=crawl-300d-2M").weights_id()
    assert not (tmp_path / "vectors" / "crawl-300d-2M.vec").exists()
    assert not list((tmp_path / "vectors").glob("*.partial"))


HF_SCRIPT = r"""
import json, sys
from huggingface_hub import constants
from xmr_utils.core.encoders import build_image_encoder, build_text_encoder
from xmr_utils.core.errors import XmrError

out = {"offline_env": constants.HF_HUB_OFFLINE}
bert = build_text_encoder("bert:cls", model="org/tiny-bert")
out["bert"] = bert.encode_texts(["a dog runs"], progress=False).tolist()
out["bert_id"] = bert.weights_id()
clip = build_text_encoder("clip:ViT-B-32")  # the openai tag, from its HF repository
out["clip_id"] = clip.weights_id()
out["clip_norm"] = float((clip.encode_texts(["a dog"], progress=False) ** 2).sum())
out["offline_after"] = constants.HF_HUB_OFFLINE
dead = sys.argv[1]
import huggingface_hub.utils._http as hf_http  # noqa: E402
hf_http.time.sleep = lambda seconds: None  # the Hub client retries 5 times, 23 s of back-off
constants.ENDPOINT = dead
constants.HUGGINGFACE_CO_URL_TEMPLATE = dead + "/{repo_id}/resolve/{revision}/{filename}"
for name, make in (
    ("bert_dead", lambda: build_text_encoder("bert", model="org/other-bert").weights_id()),
    ("clip_dead", lambda: build_image_encoder("clip:ViT-B-32?pretrained=laion2b_s34b_b79k")
     .weights_id()),
):
    try:
        make()
        out[name] = "no error"
    except XmrError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny BERT and a ViT-B-32-shaped fake checkpoint as two Hub repositories."""
    import open_clip
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("hub")
    bert = root / "tiny-bert"
    bert.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "runs"]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(bert)
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    clip = root / "vit-b-32"
    clip.mkdir()
    with torch.device("meta"):
        model = open_clip.CLIP(**open_clip.get_model_config("ViT-B-32"), quick_gelu=True)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    torch.save(tiny_state_dict(shapes), clip / "open_clip_pytorch_model.bin")  # no safetensors
    return {"org/tiny-bert": bert, "timm/vit_base_patch32_clip_224.openai": clip}


@pytest.mark.slow
def test_hugging_face_downloads_with_offline_mode_set(
    tmp_path: Path, hub_repos: dict[str, Path]
) -> None:
    with serve_hub(hub_repos) as hub:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_ENDPOINT": url_of(hub),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",  # as the Makefile and the pipeline set it
            "TRANSFORMERS_OFFLINE": "1",
            DOWNLOAD_ENV: "1",
        }
        done = subprocess.run(
            [sys.executable, "-c", HF_SCRIPT, free_port_url()],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["offline_env"] is True and out["offline_after"] is True
    assert np.isfinite(out["bert"]).all() and len(out["bert"][0]) == 32
    assert out["bert_id"].startswith("model.safetensors:")
    blob = hub_repos["timm/vit_base_patch32_clip_224.openai"] / "open_clip_pytorch_model.bin"
    assert out["clip_id"] == (
        f"open_clip_pytorch_model.bin:{hashlib.sha256(blob.read_bytes()).hexdigest()[:12]}"
    )
    assert abs(out["clip_norm"] - 1.0) < 1e-4
    cached = {p.name for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file() or p.is_symlink()}
    assert {"open_clip_pytorch_model.bin", "model.safetensors", "vocab.txt"} <= cached
    # safetensors was asked for first, as open_clip does, then the .bin
    asked = [r for r in hub.requests if "vit_base_patch32" in r]
    assert any("open_clip_model.safetensors" in r for r in asked)
    for key, what in (("bert_dead", "org/other-bert"), ("clip_dead", "laion/CLIP-ViT-B-32")):
        assert "cannot download" in out[key] and what in out[key], out[key]
        assert "download_weights" in out[key]
