"""Several text encoders side by side: the query-time twin of a ``a+b`` text feature spec."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmr_utils.core.encoders.base import TextEncoder, TextReport, report_from_mask


class ConcatenatedTextEncoder:
    """Encodes with every part and puts the rows side by side: ``[N, sum of dims]`` float32.

    The parts are ready to encode (fitted ones already fitted); fitting happens per part in
    :mod:`xmr_utils.core.features`, so this encoder itself needs none.
    """

    needs_fit = False

    def __init__(self, parts: Sequence[TextEncoder]) -> None:
        self.parts = tuple(parts)
        self.spec = "+".join(part.spec for part in self.parts)
        self.dim = sum(int(part.dim) for part in self.parts)
        self.last_report = TextReport()

    def weights_id(self) -> str:
        return " + ".join(part.weights_id() for part in self.parts)

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: bool = True,
        device: str | None = None,
    ) -> np.ndarray:
        """``[len(texts), dim]``: each part's features, in spec order (``device``: see
        :meth:`~xmr_utils.core.encoders.base.TextEncoder.encode_texts`)."""
        blocks = [
            part.encode_texts(texts, batch_size=batch_size, progress=progress, device=device)
            for part in self.parts
        ]
        out = np.concatenate(blocks, axis=1).astype(np.float32, copy=False)
        self.last_report = report_from_mask(out.any(axis=1))
        return out
