"""Speed of one training epoch on Flickr30k-shaped features (target: <= 15 s on 2 CPU cores).

Random features shaped like Flickr30k's training split (29,000 images x 4096-d, 145,000
captions x 768-d, 5 captions per image); the default recipe (``vsepp``) for img2txt.
Rows, all measured in this one process:

* our epoch: :func:`xmr_utils.core.train.run_epoch` — batches cut from in-memory tensors with
  one permutation (the loop :func:`~xmr_utils.core.train.train_model` runs);
* the seed-style loop: a per-item ``Dataset`` and ``DataLoader(batch_size, shuffle=True)``
  with default collation feeding the same model, loss and optimiser — timed over a fixed
  number of steps and scaled to an epoch;
* the same with ``train.precision="bf16"`` (bfloat16 autocast on the heads);
* the same steps with both heads wrapped in ``torch.compile`` (compile time reported);
* the seed recipe's own heads (4096-d, batch 1024), scaled from a few steps;
* validation's share of the epoch (target <= 20 %), for the default recipe and the seed's, on
  a Flickr30k-shaped val split (1,014 images x 5,070 captions): the rsum the loop takes every
  epoch and the full collapse statistics it takes on :func:`~xmr_utils.core.train.
  collapse_epochs` (and the best epoch), each timed once here and averaged over the
  recipe's schedule, against taking both every epoch as before.

    python -m benchmarks.bench_train [--quick]

The same share in a real run (e.g. the ``flickr8k`` preset), from the ``seconds`` and
``val_seconds`` its models' ``history.jsonl`` hold: ``python -m benchmarks.val_share RUN_DIR``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from benchmarks.common import Row, bench_main, count_flops, machine_limit

SECTION = "train"
EPOCH_TARGET_S = 15.0
FLICKR30K_TRAIN_IMAGES = 29_000
FLICKR30K_VAL_IMAGES = 1_014
VAL_SHARE_TARGET = 0.20
CAPTIONS_PER_IMAGE = 5
IMAGE_DIM = 4096
TEXT_DIM = 768


def make_features(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image feats ``[n, 4096]``, caption feats ``[5n, 768]`` (float32), owner ``[5n]``."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n_images, IMAGE_DIM), dtype=np.float32)
    text = rng.standard_normal((n_images * CAPTIONS_PER_IMAGE, TEXT_DIM), dtype=np.float32)
    owner = np.repeat(np.arange(n_images), CAPTIONS_PER_IMAGE)
    return image, text, owner


class PerItemPairs(torch.utils.data.Dataset):
    """The seed's style of input pipeline: one (image, caption, image id) per ``__getitem__``."""

    def __init__(self, image: np.ndarray, text: np.ndarray, owner: np.ndarray) -> None:
        self.image, self.text, self.owner = image, text, owner

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = int(self.owner[k])
        return torch.from_numpy(self.image[i]), torch.from_numpy(self.text[k]), i


def _parts(recipe_name: str, seed: int = 0):
    from xmr_utils.core.config import RECIPES
    from xmr_utils.core.train import build_training

    torch.manual_seed(seed)
    return build_training(RECIPES[recipe_name], IMAGE_DIM, TEXT_DIM)


