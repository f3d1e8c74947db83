"""StatsRecorder: per-step statistics, summed as float64, read once as means."""

from __future__ import annotations

import pytest
import torch

from xmr_utils.core.recording import StatsRecorder


def test_means_per_name_over_its_own_steps_then_cleared() -> None:
    rec = StatsRecorder()
    values = [0.1, 0.2, 0.7]
    for v in values:
        rec.record(a=torch.tensor(v, dtype=torch.float32))
    rec.record(b=torch.tensor(3.0, requires_grad=True) * 2)  # detached, not kept in a graph
    assert rec.means() == pytest.approx({"a": sum(values) / 3, "b": 6.0})
    assert rec.means() == {}
    rec.record(a=torch.tensor(1.0))
    rec.clear()
    assert rec.means() == {}
