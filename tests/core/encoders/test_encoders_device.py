"""The CUDA code paths, checked on a machine without a GPU: device resolution and its errors,
which batch size, workers, pinning and autocast a CUDA device selects, and what a manifest
records. (Images/s on a GPU are measured only where one is lent; see benchmarks/RESULTS.md.)"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_encoders_weights import draw_jpegs

from xmr_utils.core.encoders import base, images
from xmr_utils.core.encoders.base import default_batch_size, resolve_device, run_record
from xmr_utils.core.encoders.images import DecodedBatch, ImagePipeline, autocast_for, to_input
from xmr_utils.core.errors import XmrError


def test_resolve_device_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(XmrError, match=r"device 'cuda' was requested but no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(XmrError, match=r"no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(XmrError, match=r"'tpu' is not one of"):
        resolve_device("tpu")


def test_resolve_device_with_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(XmrError, match=r"there are 1 CUDA devices"):
        resolve_device("cuda:1")


def test_cuda_picks_larger_batches_workers_and_records_the_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert default_batch_size("cpu") == 32 and default_batch_size("cuda:0") == 128
    assert default_batch_size("cuda", base.TEXT_BATCH) == 512
    monkeypatch.setattr(base.os, "cpu_count", lambda: 16)
    assert base.default_num_workers("cuda") == 4 and base.default_num_workers("cpu") == 0
    assert run_record("cpu", amp=True) == {"device": "cpu", "precision": "fp32"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake H200")
    assert run_record("cuda", amp=True) == {
        "device": "cuda",
        "precision": "fp16-autocast",
        "device_name": "Fake H200",
    }
    assert run_record("cuda", amp=False)["precision"] == "fp32"


def test_autocast_only_on_cuda_with_amp() -> None:
    assert isinstance(autocast_for("cpu", True), nullcontext)
    assert isinstance(autocast_for("cuda", False), nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else nullcontext():
        ctx = autocast_for("cuda", True)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16


def test_a_cuda_device_pins_batches_in_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real = torch.utils.data.DataLoader

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **{**kwargs, "pin_memory": False})  # no GPU here to pin for

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    paths = draw_jpegs(tmp_path / "img", 3)
    pipeline = ImagePipeline(resize=64, crop=64)
    options = images.LoadOptions(batch_size=2, num_workers=0, device="cuda", progress=False)
    batches = list(images.iterate_decoded(paths, pipeline, options))
    assert seen["pin_memory"] is True and seen["collate_fn"] is images.collate_decoded
    assert [len(b) for b in batches] == [2, 1]
    assert batches[0].stacked.dtype == torch.uint8 and batches[0].stacked.shape == (2, 64, 64, 3)
    list(images.iterate_decoded(paths, pipeline, images.LoadOptions(2, 0, "cpu", False)))
    assert seen["pin_memory"] is False


def test_decoded_batch_stacks_same_size_images_only() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    same = DecodedBatch([(0, a, ""), (1, b, "")])
    assert same.stacked.shape == (2, 4, 4, 3)
    x = to_input(same.pixels(), ImagePipeline(mean=(0, 0, 0), std=(1, 1, 1)), "cpu")
    assert x.shape == (2, 3, 4, 4) and float(x[1].min()) == 1.0
    torch.testing.assert_close(
        x, to_input([a, b], ImagePipeline(mean=(0, 0, 0), std=(1, 1, 1)), "cpu")
    )
    mixed = DecodedBatch([(0, a, ""), (1, np.zeros((5, 4, 3), np.uint8), "")])
    assert mixed.stacked is None and len(mixed.pixels()) == 2
    failed = DecodedBatch([(0, a, ""), (1, None, "OSError: truncated")])
    assert failed.stacked is None and failed.errors[1] == "OSError: truncated"


def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path: Path) -> None:
    from xmr_utils.core.encoders import build_image_encoder, build_text_encoder

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    paths = draw_jpegs(tmp_path / "img", 1)
    with pytest.raises(XmrError, match="no CUDA GPU is visible"):
        build_image_encoder("efficientnet_lite0").encode_images(paths, device="cuda")
    with pytest.raises(XmrError, match="no CUDA GPU is visible"):
        build_text_encoder("minilm", device="cuda").encode_texts(["a dog"], progress=False)
