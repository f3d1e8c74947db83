"""Small corpora and cheap fake encoders shared by the feature-cache tests.

A module of its own (not a conftest) so that other processes (the concurrency tests' child
processes, Dask workers) can import it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from xmr_utils.core.data.corpus import CaptionCorpus

CAPTIONS = (
    "a brown dog runs on the grass",
    "a dog plays with a ball",
    "two kids swim in a lake",
    "children splash in the water",
    "a man rides a bicycle",
    "a cyclist on a road",
    "a woman reads a book",
    "a lady with a novel",
    "a red car on a street",
    "a vehicle parked outside",
    "zebras graze on savanna",
    "striped animals eating",
    "",
    "!!!",
)


def make_corpus(
    root: Path, n_images: int = 7, name: str = "tiny", captions: Sequence[str] = CAPTIONS
) -> CaptionCorpus:
    """``n_images`` drawn JPEGs, two captions each; images 0-3 train, 4-5 val, 6 test."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n_images):
        img = Image.new("RGB", (64 + 8 * i, 48), tuple(int(c) for c in rng.integers(0, 255, 3)))
        ImageDraw.Draw(img).ellipse((5, 5, 40, 40), fill=(255 - 30 * i, 20 * i, 90))
        files.append(root / f"im{i:02d}.jpg")
        img.save(files[-1])
    caps = tuple(captions[: 2 * n_images])
    owner = np.arange(len(caps)) // 2
    splits = {
        "train": np.arange(min(4, n_images)),
        "val": np.arange(4, min(6, n_images)),
        "test": np.arange(6, n_images),
    }
    return CaptionCorpus(name, root, tuple(files), caps, owner, splits)


class FakeImageEncoder:
    """Cheap deterministic encoder: mean RGB and width of each image; counts its calls."""

    dim = 4

    def __init__(
        self,
        fail_after_calls: int | None = None,
        weights: str = "fake.pth:0001",
        spec: str = "fake:pool",
    ) -> None:
        self.spec = spec
        self.fail_after_calls = fail_after_calls
        self.weights = weights
        self.calls: list[list[str]] = []

    def weights_id(self) -> str:
        return self.weights

    def preprocessing_id(self) -> str:
        return "mean rgb + width"

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> np.ndarray:
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt  # the kernel was interrupted mid-extraction
        self.calls.append([p.name for p in paths])
        rows = []
        for p in paths:
            with Image.open(p) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
            rows.append([*pixels.mean(axis=(0, 1)), pixels.shape[1]])
        return np.asarray(rows, dtype=np.float32)


class FakeRegionEncoder(FakeImageEncoder):
    """A region encoder with per-image extra outputs (like faster_rcnn:regions)."""

    extra_outputs = {"regions": ((3, 4), "float32"), "counts": ((), "int32")}

    def encode_images_with_extras(self, paths, **kwargs):
        pooled = self.encode_images(paths, **kwargs)
        regions = np.repeat(pooled[:, None, :], 3, axis=1)
        return pooled, {"regions": regions, "counts": np.full(len(paths), 3, np.int32)}


class LoggingEncoder(FakeImageEncoder):
    """A fake encoder for other processes: ``dim`` columns (the first four as above, the
    rest derived from them), an optional sleep per call, one ``pid name...`` line appended
    to ``log`` per call, an optional self-kill (SIGKILL) when it meets ``kill_on`` while the
    file ``kill_marker`` does not exist yet (it creates it first), an error on the image
    named ``fail_on``, and a pause before the image ``hold_on`` until ``release`` exists."""

    def __init__(
        self,
        log: Path,
        dim: int = 4,
        sleep_s: float = 0.0,
        kill_on: str = "",
        kill_marker: Path | None = None,
        fail_on: str = "",
        hold_on: str = "",
        release: Path | str | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.log, self.sleep_s = dim, Path(log), sleep_s
        self.kill_on, self.kill_marker, self.fail_on = kill_on, kill_marker, fail_on
        self.hold_on, self.release = hold_on, Path(release) if release else None

    def encode_images(self, paths: Sequence[Path], **kwargs) -> np.ndarray:
        import os
        import signal
        import time

        names = [Path(p).name for p in paths]
        if self.kill_on in names and self.kill_marker and not self.kill_marker.exists():
            self.kill_marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-shard
        while self.hold_on in names and self.release and not self.release.exists():
            time.sleep(0.02)
        if self.fail_on in names:
            raise ValueError(f"cannot decode {self.fail_on}")
        time.sleep(self.sleep_s)
        base = super().encode_images(paths, **kwargs)
        with self.log.open("a") as out:
            out.write(f"{os.getpid()} {' '.join(names)}\n")
        reps = -(-self.dim // base.shape[1])
        scale = np.arange(1, reps * base.shape[1] + 1, dtype=np.float32) / 7
        return (np.tile(base, reps) * scale)[:, : self.dim].astype(np.float32)


def read_log(log: Path) -> list[tuple[int, list[str]]]:
    """``(pid, image names)`` of every call a :class:`LoggingEncoder` made."""
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(int(parts[0]), parts[1:]) for parts in lines]
