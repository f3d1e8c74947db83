"""The training loop: one model per direction, selected on val rsum, resumable.

:func:`train_model` trains a :class:`~xmr_utils.core.heads.DualEncoder` with a
:class:`~xmr_utils.core.config.Recipe` for one direction:

* ``img2txt`` — image anchors; the pair's caption is the positive, other images'
  captions in the batch are the negatives;
* ``txt2img`` — caption anchors; the pair's image is the positive, other images in the
  batch are the negatives.

An epoch is one pass over every training (image, caption) pair, shuffled with a seeded
``torch.Generator`` and cut into batches by indexing in-memory feature tensors with the
permutation (no per-item ``Dataset``). After each epoch (every ``eval_every``) the val
split is embedded and scored (:func:`xmr_utils.core.metrics.retrieval_metrics`,
:func:`xmr_utils.core.diagnostics.collapse_stats`); the best val rsum is kept in
``out_dir/best.pt``. ``out_dir/last.pt`` holds everything needed to resume (model,
loss, optimiser, scheduler, and every RNG state), and ``out_dir/history.jsonl`` one flat
JSON row per epoch. At the epochs ``recipe.train.snapshot_schedule()`` names,
``out_dir/snapshots/epoch_NNN.npz`` keeps the embeddings of a fixed sample of val images
and their captions (:func:`load_snapshots`), so the joint space can be drawn as it evolves.
A run killed mid-way and restarted with ``resume=True`` continues
from ``last.pt`` and ends with the same result as an uninterrupted run (CPU, same
thread count).

Seeding never touches the caller's global RNG state: the loop runs inside
``torch.random.fork_rng`` with ``torch.manual_seed(`` :func:`direction_seed` ``)``. The two
directions of one recipe get different seeds (``seed`` for img2txt, ``seed + 1000`` for
txt2img): they are two independently initialised models, so a recipe whose loss is the same
in both directions (symmetric InfoNCE) still gives two different models to fuse.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xmr_utils.core.config import DIRECTIONS, Recipe
from xmr_utils.core.diagnostics import collapse_stats
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.losses import build_loss
from xmr_utils.core.metrics import retrieval_metrics

CHECKPOINT_FORMAT = "xmr-dual-encoder/1"
RESUME_FORMAT = "xmr-train-state/1"
SNAPSHOT_DIR = "snapshots"


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    ``model`` holds the best-val weights (eval mode); ``best_epoch`` is 1-based;
    ``best_val`` the val metrics (and collapse statistics) of that epoch; ``history``
    the rows of ``history.jsonl``; ``checkpoint`` the path of ``best.pt``.
    """

    model: DualEncoder
    recipe: Recipe
    direction: str
    best_epoch: int
    best_val: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    checkpoint: Path


@dataclass(frozen=True)
class TrainPairs:
    """Training pairs as tensors on the training device.

    ``image_feats [N_img, Di]`` and ``text_feats [N_cap, Dt]`` are the full feature tables;
    pair ``k`` is (image ``pair_images[k]``, caption ``pair_captions[k]``), both ``[P]``.
    """

    image_feats: Tensor
    text_feats: Tensor
    pair_images: Tensor
    pair_captions: Tensor
    epoch_pairs: str = "all"

    def __len__(self) -> int:
        """Pairs per epoch: all pairs, or one per distinct image (``epoch_pairs``)."""
        if self.epoch_pairs == "one_per_image":
            return int(torch.unique(self.pair_images).numel())
        return int(self.pair_images.shape[0])

    def n_batches(self, batch_size: int) -> int:
        """Batches per epoch (a last batch of a single pair is dropped: it has no negative)."""
        full, rest = divmod(len(self), batch_size)
        return full + (rest >= 2)

    def epoch_order(self, generator: torch.Generator) -> Tensor:
        """Pair indices ``[len(self)]`` of one epoch in shuffled order.

        ``one_per_image``: a uniform random key per pair, pairs sorted by (image, key), the
        first pair of each image kept — one caption per image drawn uniformly — then shuffled.
        """
        if self.epoch_pairs == "all":
            return torch.randperm(len(self), generator=generator)
        images = self.pair_images.cpu()
        keys = torch.rand(len(images), generator=generator, dtype=torch.float64)
        by_image = torch.argsort(images.double() + keys)  # keys < 1 keep images grouped
        sorted_images = images[by_image]
        first = torch.ones(len(images), dtype=torch.bool)
        first[1:] = sorted_images[1:] != sorted_images[:-1]
        chosen = by_image[first]
        return chosen[torch.randperm(len(chosen), generator=generator)]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """Yield ``(image_x [B, Di], text_x [B, Dt], image_ids [B])`` for one shuffled epoch."""
        device = self.pair_images.device
        perm = self.epoch_order(generator).to(device)
        for b in range(self.n_batches(batch_size)):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            images = self.pair_images[idx]
            yield self.image_feats[images], self.text_feats[self.pair_captions[idx]], images


