"""``load_corpus``: one entry point from a dataset name or folder to a :class:`CaptionCorpus`.

Which file supplies what:

- captions come from the layout's caption file (``results.csv``, ``Flickr8k.token.txt``,
  ``captions.txt``); a folder with only a Karpathy JSON takes captions from the JSON;
- splits come from the matching Karpathy JSON in the dataset root when present
  (``dataset_flickr30k.json`` gives 29000/1014/1000; restval -> train), else from the
  official Flickr8k split files, else a seeded split (:mod:`xmr_utils.core.data.splits`).

A Karpathy JSON beside a caption file is checked against it: images whose captions differ
are reported (``karpathy_mismatch``); a JSON whose own ``"dataset"`` field names another
dataset is not used for the splits, and a JSON named for another dataset
(``dataset_flickr8k.json`` in a Flickr30k folder) is not used either; both are reported
(``foreign_karpathy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from xmr_utils.core.data.assemble import build_corpus, check_on_missing, check_split_overlap
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.flickr8k_kaggle import read_captions_txt
from xmr_utils.core.data.flickr8k_official import read_split_files, read_token_file
from xmr_utils.core.data.flickr30k_kaggle import read_results_csv
from xmr_utils.core.data.karpathy import (
    KarpathyFile,
    caption_differences,
    dataset_of_file,
    read_karpathy,
)
from xmr_utils.core.data.layouts import Layout, detect_layout
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.synthetic import ensure_synthetic
from xmr_utils.core.errors import XmrError
from xmr_utils.core.registry import Registry

DATASET_NAMES: tuple[str, ...] = ("synthetic", "flickr8k", "flickr30k")
DEFAULT_SYNTHETIC_IMAGES = 600
#: The splits the study cannot do without: notebooks 02/03 train on train and select each
#: model's epoch on val (04-06 report test, or val when the dataset has no test images).
STUDY_SPLITS: tuple[str, ...] = ("train", "val")

CaptionReader = Callable[[Path, str], CaptionRecords]
CAPTION_READERS: Registry[CaptionReader] = Registry(
    "dataset layout",
    {
        "flickr30k_kaggle": read_results_csv,
        "flickr8k_official": read_token_file,
        "flickr8k_kaggle": read_captions_txt,
    },
)


def load_corpus(
    root_or_name: str | Path,
    *,
    data_dir: Path | str = "data",
    split_seed: int = 0,
    on_missing: str = "error",
    synthetic_images: int = DEFAULT_SYNTHETIC_IMAGES,
    split_overlap: str = "error",
    required_splits: tuple[str, ...] = (),
) -> CaptionCorpus:
    """Read a dataset into a :class:`CaptionCorpus`.

    Args:
        root_or_name: ``"synthetic"`` (generated under ``data_dir`` if absent),
            ``"flickr30k"`` / ``"flickr8k"`` (read from ``data_dir/<name>/``), or a path
            to a dataset folder whose layout is recognised from the files present.
            A ``Path`` is always a folder; a ``str`` equal to a dataset name is the name.
        data_dir: where named datasets live.
        split_seed: seed of the split when the dataset has none of its own; also the
            generator seed of the synthetic dataset.
        on_missing: ``"error"`` (default) fails when a listed image is missing on disk;
            ``"drop"`` drops such images with their captions and reports them.
        synthetic_images: number of images of the synthetic dataset.
        split_overlap: ``"error"`` (default) refuses an image listed in more than one split
            (the metrics would score training images as test), naming each with where it is
            listed; ``"keep"`` keeps it in each split and reports it (``split_overlap``).
        required_splits: splits that must not end up empty (the study passes
            :data:`STUDY_SPLITS`); an empty one raises XmrError naming it and the split source.

    Returns:
        The corpus; ``corpus.events``/``corpus.notes`` say what was fixed or skipped.
    """
    check_on_missing(on_missing)
    check_split_overlap(split_overlap)
    root = _dataset_root(root_or_name, Path(data_dir), synthetic_images, split_seed)
    corpus = read_layout(
        detect_layout(root.resolve()),
        on_missing=on_missing,
        split_seed=split_seed,
        split_overlap=split_overlap,
    )
    check_required_splits(corpus, required_splits)
    return corpus


def _dataset_root(
    root_or_name: str | Path, data_dir: Path, synthetic_images: int, split_seed: int
) -> Path:
    """The folder ``root_or_name`` names (the synthetic set generated first if absent)."""
    if isinstance(root_or_name, str) and root_or_name in DATASET_NAMES:
        if root_or_name == "synthetic":
            return ensure_synthetic(data_dir, synthetic_images, split_seed)
        root = data_dir / root_or_name
        if not root.is_dir():
            raise XmrError(
                f"dataset folder {root} does not exist; put {root_or_name} there "
                "(see README: using real data) or pass data_dir= or a dataset path"
            )
        return root
    root = Path(root_or_name).expanduser()
    if not root.exists():
        raise XmrError(
            f"dataset {str(root_or_name)!r} is neither a folder that exists nor one of "
            f"the names {', '.join(DATASET_NAMES)}; fix the path or the name"
        )
    if not root.is_dir():
        raise XmrError(
            f"{root} is a file; pass the dataset folder that contains it ({root.parent})"
        )
    return root


def check_required_splits(corpus: CaptionCorpus, required: tuple[str, ...]) -> None:
    """Raise XmrError naming each split of ``required`` that holds no image of ``corpus``."""
    empty = [split for split in required if len(corpus.splits.get(split, ())) == 0]
    if not empty:
        return
    sizes = ", ".join(f"{k} {len(v)}" for k, v in corpus.splits.items())
    raise XmrError(
        f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} of {corpus.name} "
        f"({corpus.root}) {'are' if len(empty) > 1 else 'is'} empty (images per split: "
        f"{sizes}; split from {corpus.split_source}); training needs images in "
        f"{' and '.join(required)}: list images in the missing split, or use a larger dataset"
    )


def read_layout(
    layout: Layout, *, on_missing: str = "error", split_seed: int = 0, split_overlap: str = "error"
) -> CaptionCorpus:
    """Read the caption file and splits of a recognised ``layout`` into a corpus."""
    karpathy, events = _karpathy_for(layout)
    splits: SplitAssignment | None = None if karpathy is None else karpathy.splits
    if layout.caption_file is None:
        assert karpathy is not None  # a karpathy layout always has its JSON
        records = karpathy.records
    else:
        rel = layout.caption_file.relative_to(layout.root).as_posix()
        records = CAPTION_READERS[layout.kind](layout.caption_file, rel)
        if karpathy is not None:
            events += caption_differences(karpathy, records)
        if splits is None and layout.kind == "flickr8k_official":
            splits = read_split_files(layout.caption_file.parent, layout.root)
    if events:
        records = dataclasses.replace(records, events=[*records.events, *events])
    return build_corpus(
        layout.name,
        layout.root,
        layout.image_dir,
        records,
        splits,
        on_missing=on_missing,
        split_seed=split_seed,
        split_overlap=split_overlap,
    )


def _karpathy_for(layout: Layout) -> tuple[KarpathyFile | None, list[ReaderEvent]]:
    """The layout's Karpathy JSON when it is for this dataset, and what was reported: JSONs
    named for another dataset, and a JSON whose ``"dataset"`` field names another one."""
    events = [
        ReaderEvent(
            "foreign_karpathy",
            path.name,
            0,
            path.name,
            f"{path.name} is Karpathy's file for {dataset_of_file(path)}, not {layout.dataset}; "
            "not used (remove it, or put it beside its own dataset)",
        )
        for path in layout.foreign_karpathy
    ]
    if layout.karpathy_json is None:
        return None, events
    rel = layout.karpathy_json.relative_to(layout.root).as_posix()
    karpathy = read_karpathy(layout.karpathy_json, rel)
    if not karpathy.dataset or karpathy.dataset == layout.dataset:
        return karpathy, events
    if layout.caption_file is None:  # the JSON is the dataset: read it, say what it claims
        message = (
            f"{rel} says its dataset is {karpathy.dataset!r}; read as {layout.dataset} "
            "(its file name)"
        )
        events.append(ReaderEvent("karpathy_mismatch", rel, 0, rel, message))
        return karpathy, events
    message = (
        f"{rel} says its dataset is {karpathy.dataset!r}, not {layout.dataset}; its splits "
        f"are not used (put Karpathy's dataset_{layout.dataset}.json there instead)"
    )
    events.append(ReaderEvent("foreign_karpathy", rel, 0, rel, message))
    return None, events
