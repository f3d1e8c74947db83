"""``load_corpus``: one entry point from a dataset name or folder to a :class:`CaptionCorpus`.

Which file supplies what:

- captions come from the layout's caption file (``results.csv``, ``Flickr8k.token.txt``,
  ``captions.txt``); a folder with only a Karpathy JSON takes captions from the JSON;
- splits come from the matching Karpathy JSON in the dataset root when present
  (``dataset_flickr30k.json`` gives 29000/1014/1000; restval -> train), else from the
  official Flickr8k split files, else a seeded split (:mod:`xmr_utils.core.data.splits`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xmr_utils.core.data.assemble import build_corpus, check_on_missing
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.flickr8k_kaggle import read_captions_txt
from xmr_utils.core.data.flickr8k_official import read_split_files, read_token_file
from xmr_utils.core.data.flickr30k_kaggle import read_results_csv
from xmr_utils.core.data.karpathy import read_karpathy
from xmr_utils.core.data.layouts import Layout, detect_layout
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.synthetic import ensure_synthetic
from xmr_utils.core.errors import XmrError
from xmr_utils.core.registry import Registry

DATASET_NAMES: tuple[str, ...] = ("synthetic", "flickr8k", "flickr30k")
DEFAULT_SYNTHETIC_IMAGES = 600

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

    Returns:
        The corpus; ``corpus.events``/``corpus.notes`` say what was fixed or skipped.
    """
    check_on_missing(on_missing)
    data_dir = Path(data_dir)
    if isinstance(root_or_name, str) and root_or_name in DATASET_NAMES:
        if root_or_name == "synthetic":
            # imported here so that `python -m xmr_utils.core.data.synthetic` runs it fresh

            root = ensure_synthetic(data_dir, synthetic_images, split_seed)
        else:
            root = data_dir / root_or_name
            if not root.is_dir():
                raise XmrError(
                    f"dataset folder {root} does not exist; put {root_or_name} there "
                    "(see README: using real data) or pass data_dir= or a dataset path"
                )
    else:
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
    return read_layout(detect_layout(root.resolve()), on_missing=on_missing, split_seed=split_seed)


def read_layout(layout: Layout, *, on_missing: str = "error", split_seed: int = 0) -> CaptionCorpus:
    """Read the caption file and splits of a recognised ``layout`` into a corpus."""
    splits: SplitAssignment | None = None
    if layout.karpathy_json is not None:
        rel = layout.karpathy_json.relative_to(layout.root).as_posix()
        json_records, splits = read_karpathy(layout.karpathy_json, rel)
    if layout.caption_file is None:
        records = json_records
    else:
        rel = layout.caption_file.relative_to(layout.root).as_posix()
        records = CAPTION_READERS[layout.kind](layout.caption_file, rel)
        if splits is None and layout.kind == "flickr8k_official":
            splits = read_split_files(layout.caption_file.parent, layout.root)
    return build_corpus(
        layout.name,
        layout.root,
        layout.image_dir,
        records,
        splits,
        on_missing=on_missing,
        split_seed=split_seed,
    )
