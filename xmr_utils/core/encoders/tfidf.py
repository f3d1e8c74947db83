"""``tfidf``: a bag of words fitted on the training captions, the sparse complement of a
sentence encoder.

The vocabulary is every word (:func:`~xmr_utils.core.encoders.word_vectors.tokenize`) that
occurs in at least ``min_df`` training captions, the ``dim`` most frequent kept (ties by
word); column ``j`` is the ``j``-th of them. A caption's row is its term frequencies ``tf``
(variant ``log``: ``1 + ln tf``, as scikit-learn's ``sublinear_tf``; variant ``count``: ``tf``)
times the smoothed inverse document frequency ``idf = ln((1 + n) / (1 + df)) + 1``,
L2-normalised: ``[N, dim]`` float32. A caption with no vocabulary word is a zero row. When
the training captions have fewer than ``dim`` such words the last columns stay zero.

Sentence encoders such as MiniLM blur the exact nouns of a caption; side by side with
``minilm:mean`` (text spec ``minilm:mean+tfidf``) these counts took ``infonce_linear`` from a
fused val rsum of 316.0 to 340.7 on Flickr8k (``benchmarks/bench_quality.py``). Fitted on
the train split only (like ``fasttext``), so no val caption shapes the vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmr_utils.core.encoders.base import TextReport, report_from_mask
from xmr_utils.core.encoders.catalog import TEXT_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.word_vectors import tokenize
from xmr_utils.core.errors import XmrError

VARIANTS: tuple[str, ...] = ("log", "count")
DEFAULTS = {"dim": 3000, "min_df": 3}


class TfidfEncoder:
    """TF-IDF rows over the training vocabulary: ``[N, dim]`` float32, L2-normalised."""

    needs_fit = True

    def __init__(self, variant: str = "log", dim: int = 3000, min_df: int = 3) -> None:
        if variant not in VARIANTS:
            raise XmrError(f"unknown tfidf variant {variant!r}; one of {list(VARIANTS)}")
        if int(dim) < 1 or int(min_df) < 1:
            raise XmrError(f"tfidf needs dim >= 1 and min_df >= 1, got {dim} and {min_df}")
        self.variant = variant
        self.recipe = {"dim": int(dim), "min_df": int(min_df)}
        self.spec = canonical_spec(
            "tfidf", variant, {k: v for k, v in self.recipe.items() if v != DEFAULTS[k]}
        )
        self.last_report = TextReport()
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)
        self.fit_id = ""

    @property
    def dim(self) -> int:
        return self.recipe["dim"]

    def weights_id(self) -> str:
        recipe = ",".join(f"{k}={v}" for k, v in self.recipe.items())
        return f"tfidf {self.variant} {recipe} (fitted on the train split)"

    def fit(self, train_captions: Sequence[str]) -> None:
        """Vocabulary and idf from ``train_captions`` (the training split only)."""
        df = Counter(word for caption in train_captions for word in set(tokenize(caption)))
        frequent = (w for w, n in df.items() if n >= self.recipe["min_df"])
        kept = sorted(frequent, key=lambda w: (-df[w], w))[: self.dim]
        if not kept:
            raise XmrError(
                f"tfidf cannot be fitted: no word occurs in min_df={self.recipe['min_df']} "
                "training captions; pass min_df=1 or check the dataset's captions and splits"
            )
        n = len(train_captions)
        self.vocabulary = {w: j for j, w in enumerate(kept)}
        self.idf = np.array([math.log((1 + n) / (1 + df[w])) + 1.0 for w in kept], np.float32)
        self.fit_id = hashlib.sha256(json.dumps(list(train_captions)).encode()).hexdigest()[:16]

    def save(self, directory: Path) -> None:
        """Write ``tfidf.json``: the recipe, the vocabulary in column order and the idf."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        words = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        meta = {
            "recipe": self.recipe,
            "variant": self.variant,
            "fit_id": self.fit_id,
            "vocabulary": words,
            "idf": [float(x) for x in self.idf],
        }
        (directory / "tfidf.json").write_text(json.dumps(meta))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote; another recipe or variant raises XmrError."""
        path = Path(directory) / "tfidf.json"
        try:
            meta = json.loads(path.read_text())
            words, idf = list(meta["vocabulary"]), np.asarray(meta["idf"], np.float32)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise XmrError(
                f"no readable fitted tfidf vocabulary at {path} ({exc}); delete the folder to refit"
            ) from None
        if meta.get("recipe") != self.recipe or meta.get("variant") != self.variant:
            raise XmrError(
                f"the tfidf vocabulary in {path} was fitted as {meta.get('variant')} "
                f"{meta.get('recipe')}, not {self.variant} {self.recipe}; delete it to refit"
            )
        if len(words) != len(idf) or len(words) > self.dim:
            raise XmrError(f"{path} is inconsistent ({len(words)} words, {len(idf)} idf values)")
        self.vocabulary = {w: j for j, w in enumerate(words)}
        self.idf, self.fit_id = idf, str(meta.get("fit_id", ""))

    def _check_fitted(self) -> None:
        if not self.vocabulary:
            raise XmrError(
                "tfidf has not been fitted yet; call fit(train_captions) first "
                "(xmr_utils.core.features does this on the training split)"
            )

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """Rows ``[len(texts), dim]`` float32 (``batch_size``, ``progress`` and ``device`` are
        unused: a sparse lookup on the CPU)."""
        self._check_fitted()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            counts = Counter(w for w in tokenize(text) if w in self.vocabulary)
            if not counts:
                continue
            cols = np.fromiter((self.vocabulary[w] for w in counts), np.int64, len(counts))
            tf = np.fromiter(counts.values(), np.float32, len(counts))
            weights = (1.0 + np.log(tf) if self.variant == "log" else tf) * self.idf[cols]
            out[i, cols] = weights / np.linalg.norm(weights)
        self.last_report = report_from_mask(out.any(axis=1))
        return out


TEXT_ENCODERS.register("tfidf")(
    EncoderEntry(
        factory=lambda variant, **recipe: TfidfEncoder(variant, **recipe),
        variants=VARIANTS,
        options=tuple(DEFAULTS),
        summary="TF-IDF bag of words over the training captions' 3000 most frequent words",
    )
)
