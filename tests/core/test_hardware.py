"""Native bfloat16 is told apart from emulated bfloat16, and the presets and training act on it."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from xmr_utils.core import hardware
from xmr_utils.core.config import RECIPES, recipe_with
from xmr_utils.core.train import TrainData, train_model


@pytest.fixture
def cpu_bf16(monkeypatch: pytest.MonkeyPatch):
    """Set what the CPU reports (AMX, AVX512-BF16) for one test; the cache is cleared."""

    def report(amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        hardware.native_bf16.cache_clear()

    yield report
    hardware.native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "native"),
    [(True, True, True), (True, False, True), (False, True, True), (False, False, False)],
)
def test_native_bf16_on_the_cpu_is_amx_or_avx512_bf16(cpu_bf16, amx, avx512_bf16, native) -> None:
    cpu_bf16(amx, avx512_bf16)
    assert hardware.native_bf16("cpu") is native
    assert (hardware.bf16_warning("cpu") == "") is native
    assert hardware.native_bf16("mps") is False


def test_the_warning_names_the_cause_and_the_fix(cpu_bf16) -> None:
    cpu_bf16(False, False)
    text = hardware.bf16_warning("cpu")
    assert "AMX or AVX512-BF16" in text and "emulates" in text
    assert "train.precision=fp32" in text


@pytest.mark.parametrize("native", [True, False])
def test_training_in_emulated_bf16_warns_once(cpu_bf16, tmp_path: Path, native) -> None:
    cpu_bf16(native, False)
    rng = np.random.default_rng(0)
    data = TrainData(
        rng.normal(size=(12, 8)).astype(np.float32),
        rng.normal(size=(24, 6)).astype(np.float32),
        np.repeat(np.arange(12), 2),
        np.arange(8),
        np.arange(8, 12),
    )
    recipe = recipe_with(
        RECIPES["vsepp"], **{"train.precision": "bf16", "train.epochs": 1, "train.batch_size": 4}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_model(recipe, "img2txt", data, tmp_path / "m", progress=False)
    emulated = [w for w in caught if "emulates" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    if not native:
        assert issubclass(emulated[0].category, RuntimeWarning)
        assert str(emulated[0].message).startswith("vsepp: train.precision=bf16")
