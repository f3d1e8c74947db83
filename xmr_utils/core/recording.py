"""Per-step statistics summed where they are computed and read once per epoch.

A :class:`StatsRecorder` takes 0-d tensors step by step (:meth:`StatsRecorder.record`) and
keeps a float64 running sum per name on the tensors' device, so recording never waits for
the device; :meth:`StatsRecorder.means` returns each statistic's mean over its steps. The
losses record their mechanism with one (:class:`xmr_utils.core.losses.RecordingLoss`), the
training loop the embeddings' and gradients' (:func:`xmr_utils.core.train.run_epoch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


class StatsRecorder:
    """Running sums of named per-step statistics.

    >>> import torch
    >>> rec = StatsRecorder()
    >>> rec.record(share=torch.tensor(0.5)); rec.record(share=torch.tensor(1.0))
    >>> rec.means()
    {'share': 0.75}
    >>> rec.means()  # read once: the sums were cleared
    {}
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._steps: dict[str, int] = {}

    def record(self, **values: Tensor) -> None:
        """Add one step's value of each named statistic (0-d tensors; detached here)."""
        import torch

        for name, value in values.items():
            v = value.detach().to(torch.float64)
            self._sums[name] = self._sums[name] + v if name in self._sums else v
            self._steps[name] = self._steps.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        """Each statistic's mean over the steps recorded since the last call; clears them."""
        out = {name: float(total) / self._steps[name] for name, total in self._sums.items()}
        self.clear()
        return out

    def clear(self) -> None:
        self._sums, self._steps = {}, {}
