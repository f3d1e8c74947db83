"""The training loop: one model per direction, selected on val rsum, resumable.

:func:`train_model` trains a :class:`~xmr_utils.core.heads.DualEncoder` with a
:class:`~xmr_utils.core.config.Recipe` for one direction (``img2txt``: image anchors;
``txt2img``: caption anchors; :data:`~xmr_utils.core.train.pairs.DIRECTIONS`). Each epoch
(:func:`run_epoch`) visits the training pairs in seeded shuffled batches; after it (every
``eval_every``) the val split is scored, the best val rsum kept in ``best.pt``, the epoch's
history row appended, snapshots written at the scheduled epochs and ``last.pt`` saved, all
through the model folder's owner (:class:`~xmr_utils.core.train.model_dir.ModelDir`). A run
killed mid-way and restarted with ``resume=True`` continues from ``last.pt`` and ends with
the same result as an uninterrupted run (CPU, same thread count).

History rows: ``epoch``, ``loss`` (the epoch's mean batch loss), ``lr`` (at the epoch's
start), ``seconds``; the loss's own statistics (:meth:`RecordingLoss.epoch_stats
<xmr_utils.core.losses.RecordingLoss.epoch_stats>`: ``loss_over_margin`` and the triplet
mechanism, or ``temperature``); the step statistics of :func:`run_epoch` (embedding norms
and gradient norms per modality); on validated epochs ``val_seconds`` (the validation's time)
and the ``val_*`` metrics; ``checkpoint_seconds`` (writing ``best.pt`` on a new best and the
epoch's snapshot; ``last.pt`` is written after the row); and on the epochs that take them
(:func:`~xmr_utils.core.train.validation.collapse_epochs`, an early stop, and the best epoch,
added when training ends) the full ``val_*`` collapse statistics. Readers must tolerate
rows without them.

Seeding never touches the caller's global RNG state: the loop runs inside
``torch.random.fork_rng`` with ``torch.manual_seed(`` :func:`direction_seed` ``)``. The two
directions of one recipe get different seeds (``seed`` for img2txt, ``seed + 1000`` for
txt2img): they are two independently initialised models, so a recipe whose loss is the same
in both directions (symmetric InfoNCE) still gives two different models to fuse.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmr_utils.core.config import Recipe
from xmr_utils.core.errors import XmrError
from xmr_utils.core.hardware import bf16_warning
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.recording import StatsRecorder
from xmr_utils.core.train.inputs import CheckedData, TrainData, check_data
from xmr_utils.core.train.model_dir import ModelDir, data_fingerprint
from xmr_utils.core.train.pairs import TrainPairs, check_direction, direction_seed
from xmr_utils.core.train.state import Training, TrainState
from xmr_utils.core.train.untrained import UNTRAINED_EPOCH, score_untrained
from xmr_utils.core.train.validation import (
    COLLAPSE_EVERY,
    COLLAPSE_KEY,
    SnapshotSample,
    ValSplit,
    collapse_epochs,
    embed,
    val_collapse,
    val_metrics,
    val_scores,
)


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
class EpochOptions:
    """How :func:`run_epoch` steps: ``batch_size`` pairs per batch, gradient-norm clipping at
    ``grad_clip`` (None: none), ``precision`` ``fp32`` or ``bf16`` (heads under autocast)."""

    batch_size: int
    grad_clip: float | None = None
    precision: str = "fp32"

    @classmethod
    def of(cls, recipe: Recipe) -> EpochOptions:
        return cls(recipe.train.batch_size, recipe.optim.grad_clip, recipe.train.precision)


@dataclass
class EpochResult:
    """One epoch of :func:`run_epoch`: the mean batch ``loss`` and the per-step means of
    the embedding and gradient statistics (``stats``; see :func:`run_epoch`)."""

    loss: float
    stats: dict[str, float]


def _record_step(recorder: StatsRecorder, model: DualEncoder, img: Tensor, txt: Tensor) -> None:
    """Mean embedding norm per modality (train mode) and gradient norm per head (before
    clipping) of one step."""
    with torch.no_grad():
        norms = {
            "img_norm": img.detach().norm(dim=1).mean(),
            "txt_norm": txt.detach().norm(dim=1).mean(),
        }
        for name, head in (("image", model.image_head), ("text", model.text_head)):
            grads = [p.grad for p in head.parameters() if p.grad is not None]
            if grads:
                norms[f"grad_norm_{name}_head"] = torch.nn.utils.get_total_norm(grads)
    recorder.record(**norms)


def run_epoch(
    training: Training,
    pairs: TrainPairs,
    direction: str,
    epoch: int,
    options: EpochOptions,
    on_step: Callable[[], object] | None = None,
) -> EpochResult:
    """Train ``training.model`` for one epoch (0-based ``epoch``, used by the miner's warm-up).

    Batches come from ``training.shuffle_gen``, miner draws from ``training.miner_gen``.
    ``options.precision="bf16"`` runs the heads under bfloat16 autocast (embeddings are cast
    back to float32 before the loss). ``on_step`` (optional) is called after every step.
    The result's ``stats``: ``img_norm`` / ``txt_norm`` (mean embedding norm per modality)
    and ``grad_norm_image_head`` / ``grad_norm_text_head`` (gradient norm before clipping),
    each averaged over the steps.
    """
    model, loss_fn, optimizer = training.model, training.loss_fn, training.optimizer
    device_type = pairs.pair_images.device.type
    autocast = options.precision == "bf16"
    model.train()
    loss_fn.train()
    loss_fn.reset_stats()
    recorder = StatsRecorder()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), dtype=torch.float64, device=pairs.pair_images.device)
    steps = 0
    for image_x, text_x, image_ids in pairs.batches(options.batch_size, training.shuffle_gen):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            img = model.encode_images(image_x)
            txt = model.encode_texts(text_x)
        img, txt = img.float(), txt.float()
        anchors, candidates = (img, txt) if direction == "img2txt" else (txt, img)
        loss = loss_fn(anchors, candidates, image_ids, epoch=epoch, generator=training.miner_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _record_step(recorder, model, img, txt)
        if options.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, options.grad_clip, foreach=True)
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
    return EpochResult(mean, recorder.means())


@dataclass(frozen=True)
class _Run:
    """What stays fixed while one model trains: its recipe and direction, its folder and
    data fingerprint, the training pairs, the val split, the snapshot sample and the epochs
    that take the collapse statistics."""

    recipe: Recipe
    direction: str
    folder: ModelDir
    fingerprint: str
    pairs: TrainPairs
    val: ValSplit
    sample: SnapshotSample
    collapse_at: frozenset[int]

    @classmethod
    def of(
        cls,
        recipe: Recipe,
        direction: str,
        folder: ModelDir,
        data: CheckedData,
        device: torch.device,
    ) -> _Run:
        cfg = recipe.train
        return cls(
            recipe,
            direction,
            folder,
            data_fingerprint(data),
            TrainPairs.of(data, device, cfg.epoch_pairs),
            ValSplit.of(data),
            SnapshotSample.of(data, cfg.snapshot_images, cfg.seed),
            collapse_epochs(cfg, COLLAPSE_EVERY),
        )


def train_model(
    recipe: Recipe,
    direction: str,
    data: TrainData,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train one model for ``direction`` and return the best-val one (a recipe with nothing
    to train, ``zeroshot``, is scored once: :mod:`~xmr_utils.core.train.untrained`).

    Args:
        recipe: heads, loss, optimiser and loop settings.
        direction: ``img2txt`` (image anchors) or ``txt2img`` (caption anchors).
        data: the feature tables, caption owners and the train / val image indices.
        out_dir: the model folder; receives ``best.pt``, ``last.pt``, ``history.jsonl`` and
            ``snapshots/`` (:class:`~xmr_utils.core.train.model_dir.ModelDir`).
        device: torch device for training.
        progress: show a tqdm bar.
        resume: continue from ``out_dir/last.pt`` when it exists (a finished run is
            returned as is; snapshots of finished epochs are kept, later ones written);
            False starts over and replaces the files.

    Raises:
        XmrError: unknown direction, mismatched shapes, empty or overlapping splits,
            non-finite features, or a ``last.pt`` written by a different recipe or data.
    """
    check_direction(direction)
    checked = check_data(data)
    folder = ModelDir(out_dir)
    folder.create()
    if not recipe.trains:  # identity heads (zeroshot): scored once, saved as epoch 0
        model, val, rows = score_untrained(recipe, direction, checked, folder, device)
        return TrainResult(model, recipe, direction, UNTRAINED_EPOCH, val, rows, folder.best)
    dev = torch.device(device)
    slow_bf16 = bf16_warning(dev.type) if recipe.train.precision == "bf16" else ""
    if slow_bf16:
        warnings.warn(f"{recipe.name}: {slow_bf16}", RuntimeWarning, stacklevel=2)
    if not resume:  # start over: no stale state from an earlier run may survive a crash
        folder.clear()
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        dims = checked.image_feats.shape[1], checked.text_feats.shape[1]
        seed = direction_seed(recipe.train.seed, direction)
        training = Training.create(recipe, *dims, dev, seed)
        saved = None
        if resume:
            saved = folder.load_resume(training, recipe, direction, data_fingerprint(checked))
        state = saved or TrainState()
        history = folder.read_history(upto_epoch=state.epoch)
        folder.write_history(history)  # drops rows a killed run wrote after its last.pt
        folder.clear_snapshots(after_epoch=state.epoch)
        if not state.finished(recipe.train.epochs):
            run = _Run.of(recipe, direction, folder, checked, dev)
            _train_epochs(run, training, state, history, progress)
        model, meta = _complete_best(folder, recipe, checked, history, device)
    best_epoch, best_val = int(meta["epoch"]), dict(meta["val"])
    return TrainResult(model, recipe, direction, best_epoch, best_val, history, folder.best)


#: ``last.pt`` is written after the first epoch a call trains, after the last one (or an early
#: stop), and otherwise once this many seconds have passed since it was last written. A kill
#: then redoes at most ~30 s of training, and the resumed run is the same to the last bit
#: either way (the rows and snapshots of epochs after ``last.pt`` are dropped and rewritten).
#: Writing it every epoch cost a seed-recipe run 50 writes of 330 MB (~0.5 s each, 12% of a
#: bf16 epoch); at ~5 s an epoch it now writes it after about every sixth.
RESUME_EVERY_S: float = 30.0


def _train_epochs(
    run: _Run,
    training: Training,
    state: TrainState,
    history: list[dict[str, Any]],
    progress: bool,
) -> None:
    """Epochs ``state.epoch .. epochs-1`` (each appended to ``history``) until the schedule
    ends or an early stop; the bar ends full either way, naming an early stop's reason."""
    from tqdm.auto import tqdm

    cfg = run.recipe.train
    steps = run.pairs.n_batches(cfg.batch_size)
    bar = tqdm(
        total=steps * cfg.epochs,
        initial=steps * state.epoch,
        disable=not progress,
        desc=f"{run.recipe.name}/{run.direction}",
        unit="step",
    )
    saved_at = -math.inf  # the first epoch this call trains is always saved
    try:
        for epoch in range(state.epoch, cfg.epochs):
            history.append(_train_epoch(run, training, state, epoch, bar if progress else None))
            now = time.monotonic()
            if state.stopped or state.epoch == cfg.epochs or now - saved_at >= RESUME_EVERY_S:
                run.folder.save_resume(training, run.recipe, run.direction, run.fingerprint, state)
                saved_at = now
            if state.stopped:
                if progress:
                    _end_bar_early(bar, early_stop_reason(state, cfg.eval_every))
                break
    finally:
        bar.close()


def early_stop_reason(state: TrainState, eval_every: int = 1) -> str:
    """E.g. ``"early stop at epoch 9: no better val rsum for 6 epochs"``."""
    unit = "epochs" if eval_every == 1 else "validations"
    return f"early stop at epoch {state.epoch}: no better val rsum for {state.bad} {unit}"


def _end_bar_early(bar: Any, reason: str) -> None:
    """Make ``bar`` end full (green in a notebook, not red as an unfinished bar is) and say
    why it stopped before its total."""
    bar.total = bar.n
    container = getattr(bar, "container", None)  # tqdm.notebook's widget: its bar's maximum
    if container is not None:
        container.children[1].max = bar.n
    bar.set_description(f"{bar.desc}: {reason}", refresh=True)


def _train_epoch(
    run: _Run, training: Training, state: TrainState, epoch: int, bar: Any | None
) -> dict[str, Any]:
    """Train, validate and snapshot epoch ``epoch`` (0-based) and append its history row (the
    caller writes ``last.pt``); the row."""
    cfg = run.recipe.train
    lr = training.optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    result = run_epoch(
        training,
        run.pairs,
        run.direction,
        epoch,
        EpochOptions.of(run.recipe),
        on_step=bar.update if bar is not None else None,
    )
    training.scheduler.step()
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "loss": result.loss,
        **training.loss_fn.epoch_stats(result.loss),
        "lr": lr,
        "seconds": time.perf_counter() - start,
        **result.stats,
    }
    state.epoch = epoch + 1
    best = False
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        validated, best = _validate(run, training.model, state)
        row.update(validated)
        if bar is not None:
            bar.set_postfix(loss=f"{result.loss:.4f}", rsum=f"{row['val_rsum']:.1f}")
    start = time.perf_counter()
    if best:
        run.folder.save_best(training.model, run.recipe, run.direction, state.epoch, state.best_val)
    schedule = cfg.snapshot_schedule()
    if schedule and (epoch + 1 in schedule or state.stopped):
        # before last.pt: an epoch in the saved state always has its snapshot
        sample = run.sample
        embeddings = embed(training.model, sample.image_x, sample.text_x, cfg.eval_batch_size)
        run.folder.save_snapshot(epoch + 1, sample, embeddings, training.model.similarity)
    row["checkpoint_seconds"] = time.perf_counter() - start
    run.folder.append_history(row)  # before last.pt (the caller): rows after it are dropped
    return row


