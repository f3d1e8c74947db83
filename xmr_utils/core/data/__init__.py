"""Datasets as :class:`CaptionCorpus`: readers per layout, the synthetic generator, validation.

>>> from xmr_utils.core.data import load_corpus, validate
>>> corpus = load_corpus("synthetic", data_dir="data")          # doctest: +SKIP
>>> validate(corpus).to_frame()                                  # doctest: +SKIP
"""

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.load import DATASET_NAMES, load_corpus
from xmr_utils.core.data.synthetic import ensure_synthetic, generate
from xmr_utils.core.data.validate import DuplicateCaption, ValidationReport, validate

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
