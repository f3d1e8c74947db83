"""Projection heads: MLPs from precomputed features into the shared embedding space.

:class:`ProjectionHead` is built from a :class:`~xmr_utils.core.config.HeadConfig`;
:class:`DualEncoder` pairs an image head and a text head with the ``similarity`` it scores
with (``dot`` for cosine recipes whose heads L2-normalise, ``neg_sqeuclidean`` otherwise).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmr_utils.core.config import PRECISIONS, HeadConfig, Recipe
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.registry import Registry
from xmr_utils.core.retrieval import score_matrix
from xmr_utils.core.similarity import DOT, check_similarity

#: Activation name -> its module type (PReLU: one shared slope, torch's default).
ACTIVATION: Registry[type[nn.Module]] = Registry(
    "activation", {"prelu": nn.PReLU, "relu": nn.ReLU, "gelu": nn.GELU}
)


class ProjectionHead(nn.Module):
    """``[input norm] -> [Linear -> activation -> Dropout] x len(hidden) -> Linear -> Dropout
    -> L2 norm``.

    Maps ``[N, in_dim]`` to ``[N, out_dim]`` (``config.out_dim``, or ``in_dim`` when it is 0);
    dropout layers with p = 0 are left out and the L2 normalisation only when
    ``config.l2_normalize``. An identity head (``config.identity``) has no layers (and no
    parameters); ``config.init="identity"`` starts its one linear layer at the identity.
    """

    def __init__(self, in_dim: int, config: HeadConfig) -> None:
        super().__init__()
        if in_dim <= 0:
            raise XmrError(f"a projection head needs in_dim > 0, got {in_dim}")
        self.in_dim = in_dim
        self.config = config
        self.out_dim = config.out_dim or in_dim
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), ACTIVATION[config.activation]()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        if not config.identity:
            last = nn.Linear(width, self.out_dim)
            if config.init == "identity":
                _start_at_identity(last)
            layers.append(last)
            if config.final_dropout > 0:
                layers.append(nn.Dropout(config.final_dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, in_dim]`` -> embeddings ``[N, out_dim]``."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise XmrError(f"head expects input [N, {self.in_dim}], got {tuple(x.shape)}")
        if self.config.input_norm == "sqrt_l2":
            x = F.normalize(x.sign() * x.abs().sqrt(), dim=1)
        elif self.config.input_norm == "l2":
            x = F.normalize(x, dim=1)
        out = self.layers(x)
        return F.normalize(out, dim=1) if self.config.l2_normalize else out


def _start_at_identity(linear: nn.Linear) -> None:
    """Weight = the identity matrix, bias = 0 (``init="identity"``; square layers only)."""
    if linear.in_features != linear.out_features:
        raise XmrError(
            f"head init 'identity' needs out_dim equal to the input width "
            f"({linear.in_features}) or 0, got {linear.out_features}"
        )
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.in_features))
        linear.bias.zero_()


class DualEncoder(nn.Module):
    """An image head and a text head that embed into one ``D``-dimensional space.

    ``similarity`` names the score :meth:`scores` uses: ``dot`` (cosine when both heads
    L2-normalise) or ``neg_sqeuclidean`` (``-|a - b|^2``). ``precision`` is the forward the
    heads run at, the recipe's ``train.precision``: ``bf16`` embeds under bfloat16 autocast
    wherever the model embeds (training steps, validation, evaluation, the browser), so the
    scores a model is selected on are the scores it is evaluated with; weights and the
    returned embeddings stay float32.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        image_head: HeadConfig,
        text_head: HeadConfig,
        similarity: str = DOT,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        check_similarity(similarity)
        if precision not in PRECISIONS:
            raise unknown_choice("precision", precision, PRECISIONS)
        if image_head.out_dim != text_head.out_dim:
            raise XmrError(
                f"image and text heads must share out_dim, got {image_head.out_dim} "
                f"and {text_head.out_dim}"
            )
        self.image_head = ProjectionHead(image_dim, image_head)
        self.text_head = ProjectionHead(text_dim, text_head)
        if self.image_head.out_dim != self.text_head.out_dim:
            raise XmrError(
                f"heads of the input's width need one joint space: image features are "
                f"{image_dim}-d, caption features {text_dim}-d; use encoders that share one "
                "(clip:<model> for both) or heads with an explicit out_dim"
            )
        self.similarity = similarity
        self.precision = precision

    @classmethod
    def from_recipe(cls, recipe: Recipe, image_dim: int, text_dim: int) -> DualEncoder:
        """The model ``recipe`` describes for features of the given widths."""
        return cls(
            image_dim,
            text_dim,
            recipe.image_head,
            recipe.text_head,
            recipe.score_similarity,
            recipe.train.precision,
        )

    @property
    def image_dim(self) -> int:
        return self.image_head.in_dim

    @property
    def text_dim(self) -> int:
        return self.text_head.in_dim

    @property
    def embed_dim(self) -> int:
        return self.image_head.out_dim

    def encode_images(self, x: Tensor) -> Tensor:
        """Image features ``[N, Di]`` -> embeddings ``[N, D]``."""
        return self.image_head(x)

    def encode_texts(self, x: Tensor) -> Tensor:
        """Caption features ``[M, Dt]`` -> embeddings ``[M, D]``."""
        return self.text_head(x)

    def scores(self, img_emb: Tensor, txt_emb: Tensor) -> Tensor:
        """Scores ``[N, M]`` (higher = more similar) between ``[N, D]`` and ``[M, D]``."""

        return score_matrix(img_emb, txt_emb, self.similarity)

    def _embed_numpy(self, head: ProjectionHead, feats: np.ndarray, batch_size: int) -> np.ndarray:
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != head.in_dim:
            raise XmrError(f"features must be [N, {head.in_dim}], got shape {feats.shape}")
        if batch_size <= 0:
            raise XmrError(f"batch_size must be > 0, got {batch_size}")
        param = next(self.parameters(), None)  # None: identity heads (they run on the CPU)
        device, dtype = (param.device, param.dtype) if param is not None else ("cpu", torch.float32)
        out = np.empty((len(feats), self.embed_dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        bf16 = self.precision == "bf16" and param is not None
        try:
            with (
                torch.inference_mode(),
                torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16),
            ):
                for start in range(0, len(feats), batch_size):
                    chunk = torch.from_numpy(
                        np.ascontiguousarray(feats[start : start + batch_size], dtype=np.float32)
                    )
                    emb = head(chunk.to(device, dtype=dtype))
                    # one pass: cast (bf16 -> float32 is exact) and copy into ``out``
                    torch.from_numpy(out[start : start + len(chunk)]).copy_(emb)
        finally:
            self.train(was_training)
        return out

    def embed_images_numpy(self, feats: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Image features ``[N, Di]`` -> float32 embeddings ``[N, D]`` (eval mode, batched,
        on the model's device)."""
        return self._embed_numpy(self.image_head, feats, batch_size)

    def embed_texts_numpy(self, feats: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Caption features ``[M, Dt]`` -> float32 embeddings ``[M, D]`` (eval mode, batched)."""
        return self._embed_numpy(self.text_head, feats, batch_size)

    def embed_numpy(
        self,
        image_feats: np.ndarray,
        text_feats: np.ndarray,
        batch_size: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both modalities at once: ``([N, D], [M, D])`` float32 embeddings."""
        return (
            self.embed_images_numpy(image_feats, batch_size),
            self.embed_texts_numpy(text_feats, batch_size),
        )
