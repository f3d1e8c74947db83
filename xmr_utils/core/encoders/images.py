"""Image decoding for the image encoders: PIL in DataLoader worker processes.

Workers return uint8 ``[H, W, 3]`` arrays (4x less to pass between processes than float);
the main process stacks them and normalises on the device. Stacking HWC and permuting gives
an NCHW tensor that is already channels-last in memory, which oneDNN convolutions prefer.
A file that cannot be decoded is reported back from the worker and raised as one
:class:`XmrError` naming the file (never a worker traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmr_utils.core.encoders.base import default_num_workers
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImagePipeline:
    """How a file becomes network input.

    Attributes:
        resize: shorter side after resizing (bilinear, JPEG draft decoding first); None keeps
            the decoded size (detectors resize themselves).
        crop: side of the centre crop; None keeps the whole resized image.
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def id(self) -> str:
        """Text that changes whenever the produced tensors would change."""
        mean = ",".join(f"{m:.4g}" for m in self.mean)
        std = ",".join(f"{s:.4g}" for s in self.std)
        return f"pil-draft+bilinear short={self.resize} crop={self.crop} mean=({mean}) std=({std})"


def decode_image(path: Path, pipeline: ImagePipeline) -> np.ndarray:
    """Read ``path`` as uint8 RGB ``[H, W, 3]`` resized and centre-cropped per ``pipeline``."""
    from PIL import Image

    with Image.open(path) as img:
        if pipeline.resize is not None:
            img.draft("RGB", (pipeline.resize, pipeline.resize))
        rgb = img.convert("RGB")
    if pipeline.resize is not None:
        w, h = rgb.size
        scale = pipeline.resize / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
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


def keep_list(batch: list[Item]) -> list[Item]:
    """DataLoader collate function that keeps the batch as a list (images may differ in size)."""
    return batch


def iterate_decoded(
    paths: Sequence[Path],
    pipeline: ImagePipeline,
    *,
    batch_size: int,
    num_workers: int | None,
    progress: bool,
    desc: str,
    device: str = "cpu",
) -> Iterator[list[np.ndarray]]:
    """Yield the decoded images of ``paths`` in order, ``batch_size`` at a time.

    With worker processes on a CPU device, torch's compute threads are capped at
    ``cpu count - workers`` while iterating (and restored after), so decoding and compute
    do not fight over the same cores. Raises XmrError naming the first undecodable file.
    """
    import os

    import torch
    from tqdm.auto import tqdm

    workers = default_num_workers(device) if num_workers is None else int(num_workers)
    if workers < 0:
        raise XmrError(f"num_workers={workers} is negative; pass 0 (decode here) or more")
    if len(paths) <= batch_size:
        workers = 0  # starting processes costs more than decoding one batch
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, pipeline),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=keep_list,
        pin_memory=device.startswith("cuda"),
    )
    threads = torch.get_num_threads()
    if workers and not device.startswith("cuda"):
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        with tqdm(
            total=len(paths), desc=desc, unit="img", disable=not progress, leave=False
        ) as bar:
            for batch in loader:
                for i, pixels, error in batch:
                    if pixels is None:
                        raise XmrError(
                            f"cannot decode image {paths[i]} ({error}); replace "
                            "the file or remove it from the dataset"
                        )
                yield [pixels for _, pixels, _ in batch]  # type: ignore[misc]
                bar.update(len(batch))
    finally:
        torch.set_num_threads(threads)


def to_input(images: list[np.ndarray], pipeline: ImagePipeline, device: str) -> torch.Tensor:
    """Stack same-size uint8 HWC images into a normalised float NCHW (channels-last) tensor."""
    import torch

    x = torch.from_numpy(np.stack(images)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pipeline.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pipeline.std, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def run_pooled(
    paths: Sequence[Path],
    pipeline: ImagePipeline,
    forward: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    *,
    batch_size: int,
    num_workers: int | None,
    device: str,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Run ``forward`` (normalised NCHW -> ``[B, dim]``) over all images: ``[N, dim]`` float32."""
    import torch

    out = np.empty((len(paths), dim), dtype=np.float32)
    start = 0
    with torch.inference_mode():
        for images in iterate_decoded(
            paths,
            pipeline,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            desc=desc,
            device=device,
        ):
            feats = forward(to_input(images, pipeline, device))
            out[start : start + len(images)] = feats.float().cpu().numpy()
            start += len(images)
    return out
