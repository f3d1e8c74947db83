"""``make bench-collapse``: the collapse ladder (issue 11) on real Flickr8k — which of the seed's
choices makes its triplet models collapse, one factor at a time, in both directions.

    python -m benchmarks.bench_collapse [--ladder FILE] [--directions seed_to_fix,...]
        [--cells seed,l2,...] [--seeds 0,1,2] [--models img2txt,txt2img]
        [--schedule "train.epochs=50,..."] [--name NAME] [--data DIR] [--features DIR]
        [--root outputs/collapse] [--keep-models] [--out benchmarks/RESULTS.md]

The ladder file (``configs/collapse-ladder.yaml``; :mod:`xmr_utils.app.ladder`) lists the
cells: from ``seed`` one change toward ``vsepp`` per cell, and from ``vsepp`` one change toward
the seed. Every (cell, seed, model) is trained with the quality benchmark's protocol
(``benchmarks/bench_quality.py``: models fit 5500 Flickr8k train images, each model's epoch is
picked on 500 held-out train images, the numbers are on the 1000 val images) and scored twice:
at its best-val epoch and at its last epoch (what the seed kept). A model is *collapsed* by
``diagnostics.COLLAPSE_RULE`` on its val embeddings.

Writes, under ``<root>/<name>/``: ``cells/<direction>/<cell>/seed<k>/<model>/`` (the model's
``history.jsonl`` with the per-epoch mechanism statistics and its ``result.json``; the
weights only with ``--keep-models``), ``ladder.json`` (the ladder as run), ``results.md`` and
``summary.csv`` (the ladder table) and the figures ``ladder.png`` and ``mechanism.png``;
``<root>/LATEST`` names the folder for notebook 07. A finished model is never trained again:
rerunning continues an interrupted ladder, and a ladder with cells added trains only those;
a model whose recipe changed is refused (give the changed ladder another ``--name``). With
``--out`` the table also goes into that RESULTS.md between the ``bench-collapse`` markers.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.bench_quality import (
    ROOT,
    SELECTION_IMAGES,
    SPLIT_SEED,
    QualityCase,
    StudyData,
    find_flickr8k,
    load_features,
    selection_split,
    shown_path,
    split_owner,
)
from benchmarks.common import block_marks, write_marked
from xmr_utils.app import ladder as ladders
from xmr_utils.app import ladder_figures
from xmr_utils.app.ladder import Ladder, LadderCell, ModelResult, Scored
from xmr_utils.core.diagnostics import collapse_reasons
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.train import ModelDir, train_model, validate

DEFAULT_LADDER = ROOT / "configs" / "collapse-ladder.yaml"
START_MARK, END_MARK = block_marks("collapse")


@dataclass(frozen=True)
class LadderData(StudyData):
    """:class:`~benchmarks.bench_quality.StudyData` (models fit ``fit`` and are selected on
    ``select``) and the report split's captions ``val_captions [m]`` with ``val_owner [m]``
    (caption -> row of ``val``)."""

    val_captions: np.ndarray
    val_owner: np.ndarray

    @classmethod
    def of(
        cls,
        image_feats: np.ndarray,
        text_feats: np.ndarray,
        owner: np.ndarray,
        train: np.ndarray,
        val: np.ndarray,
    ) -> LadderData:
        """The protocol's splits of ``train`` and ``val`` (image indices) with ``owner [N_cap]``."""
        fit, select = selection_split(train, SELECTION_IMAGES, SPLIT_SEED)
        val = np.sort(np.asarray(val))
        captions, val_owner = split_owner(np.asarray(owner), val)
        return cls(
            image_feats, text_feats, np.asarray(owner), fit, select, val, captions, val_owner
        )


def scored(model: DualEncoder, data: LadderData, epoch: int) -> Scored:
    """``model``'s metrics and collapse statistics on the report split (the training loop's
    own ``validate``), taken at 1-based ``epoch``."""
    out = validate(
        model, data.image_feats[data.val], data.text_feats[data.val_captions], data.val_owner
    )
    values = {k.removeprefix("val_"): v for k, v in out.items()}
    metrics = {k: float(v) for k, v in values.items() if k == "rsum" or "@" in k}
    stats = {k: v for k, v in values.items() if k not in metrics}
    return Scored(epoch, metrics, collapse_reasons(stats), stats)


