"""Datasets as :class:`CaptionCorpus`: readers per layout, the synthetic generator, validation.

>>> from xmr_utils.data import load_corpus, validate
>>> corpus = load_corpus("synthetic", data_dir="data")          # doctest: +SKIP
>>> validate(corpus).to_frame()                                  # doctest: +SKIP
"""

from xmr_utils.data.corpus import CaptionCorpus
from xmr_utils.data.events import ReaderEvent
from xmr_utils.data.load import DATASET_NAMES, load_corpus
from xmr_utils.data.validate import DuplicateCaption, ValidationReport, validate

_SYNTHETIC = ("ensure_synthetic", "generate")


def __getattr__(name: str) -> object:
    """Import ``generate``/``ensure_synthetic`` on first use.

    The package does not import the generator up front, so that
    ``python -m xmr_utils.data.synthetic`` runs without runpy's double-import warning.
    """
    if name in _SYNTHETIC:
        from xmr_utils.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASET_NAMES",
    "CaptionCorpus",
    "DuplicateCaption",
    "ReaderEvent",
    "ValidationReport",
    "ensure_synthetic",
    "generate",
    "load_corpus",
    "validate",
]