def _validate(run: _Run, model: DualEncoder, state: TrainState) -> tuple[dict[str, Any], bool]:
    """Validate after ``state.epoch`` epochs and update the early-stop count and, on a new
    best, ``state.best_val``: the ``val_seconds`` and ``val_*`` columns (the collapse
    statistics at ``run.collapse_at`` and an early stop), and whether the epoch is the new
    best (the caller writes ``best.pt``: a checkpoint, timed apart from validation)."""
    cfg = run.recipe.train
    start = time.perf_counter()
    img, txt = embed(model, run.val.image_x, run.val.text_x, cfg.eval_batch_size)
    scores = val_scores(model, img, txt)
    val = val_metrics(model, img, txt, run.val.owner, scores)
    best = state.validated(state.epoch, val, cfg.patience)
    if state.epoch in run.collapse_at or state.stopped:
        val.update(val_collapse(img, txt, run.val.owner, model.similarity, scores))
    if best:
        state.best_val = val
    return {"val_seconds": time.perf_counter() - start, **val}, best


def _complete_best(
    folder: ModelDir,
    recipe: Recipe,
    data: CheckedData,
    history: list[dict[str, Any]],
    device: str,
) -> tuple[DualEncoder, dict[str, Any]]:
    """The best model and its checkpoint's metadata, with the collapse statistics of the best
    epoch: when it was not a collapse epoch they are taken now, from ``best.pt``'s weights
    (the same embeddings that epoch gave), written into ``best.pt`` and into that epoch's row
    of ``history`` and ``history.jsonl`` (its ``val_seconds`` grows by their time)."""
    model, _, meta = folder.load_best(device=device)
    if COLLAPSE_KEY in meta["val"]:
        return model, meta
    start = time.perf_counter()
    val = ValSplit.of(data)
    img, txt = embed(model, val.image_x, val.text_x, recipe.train.eval_batch_size)
    stats = val_collapse(img, txt, val.owner, model.similarity)
    epoch, best_val = int(meta["epoch"]), {**meta["val"], **stats}
    folder.save_best(model, recipe, meta["direction"], epoch, best_val)
    seconds = time.perf_counter() - start
    for row in history:
        if row["epoch"] == epoch:
            row.update(stats)
            row["val_seconds"] = row.get("val_seconds", 0.0) + seconds
    folder.write_history(history)
    return model, {**meta, "val": best_val}
