"""Base class of the image encoders that map one image to one pooled vector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmr_utils.core.encoders.base import default_batch_size, resolve_device, run_record
from xmr_utils.core.encoders.images import ImagePipeline, LoadOptions, run_pooled
from xmr_utils.core.encoders.weights import weights_id_of

if TYPE_CHECKING:
    import torch


class PooledImageEncoder:
    """An :class:`~xmr_utils.core.encoders.base.ImageEncoder` around a torch module.

    Subclasses set ``spec``, ``dim``, ``pipeline`` and implement :meth:`weights_path` and
    :meth:`build_module` (a module mapping normalised ``[B, 3, H, W]`` to ``[B, dim]``).
    The module is built and its weights loaded on the first :meth:`encode_images` call.
    On a CUDA device the forward pass runs under float16 autocast unless ``amp=False``;
    :attr:`last_run` says where and how the last call ran (recorded in feature manifests).
    """

    spec: str
    dim: int
    pipeline: ImagePipeline

    def __init__(self, *, channels_last: bool = True, amp: bool = True) -> None:
        self.channels_last = channels_last
        self.amp = bool(amp)
        self.last_run: dict[str, str] = {}
        self._module: torch.nn.Module | None = None
        self._device: str | None = None

    def weights_path(self) -> Path:
        """The checkpoint file (resolving it raises XmrError when it is missing)."""
        raise NotImplementedError

    def build_module(self) -> torch.nn.Module:
        """The feature module with its weights loaded, in eval mode, on the CPU."""
        raise NotImplementedError

    def weights_id(self) -> str:
        return weights_id_of(self.weights_path())

    def preprocessing_id(self) -> str:
        return self.pipeline.id()

    def module(self, device: str) -> torch.nn.Module:
        """The loaded module on ``device`` (built once, then reused)."""
        import torch

        if self._module is None:
            self._module = self.build_module().eval()
        if self._device != device:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            # Module.to takes memory_format at run time (torch._C._nn._parse_to); its typed
            # overloads leave it out
            self._module = self._module.to(device=device, memory_format=fmt)  # type: ignore[call-overload]
            self._device = device
        return self._module

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> np.ndarray:
        """Features ``[len(paths), dim]`` float32; an unreadable image raises XmrError.

        ``batch_size`` 0: 32 images per forward pass on a CPU, 128 on a GPU.
        """
        import torch

        dev = resolve_device(device)
        batch_size = batch_size or default_batch_size(dev)
        module = self.module(dev)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.last_run = run_record(dev, self.amp)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return module(x.contiguous(memory_format=fmt))

        options = LoadOptions(batch_size, num_workers, dev, progress, self.spec)
        return run_pooled(paths, self.pipeline, forward, self.dim, options, amp=self.amp)
