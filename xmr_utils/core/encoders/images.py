"""Image decoding for the image encoders: PIL in DataLoader worker processes.

Workers return uint8 ``[H, W, 3]`` arrays (4x less to pass between processes than float);
a batch of same-size images is stacked in the worker into one uint8 ``[B, H, W, 3]`` tensor,
which the DataLoader copies into pinned memory when the device is a GPU, so the copy to the
device overlaps the next batch's decoding. Normalisation runs on the device. Stacking HWC and
permuting gives an NCHW tensor that is already channels-last in memory, which oneDNN
convolutions prefer. A file that cannot be decoded is reported back from the worker and
raised as one :class:`XmrError` naming the file (never a worker traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from xmr_utils.core.encoders.base import default_num_workers
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")


@dataclass(frozen=True)
class ImagePipeline:
    """How a file becomes network input.

    Attributes:
        resize: shorter side after resizing (bilinear, JPEG draft decoding first); None keeps
            the decoded size (detectors resize themselves).
        crop: side of the centre crop; None keeps the whole resized image.
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
        interpolation: ``bilinear`` or ``bicubic`` (PIL, antialiased when shrinking).
        squash: resize the whole image to ``resize x resize`` without keeping its aspect
            ratio (torchvision ``Resize((s, s))``); ``crop`` then must be None or ``resize``.
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    squash: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise XmrError(
                f"interpolation {self.interpolation!r} is not one of {list(INTERPOLATIONS)}"
            )
        if self.squash and (self.resize is None or self.crop not in (None, self.resize)):
            raise XmrError("a squashed image needs resize=S and crop None or S")

    def id(self) -> str:
        """Text that changes whenever the produced tensors would change."""
        mean = ",".join(f"{m:.4g}" for m in self.mean)
        std = ",".join(f"{s:.4g}" for s in self.std)
        size = f"squash={self.resize}" if self.squash else f"short={self.resize} crop={self.crop}"
        return f"pil-draft+{self.interpolation} {size} mean=({mean}) std=({std})"


def decode_image(path: Path, pipeline: ImagePipeline) -> np.ndarray:
    """Read ``path`` as uint8 RGB ``[H, W, 3]`` resized and centre-cropped per ``pipeline``."""
    from PIL import Image

    bicubic = pipeline.interpolation == "bicubic"
    resample = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR
    with Image.open(path) as img:
        if pipeline.resize is not None:
            img.draft("RGB", (pipeline.resize, pipeline.resize))
        rgb = img.convert("RGB")
    if pipeline.resize is not None:
        w, h = rgb.size
        scale = pipeline.resize / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if pipeline.squash:
            size = (pipeline.resize, pipeline.resize)
        if size != rgb.size:
            rgb = rgb.resize(size, resample)
    if pipeline.crop is not None:
        w, h = rgb.size
        c = pipeline.crop
        if w < c or h < c:
            raise ValueError(f"image of {w}x{h} pixels is smaller than the {c}-pixel crop")
        left, top = (w - c) // 2, (h - c) // 2
        rgb = rgb.crop((left, top, left + c, top + c))
    return np.array(rgb, dtype=np.uint8)  # writable: torch warns about read-only arrays


class ImageFiles:
    """Map-style dataset for a DataLoader: item ``i`` -> ``(i, pixels or None, error text)``."""

    def __init__(self, paths: Sequence[Path], pipeline: ImagePipeline) -> None:
        self.paths = [Path(p) for p in paths]
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return i, decode_image(self.paths[i], self.pipeline), ""
        except Exception as exc:  # noqa: BLE001 - reported to the main process as one message
            return i, None, f"{type(exc).__name__}: {exc}"


Item = tuple[int, np.ndarray | None, str]


class DecodedBatch:
    """One DataLoader batch: ``images`` (uint8 ``[H, W, 3]`` each, None where decoding failed,
    with the reason in ``errors``) and, when all share one size, ``stacked`` uint8
    ``[B, H, W, 3]`` — a tensor the DataLoader pins for a GPU (it calls :meth:`pin_memory`)."""

    def __init__(self, items: list[Item]) -> None:
        import torch

        self.indices = [i for i, _, _ in items]
        self.images = [pixels for _, pixels, _ in items]
        self.errors = [error for _, _, error in items]
        shapes = {im.shape for im in self.images if im is not None}
        ok = len(shapes) == 1 and all(im is not None for im in self.images)
        stack = [im for im in self.images if im is not None]  # all of them when ok
        self.stacked: Any = torch.from_numpy(np.stack(stack)) if ok else None

    def __len__(self) -> int:
        return len(self.indices)

    def pin_memory(self) -> DecodedBatch:
        if self.stacked is not None:
            self.stacked = self.stacked.pin_memory()
        return self

    def pixels(self) -> Any:
        """``stacked`` when there is one, else the list of images."""
        return self.stacked if self.stacked is not None else self.images


