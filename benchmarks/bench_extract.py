"""Speed of feature extraction on the CPU, JPEG decoding included.

Generates Flickr-sized JPEGs (500x375, noise + shapes, ~60 KB each) in a temporary folder and
measures, after one warm-up call that loads the model and starts the workers:

- ``efficientnet_lite0`` images/s through :meth:`encode_images` (DataLoader workers decode,
  batched forward, channels-last, inference mode) against a naive loop (PIL open ->
  torchvision transforms -> forward one image at a time under ``no_grad``);
- ``vgg16`` fc7 images/s with random weights saved under the hub-cache file name;
- ``minilm`` captions/s, batched and length-sorted, against one caption at a time;
- the extra memory the chunked cache writer needs while streaming a 4096-d feature file of
  16,384 rows to disk (tracemalloc peak), against the size of the file;
- with ``quick=False`` also efficientnet_lite0 images/s per ``num_workers`` and torch threads.

    python -m benchmarks.bench_extract [--quick]
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import Row, bench_main, time_repeats

SECTION = "extract"
LITE_TARGET = 20.0  # images/s
VGG_TARGET = 5.0  # images/s
MINILM_TARGET = 300.0  # captions/s
WORDS = (
    "dog man woman child girl boy runs jumps sits plays red blue green street park "
    "water grass beach ball bike shirt dress wearing with near on in front of a the "
    "two three people group standing walking down large small white black"
).split()


def write_jpegs(folder: Path, n: int, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """``n`` photo-like JPEGs (noise texture plus shapes) of ``size`` pixels."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = int(rng.integers(0, size[0] - 60)), int(rng.integers(0, size[1] - 60))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            draw.ellipse((x, y, x + 60, y + 50), fill=colour)
        paths.append(folder / f"{i:05d}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def captions(n: int) -> list[str]:
    """``n`` caption-like strings of 6-18 words."""
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, int(rng.integers(6, 19)))) + " ." for _ in range(n)]


def timed(fn: Callable[[], object], n: int, repeats: int) -> tuple[float, str]:
    """Items per second (median of ``repeats``) and the timing cell."""
    t = time_repeats(fn, repeats=repeats, warmup=1)
    return n / t.median_s, f"{n / t.median_s:.1f}/s ({t.cell()} for {n})"


