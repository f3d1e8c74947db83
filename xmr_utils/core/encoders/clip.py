"""CLIP image and text encoders from open_clip_torch: ``clip:<model>``, e.g. ``clip:ViT-B-32``.

Both towers of one open_clip model map into its joint space (512-d for ViT-B-32). Features are
L2-normalised, so the ``zeroshot`` recipe scores them by cosine, as CLIP does.

Options (keywords, or after ``?`` in the spec: ``clip:ViT-B-32?pretrained=laion2b_s34b_b79k``):

* ``pretrained``: an open_clip tag of the model (default ``openai`` where it has one, else
  its first tag), a checkpoint file, or ``none`` — random weights drawn with ``seed``, for
  offline tests (their numbers mean nothing).
* ``view`` (image side): ``pool`` — the model's own preprocessing (shorter side to its input
  size, bicubic, centre crop, its mean/std; for CLIP that crop is the whole centre square);
  ``tta`` — the same square and its mirror, each embedding L2-normalised, averaged and
  normalised again.
* ``quick_gelu``: the activation; by default what the tag was trained with. OpenAI's weights
  need QuickGELU, which open_clip's plain ``ViT-B-32`` config does not use.
* ``amp``: float16 autocast on a CUDA device (default on); ``device`` (text side).

Weights of a tag live in a Hugging Face repository (``open_clip.get_pretrained_cfg``; for
``ViT-B-32``/``openai`` it is ``timm/vit_base_patch32_clip_224.openai``). They are read from
the HF cache (``open_clip_model.safetensors`` first, then ``open_clip_pytorch_model.bin``, as
open_clip looks for them) and downloaded into it only with the download switch
(:mod:`xmr_utils.core.encoders.weights`).

Captions are tokenised by the model's tokenizer (77 tokens; longer ones are truncated), sorted
by length and encoded in batches cut to their longest caption: the text tower is causal and
pools at the end-of-text token, so the padding after it never changes a result (checked
against ``model.encode_text`` on full-length tokens in the tests).

The model is built once per process and shared by the image and the text encoder; open_clip
is imported on first use (it is heavy).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
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
)
from xmr_utils.core.encoders.catalog import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    EncoderEntry,
    canonical_spec,
    safe_token,
)
from xmr_utils.core.encoders.images import INTERPOLATIONS, ImagePipeline, autocast_for
from xmr_utils.core.encoders.pooled import PooledImageEncoder
from xmr_utils.core.encoders.weights import SWITCH, downloads_enabled, hub_online, weights_id_of
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "ViT-B-32"
PREFERRED_TAG = "openai"
RANDOM = "none"
VIEWS: tuple[str, ...] = ("pool", "tta")
HF_FILES: tuple[str, ...] = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
INSTALL = "pip install -e '.[clip]' (open_clip_torch==3.3.0)"
_LOADED: dict[tuple[Any, ...], Any] = {}  # the last model built, shared by both towers


def open_clip_module() -> Any:
    """``import open_clip``, or an XmrError saying how to install it."""
    try:
        import open_clip
    except ImportError:
        raise XmrError(
            f"clip encoders need the package open_clip_torch; install it: {INSTALL}"
        ) from None
    return open_clip


def _hub_files(hf_hub: str) -> tuple[str, tuple[str, ...]]:
    """``"org/repo/"`` -> ``("org/repo", HF_FILES)``; ``"org/repo/f.bin"`` -> its safetensors
    twin first, then ``f.bin`` (open_clip's ``download_pretrained_from_hf`` order)."""
    repo, filename = os.path.split(hf_hub)
    if not filename:
        return repo, HF_FILES
    if filename.endswith((".bin", ".pth")):
        return repo, (filename[:-4] + ".safetensors", filename)
    return repo, (filename,)


def cached_hub_checkpoint(repo: str, names: Sequence[str]) -> Path | None:
    """The first of ``names`` of HF repository ``repo`` found in the HF cache, or None."""
    from huggingface_hub import hf_hub_download

    for name in names:
        try:
            return Path(hf_hub_download(repo, name, local_files_only=True))
        except Exception:  # noqa: BLE001 - every failure here means "not cached"
            continue
    return None


def download_hub_checkpoint(repo: str, names: Sequence[str]) -> Path:
    """Download the first of ``names`` that repository ``repo`` has into the HF cache."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    with hub_online():
        for name in names:
            try:
                return Path(hf_hub_download(repo, name))
            except RemoteEntryNotFoundError:
                continue
            except Exception as exc:  # noqa: BLE001 - network, HTTP and disk errors alike
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise XmrError(
                    f"cannot download {name} of the Hugging Face repository {repo} from "
                    f"{constants.ENDPOINT} ({type(exc).__name__}: {first}), asked for by "
                    f"{SWITCH}; check the network, or copy the file into the HF cache "
                    f"{constants.HF_HUB_CACHE} yourself"
                ) from None
    raise XmrError(
        f"the Hugging Face repository {repo} at {constants.ENDPOINT} has none of "
        f"{list(names)}; check the open_clip pretrained tag"
    )


@dataclass(frozen=True)
class ClipSource:
    """One open_clip architecture and its weights.

    Attributes:
        model: open_clip architecture name, e.g. ``ViT-B-32``.
        pretrained: an open_clip tag of ``model``, a checkpoint path, or ``none`` (random).
        seed: seed of the random weights (``pretrained="none"`` only).
        quick_gelu: the activation; None takes the tag's (False for files and random).
    """

    model: str = DEFAULT_MODEL
    pretrained: str = PREFERRED_TAG
    seed: int = 0
    quick_gelu: bool | None = None

    @classmethod
    def checked(
        cls, model: str, pretrained: str | None, seed: int, quick_gelu: bool | None
    ) -> ClipSource:
        """A source whose model and weights exist (as a tag, a file or ``none``)."""
        open_clip = open_clip_module()
        if open_clip.get_model_config(model) is None:
            raise XmrError(
                f"clip model {model!r} is not an open_clip architecture; e.g. ViT-B-32, "
                "ViT-B-16, ViT-L-14, RN50 (all of them: open_clip.list_models())"
            )
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained is None or str(pretrained).lower() == RANDOM:
            chosen = RANDOM
        elif pretrained == "":
            chosen = PREFERRED_TAG if PREFERRED_TAG in tags else (tags[0] if tags else RANDOM)
        else:
            chosen = str(pretrained)
        if chosen != RANDOM and chosen not in tags and not Path(chosen).expanduser().is_file():
            raise XmrError(
                f"clip model {model!r}: pretrained {chosen!r} is not one of its open_clip tags "
                f"({', '.join(tags) or 'none'}), an existing checkpoint file, or 'none' "
                "(random weights)"
            )
        return cls(model, chosen, int(seed), quick_gelu)

    @property
    def kind(self) -> str:
        """``random``, ``tag`` or ``file``."""
        if self.pretrained == RANDOM:
            return "random"
        return "tag" if self.tag_config() else "file"

    def tag_config(self) -> dict[str, Any]:
        """open_clip's pretrained config of the tag (empty for files and random weights)."""
        if self.pretrained == RANDOM:
            return {}
        return dict(open_clip_module().get_pretrained_cfg(self.model, self.pretrained) or {})

    @property
    def quick(self) -> bool:
        """Whether the model is built with QuickGELU."""
        if self.quick_gelu is not None:
            return bool(self.quick_gelu)
        config = open_clip_module().get_model_config(self.model) or {}
        return bool(self.tag_config().get("quick_gelu", config.get("quick_gelu", False)))

    @property
    def embed_dim(self) -> int:
        return int(open_clip_module().get_model_config(self.model)["embed_dim"])

    def spec_extras(self) -> dict[str, object]:
        """The options that change the features, for the canonical spec."""
        extras: dict[str, object] = {}
        if self.kind == "file":
            path = Path(self.pretrained).expanduser().resolve()
            where = hashlib.sha256(str(path).encode()).hexdigest()[:8]
            extras["pretrained"] = f"{safe_token(path.stem)}-{where}"
        elif self.pretrained != PREFERRED_TAG:
            extras["pretrained"] = self.pretrained
        if self.kind == "random" and self.seed:
            extras["seed"] = self.seed
        if self.quick_gelu is not None:
            extras["quick_gelu"] = self.quick
        return extras

    def weights_file(self) -> Path | None:
        """The checkpoint (None for random weights); a tag's is downloaded with the switch."""
        if self.kind == "random":
            return None
        if self.kind == "file":
            return Path(self.pretrained).expanduser()
        repo, names = _hub_files(self.tag_config()["hf_hub"])
        found = cached_hub_checkpoint(repo, names)
        if found is not None:
            return found
        if downloads_enabled():
            return download_hub_checkpoint(repo, names)
        from huggingface_hub import constants

        raise XmrError(
            f"clip:{self.model} with pretrained={self.pretrained!r} needs {' or '.join(names)} "
            f"of the Hugging Face repository {repo}, which is not in the offline cache "
            f"{constants.HF_HUB_CACHE} (nothing is downloaded); rerun with {SWITCH} to "
            f"download it there, or copy that cache folder from a machine that has it, or "
            "pass pretrained=PATH to the checkpoint file"
        )

    def weights_id(self) -> str:
        """``<file>:<short sha256>``, or what draws the random weights."""
        path = self.weights_file()
        if path is None:
            version = open_clip_module().__version__
            return f"random init (torch.manual_seed({self.seed}), open_clip {version})"
        return weights_id_of(path)

    def pipeline(self) -> ImagePipeline:
        """The :class:`ImagePipeline` of the model's own preprocessing (``view=pool``)."""
        from open_clip.transform import (
            PreprocessCfg,
            merge_preprocess_dict,
        )

        cfg = merge_preprocess_dict(PreprocessCfg(), self.tag_config())
        size = open_clip_module().get_model_config(self.model)["vision_cfg"]["image_size"]
        if isinstance(size, list | tuple):
            if len(set(size)) != 1:
                raise XmrError(f"clip model {self.model!r} has a non-square input {size}")
            size = size[0]
        mode = cfg["resize_mode"]
        if mode not in ("shortest", "squash") or cfg["interpolation"] not in INTERPOLATIONS:
            raise XmrError(
                f"clip model {self.model!r} preprocesses with resize_mode={mode!r}, "
                f"interpolation={cfg['interpolation']!r}, which this encoder does not "
                "implement; use a CLIP model with shortest-side or squash resizing"
            )
        return ImagePipeline(
            resize=int(size),
            crop=None if mode == "squash" else int(size),
            mean=tuple(float(m) for m in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(s) for s in cfg["std"]),  # type: ignore[arg-type]
            interpolation=cfg["interpolation"],
            squash=mode == "squash",
        )


def load_clip(source: ClipSource) -> Any:
    """The open_clip model of ``source`` in eval mode, built once per process (only the last
    one built is kept). Random weights are drawn from ``torch.manual_seed(source.seed)``
    without touching the global random state."""
    import torch

    path = source.weights_file()
    key = (source.model, str(path) if path else f"random-{source.seed}", source.quick)
    if key not in _LOADED:
        _LOADED.clear()
        open_clip = open_clip_module()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(source.seed)
                model = open_clip.create_model(
                    source.model,
                    pretrained=str(path) if path else None,
                    quick_gelu=source.quick,
                )
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise XmrError(
                f"cannot load the clip checkpoint {path} into {source.model} "
                f"(quick_gelu={source.quick}; {type(exc).__name__}: {first}); use a checkpoint "
                "of that architecture"
            ) from None
        _LOADED[key] = model.eval()
    return _LOADED[key]


class ClipImageEncoder(PooledImageEncoder):
    """The image tower: L2-normalised joint-space embeddings ``[N, embed_dim]``."""

    def __init__(self, source: ClipSource, view: str = "pool", amp: bool = True) -> None:
        super().__init__(channels_last=False, amp=amp)
        if view not in VIEWS:
            raise XmrError(f"clip view {view!r} is not one of {list(VIEWS)}")
        self.source, self.view = source, view
        self.dim = source.embed_dim
        self.pipeline = source.pipeline()
        extras = {"tower": "image", **source.spec_extras()}
        if view != "pool":
            extras["view"] = view
        self.spec = canonical_spec("clip", source.model, extras)

    def weights_path(self) -> Path:
        path = self.source.weights_file()
        if path is None:
            raise XmrError(f"{self.spec} uses random weights; it has no weights file")
        return path

    def weights_id(self) -> str:
        return self.source.weights_id()

    def build_module(self) -> torch.nn.Module:
        import torch
        import torch.nn.functional as F

        mirror = self.view == "tta"

        class Tower(torch.nn.Module):
            def __init__(self, visual: torch.nn.Module) -> None:
                super().__init__()
                self.visual = visual

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                emb = F.normalize(self.visual(x).float(), dim=-1)
                if mirror:
                    flipped = F.normalize(self.visual(x.flip(3)).float(), dim=-1)
                    emb = F.normalize(emb + flipped, dim=-1)
                return emb

        return Tower(load_clip(self.source).visual)


def token_lengths(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Per row of ``tokens [N, L]`` the position after its last non-pad token: ``[N]``."""
    import torch

    real = tokens != pad_id
    last = tokens.shape[1] - torch.flip(real, dims=[1]).int().argmax(dim=1)
    return torch.where(real.any(dim=1), last, torch.zeros_like(last))


def trims_padding(model: Any) -> bool:
    """True when ``model``'s text tower ignores what follows the pooled token: open_clip's
    CLIP class with a causal mask pooling at the end-of-text token."""
    open_clip = open_clip_module()
    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "") in ("argmax", "eos")
    )


def encode_tokens(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` for ``tokens [B, n]`` cut to ``n <= context`` positions: the same
    layers with the positional embedding and causal mask cut to ``n`` (see
    :func:`trims_padding`). Returns unnormalised ``[B, embed_dim]``."""
    import torch
    from open_clip.transformer import text_global_pool

    n = tokens.shape[1]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, getattr(model, "text_eos_id", None))
    projection = model.text_projection
    if projection is None:
        return x
    if isinstance(projection, torch.nn.Linear):
        return projection(x)
    return x @ projection


class ClipTextEncoder(PretrainedTextEncoder):
    """The text tower: L2-normalised joint-space embeddings ``[N, embed_dim]``; a caption with
    no token between start and end of text gives a zero row."""

    def __init__(self, source: ClipSource, device: str = "auto", amp: bool = True) -> None:
        self.source = source
        self.device, self.amp = device, bool(amp)
        self.dim = source.embed_dim
        self.spec = canonical_spec("clip", source.model, {"tower": "text", **source.spec_extras()})
        self.last_report = TextReport()
        self.last_run: dict[str, str] = {}

    def weights_id(self) -> str:
        return self.source.weights_id()

    @cached_property
    def tokenizer(self) -> Any:
        return open_clip_module().get_tokenizer(self.source.model)

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 0,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """Features ``[len(texts), dim]`` float32, sorted by length and batched (``0``: 64
        captions per batch on a CPU, 512 on a GPU); ``device`` None: the encoder's option."""
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        device = resolve_device(device or self.device)
        batch_size = batch_size or default_batch_size(device, TEXT_BATCH)
        model = load_clip(self.source).to(device)
        self.last_run = run_record(device, self.amp)
        tokens = self.tokenizer([str(t) for t in texts])
        lengths = token_lengths(tokens)
        trim = trims_padding(model)
        order = np.argsort(lengths.numpy(), kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), desc=self.spec, unit="txt", disable=not progress) as bar,
        ):
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = tokens[idx]
                if trim:
                    batch = batch[:, : int(lengths[idx].max())]
                with autocast_for(device, self.amp):
                    batch = batch.to(device)
                    emb = encode_tokens(model, batch) if trim else model.encode_text(batch)
                out[idx] = F.normalize(emb.float(), dim=-1).cpu().numpy()
                bar.update(len(idx))
        known = (lengths > 2).numpy()  # more than start- and end-of-text
        out[~known] = 0.0
        self.last_report = report_from_mask(known)
        return out