def collate_decoded(batch: list[Item]) -> DecodedBatch:
    """DataLoader collate function: a :class:`DecodedBatch` (images may differ in size)."""
    return DecodedBatch(batch)


def autocast_for(device: str, amp: bool) -> Any:
    """``torch.autocast`` to float16 on a CUDA device when ``amp``; else a no-op context.

    Used for the frozen encoders' forward passes only (inference: no loss scaling needed;
    features are cast back to float32 before they are stored).
    """
    import torch

    if amp and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@dataclass(frozen=True)
class LoadOptions:
    """How images are fed to a network: ``batch_size`` images per batch, ``num_workers``
    decoding processes (None: :func:`default_num_workers`), the resolved ``device``, a
    progress bar labelled ``desc`` when ``progress``."""

    batch_size: int
    num_workers: int | None = None
    device: str = "cpu"
    progress: bool = True
    desc: str = ""


def iterate_decoded(
    paths: Sequence[Path], pipeline: ImagePipeline, options: LoadOptions
) -> Iterator[DecodedBatch]:
    """Yield the decoded images of ``paths`` in order, ``options.batch_size`` at a time.

    With worker processes on a CPU device, torch's compute threads are capped at
    ``cpu count - workers`` while iterating (and restored after), so decoding and compute
    do not fight over the same cores. On a CUDA device batches arrive in pinned memory.
    Raises XmrError naming the first undecodable file.
    """
    import os

    import torch
    from tqdm.auto import tqdm

    device, batch_size = options.device, options.batch_size
    workers = default_num_workers(device) if options.num_workers is None else options.num_workers
    if workers < 0:
        raise XmrError(f"num_workers={workers} is negative; pass 0 (decode here) or more")
    if len(paths) <= batch_size:
        workers = 0  # starting processes costs more than decoding one batch
    # ImageFiles is a duck-typed map-style dataset (subclassing torch's would import torch here)
    dataset = cast("torch.utils.data.Dataset[Item]", ImageFiles(paths, pipeline))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=int(workers),
        collate_fn=collate_decoded,
        pin_memory=device.startswith("cuda"),
    )
    threads = torch.get_num_threads()
    if workers and not device.startswith("cuda"):
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        with tqdm(
            total=len(paths),
            desc=options.desc,
            unit="img",
            disable=not options.progress,
            leave=False,
        ) as bar:
            for batch in loader:
                for i, pixels, error in zip(batch.indices, batch.images, batch.errors, strict=True):
                    if pixels is None:
                        raise XmrError(
                            f"cannot decode image {paths[i]} ({error}); replace "
                            "the file or remove it from the dataset"
                        )
                yield batch
                bar.update(len(batch))
    finally:
        torch.set_num_threads(threads)


def to_input(images: Any, pipeline: ImagePipeline, device: str) -> torch.Tensor:
    """Same-size uint8 HWC images (a list of arrays, or a uint8 ``[B, H, W, 3]`` tensor, pinned
    or not) as a normalised float NCHW (channels-last) tensor on ``device``."""
    import torch

    stacked = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.stack(images))
    x = stacked.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def run_pooled(
    paths: Sequence[Path],
    pipeline: ImagePipeline,
    forward: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    options: LoadOptions,
    amp: bool = False,
) -> np.ndarray:
    """Run ``forward`` (normalised NCHW -> ``[B, dim]``) over all images: ``[N, dim]`` float32.

    ``amp`` runs ``forward`` under float16 autocast on a CUDA device (:func:`autocast_for`).
    """
    import torch

    out = np.empty((len(paths), dim), dtype=np.float32)
    start = 0
    with torch.inference_mode():
        for batch in iterate_decoded(paths, pipeline, options):
            with autocast_for(options.device, amp):
                feats = forward(to_input(batch.pixels(), pipeline, options.device))
            out[start : start + len(batch)] = feats.float().cpu().numpy()
            start += len(batch)
    return out
