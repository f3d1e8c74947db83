"""Feature extraction on a CUDA GPU: images/s of vgg16, clip:ViT-B-32 and efficientnet_lite0
(JPEG decoding in DataLoader workers, pinned batches, float16 autocast) against the same call
with autocast off, and CLIP's text tower in captions/s.

Random weights (VGG16 saved under its hub-cache name in a temporary TORCH_HOME; CLIP with
``pretrained=none``): speed does not depend on the weights, and nothing is downloaded. Not part
of ``make bench`` (that runs on the CPU); run it where a GPU is visible:

    python -m benchmarks.bench_gpu [--quick]

Without a GPU it exits with status 2 and says so.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_extract import captions, save_random_vgg16, timed, write_jpegs
from benchmarks.common import Row, bench_main

SECTION = "gpu"
ENCODERS: tuple[tuple[str, str], ...] = (
    ("vgg16", "vgg16 fc7, 4096-d"),
    ("clip:ViT-B-32?pretrained=none", "clip:ViT-B-32 image tower, 512-d"),
    ("efficientnet_lite0", "efficientnet_lite0, 1280-d"),
)


def image_rows(paths: list[Path], tmp: Path, repeats: int, quick: bool) -> list[Row]:
    """One row per encoder: AMP on (the default) against AMP off, default batch and workers."""
    from xmr_utils.core.encoders import build_image_encoder, default_num_workers

    os.environ["TORCH_HOME"] = str(tmp / "torch_home")
    save_random_vgg16(tmp / "torch_home" / "hub" / "checkpoints")
    workers = default_num_workers("cuda")
    rows = []
    for spec, label in ENCODERS:
        rates = {}
        for amp in (True, False):
            enc = build_image_encoder(spec, amp=amp)

            def call(enc: Any = enc) -> None:
                enc.encode_images(paths, batch_size=0, device="cuda", progress=False)

            rates[amp] = timed(call, len(paths), repeats)
        rows.append(
            Row(
                SECTION,
                f"{label}, 500x375 JPEG, decode included, batch 128 (default on a GPU), "
                f"num_workers={workers}, fp16 autocast{' (quick)' if quick else ''}",
                rates[True][1],
                f"{rates[False][0]:.0f}/s fp32",
                f"{rates[True][0] / rates[False][0]:.2f}×",
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows (``quick``: 256 images, 2048 captions, one repeat)."""
    import torch

    from xmr_utils.core.encoders import build_text_encoder

    if not torch.cuda.is_available():
        print("benchmarks.bench_gpu needs a CUDA GPU; none is visible to torch", file=sys.stderr)
        raise SystemExit(2)
    n_img, n_cap, repeats = (256, 2048, 1) if quick else (2048, 16384, 3)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = write_jpegs(tmp / "jpg", n_img)
        rows = image_rows(paths, tmp, repeats, quick)
    texts = captions(n_cap)
    clip_text = build_text_encoder("clip:ViT-B-32?pretrained=none", device="cuda")
    rate, cell = timed(lambda: clip_text.encode_texts(texts, progress=False), n_cap, repeats)
    rows.append(
        Row(
            SECTION,
            f"clip:ViT-B-32 text tower, length-sorted batches of 512, fp16 autocast, "
            f"{torch.cuda.get_device_name()}",
            cell,
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(bench_main(run, __doc__))
