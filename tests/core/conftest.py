"""Fixtures shared by the core tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def collapse_regime() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 images within 0.01 of one point 100 units from the origin, captions within
    0.002-0.006 of their image: exact arithmetic ranks every caption's own image first."""
    n, dim, per_image = 50, 4096, 5
    rng = np.random.default_rng(0)

    def unit(k: int) -> np.ndarray:
        x = rng.standard_normal((k, dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    img = 100 * unit(1)[0] + 0.01 * unit(n)
    owner = np.repeat(np.arange(n), per_image)
    radius = rng.uniform(0.002, 0.006, (per_image * n, 1))  # no near-ties among own captions
    txt = img[owner] + radius * unit(per_image * n)
    return img.astype(np.float32), txt.astype(np.float32), owner


@pytest.fixture(params=["torch", "fused"])
def score_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both paths: ``torch`` (small inputs: torch ops on full-width blocks) and
    ``fused`` (tiles + numba scan, forced on with tiny tiles so that tests with a few dozen
    rows still cross tile, group and thread boundaries)."""
    if request.param == "fused":
        from xmr_utils.core import retrieval, tiles

        monkeypatch.setattr(retrieval, "FUSED_MIN_SCORES", 0)
        monkeypatch.setattr(tiles, "TILE_ROWS", 6)
        monkeypatch.setattr(tiles, "TILE_COLS", 7)
        monkeypatch.setattr(tiles, "MIN_TILE_COLS", 4)
        monkeypatch.setattr(tiles, "SMALL_BLOCK_ROWS", 1)
    return request.param
