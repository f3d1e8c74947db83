"""Builders of small dataset folders, one per layout, written into ``tmp_path`` by the tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest


def jpeg_bytes(colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid 16x16 JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_images(folder: Path, names: Iterable[str]) -> None:
    """Write a small valid JPEG for each name (sub-folders created as needed)."""
    data = jpeg_bytes()
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_text(path: Path, lines: Iterable[str], *, crlf: bool = False, bom: bool = False) -> None:
    """Write ``lines`` with LF or CRLF endings, optionally with a UTF-8 BOM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    newline = "\r\n" if crlf else "\n"
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))


def caption(name: str, k: int) -> str:
    """A distinct caption for caption ``k`` of image ``name``."""
    return f"Caption {k} of image {name.split('.')[0]} , with a comma ."


FLICKR30K_IMAGES = tuple(f"{1000 + i}.jpg" for i in range(8)) + ("2199200615.jpg",)
QUIRK_ROW = "2199200615.jpg| 4   A dog runs across the grass ."


def results_csv_lines(images: Iterable[str] = FLICKR30K_IMAGES) -> list[str]:
    """Kaggle results.csv lines with the real file's 2199200615 quirk row."""
    lines = ["image_name| comment_number| comment"]
    for name in images:
        for k in range(5):
            if name == "2199200615.jpg" and k == 4:
                lines.append(QUIRK_ROW)
            else:
                lines.append(f"{name}| {k}| {caption(name, k)}")
    return lines


@pytest.fixture
def flickr30k_kaggle(tmp_path: Path) -> Callable[..., Path]:
    """Build a Kaggle Flickr30k folder; returns its root."""

    def build(
        lines: list[str] | None = None,
        *,
        images: Iterable[str] = FLICKR30K_IMAGES,
        nested: bool = False,
        crlf: bool = False,
        bom: bool = False,
        name: str = "f30k",
    ) -> Path:
        root = tmp_path / name
        image_dir = root / "flickr30k_images"
        write_images(image_dir / "flickr30k_images" if nested else image_dir, images)
        write_text(root / "results.csv", lines or results_csv_lines(), crlf=crlf, bom=bom)
        return root

    return build


FLICKR8K_IMAGES = tuple(f"{i}_aa{i}.jpg" for i in range(1, 9))
STRAY = "2258277193_586949ec62.jpg"


@pytest.fixture
def flickr8k_official(tmp_path: Path) -> Callable[..., Path]:
    """Build an official Flickr8k folder with stray ``.jpg.1`` entries; returns its root.

    train: images 1-5 and the stray image's base name (absent on disk, as in the real
    dataset), dev: images 6-8, test split file only when ``with_test``.
    """

    def build(
        *,
        crlf: bool = False,
        bom: bool = False,
        with_test: bool = False,
        image_folder: str = "Flicker8k_Dataset",
        extra_train: Iterable[str] = (),
    ) -> Path:
        root = tmp_path / "f8k"
        write_images(root / image_folder, FLICKR8K_IMAGES)
        tokens = []
        for name in FLICKR8K_IMAGES[:4]:
            tokens += [f"{name}#{k}\t{caption(name, k)}" for k in range(5)]
        tokens += [f"{STRAY}.1#{k}\tA stray caption {k} ." for k in range(5)]
        for name in FLICKR8K_IMAGES[4:]:
            tokens += [f"{name}#{k}\t{caption(name, k)}" for k in range(5)]
        text = root / "Flickr8k_text"
        write_text(text / "Flickr8k.token.txt", tokens, crlf=crlf, bom=bom)
        train = [*FLICKR8K_IMAGES[:5], STRAY, *extra_train]
        write_text(text / "Flickr_8k.trainImages.txt", train, crlf=crlf, bom=bom)
        write_text(text / "Flickr_8k.devImages.txt", FLICKR8K_IMAGES[5:], crlf=crlf, bom=bom)
        if with_test:
            write_text(text / "Flickr_8k.testImages.txt", [], crlf=crlf)
        return root

    return build


@pytest.fixture
def flickr8k_kaggle(tmp_path: Path) -> Callable[..., Path]:
    """Build a Kaggle Flickr8k folder (``Images/`` + ``captions.txt``); returns its root."""

    def build(lines: list[str] | None = None, *, crlf: bool = False, bom: bool = False) -> Path:
        root = tmp_path / "f8k_kaggle"
        write_images(root / "Images", FLICKR8K_IMAGES[:3])
        if lines is None:
            lines = ["image,caption"]
            for name in FLICKR8K_IMAGES[:3]:
                lines += [f'{name},"{caption(name, k)}"' for k in range(4)]
                lines.append(f'{name},"A ""quoted"" word, and a comma ."')
        write_text(root / "captions.txt", lines, crlf=crlf, bom=bom)
        return root

    return build


def karpathy_json(images: dict[str, str], sentences: int = 5) -> str:
    """Karpathy-style JSON text for ``{filename: split}``."""
    entries = [
        {
            "filename": name,
            "imgid": i,
            "split": split,
            "sentences": [{"raw": caption(name, k), "tokens": []} for k in range(sentences)],
        }
        for i, (name, split) in enumerate(images.items())
    ]
    return json.dumps({"dataset": "flickr30k", "images": entries})


# ---------------------------------------------------------------- the official Flickr8k release

RELEASE_ABSENT = "2258277193_586949ec62.jpg"  # captioned, in no split file, not in the archive
RELEASE_IMAGES = tuple(f"{1000268201 + 7919 * i}_{i:010x}.jpg" for i in range(8091))
RELEASE_SPLITS = {"train": (0, 6000), "val": (6000, 7000), "test": (7000, 8000)}  # 91 in none
RELEASE_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
RELEASE_ABSENT_AT = 4000  # the absent image's captions come after this many images' rows


def release_token_lines() -> list[str]:
    """``Flickr8k.token.txt`` of the release: 5 captions for each of the 8091 images, 5 for
    the absent image, and 5 stray ``<absent>.1#n`` entries right after them (40,465 lines)."""
    lines = []
    for i, name in enumerate(RELEASE_IMAGES):
        if i == RELEASE_ABSENT_AT:
            lines += [f"{RELEASE_ABSENT}#{k}\tPeople waiting for a train , {k} ." for k in range(5)]
            lines += [f"{RELEASE_ABSENT}.1#{k}\tA stray caption {k} ." for k in range(5)]
        lines += [f"{name}#{k}\tCaption {k} of photo {i} ." for k in range(5)]
    return lines


def build_flickr8k_release(root: Path) -> Path:
    """Write the official Flickr8k layout with the public files' quirks into ``root``.

    ``Flicker8k_Dataset/`` holds 8091 (identical, tiny) JPEGs; ``Flickr8k_text/`` holds the
    token file of :func:`release_token_lines` and all three split files (6000/1000/1000 of
    the present images; 91 present images are in no split file, as in the release).
    """
    folder = root / "Flicker8k_Dataset"
    folder.mkdir(parents=True)
    data = jpeg_bytes()
    for name in RELEASE_IMAGES:
        (folder / name).write_bytes(data)
    text = root / "Flickr8k_text"
    write_text(text / "Flickr8k.token.txt", release_token_lines())
    for split, (start, stop) in RELEASE_SPLITS.items():
        write_text(text / RELEASE_SPLIT_FILES[split], RELEASE_IMAGES[start:stop])
    return root


@pytest.fixture
def flickr8k_release(tmp_path: Path) -> Path:
    """The official Flickr8k release with its quirks (:func:`build_flickr8k_release`)."""
    return build_flickr8k_release(tmp_path / "Flickr8k")