def run_model(
    ladder: Ladder, cell: LadderCell, seed: int, model: str, data: LadderData, folder: Path
) -> tuple[ModelResult, bool]:
    """Train (or resume) one model of ``cell`` and score it at its best and its last epoch;
    a model whose ``result.json`` has the same recipe is read back instead. Returns the
    result and whether it was trained now."""
    recipe = ladder.recipe(cell, seed)
    done = ladders.saved_result(folder, recipe)
    if done is not None:
        return done, False
    start, cpu = time.perf_counter(), cpu_seconds()
    result = train_model(recipe, model, data.train_data(), folder, progress=False, resume=True)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    dims = data.image_feats.shape[1], data.text_feats.shape[1]
    last_model, _, state = ModelDir(folder).load_last(*dims)
    selections = {
        "best": scored(result.model, data, result.best_epoch),
        "last": scored(last_model, data, state.epoch),
    }
    outcome = ModelResult(
        cell.direction,
        cell.name,
        seed,
        model,
        recipe.to_dict(),
        selections,
        len(result.history),
        seconds,
        cpu,
    )
    ladders.save_result(folder, outcome)
    return outcome, True


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drop_weights(folder: Path) -> None:
    """Remove ``best.pt`` and ``last.pt`` (the 4096-d heads take ~100 MB each and a ladder
    trains ~150 models); the history and the result stay."""
    for path in (ModelDir(folder).best, ModelDir(folder).last):
        path.unlink(missing_ok=True)


def progress_line(done: int, total: int, result: ModelResult, seconds: float) -> str:
    """One line per model: rsum and collapse at its best and its last epoch."""
    parts = []
    for mode, s in result.selections.items():
        state = "collapsed" if s.collapsed else "ok"
        parts.append(f"{mode} (epoch {s.epoch}) rsum {s.metrics['rsum']:.1f} {state}")
    return (
        f"[collapse] {done}/{total} {result.direction}/{result.cell} seed {result.seed} "
        f"{result.model}: " + ", ".join(parts) + f" ({seconds:.0f} s)"
    )


def run_ladder(
    ladder: Ladder, data: LadderData, folder: Path, *, keep_models: bool = False
) -> list[float]:
    """Train and score every (cell, seed, model) of ``ladder`` in its order (seeds outermost,
    so that one complete seed comes first), each result saved once scored; returns the
    1-minute load average after each model trained now (the machine's state while it ran)."""
    jobs = [(c, s, m) for s in ladder.seeds for c in ladder.cells for m in ladder.models]
    loads = []
    for done, (cell, seed, model) in enumerate(jobs, start=1):
        start = time.perf_counter()
        path = ladders.model_folder(folder, cell, seed, model)
        result, trained = run_model(ladder, cell, seed, model, data, path)
        if trained:
            loads.append(os.getloadavg()[0])
            if not keep_models:
                drop_weights(path)
        print(progress_line(done, len(jobs), result, time.perf_counter() - start), flush=True)
    return loads


def write_outputs(ladder: Ladder, folder: Path, command: str) -> ladders.LadderResults:
    """``ladder.json``, ``results.md``, ``summary.csv`` and the two figures, from every
    result in ``folder`` (earlier runs' included); ``LATEST`` points at ``folder``."""
    ladders.write_manifest(ladder, folder, command)
    read = ladders.read_ladder(folder)
    read.table.to_csv(folder / "summary.csv", index=False)
    (folder / "results.md").write_text(read.markdown)
    ladder_figures.save(ladder_figures.ladder_figure(read), folder / "ladder.png")
    pair = ladder_figures.mechanism_cells(read)
    if pair:
        curves = ladders.histories(folder, pair, model=read.results[0].model)
        ladder_figures.save(ladder_figures.mechanism_figure(curves), folder / "mechanism.png")
    ladders.set_latest(folder, folder.parent)
    return read


