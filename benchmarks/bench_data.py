"""Speed of the data layer: results.csv parse + validation, and synthetic generation.

Writes a Flickr30k-shaped dataset (31,783 images as empty files, 158,915 results.csv rows
including the real file's malformed 2199200615.jpg row) into a temporary folder, then
times ``validate(load_corpus(root))`` (no image is opened) against the target of 3 s,
with ``pandas.read_csv(sep="|")`` (parsing only, no checks) as the baseline.

    python -m benchmarks.bench_data [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import Row, bench_main, time_repeats

FLICKR30K_IMAGES = 31_783
PARSE_TARGET_S = 3.0
SYNTHETIC_IMAGES = 600
SYNTHETIC_TARGET_S = 5.0
SECTION = "data"


def write_flickr30k_like(root: Path, n_images: int) -> Path:
    """A Kaggle Flickr30k layout with ``n_images`` empty JPEG files and 5 captions each."""
    images = root / "flickr30k_images"
    images.mkdir(parents=True)
    lines = ["image_name| comment_number| comment"]
    for i in range(n_images):
        name = "2199200615.jpg" if i == n_images // 2 else f"{1_000_000 + i}.jpg"
        (images / name).touch()
        for k in range(5):
            if name == "2199200615.jpg" and k == 4:
                lines.append(f"{name}| 4   A dog runs across the grass .")
            else:
                lines.append(
                    f"{name}| {k}| A person number {i} in a red shirt is doing thing {k} "
                    "near a large building ."
                )
    (root / "results.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run(quick: bool = False, sizes: tuple[int, int] | None = None) -> list[Row]:
    """Measure and return the rows (``quick``: a tenth of Flickr30k, 60 synthetic images;
    ``sizes``: ``(results.csv images, synthetic images)`` instead, for the tests)."""
    import pandas as pd

    from xmr_utils.core.data import generate, load_corpus, validate

    n_images, n_synthetic = sizes or (
        (FLICKR30K_IMAGES // 10, SYNTHETIC_IMAGES // 10)
        if quick
        else (FLICKR30K_IMAGES, SYNTHETIC_IMAGES)
    )
    repeats = 1 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_flickr30k_like(Path(tmp) / "f30k", n_images)
        csv = root / "results.csv"

        def ours() -> None:
            report = validate(load_corpus(root))
            assert report.captions == 5 * n_images and len(report.rows_fixed) == 1

        ours_t = time_repeats(ours, repeats=repeats)
        base_t = time_repeats(lambda: pd.read_csv(csv, sep="|"), repeats=repeats)
        rows.append(
            Row(
                SECTION,
                f"results.csv {5 * n_images:,} rows: parse + checks + validate (no image opened)",
                ours_t.cell(),
                f"{base_t.cell()} pandas.read_csv parse only",
                f"{base_t.median_s / ours_t.median_s:.2f}×",
                f"≤ {PARSE_TARGET_S:.0f} s" if not quick else "— (quick)",
                ("yes" if ours_t.median_s <= PARSE_TARGET_S else "no") if not quick else "—",
            )
        )
        gen_t = time_repeats(
            lambda: generate(Path(tmp) / "synthetic", n_synthetic, seed=0), repeats=repeats
        )
        rows.append(
            Row(
                SECTION,
                f"synthetic dataset, {n_synthetic} images × 5 captions",
                gen_t.cell(),
                target=f"≤ {SYNTHETIC_TARGET_S:.0f} s" if not quick else "— (quick)",
                met=("yes" if gen_t.median_s <= SYNTHETIC_TARGET_S else "no") if not quick else "—",
            )
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
