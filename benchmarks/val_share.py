"""Validation's share of the training time in a finished run, from its models' histories.

Every history row holds the epoch's training ``seconds`` and, when validated, its
``val_seconds`` (the collapse statistics included on the epochs that take them, and the best
epoch's added after training). Per model and in total: the share
``val / (train + val)`` (target <= 20 %) and the epochs that carry the collapse statistics.

    python -m benchmarks.val_share outputs/runs/<run_id> [...]

E.g. the ``flickr8k`` preset (features cached):
``python -m xmr_utils.pipeline --preset flickr8k --only 02,03`` then this on its run folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import Row, markdown_table
from xmr_utils.core.errors import XmrError
from xmr_utils.core.train import ModelDir, val_time_share
from xmr_utils.core.train.validation import COLLAPSE_KEY

SECTION = "val share"


def model_folders(run_dir: Path) -> list[Path]:
    """The model folders under ``run_dir/models`` (or ``run_dir`` itself when it is one)."""
    if (run_dir / "history.jsonl").exists():
        return [run_dir]
    folders = sorted(p.parent for p in (run_dir / "models").glob("*/history.jsonl"))
    if not folders:
        raise XmrError(f"no history.jsonl under {run_dir / 'models'}; pass a run folder")
    return folders


def share_rows(run_dir: Path) -> list[Row]:
    """One row per model folder of ``run_dir`` and one for all of them together."""
    rows, everything = [], []
    for folder in model_folders(run_dir):
        history = ModelDir(folder).read_history()
        everything += history
        rows.append(_row(f"{run_dir.name}/{folder.name}", history))
    rows.append(_row(f"{run_dir.name}: all models", everything))
    return rows


def _row(what: str, history: list[dict]) -> Row:
    train = sum(float(r.get("seconds", 0.0)) for r in history)
    val = sum(float(r.get("val_seconds", 0.0)) for r in history)
    share = val_time_share(history)
    collapse = sum(COLLAPSE_KEY in r for r in history)
    return Row(
        SECTION,
        f"{what}: {len(history)} epochs, collapse statistics on {collapse}",
        f"{100 * share:.0f}% (val {val:.0f} s of {train + val:.0f} s)",
        target="≤ 20%",
        met="yes" if share <= 0.20 else "no",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders (or model folders)")
    args = parser.parse_args(argv)
    try:
        rows = [row for run_dir in args.run_dirs for row in share_rows(run_dir)]
    except XmrError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
