"""A split, or any subset of images, in local indices: the one place that re-indexes owners.

Training, evaluation, snapshots and the notebooks all work on "some images and all their
captions" with the caption -> image relation expressed as rows of the image array; this
module builds that once (:meth:`SplitView.of`) and narrows it (:meth:`SplitView.subset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmr_utils.core.errors import XmrError


@dataclass(frozen=True)
class SplitView:
    """Images and their captions in local indices.

    ``images [n]`` and ``captions [m]`` index the corpus (images in the order given, captions in
    corpus order); ``owner [m]`` maps each caption to its image's row in ``images``.
    """

    name: str
    images: np.ndarray
    captions: np.ndarray
    owner: np.ndarray

    @classmethod
    def of(cls, name: str, images: np.ndarray, corpus_owner: np.ndarray) -> SplitView:
        """The view of ``images`` (corpus image indices, unique, any order) with every caption
        whose owner is among them; ``corpus_owner [N_cap]`` maps all captions to images.

        >>> view = SplitView.of("val", np.array([3, 1]), np.array([0, 1, 1, 3, 2]))
        >>> view.captions.tolist(), view.owner.tolist()
        ([1, 2, 3], [1, 1, 0])
        """
        images = np.asarray(images, dtype=np.int64)
        corpus_owner = np.asarray(corpus_owner, dtype=np.int64)
        if len(np.unique(images)) != len(images):
            raise XmrError(f"the {name} images list an image more than once")
        size = 1 + max(int(images.max(initial=-1)), int(corpus_owner.max(initial=-1)))
        local = np.full(size, -1, dtype=np.int64)
        local[images] = np.arange(len(images))
        captions = np.flatnonzero(local[corpus_owner] >= 0)
        return cls(name, images, captions, local[corpus_owner[captions]])

    def subset(self, rows: np.ndarray, name: str | None = None) -> SplitView:
        """The images at local ``rows`` (in that order) and all their captions, re-indexed.

        >>> view = SplitView("val", np.array([5, 7, 9]), np.array([10, 11, 12]),
        ...                  np.array([0, 2, 2]))
        >>> sub = view.subset(np.array([2]))
        >>> sub.images.tolist(), sub.captions.tolist(), sub.owner.tolist()
        ([9], [11, 12], [0, 0])
        """
        rows = np.asarray(rows, dtype=np.int64)
        local = np.full(len(self.images), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        keep = local[self.owner] >= 0
        return SplitView(
            name or self.name, self.images[rows], self.captions[keep], local[self.owner[keep]]
        )

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)
