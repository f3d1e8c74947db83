"""What training is given, checked once: feature tables, caption ownership, two image splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmr_utils.core.data.views import SplitView
from xmr_utils.core.errors import XmrError


@dataclass(frozen=True)
class TrainData:
    """The arrays one model trains and selects on.

    ``image_feats [N_img, Di]`` and ``text_feats [N_cap, Dt]`` are the full feature tables;
    ``owner [N_cap]`` (int) maps each caption to its image; ``train_images`` and
    ``val_images`` are the (disjoint) image indices of the two splits.
    """

    image_feats: np.ndarray
    text_feats: np.ndarray
    owner: np.ndarray
    train_images: np.ndarray
    val_images: np.ndarray


@dataclass(frozen=True)
class CheckedData:
    """:class:`TrainData` after :func:`check_data`: 2-D features, int64 ``owner [N_cap]``,
    and the two splits as :class:`~xmr_utils.core.data.views.SplitView`."""

    image_feats: np.ndarray
    text_feats: np.ndarray
    owner: np.ndarray
    train: SplitView
    val: SplitView


def _as_feats(x: np.ndarray, name: str, rows: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise XmrError(f"{name} must be a non-empty 2-D array [{rows}, D], got shape {x.shape}")
    return x


def _image_index(images: np.ndarray, n_images: int, split: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 1 or not np.issubdtype(images.dtype, np.integer):
        raise XmrError(f"{split}_images must be a 1-D integer array of image indices")
    if len(images) and (images.min() < 0 or images.max() >= n_images):
        raise XmrError(f"{split}_images refers to images outside 0..{n_images - 1}")
    if len(np.unique(images)) != len(images):
        raise XmrError(f"{split}_images lists an image more than once")
    return images.astype(np.int64)


def _check_owner(owner: np.ndarray, n_images: int, n_captions: int) -> np.ndarray:
    owner = np.asarray(owner)
    if owner.shape != (n_captions,) or not np.issubdtype(owner.dtype, np.integer):
        raise XmrError(
            f"owner must be an integer array [N_cap={n_captions}] (caption -> image), "
            f"got shape {owner.shape} and dtype {owner.dtype}"
        )
    if owner.min() < 0 or owner.max() >= n_images:
        raise XmrError(f"owner refers to images outside the {n_images} image_feats rows")
    return owner.astype(np.int64)


def check_data(data: TrainData) -> CheckedData:
    """Validate ``data``; every mistake raises :class:`XmrError` naming the array at fault."""
    image_feats = _as_feats(data.image_feats, "image_feats", "N_img")
    text_feats = _as_feats(data.text_feats, "text_feats", "N_cap")
    n = len(image_feats)
    owner = _check_owner(data.owner, n, len(text_feats))
    train = _image_index(data.train_images, n, "train")
    val = _image_index(data.val_images, n, "val")
    if len(train) == 0:
        raise XmrError("the train split is empty; pass the training image indices")
    if len(val) == 0:
        raise XmrError("the val split is empty; model selection needs validation images")
    shared = np.intersect1d(train, val)
    if len(shared):
        raise XmrError(f"train and val splits share {len(shared)} images (e.g. {shared[0]})")
    train_split = SplitView.of("train", train, owner)
    if len(train_split.captions) < 2:
        raise XmrError(
            f"the train split has {len(train_split.captions)} captions; training needs >= 2"
        )
    val_split = SplitView.of("val", val, owner)
    if len(val) < 2 or len(val_split.captions) < 2:
        raise XmrError(
            f"the val split has {len(val)} images and {len(val_split.captions)} captions; "
            f"validation needs at least 2 of each"
        )
    return CheckedData(image_feats, text_feats, owner, train_split, val_split)
