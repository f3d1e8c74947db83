"""Recognise which dataset layout a folder holds, from the files present.

Layouts (caption file + image folder, relative to the dataset root):

- ``flickr30k_kaggle``: ``results.csv`` (or ``flickr30k_images/results.csv``) +
  ``flickr30k_images/`` (or the nested ``flickr30k_images/flickr30k_images/``);
- ``flickr8k_official``: ``Flickr8k_text/Flickr8k.token.txt`` (or ``Flickr8k.token.txt``) +
  ``Flicker8k_Dataset/`` or ``Flickr8k_Dataset/``;
- ``flickr8k_kaggle``: ``captions.txt`` + ``Images/``;
- ``karpathy``: only a ``dataset_{flickr30k,flickr8k,coco}.json`` + an image folder.

A Karpathy JSON beside a caption layout supplies that layout's splits (see
:mod:`xmr_utils.core.data.load`); a Karpathy JSON named for another dataset (a
``dataset_flickr8k.json`` in a Flickr30k folder) is listed in ``Layout.foreign_karpathy``,
reported and not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xmr_utils.core.data.karpathy import KARPATHY_FILES, dataset_of_file
from xmr_utils.core.errors import XmrError

SYNTHETIC_MARKER = "synthetic.json"


@dataclass(frozen=True)
class LayoutSpec:
    """Where one layout keeps its caption file and images (first existing candidate wins)."""

    kind: str
    dataset: str
    caption_files: tuple[str, ...]
    image_dirs: tuple[str, ...]
    karpathy_file: str

    def describe(self) -> str:
        return (
            f"{' or '.join(self.caption_files)} + {' or '.join(d + '/' for d in self.image_dirs)}"
        )


SPECS: tuple[LayoutSpec, ...] = (
    LayoutSpec(
        "flickr30k_kaggle",
        "flickr30k",
        ("results.csv", "flickr30k_images/results.csv"),
        ("flickr30k_images/flickr30k_images", "flickr30k_images"),
        "dataset_flickr30k.json",
    ),
    LayoutSpec(
        "flickr8k_official",
        "flickr8k",
        ("Flickr8k_text/Flickr8k.token.txt", "Flickr8k.token.txt"),
        ("Flicker8k_Dataset", "Flickr8k_Dataset"),
        "dataset_flickr8k.json",
    ),
    LayoutSpec(
        "flickr8k_kaggle", "flickr8k", ("captions.txt",), ("Images",), "dataset_flickr8k.json"
    ),
)
KARPATHY_IMAGE_DIRS: tuple[str, ...] = (
    "images",
    "Images",
    "flickr30k_images/flickr30k_images",
    "flickr30k_images",
    "Flicker8k_Dataset",
    "Flickr8k_Dataset",
)


@dataclass(frozen=True)
class Layout:
    """A recognised dataset folder.

    Attributes:
        kind: ``flickr30k_kaggle``, ``flickr8k_official``, ``flickr8k_kaggle`` or ``karpathy``.
        root: the dataset folder.
        name: corpus name: the canonical dataset name, or the folder name for synthetic data.
        image_dir: folder holding the images.
        caption_file: the layout's caption file (None for ``karpathy``).
        karpathy_json: the Karpathy JSON supplying splits (and, for ``karpathy``, captions).
        dataset: the canonical dataset the layout holds (``flickr30k``, ``flickr8k``, ``coco``),
            also for a synthetic folder in a Flickr layout.
        foreign_karpathy: Karpathy JSONs in the root named for another dataset (not used).
    """

    kind: str
    root: Path
    name: str
    image_dir: Path
    caption_file: Path | None
    karpathy_json: Path | None
    dataset: str = ""
    foreign_karpathy: tuple[Path, ...] = ()


def looked_for() -> str:
    """What :func:`detect_layout` looks for, for error messages."""
    parts = [f"{spec.describe()} ({spec.kind})" for spec in SPECS]
    parts.append(f"{' or '.join(KARPATHY_FILES)} + an image folder (karpathy)")
    return "; ".join(parts)


def _first(root: Path, candidates: tuple[str, ...], want_dir: bool) -> Path | None:
    for candidate in candidates:
        path = root / candidate
        if path.is_dir() if want_dir else path.is_file():
            return path
    return None


def detect_layout(root: Path) -> Layout:
    """The one layout in ``root``; XmrError listing what was looked for if none or several."""
    if not root.is_dir():
        raise XmrError(
            f"dataset folder {root} does not exist; pass an existing dataset folder "
            "or one of the names synthetic, flickr8k, flickr30k"
        )
    found = []
    for spec in SPECS:
        caption_file = _first(root, spec.caption_files, want_dir=False)
        if caption_file is None:
            continue
        image_dir = _first(root, spec.image_dirs, want_dir=True)
        if image_dir is None:
            raise XmrError(
                f"{root} has {caption_file.relative_to(root)} but no image folder "
                f"({' or '.join(d + '/' for d in spec.image_dirs)}); put the images there"
            )
        karpathy = root / spec.karpathy_file
        synthetic = (root / SYNTHETIC_MARKER).is_file()
        foreign = tuple(
            root / name
            for name in KARPATHY_FILES
            if name != spec.karpathy_file and (root / name).is_file()
        )
        found.append(
            Layout(
                spec.kind,
                root,
                root.name if synthetic else spec.dataset,
                image_dir,
                caption_file,
                karpathy if karpathy.is_file() else None,
                spec.dataset,
                foreign,
            )
        )
    if len(found) > 1:
        raise XmrError(
            f"{root} holds more than one dataset layout ({', '.join(f.kind for f in found)}); "
            "keep one of them or point load_corpus at a folder with only one"
        )
    if found:
        return found[0]
    jsons = [root / name for name in KARPATHY_FILES if (root / name).is_file()]
    if len(jsons) > 1:
        raise XmrError(
            f"{root} holds several Karpathy files ({', '.join(p.name for p in jsons)}); "
            "keep the one that matches the images"
        )
    if jsons:
        image_dir = _first(root, KARPATHY_IMAGE_DIRS, want_dir=True) or root
        dataset = dataset_of_file(jsons[0])
        return Layout("karpathy", root, dataset, image_dir, None, jsons[0], dataset)
    raise XmrError(f"{root} holds no known dataset layout; looked for {looked_for()}")