def direction_seed(seed: int, direction: str) -> int:
    """The torch seed of ``direction``'s model: ``seed`` for img2txt, ``seed + 1000`` for
    txt2img (initialisation, dropout, shuffling and miner draws derive from it)."""
    return seed + 1000 * DIRECTIONS.index(direction)


def run_epoch(
    model: DualEncoder,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    pairs: TrainPairs,
    direction: str,
    batch_size: int,
    epoch: int,
    *,
    shuffle_generator: torch.Generator,
    miner_generator: torch.Generator | None = None,
    grad_clip: float | None = None,
    precision: str = "fp32",
    on_step: Callable[[], object] | None = None,
) -> float:
    """Train ``model`` for one epoch (0-based ``epoch``, used by the miner's warm-up).

    Returns the mean batch loss. ``precision="bf16"`` runs the heads under bfloat16
    autocast (embeddings are cast back to float32 before the loss). ``on_step``
    (optional) is called after every step.
    """
    device_type = pairs.pair_images.device.type
    autocast = precision == "bf16"
    model.train()
    loss_fn.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), dtype=torch.float64, device=pairs.pair_images.device)
    steps = 0
    for image_x, text_x, image_ids in pairs.batches(batch_size, shuffle_generator):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            img = model.encode_images(image_x)
            txt = model.encode_texts(text_x)
        img, txt = img.float(), txt.float()
        anchors, candidates = (img, txt) if direction == "img2txt" else (txt, img)
        loss = loss_fn(anchors, candidates, image_ids, epoch=epoch, generator=miner_generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        optimizer.step()
        total += loss.detach()
        steps += 1
        if on_step is not None:
            on_step()
    mean = float(total) / max(steps, 1)
    if not math.isfinite(mean):
        raise XmrError(
            f"the training loss became {mean} in epoch {epoch + 1}; lower optim.lr or set "
            f"optim.grad_clip"
        )
    return mean


def _as_feats(x: np.ndarray, name: str, rows: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise XmrError(f"{name} must be a non-empty 2-D array [{rows}, D], got shape {x.shape}")
    return x


def _image_index(images: np.ndarray, n_images: int, split: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 1 or not np.issubdtype(images.dtype, np.integer):
        raise XmrError(f"{split}_images must be a 1-D integer array of image indices")
    if len(images) and (images.min() < 0 or images.max() >= n_images):
        raise XmrError(f"{split}_images refers to images outside 0..{n_images - 1}")
    if len(np.unique(images)) != len(images):
        raise XmrError(f"{split}_images lists an image more than once")
    return images.astype(np.int64)


@dataclass(frozen=True)
class _Split:
    """One split in caption order: images ``[n]``, captions ``[m]``, local owner ``[m]``."""

    images: np.ndarray
    captions: np.ndarray
    owner: np.ndarray


def _split(owner: np.ndarray, images: np.ndarray, n_images: int) -> _Split:
    local = np.full(n_images, -1, dtype=np.int64)
    local[images] = np.arange(len(images))
    captions = np.flatnonzero(local[owner] >= 0)
    return _Split(images, captions, local[owner[captions]])


def _check_inputs(
    direction: str,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    owner: np.ndarray,
    train_images: np.ndarray,
    val_images: np.ndarray,
) -> tuple[np.ndarray, _Split, _Split]:
    if direction not in DIRECTIONS:
        raise unknown_choice("direction", direction, DIRECTIONS)
    image_feats = _as_feats(image_feats, "image_feats", "N_img")
    text_feats = _as_feats(text_feats, "text_feats", "N_cap")
    owner = np.asarray(owner)
    if owner.shape != (len(text_feats),) or not np.issubdtype(owner.dtype, np.integer):
        raise XmrError(
            f"owner must be an integer array [N_cap={len(text_feats)}] (caption -> image), "
            f"got shape {owner.shape} and dtype {owner.dtype}"
        )
    if owner.min() < 0 or owner.max() >= len(image_feats):
        raise XmrError(f"owner refers to images outside the {len(image_feats)} image_feats rows")
    owner = owner.astype(np.int64)
    n = len(image_feats)
    train = _image_index(train_images, n, "train")
    val = _image_index(val_images, n, "val")
    if len(train) == 0:
        raise XmrError("the train split is empty; pass the training image indices")
    if len(val) == 0:
        raise XmrError("the val split is empty; model selection needs validation images")
    shared = np.intersect1d(train, val)
    if len(shared):
        raise XmrError(f"train and val splits share {len(shared)} images (e.g. {shared[0]})")
    train_split = _split(owner, train, n)
    if len(train_split.captions) < 2:
        raise XmrError(
            f"the train split has {len(train_split.captions)} captions; training needs >= 2"
        )
    val_split = _split(owner, val, n)
    if len(val) < 2 or len(val_split.captions) < 2:
        raise XmrError(
            f"the val split has {len(val)} images and {len(val_split.captions)} captions; "
            f"validation needs at least 2 of each"
        )
    return owner, train_split, val_split


@dataclass(frozen=True)
class Snapshot:
    """The joint space after one epoch, on a fixed sample of val images and their captions.

    ``image_ids [n]`` and ``caption_ids [m]`` index the full ``image_feats`` / ``text_feats``
    (corpus indices); ``owner [m]`` maps each caption to its image's row in ``image_ids``;
    ``image_emb [n, D]`` and ``text_emb [m, D]`` are the eval-mode embeddings; ``similarity``
    is the model's score (``dot`` or ``neg_sqeuclidean``; files written before the name was
    settled store it as ``metric``).
    """

    epoch: int
    image_ids: np.ndarray
    caption_ids: np.ndarray
    owner: np.ndarray
    image_emb: np.ndarray
    text_emb: np.ndarray
    similarity: str
    path: Path


def snapshot_sample(
    val_images: np.ndarray, owner: np.ndarray, n_images: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The snapshot sample: ``min(n_images, len(val_images))`` val images drawn with a numpy
    generator seeded by ``seed`` (never torch's streams) and all their captions.

    Returns ``(image_ids [n], caption_ids [m], local_owner [m])``, ids sorted; ``owner [N_cap]``
    maps every caption to its image.
    """
    val_images = np.sort(np.asarray(val_images, dtype=np.int64))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(val_images), size=min(n_images, len(val_images)), replace=False)
    image_ids = val_images[np.sort(pick)]
    caption_ids = np.flatnonzero(np.isin(owner, image_ids))
    return image_ids, caption_ids, np.searchsorted(image_ids, owner[caption_ids])


def _snapshot_path(out_dir: Path, epoch: int) -> Path:
    return Path(out_dir) / SNAPSHOT_DIR / f"epoch_{epoch:03d}.npz"


def _save_snapshot(
    model: DualEncoder,
    sample: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    epoch: int,
    path: Path,
    batch_size: int,
) -> None:
    """Embed the sample (eval mode, no RNG drawn) and write it atomically to ``path``."""
    image_ids, caption_ids, owner, image_x, text_x = sample
    img, txt = embed(model, image_x, text_x, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        np.savez(
            fh,
            epoch=np.int64(epoch),
            image_ids=image_ids,
            caption_ids=caption_ids,
            owner=owner,
            image_emb=img,
            text_emb=txt,
            similarity=np.str_(model.similarity),
        )
    os.replace(tmp, path)


def load_snapshots(out_dir: str | Path) -> list[Snapshot]:
    """Every snapshot a training run wrote under ``out_dir/snapshots/``, by epoch (may be
    empty: a run trained before snapshots existed, or with ``snapshot_epochs=()``)."""
    snapshots = []
    for path in sorted((Path(out_dir) / SNAPSHOT_DIR).glob("epoch_*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                snapshots.append(
                    Snapshot(
                        epoch=int(z["epoch"]),
                        image_ids=z["image_ids"],
                        caption_ids=z["caption_ids"],
                        owner=z["owner"],
                        image_emb=z["image_emb"],
                        text_emb=z["text_emb"],
                        similarity=str(z["similarity" if "similarity" in z else "metric"]),
                        path=path,
                    )
                )
        except (OSError, ValueError, KeyError) as exc:
            raise XmrError(
                f"{path} is not a readable snapshot ({exc}); retrain to rewrite it"
            ) from None
    return sorted(snapshots, key=lambda snap: snap.epoch)


def _clear_snapshots(out_dir: Path, after_epoch: int) -> None:
    """Remove snapshots of epochs > ``after_epoch`` (they belong to no saved training state)."""
    for path in (Path(out_dir) / SNAPSHOT_DIR).glob("epoch_*.npz"):
        stem = path.stem.removeprefix("epoch_")
        if not stem.isdigit() or int(stem) > after_epoch:
            path.unlink()


def _tensor(x: np.ndarray, device: torch.device, name: str) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if not bool(torch.isfinite(t).all()):
        raise XmrError(f"{name} contains NaN or infinite values")
    return t


def embed(
    model: DualEncoder, image_feats: np.ndarray, text_feats: np.ndarray, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode embeddings ``([N, D], [M, D])`` float32 of image and caption features."""
    return model.embed_numpy(image_feats, text_feats, batch_size=batch_size)


def _flat(prefix: str, stats: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in stats.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, Tensor) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, np.ndarray | Tensor):
            value = value.tolist()
        out[f"{prefix}{key}"] = value
    return out


def validate(
    model: DualEncoder,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    owner: np.ndarray,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Val metrics and collapse statistics of ``model``, keys prefixed ``val_``.

    ``image_feats [n, Di]`` and ``text_feats [m, Dt]`` are the split's rows; ``owner [m]``
    maps captions to rows of ``image_feats``.
    """

    img, txt = embed(model, image_feats, text_feats, batch_size)
    scores = model.scores(torch.from_numpy(img), torch.from_numpy(txt))
    metrics = retrieval_metrics(scores, owner)
    collapse = collapse_stats(img, txt, owner, similarity=model.similarity)
    return {**_flat("val_", metrics), **_flat("val_", collapse)}


def _fingerprint(
    image_feats: np.ndarray, text_feats: np.ndarray, train: _Split, val: _Split
) -> str:
    h = hashlib.sha256()
    h.update(repr((image_feats.shape, text_feats.shape)).encode())
    for arr in (train.images, train.captions, val.images, val.captions):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _read_history(path: Path, upto_epoch: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_training(
    recipe: Recipe, image_dim: int, text_dim: int, device: str | torch.device = "cpu"
) -> tuple[DualEncoder, nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    """The model, loss, Adam optimiser (over model and loss parameters, e.g. a learnable
    temperature) and StepLR schedule that ``recipe`` describes, on ``device``.

    Weights are drawn from the global torch RNG (seed it, or use ``fork_rng``, first).
    Adam is the fused implementation on CPU and CUDA.
    """
    dev = torch.device(device)
    model = DualEncoder.from_recipe(recipe, image_dim, text_dim).to(dev)
    loss_fn = build_loss(recipe.loss).to(dev)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optim = recipe.optim
    optimizer = torch.optim.Adam(
        params,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        fused=dev.type in ("cpu", "cuda"),
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, optim.step_size, optim.gamma)
    return model, loss_fn, optimizer, scheduler


def train_model(
    recipe: Recipe,
    direction: str,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    owner: np.ndarray,
    train_images: np.ndarray,
    val_images: np.ndarray,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train one model for ``direction`` and return the best-val one.

    Args:
        recipe: heads, loss, optimiser and loop settings.
        direction: ``img2txt`` (image anchors) or ``txt2img`` (caption anchors).
        image_feats: ``[N_img, Di]`` image features (all images; splits index into it).
        text_feats: ``[N_cap, Dt]`` caption features.
        owner: ``[N_cap]`` int, caption -> image index.
        train_images / val_images: image indices of the two splits (disjoint).
        out_dir: receives ``best.pt``, ``last.pt``, ``history.jsonl`` and ``snapshots/``.
        device: torch device for training.
        progress: show a tqdm bar.
        resume: continue from ``out_dir/last.pt`` when it exists (a finished run is
            returned as is; snapshots of finished epochs are kept, later ones written);
            False starts over and replaces the files.

    Raises:
        XmrError: unknown direction, mismatched shapes, empty or overlapping splits,
            non-finite features, or a ``last.pt`` written by a different recipe or data.
    """
    image_feats, text_feats = np.asarray(image_feats), np.asarray(text_feats)
    owner, train, val = _check_inputs(
        direction, image_feats, text_feats, owner, train_images, val_images
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    cfg = recipe.train
    fingerprint = _fingerprint(np.asarray(image_feats), np.asarray(text_feats), train, val)
    best_path, last_path, hist_path = (
        out_dir / "best.pt",
        out_dir / "last.pt",
        out_dir / "history.jsonl",
    )

    if not resume:  # start over: no stale state from an earlier run may survive a crash
        for path in (best_path, last_path, hist_path):
            path.unlink(missing_ok=True)
        _clear_snapshots(out_dir, 0)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed = direction_seed(cfg.seed, direction)
        torch.manual_seed(seed)
        model, loss_fn, optimizer, scheduler = build_training(
            recipe, image_feats.shape[1], text_feats.shape[1], dev
        )
        shuffle_gen = torch.Generator().manual_seed(seed + 1)
        miner_gen = torch.Generator(device=dev).manual_seed(seed + 2)
        state = {
            "epoch": 0,
            "best_rsum": -math.inf,
            "best_epoch": 0,
            "best_val": {},
            "bad": 0,
            "stopped": False,
        }
        history: list[dict[str, Any]] = []

        if resume and last_path.exists():
            ckpt = torch.load(last_path, map_location=dev, weights_only=True)
            if ckpt.get("format") != RESUME_FORMAT:
                raise XmrError(f"{last_path} is not an xmr training state; remove it")
            if not _same_recipe(ckpt["recipe"], recipe) or ckpt["direction"] != direction:
                raise XmrError(
                    f"{last_path} was written by another recipe or direction; pass "
                    f"resume=False or use a new out_dir"
                )
            if ckpt["fingerprint"] != fingerprint:
                raise XmrError(f"{last_path} was trained on other data or splits; start over")
            model.load_state_dict(ckpt["model"])
            loss_fn.load_state_dict(ckpt["loss"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            shuffle_gen.set_state(ckpt["shuffle_rng"])
            miner_gen.set_state(ckpt["miner_rng"])
            _set_rng_state(ckpt["torch_rng"], dev)
            state = ckpt["state"]
            history = _read_history(hist_path, state["epoch"])
        _write_history(hist_path, history)
        _clear_snapshots(out_dir, state["epoch"])

        if not state["stopped"] and state["epoch"] < cfg.epochs:
            pairs = TrainPairs(
                image_feats=_tensor(image_feats, dev, "image_feats"),
                text_feats=_tensor(text_feats, dev, "text_feats"),
                pair_images=torch.from_numpy(owner[train.captions]).to(dev),
                pair_captions=torch.from_numpy(train.captions).to(dev),
                epoch_pairs=cfg.epoch_pairs,
            )
            val_img, val_txt = image_feats[val.images], text_feats[val.captions]
            snap_images, snap_captions, snap_owner = snapshot_sample(
                val.images, owner, cfg.snapshot_images, cfg.seed
            )
            _train_loop(
                recipe,
                direction,
                model,
                loss_fn,
                optimizer,
                scheduler,
                pairs,
                (val_img, val_txt, val.owner),
                state,
                history,
                shuffle_gen=shuffle_gen,
                miner_gen=miner_gen,
                device=dev,
                files=(best_path, last_path, hist_path),
                fingerprint=fingerprint,
                progress=progress,
                snapshot=(
                    snap_images,
                    snap_captions,
                    snap_owner,
                    image_feats[snap_images],
                    text_feats[snap_captions],
                ),
            )

    model, _, meta = load_model(best_path, device=device)
    return TrainResult(
        model=model,
        recipe=recipe,
        direction=direction,
        best_epoch=int(meta["epoch"]),
        best_val=dict(meta["val"]),
        history=history,
        checkpoint=best_path,
    )


def _train_loop(
    recipe: Recipe,
    direction: str,
    model: DualEncoder,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    pairs: TrainPairs,
    val_data: tuple[np.ndarray, np.ndarray, np.ndarray],
    state: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    shuffle_gen: torch.Generator,
    miner_gen: torch.Generator,
    device: torch.device,
    files: tuple[Path, Path, Path],
    fingerprint: str,
    progress: bool,
    snapshot: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Epochs ``state["epoch"] .. epochs-1``: train, validate, snapshot, checkpoint,
    early-stop. ``snapshot`` is ``(image_ids, caption_ids, owner, image_x, text_x)``."""
    from tqdm.auto import tqdm

    cfg = recipe.train
    best_path, last_path, hist_path = files
    schedule = cfg.snapshot_schedule()
    steps = pairs.n_batches(cfg.batch_size)
    bar = tqdm(
        total=steps * cfg.epochs,
        initial=steps * state["epoch"],
        disable=not progress,
        desc=f"{recipe.name}/{direction}",
        unit="step",
    )
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            mean_loss = run_epoch(
                model,
                loss_fn,
                optimizer,
                pairs,
                direction,
                cfg.batch_size,
                epoch,
                shuffle_generator=shuffle_gen,
                miner_generator=miner_gen,
                grad_clip=recipe.optim.grad_clip,
                precision=cfg.precision,
                on_step=bar.update if progress else None,
            )
            scheduler.step()
            seconds = time.perf_counter() - start
            margin = recipe.loss.margin if recipe.loss.kind == "triplet" else 0.0
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": mean_loss,
                "loss_over_margin": mean_loss / margin if margin > 0 else None,
                "lr": lr,
                "seconds": seconds,
            }
            if hasattr(loss_fn, "temperature"):
                row["temperature"] = loss_fn.temperature
            state["epoch"] = epoch + 1
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                start = time.perf_counter()
                val = validate(model, *val_data, batch_size=cfg.eval_batch_size)
                row["val_seconds"] = time.perf_counter() - start
                row.update(val)
                if val["val_rsum"] > state["best_rsum"]:
                    state.update(
                        best_rsum=val["val_rsum"], best_epoch=epoch + 1, best_val=val, bad=0
                    )
                    _atomic_save(
                        _best_checkpoint(model, recipe, direction, epoch + 1, val), best_path
                    )
                else:
                    state["bad"] += 1
                    if cfg.patience is not None and state["bad"] >= cfg.patience:
                        state["stopped"] = True
                bar.set_postfix(loss=f"{mean_loss:.4f}", rsum=f"{val['val_rsum']:.1f}")
            if schedule and (epoch + 1 in schedule or state["stopped"]):
                # before last.pt: an epoch in the saved state always has its snapshot
                _save_snapshot(
                    model,
                    snapshot,
                    epoch + 1,
                    _snapshot_path(best_path.parent, epoch + 1),
                    cfg.eval_batch_size,
                )
            history.append(row)
            with hist_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            _atomic_save(
                {
                    "format": RESUME_FORMAT,
                    "recipe": recipe.to_dict(),
                    "direction": direction,
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "loss": loss_fn.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "shuffle_rng": shuffle_gen.get_state(),
                    "miner_rng": miner_gen.get_state(),
                    "torch_rng": _rng_state(device),
                    "state": state,
                },
                last_path,
            )
            if state["stopped"]:
                break
    finally:
        bar.close()


def _same_recipe(saved: dict[str, Any], recipe: Recipe) -> bool:
    """Whether a recipe read from a checkpoint is ``recipe`` (fields added since it was
    written take their defaults)."""
    try:
        return Recipe.from_dict(saved) == recipe
    except XmrError:
        return False


def _best_checkpoint(
    model: DualEncoder, recipe: Recipe, direction: str, epoch: int, val: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "recipe": recipe.to_dict(),
        "image_dim": model.image_dim,
        "text_dim": model.text_dim,
        "direction": direction,
        "epoch": epoch,
        "val": val,
    }


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[DualEncoder, Recipe, dict[str, Any]]:
    """Load a ``best.pt``: the model (eval mode), its recipe, and meta (direction, epoch,
    val metrics, input dims)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise XmrError(f"no checkpoint at {checkpoint}; train the model first")
    try:
        ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise XmrError(f"{checkpoint} is not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise XmrError(f"{checkpoint} is not an xmr model checkpoint ({CHECKPOINT_FORMAT})")
    recipe = Recipe.from_dict(ckpt["recipe"])
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep RNG as is
        model = DualEncoder.from_recipe(recipe, ckpt["image_dim"], ckpt["text_dim"])
    model = model.to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = {k: ckpt[k] for k in ("direction", "epoch", "val", "image_dim", "text_dim")}
    return model, recipe, meta
