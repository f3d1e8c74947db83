"""Notebook 01's step: its ``scheduler`` parameter reaches the image extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xmr_utils.app import study
from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.errors import XmrError
from xmr_utils.core.features import dataset_folder


def toy(tmp_path: Path) -> CaptionCorpus:
    files = tuple(tmp_path / f"{i}.jpg" for i in range(2))
    return CaptionCorpus("toy", tmp_path, files, ("a", "b"), np.array([0, 1]), {})


def test_scheduler_parameter_reaches_image_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def fake_image(corpus, spec, cache, **kwargs):
        seen.update(kwargs)
        return np.zeros((2, 3), np.float32)

    monkeypatch.setattr(study.features, "image_features", fake_image)
    monkeypatch.setattr(
        study.features, "text_features", lambda *a, **k: np.zeros((2, 4), np.float32)
    )
    corpus = toy(tmp_path)
    summary = study.extract_features(corpus, "fake", "glove", tmp_path / "cache")
    assert seen["client"] is None  # scheduler "" -> this process, Dask not started
    assert summary.table.attrs["cache"] == str(dataset_folder(tmp_path / "cache", corpus))
    with pytest.raises(XmrError, match="scheduler='local:0' is not valid; accepted"):
        study.extract_features(corpus, "fake", "glove", tmp_path / "cache", scheduler="local:0")
