"""The contracts every image and text encoder meets, and small helpers they share.

An encoder is built cheaply (no weights are read until first use), so that the feature
cache can ask for :meth:`weights_id` and :meth:`preprocessing_id` to validate a cached file
without loading a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from xmr_utils.core.errors import XmrError


def default_num_workers(device: str = "cpu") -> int:
    """Image-decoding worker processes used when the caller gives none: 0 on a CPU (decode
    in-process, every core computes), ``min(4, cpu count - 1)`` on a GPU.

    On a CPU the forward pass, not JPEG decoding, is the bottleneck, and each worker takes a
    core from torch's compute threads (the loop caps threads at ``cpu count - workers``).
    Measured with ``benchmarks/bench_extract.py`` on 2 quiet cores: efficientnet_lite0 58.9
    img/s with 0 workers + 2 threads vs. 37.5 with 2 workers + 1 thread; VGG16's forward alone
    runs 6.4 img/s on 2 threads but gave 3.1 img/s end to end with 2 workers + 1 thread. On a
    machine busy with other work, ``num_workers=2`` can be faster (24 vs. 8 img/s at a load
    of 8); pass it explicitly there.
    """
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(0, min(4, cores - 1))
    return 0


#: Images per forward pass when the caller passes 0: (CPU, CUDA).
IMAGE_BATCH: tuple[int, int] = (32, 128)
#: Captions per forward pass of a transformer text encoder: (CPU, CUDA).
TEXT_BATCH: tuple[int, int] = (64, 512)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``"cpu"``, ``"cuda"``
    and ``"cuda:N"`` pass through when usable; anything else raises XmrError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or (device == "mps" and torch.backends.mps.is_available()):
        return device
    if not isinstance(device, str) or not device.startswith("cuda"):
        raise XmrError(f"device {device!r} is not one of 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise XmrError(
            f"device {device!r} was requested but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); pass "
            "device='cpu' or device='auto'"
        )
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise XmrError(
            f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    return device


def default_batch_size(device: str, sizes: tuple[int, int] = IMAGE_BATCH) -> int:
    """``sizes[1]`` on a CUDA device, else ``sizes[0]`` (``device`` already resolved)."""
    return sizes[1] if device.startswith("cuda") else sizes[0]


def run_record(device: str, amp: bool) -> dict[str, str]:
    """Where and how an extraction ran, for its manifest: device (with the GPU's name) and the
    forward precision (``fp16-autocast`` on CUDA with ``amp``, else ``fp32``)."""
    record = {"device": device, "precision": "fp32"}
    if device.startswith("cuda"):
        import torch

        record["device_name"] = torch.cuda.get_device_name(torch.device(device))
        if amp:
            record["precision"] = "fp16-autocast"
    return record


@dataclass(frozen=True)
class TextReport:
    """What the last :meth:`TextEncoder.encode_texts` call saw.

    Attributes:
        n_texts: number of texts encoded.
        n_no_known_word: texts that had no word the encoder knows; their row is all zeros.
        examples: up to 5 indices (into the encoded texts) of such texts.
        n_truncated: texts longer than the encoder reads (``max_tokens``), encoded from their
            beginning only (transformer encoders; 0 for word-vector encoders).
        truncated_examples: up to 5 indices of such texts.
        max_tokens: the encoder's token limit (0 when it has none).
    """

    n_texts: int = 0
    n_no_known_word: int = 0
    examples: tuple[int, ...] = field(default=())
    n_truncated: int = 0
    truncated_examples: tuple[int, ...] = field(default=())
    max_tokens: int = 0

    def message(self) -> str:
        """One line for a log, empty when every text had a known word and none was cut."""
        parts = []
        if self.n_no_known_word:
            parts.append(
                f"{self.n_no_known_word} of {self.n_texts} captions have no known word and were "
                f"encoded as zero vectors (e.g. indices {list(self.examples)})"
            )
        if self.n_truncated:
            parts.append(
                f"{self.n_truncated} of {self.n_texts} captions are longer than "
                f"{self.max_tokens} tokens and were encoded from their first {self.max_tokens} "
                f"only (e.g. indices {list(self.truncated_examples)})"
            )
        return "; ".join(parts)

    def merged(self, later: TextReport, offset: int) -> TextReport:
        """This report followed by ``later``, whose indices start at ``offset``."""
        shift = tuple(offset + i for i in later.examples)
        shift_cut = tuple(offset + i for i in later.truncated_examples)
        return TextReport(
            self.n_texts + later.n_texts,
            self.n_no_known_word + later.n_no_known_word,
            (self.examples + shift)[:5],
            self.n_truncated + later.n_truncated,
            (self.truncated_examples + shift_cut)[:5],
            max(self.max_tokens, later.max_tokens),
        )

    def to_dict(self) -> dict[str, object]:
        """Plain JSON (stored in the feature manifest)."""
        return {
            "n_texts": self.n_texts,
            "n_no_known_word": self.n_no_known_word,
            "examples": list(self.examples),
            "n_truncated": self.n_truncated,
            "truncated_examples": list(self.truncated_examples),
            "max_tokens": self.max_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextReport:
        """The report written by :meth:`to_dict`."""
        return cls(
            int(data.get("n_texts", 0)),
            int(data.get("n_no_known_word", 0)),
            tuple(int(i) for i in data.get("examples", ())),
            int(data.get("n_truncated", 0)),
            tuple(int(i) for i in data.get("truncated_examples", ())),
            int(data.get("max_tokens", 0)),
        )


def report_from_mask(
    known: npt.ArrayLike, truncated: npt.ArrayLike | None = None, max_tokens: int = 0
) -> TextReport:
    """Build a :class:`TextReport` from bool arrays ``[N]``: True where a text had a known
    word, and (optionally) True where a text was cut at ``max_tokens``."""
    known_mask = np.asarray(known, dtype=bool)
    missing = np.flatnonzero(~known_mask)
    cut = (
        np.flatnonzero(np.asarray(truncated, dtype=bool)) if truncated is not None else missing[:0]
    )
    return TextReport(
        len(known_mask),
        int(len(missing)),
        tuple(int(i) for i in missing[:5]),
        int(len(cut)),
        tuple(int(i) for i in cut[:5]),
        int(max_tokens),
    )


def safe_l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` ``[N, D]`` scaled to unit length; all-zero rows stay zero (never NaN)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > eps, x / np.maximum(norms, eps), 0.0).astype(np.float32, copy=False)


@runtime_checkable
class ImageEncoder(Protocol):
    """Maps image files to one float32 vector each.

    Attributes:
        spec: canonical cache key, e.g. ``"vgg16:fc7"``; only ``[A-Za-z0-9._:+=-]``.
        dim: feature width ``D``.
    """

    spec: str
    dim: int

    def weights_id(self) -> str:
        """``<weights file name>:<short sha256 of the file>``; raises XmrError when missing."""
        ...

    def preprocessing_id(self) -> str:
        """Short text that changes whenever the pixels fed to the network would change."""
        ...

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> np.ndarray:
        """Features ``[len(paths), dim]`` float32; an unreadable image raises XmrError naming it.

        ``batch_size`` 0 picks one for the device (:data:`IMAGE_BATCH`).
        """
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Maps caption strings to one float32 vector each.

    Attributes:
        spec: canonical cache key, e.g. ``"minilm:mean"``.
        dim: feature width ``D``.
        needs_fit: True when :meth:`fit` must see the training captions first (fastText).
        last_report: :class:`TextReport` of the last :meth:`encode_texts` call.
    """

    spec: str
    dim: int
    needs_fit: bool
    last_report: TextReport

    def weights_id(self) -> str:
        """Identity of the weights (file name + short hash, or the training recipe)."""
        ...

    def fit(self, train_captions: Sequence[str]) -> None:
        """Train on the training split's captions (no-op for pretrained encoders)."""
        ...

    def save(self, directory: Path) -> None:
        """Write the fitted state into ``directory`` (no-op for pretrained encoders)."""
        ...

    def load(self, directory: Path) -> None:
        """Read the fitted state written by :meth:`save` (no-op for pretrained encoders)."""
        ...

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """Features ``[len(texts), dim]`` float32; texts with no known word give zero rows.

        ``batch_size`` 0 picks one for the device; ``device`` None keeps the encoder's own
        (``"auto"``); encoders that look words up ignore both.
        """
        ...


class PretrainedTextEncoder:
    """Mixin for text encoders with nothing to fit: ``fit``/``save``/``load`` do nothing."""

    needs_fit: bool = False

    def fit(self, train_captions: Sequence[str]) -> None:
        """Nothing to train: the weights are pretrained."""

    def save(self, directory: Path) -> None:
        """Nothing to save: the weights are pretrained."""

    def load(self, directory: Path) -> None:
        """Nothing to load: the weights are pretrained."""