def _image(
    variant: str,
    pretrained: str | None = "",
    seed: int = 0,
    quick_gelu: bool | None = None,
    view: str = "pool",
    amp: bool = True,
) -> ClipImageEncoder:
    return ClipImageEncoder(ClipSource.checked(variant, pretrained, seed, quick_gelu), view, amp)


def _text(
    variant: str,
    pretrained: str | None = "",
    seed: int = 0,
    quick_gelu: bool | None = None,
    device: str = "auto",
    amp: bool = True,
) -> ClipTextEncoder:
    return ClipTextEncoder(ClipSource.checked(variant, pretrained, seed, quick_gelu), device, amp)


EXAMPLE_MODELS: tuple[str, ...] = (DEFAULT_MODEL, "ViT-B-16", "ViT-L-14")
_SUMMARY = (
    "CLIP (open_clip_torch) joint space, 512-d for ViT-B-32; weights from the Hugging Face "
    "cache (pretrained=TAG|PATH|none)"
)
IMAGE_ENCODERS.register("clip")(
    EncoderEntry(
        factory=_image,
        variants=EXAMPLE_MODELS,
        options=("pretrained", "seed", "quick_gelu", "view", "amp"),
        summary=_SUMMARY,
        open_variants=True,
    )
)
TEXT_ENCODERS.register("clip")(
    EncoderEntry(
        factory=_text,
        variants=EXAMPLE_MODELS,
        options=("pretrained", "seed", "quick_gelu", "device", "amp"),
        summary=_SUMMARY,
        open_variants=True,
    )
)