def naive_lite0(paths: list[Path]) -> Callable[[], None]:
    """What one would write first: the package's model as published (no BatchNorm folding),
    and per image PIL -> torchvision transforms -> forward of a batch of one."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from xmr_utils.core.encoders.efficientnet import EfficientNetLite0

    module = EfficientNetLite0(channels_last=False, optimize=False).module("cpu")
    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.498] * 3, [0.502] * 3),
        ]
    )

    def loop() -> None:
        with torch.no_grad():
            for p in paths:
                module(tf(Image.open(p).convert("RGB")).unsqueeze(0))

    return loop


def save_random_vgg16(checkpoints: Path) -> None:
    """Random VGG16 weights (N(0, 1/fan_in)) under the hub cache file name."""
    import torch
    import torchvision

    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()
        }
    gen = torch.Generator().manual_seed(0)
    state = {
        k: (
            torch.randn(s, generator=gen) / float(np.prod(s[1:])) ** 0.5
            if len(s) > 1
            else torch.zeros(s)
        )
        for k, s in shapes.items()
    }
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoints / "vgg16-397923af.pth")


def writer_peak_mb(tmp: Path, n: int = 16_384, dim: int = 4096) -> tuple[float, float]:
    """(tracemalloc peak MB of the chunked writer, file size MB) for ``n`` x ``dim`` float32."""
    from xmr_utils.core import features

    expected = {
        "format": features.FORMAT,
        "kind": "image",
        "spec": "bench:rows",
        "weights_id": "-",
        "preprocessing": "-",
        "dataset": {"name": "bench"},
        "dtype": "float32",
        "shape": [n, dim],
        "extras": {},
    }
    paths = features.CachePaths(tmp / "cache" / "bench", "bench__rows")

    def encode(start: int, stop: int) -> features.Chunk:
        return np.full((stop - start, dim), start, np.float32), {}, 0

    tracemalloc.start()
    features.extract_chunks(paths, expected, encode, chunk_size=512, progress=False, desc="bench")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, paths.features.stat().st_size / 2**20


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows (``quick``: fewer images and captions, one repeat)."""
    import torch

    from xmr_utils.core.encoders import build_image_encoder, build_text_encoder, default_num_workers

    n_img, n_naive, n_vgg, n_cap = (64, 16, 16, 512) if quick else (256, 64, 48, 4096)
    repeats = 1 if quick else 3
    rows: list[Row] = []
    q = " (quick)" if quick else ""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = write_jpegs(tmp / "jpg", n_img)
        lite0 = build_image_encoder("efficientnet_lite0")
        workers = default_num_workers("cpu")

        def ours() -> None:
            lite0.encode_images(paths, batch_size=32, num_workers=workers, progress=False)

        ours_rate, ours_cell = timed(ours, n_img, repeats)
        base_rate, base_cell = timed(naive_lite0(paths[:n_naive]), n_naive, repeats)
        rows.append(
            Row(
                SECTION,
                f"efficientnet_lite0, 500x375 JPEG -> 1280-d, decode included, "
                f"batch 32, num_workers={workers} (default){q}",
                ours_cell,
                f"{base_rate:.1f}/s naive per-image PIL + forward",
                f"{ours_rate / base_rate:.2f}×",
                f"≥ {LITE_TARGET:.0f}/s",
                "yes" if ours_rate >= LITE_TARGET else "no",
            )
        )

        if not quick:
            threads = torch.get_num_threads()
            for t in sorted({1, threads}):
                torch.set_num_threads(t)
                for w in (0, 1, 2):
                    r, cell = timed(
                        lambda w=w: lite0.encode_images(
                            paths[:128], batch_size=32, num_workers=w, progress=False
                        ),
                        128,
                        2,
                    )
                    rows.append(
                        Row(
                            SECTION,
                            f"efficientnet_lite0 num_workers={w}, torch threads"
                            f"={t} (capped at cores - workers)",
                            cell,
                        )
                    )
            torch.set_num_threads(threads)

        old_home = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = str(tmp / "torch_home")
        try:
            save_random_vgg16(tmp / "torch_home" / "hub" / "checkpoints")
            vgg = build_image_encoder("vgg16")
            vgg_rate, vgg_cell = timed(
                lambda: vgg.encode_images(
                    paths[:n_vgg], batch_size=16, num_workers=workers, progress=False
                ),
                n_vgg,
                repeats,
            )
        finally:
            if old_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = old_home
        rows.append(
            Row(
                SECTION,
                f"vgg16 fc7 (random weights), 500x375 JPEG -> 4096-d, batch 16{q}",
                vgg_cell,
                target=f"≥ {VGG_TARGET:.0f}/s",
                met="yes" if vgg_rate >= VGG_TARGET else "no",
            )
        )

        texts = captions(n_cap)
        minilm = build_text_encoder("minilm")
        cap_rate, cap_cell = timed(
            lambda: minilm.encode_texts(texts, batch_size=128, progress=False), n_cap, repeats
        )
        one = texts[:64]
        one_rate, _ = timed(
            lambda: [minilm.encode_texts([t], progress=False) for t in one], len(one), repeats
        )
        rows.append(
            Row(
                SECTION,
                f"minilm captions -> 384-d, batch 128, length-sorted{q}",
                cap_cell,
                f"{one_rate:.1f}/s one caption at a time",
                f"{cap_rate / one_rate:.1f}×",
                f"≥ {MINILM_TARGET:.0f}/s",
                "yes" if cap_rate >= MINILM_TARGET else "no",
            )
        )

        peak, size = writer_peak_mb(tmp)
        rows.append(
            Row(
                SECTION,
                "cache writer: extra memory while streaming 16,384 × 4096 "
                "float32 to disk in chunks of 512",
                f"{peak:.1f} MB peak",
                f"{size:.0f} MB if held in memory",
                f"{size / peak:.0f}× less",
                "≤ 2 chunks (16 MB)",
                "yes" if peak <= 16.5 else "no",
            )
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