def _step_fn(
    model, loss_fn, optimizer, grad_clip: float | None, generator: torch.Generator | None = None
) -> Callable[..., None]:
    """One img2txt training step (after the warm-up epoch) on a batch."""
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def step(image_x: torch.Tensor, text_x: torch.Tensor, ids: torch.Tensor) -> None:
        loss = loss_fn(
            model.encode_images(image_x),
            model.encode_texts(text_x),
            ids,
            epoch=1,
            generator=generator,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        optimizer.step()

    return step


def time_our_epoch(
    image: np.ndarray, text: np.ndarray, owner: np.ndarray, precision: str = "fp32"
) -> tuple[float, int, torch.nn.Module]:
    """Seconds of one full :func:`run_epoch` with the default recipe, its step count and the
    model it trained."""
    from xmr_utils.core.config import DEFAULT_RECIPE, RECIPES, recipe_with
    from xmr_utils.core.train import EpochOptions, Training, TrainPairs, run_epoch

    recipe = recipe_with(RECIPES[DEFAULT_RECIPE], **{"train.precision": precision})
    training = Training.create(recipe, IMAGE_DIM, TEXT_DIM, torch.device("cpu"), seed=0)
    pairs = TrainPairs(
        torch.from_numpy(image),
        torch.from_numpy(text),
        torch.from_numpy(owner),
        torch.arange(len(owner)),
    )
    start = time.perf_counter()
    run_epoch(training, pairs, "img2txt", 1, EpochOptions.of(recipe))
    return time.perf_counter() - start, pairs.n_batches(recipe.train.batch_size), training.model


def time_validation(model, n_images: int, seed: int = 1) -> tuple[float, float]:
    """Seconds of the two parts of one validation of ``model`` on a random val split of
    ``n_images`` images x 5 captions: ``(rsum, collapse)`` — embedding and retrieval
    metrics (every epoch), and the full collapse statistics of those embeddings."""
    from xmr_utils.core.train.validation import embed, val_collapse, val_metrics, val_scores

    image, text, owner = make_features(n_images, seed)
    start = time.perf_counter()
    img, txt = embed(model, image, text)
    scores = val_scores(model, img, txt)  # as the loop: both parts read these scores
    val_metrics(model, img, txt, owner, scores)
    rsum_s = time.perf_counter() - start
    start = time.perf_counter()
    val_collapse(img, txt, owner, model.similarity, scores)
    return rsum_s, time.perf_counter() - start


def val_share_row(recipe_name: str, epoch_s: float, model, n_val: int, quick: bool) -> Row:
    """Validation's share of the epoch for ``recipe_name`` (its ``epoch_s`` seconds of
    training), averaged over its schedule: the collapse statistics on
    ``collapse_epochs`` plus the best epoch (at worst one more), vs. every epoch as before."""
    from xmr_utils.core.config import RECIPES
    from xmr_utils.core.train import collapse_epochs

    cfg = RECIPES[recipe_name].train
    rsum_s, collapse_s = time_validation(model, n_val)
    n_collapse = len(collapse_epochs(cfg)) + 1
    ours = rsum_s + collapse_s * n_collapse / cfg.epochs
    before = rsum_s + collapse_s
    share, share_before = ours / (epoch_s + ours), before / (epoch_s + before)
    met = "—" if quick else ("yes" if share <= VAL_SHARE_TARGET else "no")
    return Row(
        SECTION,
        f"validation's share of a {recipe_name} epoch ({epoch_s:.1f} s of training), val "
        f"{n_val:,} images × {CAPTIONS_PER_IMAGE}: rsum {rsum_s:.2f} s every epoch + collapse "
        f"statistics {collapse_s:.2f} s on {n_collapse} of {cfg.epochs} epochs, vs. both every "
        f"epoch",
        f"{100 * share:.1f}% ({ours:.2f} s/epoch)",
        f"{100 * share_before:.1f}% ({before:.2f} s/epoch)",
        f"{share_before / share:.1f}×",
        f"≤ {100 * VAL_SHARE_TARGET:.0f}%" if not quick else "— (quick)",
        met,
    )


def time_steps(batches, step: Callable[..., None], n_steps: int, warmup: int = 3) -> float:
    """Seconds per step over ``n_steps`` after ``warmup`` untimed steps."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    start = time.perf_counter()
    for _ in range(n_steps):
        step(*next(it))
    return (time.perf_counter() - start) / n_steps


def tensor_batches(image, text, owner, batch_size: int):
    """Our batching (permutation + tensor indexing), endlessly."""
    image_t, text_t = torch.from_numpy(image), torch.from_numpy(text)
    owner_t = torch.from_numpy(owner)
    gen = torch.Generator().manual_seed(0)
    while True:
        perm = torch.randperm(len(owner), generator=gen)
        for b in range(len(owner) // batch_size):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            ids = owner_t[idx]
            yield image_t[ids], text_t[idx], ids


def dataloader_batches(image, text, owner, batch_size: int):
    """The seed-style per-item Dataset + DataLoader, endlessly."""
    loader = torch.utils.data.DataLoader(
        PerItemPairs(image, text, owner),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    while True:
        yield from loader


def interleaved_step_times(
    variants: dict[str, tuple[Iterator, Callable[..., None]]], rounds: int, steps: int
) -> dict[str, float]:
    """Median seconds per step of each variant, timed in alternating blocks of ``steps``.

    Alternating the variants round by round spreads any load from other processes on a
    shared machine over all of them, so their ratios stay meaningful.
    """
    per_block: dict[str, list[float]] = {name: [] for name in variants}
    for batches, step in variants.values():  # warm-up (and compile) once
        step(*next(batches))
    for _ in range(rounds):
        for name, (batches, step) in variants.items():
            per_block[name].append(time_steps(batches, step, steps, warmup=0))
    return {name: statistics.median(times) for name, times in per_block.items()}


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows (``quick``: a tenth of the images, fewer steps)."""
    from xmr_utils.core.config import DEFAULT_RECIPE, RECIPES
    from xmr_utils.core.hardware import native_bf16

    n_images = FLICKR30K_TRAIN_IMAGES // 10 if quick else FLICKR30K_TRAIN_IMAGES
    rounds, block = (3, 10) if quick else (5, 30)
    recipe = RECIPES[DEFAULT_RECIPE]
    bs = recipe.train.batch_size
    clip = recipe.optim.grad_clip
    image, text, owner = make_features(n_images)
    rows: list[Row] = []
    target = f"≤ {EPOCH_TARGET_S:.0f} s" if not quick else "— (quick)"

    def met(seconds: float) -> str:
        return ("yes" if seconds <= EPOCH_TARGET_S else "no") if not quick else "—"

    limit = machine_limit()  # matmul FLOPs of one step (forward + backward), for "of limit"
    step_flops = count_flops(
        lambda: _step_fn(*_parts(DEFAULT_RECIPE)[:3], clip)(
            *next(tensor_batches(image, text, owner, bs))
        )
    )

    def share(seconds_per_step: float, dtype: str = "fp32") -> str:
        return limit.share(step_flops / seconds_per_step / 1e9, dtype)

    load = os.getloadavg()[0]
    ours_s, steps, our_model = time_our_epoch(image, text, owner)
    rows.append(
        Row(
            SECTION,
            f"one full epoch (run_epoch), {len(owner):,} pairs × batch {bs} = {steps} steps, "
            f"{DEFAULT_RECIPE} heads (img {IMAGE_DIM}→{recipe.image_head.hidden}→"
            f"{recipe.image_head.out_dim}), img2txt, fp32 (load avg before: {load:.1f})",
            f"{ours_s:.2f} s",
            target=target,
            met=met(ours_s),
            limit=share(ours_s / steps),
        )
    )

    def fresh_step(compiled: bool = False, bf16: bool = False) -> Callable[..., None]:
        model, loss_fn, optimizer, _ = _parts(DEFAULT_RECIPE)
        if compiled:
            model.image_head = torch.compile(model.image_head)
            model.text_head = torch.compile(model.text_head)
        step = _step_fn(model, loss_fn, optimizer, clip)
        if not bf16:
            return step

        def bf16_step(image_x, text_x, ids):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                step(image_x, text_x, ids)

        return bf16_step

    start = time.perf_counter()
    compiled_step = fresh_step(compiled=True)
    compiled_step(*next(tensor_batches(image, text, owner, bs)))
    compile_s = time.perf_counter() - start
    variants = {
        "tensor": (tensor_batches(image, text, owner, bs), fresh_step()),
        "dataloader": (dataloader_batches(image, text, owner, bs), fresh_step()),
        "compiled": (tensor_batches(image, text, owner, bs), compiled_step),
    }
    bf16 = native_bf16("cpu")  # emulated bf16 would take hours here, and say nothing
    if bf16:
        variants["bf16"] = (tensor_batches(image, text, owner, bs), fresh_step(bf16=True))
    times = interleaved_step_times(variants, rounds, block)
    t, d, c, b = (times.get(k, math.nan) for k in ("tensor", "dataloader", "compiled", "bf16"))
    how = f"median of {rounds} interleaved blocks of {block} steps, × {steps} steps"
    rows.append(
        Row(
            SECTION,
            f"epoch from per-step time: tensor batches vs. seed-style per-item Dataset + "
            f"DataLoader ({how})",
            f"{t * steps:.2f} s ({t * 1e3:.1f} ms/step)",
            f"{d * steps:.2f} s ({d * 1e3:.1f} ms/step)",
            f"{d / t:.2f}×",
            target,
            met(t * steps),
            limit=share(t),
        )
    )
    rows.append(
        Row(
            SECTION,
            f"train.precision='bf16' (heads under bfloat16 autocast) vs. fp32 ({how})",
            f"{b * steps:.2f} s ({b * 1e3:.1f} ms/step)",
            f"{t * steps:.2f} s fp32",
            f"{t / b:.2f}×",
            target,
            met(b * steps),
            limit=share(b, "bf16"),
        )
        if bf16
        else Row(
            SECTION,
            "train.precision='bf16': not timed, this CPU has no native bf16 matrix products "
            "(no AMX or AVX512-BF16; the limit section's bf16 row is emulated)",
            "—",
        )
    )
    rows.append(
        Row(
            SECTION,
            f"torch.compile on both heads vs. eager ({how}; compile + first step {compile_s:.1f} s)"
            f" — recommendation: {'keep' if c < 0.9 * t else 'drop'}",
            f"{c * steps:.2f} s ({c * 1e3:.1f} ms/step)",
            f"{t * steps:.2f} s eager",
            f"{t / c:.2f}×",
            limit=share(c),
        )
    )

    seed = RECIPES["seed"]
    s_model, s_loss, s_opt, _ = _parts("seed")
    seed_step = _step_fn(
        s_model, s_loss, s_opt, seed.optim.grad_clip, torch.Generator().manual_seed(0)
    )
    seed_steps = 3 if quick else 6
    seed_batches = tensor_batches(image, text, owner, seed.train.batch_size)
    seed_step_s = time_steps(seed_batches, seed_step, seed_steps, warmup=1)
    seed_flops = count_flops(lambda: seed_step(*next(seed_batches)))
    # the seed's epoch is one random caption per image (train.epoch_pairs), not every pair
    seed_pairs = len(np.unique(owner)) if seed.train.epoch_pairs == "one_per_image" else len(owner)
    seed_epoch_steps = seed_pairs // seed.train.batch_size
    rows.append(
        Row(
            SECTION,
            f"seed recipe epoch (4096-d heads, batch {seed.train.batch_size}, "
            f"{seed_epoch_steps} steps: {seed_pairs:,} pairs, {seed.train.epoch_pairs}), "
            f"scaled from {seed_steps} steps",
            f"{seed_step_s * seed_epoch_steps:.1f} s",
            limit=limit.share(seed_flops / seed_step_s / 1e9),
        )
    )
    n_val = FLICKR30K_VAL_IMAGES // 10 if quick else FLICKR30K_VAL_IMAGES
    rows.append(val_share_row(DEFAULT_RECIPE, ours_s, our_model, n_val, quick))
    rows.append(val_share_row("seed", seed_step_s * seed_epoch_steps, s_model, n_val, quick))
    return rows


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
