"""Counted, not just printed: captions the text encoder cannot read in full land in the run's
validation report (corpus.json), and every data-quality finding on the pipeline's console."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from xmr_utils.app import cli, runner
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.validate import text_encoding_report
from xmr_utils.core.encoders.base import TextReport
from xmr_utils.core.features import cached_text_report, text_features

ROOT = Path(__file__).resolve().parents[2]
LONG = " ".join(f"word{i % 7} dog" for i in range(200))  # ~400 words: far over 256 tokens


def _tiny_corpus(folder: Path, captions: list[str]) -> CaptionCorpus:
    """One image per two captions (the images are never opened here)."""
    n_images = (len(captions) + 1) // 2
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n_images):
        files.append(folder / f"im{i:02d}.jpg")
        files[-1].write_bytes(b"not opened")
    owner = np.arange(len(captions)) // 2
    splits = {"train": np.arange(n_images - 1), "val": np.arange(n_images - 1, n_images)}
    return CaptionCorpus("tiny", folder, tuple(files), tuple(captions), owner, splits)


def test_glove_zero_vectors_are_counted_with_caption_indices_across_chunks(tmp_path: Path) -> None:
    captions = ["a dog runs", "a cat", "two kids swim", "zzqx qqvv", "a red car", "!!!", "a man"]
    corpus = _tiny_corpus(tmp_path / "data", captions)
    cache = tmp_path / "cache"
    feats = text_features(corpus, "glove:mean", cache, chunk_size=2, progress=False)
    report = cached_text_report(corpus, "glove:mean", cache)
    assert report == TextReport(7, 2, (3, 5), 0, (), 0)  # indices of the whole corpus
    entry = text_encoding_report(corpus, "glove:mean", report, feats)
    assert entry["no_known_word"]["count"] == 2
    assert [e["caption"] for e in entry["no_known_word"]["examples"]] == [3, 5]
    assert entry["no_known_word"]["examples"][0] == {
        "caption": 3,
        "image": "im01.jpg",
        "text": "zzqx qqvv",
    }
    assert entry["findings"] == [
        "glove:mean: 2 of 7 captions have no word the encoder knows and are zero vectors, "
        "e.g. caption 3 of im01.jpg 'zzqx qqvv'"
    ]


def test_minilm_truncation_is_counted(tmp_path: Path) -> None:
    corpus = _tiny_corpus(tmp_path / "data", ["a dog runs", LONG, "a cat sleeps", "a boat"])
    cache = tmp_path / "cache"
    feats = text_features(corpus, "minilm:mean", cache, progress=False)
    report = cached_text_report(corpus, "minilm:mean", cache)
    assert (report.n_truncated, report.truncated_examples, report.max_tokens) == (1, (1,), 256)
    entry = text_encoding_report(corpus, "minilm:mean", report, feats)
    assert entry["truncated"]["count"] == 1
    assert entry["findings"][0].startswith(
        "minilm:mean: 1 of 4 captions are longer than 256 tokens and were encoded from their "
        "beginning only, e.g. caption 1 of im00.jpg"
    )


def test_a_cache_that_predates_the_counts_falls_back_to_zero_rows(tmp_path: Path) -> None:
    corpus = _tiny_corpus(tmp_path / "data", ["a", "b", "c", "d"])
    feats = np.ones((4, 3), dtype=np.float32)
    feats[2] = 0.0
    entry = text_encoding_report(corpus, "glove:mean", None, feats)
    assert entry["no_known_word"]["count"] == 1
    assert entry["truncated"]["count"] is None and "not counted" in entry["truncated"]["note"]


def test_the_runner_prints_each_recorded_finding_once(tmp_path: Path) -> None:
    (tmp_path / "corpus.json").write_text(
        json.dumps(
            {
                "validation": {
                    "findings": ["5 × stray caption entry skipped"],
                    "text_encoding": {"findings": ["glove:mean: 2 of 7 captions ..."]},
                }
            }
        )
    )
    assert runner.data_findings(tmp_path) == [
        "5 × stray caption entry skipped",
        "glove:mean: 2 of 7 captions ...",
    ]
    assert runner.data_findings(tmp_path / "elsewhere") == []


def _dataset_with_quirks(root: Path) -> Path:
    """A Kaggle Flickr30k folder of 20 images: the 2199200615 quirk row, one very long caption."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 60, 200)).save(buffer, format="JPEG")
    images = [f"{1000 + i}.jpg" for i in range(19)] + ["2199200615.jpg"]
    (root / "flickr30k_images").mkdir(parents=True)
    lines = ["image_name| comment_number| comment"]
    for name in images:
        (root / "flickr30k_images" / name).write_bytes(buffer.getvalue())
        for k in range(3):
            text = f"a photo {name} number {k} of a dog ."
            lines.append(
                f"{name}| {k}| {text}" if name != "2199200615.jpg" else f"{name}| {k}   {text}"
            )
    lines.append(f"1000.jpg| 3| {LONG}")
    (root / "results.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_the_pipeline_prints_data_findings_and_records_the_text_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dataset = _dataset_with_quirks(tmp_path / "f30k")
    argv = ["--preset", "smoke", "--only", "00,01", "--runs-root", str(tmp_path / "runs")]
    argv += ["-p", "dataset", str(dataset), "-p", "text_encoder", "minilm:mean"]
    argv += ["-p", "features_dir", str(tmp_path / "features")]
    code = cli.main([*argv, "--notebooks", str(ROOT / "notebooks")])
    out, err = capsys.readouterr()
    assert code == 0, err
    data_lines = [line for line in out.splitlines() if line.startswith("[xmr] data: ")]
    assert any("× malformed row repaired: results.csv:" in line for line in data_lines)
    assert any(
        "minilm:mean: 1 of 61 captions are longer than 256 tokens" in line for line in data_lines
    )
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    validation = json.loads((run / "corpus.json").read_text())["validation"]
    assert validation["text_encoding"]["truncated"]["count"] == 1
    assert validation["text_encoding"]["no_known_word"]["count"] == 0
    assert len(validation["rows_fixed"]) == 3
