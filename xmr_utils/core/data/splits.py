"""Seeded train/val/test split used when a dataset ships no split of its own."""

from __future__ import annotations

import numpy as np

# Karpathy's Flickr30k sizes: val and test never exceed these; smaller datasets get 10 % each.
MAX_VAL_IMAGES = 1014
MAX_TEST_IMAGES = 1000
HELD_OUT_FRACTION = 0.1


def seeded_split_sizes(n_images: int) -> dict[str, int]:
    """Split sizes for ``n_images``: val and test are 10 % each, capped at 1014 and 1000.

    Flickr30k's 31,783 images give 29,769/1,014/1,000 (Karpathy's sizes for val and test);
    600 synthetic images give 480/60/60.
    """
    val = min(MAX_VAL_IMAGES, round(HELD_OUT_FRACTION * n_images))
    test = min(MAX_TEST_IMAGES, round(HELD_OUT_FRACTION * n_images))
    return {"train": n_images - val - test, "val": val, "test": test}


def seeded_split(n_images: int, seed: int) -> dict[str, np.ndarray]:
    """Random disjoint image indices per split (sizes from :func:`seeded_split_sizes`).

    Returns split name -> sorted int64 indices ``[n_split]``; the same ``(n_images, seed)``
    always gives the same split.
    """
    sizes = seeded_split_sizes(n_images)
    order = np.random.default_rng(seed).permutation(n_images)
    val_end = sizes["val"]
    test_end = val_end + sizes["test"]
    return {
        "train": np.sort(order[test_end:]),
        "val": np.sort(order[:val_end]),
        "test": np.sort(order[val_end:test_end]),
    }


def seeded_split_source(seed: int) -> str:
    """The ``split_source`` text of a seeded split."""
    return f"seeded (seed={seed}), not the Karpathy split"
