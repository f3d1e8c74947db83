"""Evaluation speed: the full metric set, ours vs. the seed's approach, and at Flickr30k scale.

    python -m benchmarks.bench_eval [--quick]

(a) 1,000 images x 5,000 captions (1024-d, L2-normalised random, 5 captions per image):
    :func:`xmr_utils.core.metrics.evaluate_embeddings` (similarity included) vs. the seed's way --
    sklearn ``NearestNeighbors(algorithm="ball_tree")`` top-10 per direction, the Python
    ``apk`` loop for mAP@1/5/10, Python loops for R@K, and a per-query ``argsort`` loop for
    medr/meanr. Both must give the same numbers (checked).
(b) Flickr30k scale, 31,783 x 158,915 x 1024-d float32 random embeddings, generated in
    seeded chunks, evaluated in a child process so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Row, bench_main, limit_around, machine_limit, time_repeats

SECTION = "eval"
DIM = 1024
PER_IMAGE = 5
#: Full-scale targets (issue 16): seconds, peak RSS in MB, share of the fp32 matmul limit.
SCALE_TARGET = (60.0, 4096.0, 0.85)
ROOT = Path(__file__).resolve().parents[1]


def random_unit(n: int, dim: int, seed: int, chunk: int = 8192) -> torch.Tensor:
    """Seeded L2-normalised Gaussian rows ``[n, dim]`` float32, built chunk by chunk."""
    out = torch.empty(n, dim, dtype=torch.float32)
    for c0 in range(0, n, chunk):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + c0)
        block = torch.randn(min(chunk, n - c0), dim, generator=gen)
        out[c0 : c0 + chunk] = torch.nn.functional.normalize(block, dim=1)
    return out


def seed_style_metrics(img: np.ndarray, txt: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """The seed's evaluation: ball-tree top-10 + Python loops (R@K, mAP@k, medr, meanr)."""
    from sklearn.neighbors import NearestNeighbors

    from xmr_utils.core.metrics import seed_apk as apk

    out: dict[str, float] = {}
    ks = (1, 5, 10)
    # image -> text: neighbours among captions, relevant = owner image id
    nn_txt = NearestNeighbors(n_neighbors=10, algorithm="ball_tree").fit(txt)
    top = nn_txt.kneighbors(img, return_distance=False)
    scores = img @ txt.T
    best = []
    for i in range(img.shape[0]):
        order = np.argsort(-scores[i])
        best.append(min(int(np.where(order == c)[0][0]) + 1 for c in np.flatnonzero(owner == i)))
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * sum(r <= k for r in best) / len(best)
        preds = [[int(owner[c]) for c in row] for row in top]
        out[f"i2t_mAP@{k}"] = float(np.mean([apk([i], p, k) for i, p in enumerate(preds)]))
    out["i2t_medr"], out["i2t_meanr"] = float(np.median(best)), float(np.mean(best))
    # text -> image: neighbours among images, relevant = the caption's owner
    nn_img = NearestNeighbors(n_neighbors=10, algorithm="ball_tree").fit(img)
    top = nn_img.kneighbors(txt, return_distance=False)
    ranks = []
    for c in range(txt.shape[0]):
        order = np.argsort(-scores[:, c])
        ranks.append(int(np.where(order == owner[c])[0][0]) + 1)
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * sum(r <= k for r in ranks) / len(ranks)
        preds = [[int(i) for i in row] for row in top]
        out[f"t2i_mAP@{k}"] = float(
            np.mean([apk([int(owner[c])], p, k) for c, p in enumerate(preds)])
        )
    out["t2i_medr"], out["t2i_meanr"] = float(np.median(ranks)), float(np.mean(ranks))
    return out