def report(read: ladders.LadderResults, *, seconds: float, cpu_seconds: float, load: str) -> str:
    """The RESULTS.md section: the command, the protocol line, the timing and the table."""
    from benchmarks.common import machine_line

    manifest = read.ladder
    return (
        f"{START_MARK}\n## Why the seed collapsed: the factor ladder on real Flickr8k\n\n"
        f"Written by `{manifest['command']}` (`make bench-collapse`) on "
        f"{time.strftime('%Y-%m-%d')}; {machine_line()}. Ladder `{manifest['file']}`: features "
        f"`{manifest['image_encoder']}` + `{manifest['text_encoder']}`, seeds "
        f"{manifest['seeds']}, models {', '.join(manifest['models'])}, schedule "
        f"`{manifest['schedule'] or 'each recipe its own'}`. Protocol of `bench_quality`: fit "
        f"5500 train images, epoch picked on 500 held-out train images (best) or the last "
        f"epoch (last, what the seed kept), rsum on the 1000 val images (max 600); collapsed "
        f"= `diagnostics.COLLAPSE_RULE` on the val embeddings, k of n seeds.\n\n"
        f"{read.markdown}\n"
        f"Time of this invocation: {seconds / 60:.1f} min wall, {cpu_seconds / 60:.1f} min CPU "
        f"(this process), 1-min load average after each model it trained {load}.\n{END_MARK}\n"
    )


def write_section(path: Path, block: str) -> None:
    """Put ``block`` into ``path`` between the bench-collapse markers (replacing an earlier
    one, else appending); the rest of the file is kept."""
    write_marked(path, block, START_MARK, END_MARK)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ladder", default=str(DEFAULT_LADDER), help="the ladder file")
    parser.add_argument("--directions", default="", help="seed_to_fix and/or fix_to_seed")
    parser.add_argument("--cells", default="", help="comma list of cells (name or dir/name)")
    parser.add_argument("--seeds", default="", help="comma list of seeds (default: the file's)")
    parser.add_argument("--models", default="", help="img2txt and/or txt2img")
    parser.add_argument("--schedule", default=None, help="overrides replacing the file's schedule")
    parser.add_argument("--name", default=None, help="results folder name (default: the file's)")
    parser.add_argument("--data", default="", help="Flickr8k folder (as bench_quality)")
    parser.add_argument("--features", default=str(ROOT / "data" / "features"))
    parser.add_argument("--root", default=ladders.DEFAULT_LADDER_ROOT, help="results root")
    parser.add_argument("--keep-models", action="store_true", help="keep best.pt and last.pt")
    parser.add_argument("--out", default="", help="also write the table into this RESULTS.md")
    return parser.parse_args(argv)


def selected_ladder(args: argparse.Namespace) -> Ladder:
    """The ladder file, narrowed to the cells, seeds and models the options name."""
    seeds = [int(s) for s in _names(args.seeds)] if args.seeds else []
    return ladders.load_ladder(args.ladder).select(
        directions=_names(args.directions),
        cells=_names(args.cells),
        seeds=seeds,
        models=_names(args.models),
        schedule=args.schedule,
        name=args.name,
    )


def command_line(argv: Sequence[str]) -> str:
    """How this run was started, for the tables (paths as given)."""
    quoted = [a if a and " " not in a and '"' not in a else f'"{a}"' for a in argv]
    return " ".join(["python -m benchmarks.bench_collapse", *quoted])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    data_dir = find_flickr8k(args.data)
    if data_dir is None:
        print(
            "error: no Flickr8k folder found; pass --data DIR (see bench_quality)", file=sys.stderr
        )
        return 2
    import torch

    from xmr_utils.core.data import load_corpus

    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    try:
        ladder = selected_ladder(args)
        corpus = load_corpus(data_dir)
        case = QualityCase("ladder", "seed", ladder.image_encoder, ladder.text_encoder)
        feats, _ = load_features(corpus, [case], Path(args.features))
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    data = LadderData.of(
        feats[ladder.image_encoder],
        feats[ladder.text_encoder],
        corpus.owner,
        np.asarray(corpus.splits["train"]),
        np.asarray(corpus.splits["val"]),
    )
    folder = ladders.ladder_folder(ladder, args.root)
    print(
        f"[collapse] {ladder.name}: {len(ladder.cells)} cells x {len(ladder.seeds)} seeds x "
        f"{len(ladder.models)} models -> {shown_path(folder)}",
        flush=True,
    )
    start, cpu = time.perf_counter(), cpu_seconds()
    try:
        loads = run_ladder(ladder, data, folder, keep_models=args.keep_models)
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    read = write_outputs(ladder, folder, command_line(argv))
    load = f"{sum(loads) / len(loads):.1f} (mean of {len(loads)})" if loads else "—"
    block = report(read, seconds=seconds, cpu_seconds=cpu, load=load)
    print(block)
    if args.out:
        write_section(Path(args.out), block)
        print(f"[collapse] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