def bench_small(quick: bool, n_img: int | None = None) -> list[Row]:
    """Ours vs. the seed's way on ``n_img`` images (default 1,000; 200 with ``quick``)."""
    from xmr_utils.core.metrics import evaluate_embeddings

    n_img = n_img or (200 if quick else 1000)
    img, txt = random_unit(n_img, DIM, 1), random_unit(PER_IMAGE * n_img, DIM, 2)
    owner = np.repeat(np.arange(n_img), PER_IMAGE)
    ours = time_repeats(lambda: evaluate_embeddings(img, txt, owner), repeats=5)
    cpu = time.process_time()
    evaluate_embeddings(img, txt, owner)
    cpu_s = time.process_time() - cpu
    img_np, txt_np = img.numpy(), txt.numpy()
    seed = time_repeats(lambda: seed_style_metrics(img_np, txt_np, owner), repeats=3, warmup=0)
    # agreement in float64: in float32, numpy's and torch's products round differently, and
    # a near-tie (one caption in 5,000, 2e-4 apart) then ranks two ways
    img64, txt64 = img.double(), txt.double()
    got = evaluate_embeddings(img64, txt64, owner)
    want = seed_style_metrics(img64.numpy(), txt64.numpy(), owner)
    agree = all(abs(got[k] - v) < 1e-9 for k, v in want.items())
    what = f"full metric set, {n_img:,} x {PER_IMAGE * n_img:,} x {DIM}-d (both directions)"
    gflops = 2 * n_img * PER_IMAGE * n_img * DIM / ours.median_s / 1e9
    return [
        Row(
            SECTION,
            what + f"; seed-style numbers agree (float64): {'yes' if agree else 'NO'}; ours "
            f"{cpu_s:.2f} CPU-s per call; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs",
            ours.cell(),
            f"{seed.cell()} sklearn ball_tree + Python apk/rank loops",
            f"{seed.median_s / ours.median_s:.0f}x",
            "≤ 0.2 s",
            "yes" if ours.median_s <= 0.2 and agree else "no",
            limit=machine_limit().share(gflops),
        )
    ]


def _child(n_img: int, chunk_size: int | None) -> None:
    """Run in the child process: generate, warm up, evaluate, print one JSON line.

    The warm-up is one evaluation of 1,000 x 20,000 (the smallest size the fused path takes):
    it loads the compiled scan kernels (compiles them on a machine's first run), a cost paid
    once per process.
    """
    import resource

    from xmr_utils.core.metrics import evaluate_embeddings

    img, txt = random_unit(n_img, DIM, 3), random_unit(PER_IMAGE * n_img, DIM, 4)
    owner = np.repeat(np.arange(n_img), PER_IMAGE)
    start = time.perf_counter()
    n_warm = min(n_img, 1000)
    evaluate_embeddings(img[:n_warm], txt[: 20 * n_warm], owner[: 20 * n_warm] % n_warm)
    warmup_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    m = evaluate_embeddings(img, txt, owner, chunk_size=chunk_size)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "peak_mb": peak, "rsum": m["rsum"],
                      "warmup_s": warmup_s}))  # fmt: skip


def bench_scale(quick: bool, n_img: int | None = None) -> list[Row]:
    """One evaluation of ``n_img`` images (default 31,783; 3,000 with ``quick``) in a child."""
    n_img = n_img or (3000 if quick else 31783)
    code = f"from benchmarks.bench_eval import _child; _child({n_img}, None)"
    load_before = os.getloadavg()[0]
    done, limit = limit_around(
        lambda: subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
    )
    res = json.loads(done.stdout.strip().splitlines()[-1])
    emb_mb = (n_img + PER_IMAGE * n_img) * DIM * 4 / 2**20
    gflops = 2 * n_img * PER_IMAGE * n_img * DIM / res["seconds"] / 1e9
    max_s, max_mb, min_share = SCALE_TARGET
    met = res["seconds"] <= max_s and res["peak_mb"] <= max_mb and gflops >= min_share * limit.fp32
    return [
        Row(
            SECTION,
            f"evaluate_embeddings {n_img:,} x {PER_IMAGE * n_img:,} x {DIM}-d float32 "
            f"(1 run after a {res['warmup_s']:.1f} s warm-up call; embeddings alone "
            f"{emb_mb:,.0f} MB; load average before {load_before:.1f} on {os.cpu_count()} CPUs)",
            f"{res['seconds']:.1f} s ({res['cpu_s']:.0f} CPU-s), peak RSS {res['peak_mb']:,.0f} MB",
            f"{2 * n_img * PER_IMAGE * n_img * DIM / limit.fp32 / 1e9:.1f} s at the fp32 limit",
            target=f"≤ {max_s:.0f} s, ≤ {max_mb / 1024:.0f} GB, ≥ {min_share:.0%} of fp32",
            met="yes" if met else "no",
            limit=limit.share(gflops),
        )
    ]


def run(quick: bool = False) -> list[Row]:
    """All evaluation rows (``quick``: small sizes, for development)."""
    return bench_small(quick) + bench_scale(quick)


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
