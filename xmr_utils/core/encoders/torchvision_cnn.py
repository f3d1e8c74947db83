"""ImageNet classifiers from torchvision as image encoders: ``vgg16``, ``vgg19`` (fc7, 4096-d
after its ReLU: the seed's feature), ``resnet50``, ``resnet152`` (2048-d global average pool).

Models are built with ``weights=None`` and the checkpoint is loaded from the torch hub cache
(or ``weights=PATH``), so torchvision never tries to download. Preprocessing is the one of the
weights enum (``resize_size``/``crop_size``/``mean``/``std`` of its ``transforms()``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.core.encoders.catalog import IMAGE_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.images import ImagePipeline
from xmr_utils.core.encoders.pooled import PooledImageEncoder
from xmr_utils.core.encoders.weights import build_with_weights, resolve_torchvision_weights

if TYPE_CHECKING:
    import torch

BUNDLED_IMAGE_ALTERNATIVE = "efficientnet_lite0"


@dataclass(frozen=True)
class Architecture:
    """A torchvision classifier: builder and weights enum names, feature width and cut."""

    builder: str
    weights_enum: str
    weights_member: str
    dim: int
    variant: str


ARCHITECTURES: dict[str, Architecture] = {
    "vgg16": Architecture("vgg16", "VGG16_Weights", "IMAGENET1K_V1", 4096, "fc7"),
    "vgg19": Architecture("vgg19", "VGG19_Weights", "IMAGENET1K_V1", 4096, "fc7"),
    "resnet50": Architecture("resnet50", "ResNet50_Weights", "IMAGENET1K_V2", 2048, "pool"),
    "resnet152": Architecture("resnet152", "ResNet152_Weights", "IMAGENET1K_V2", 2048, "pool"),
}


def weights_enum_member(arch: Architecture) -> Any:
    """The torchvision ``WeightsEnum`` member, e.g. ``VGG16_Weights.IMAGENET1K_V1``."""
    import torchvision.models

    return getattr(getattr(torchvision.models, arch.weights_enum), arch.weights_member)


def pipeline_of(member: Any) -> ImagePipeline:
    """The :class:`ImagePipeline` equal to ``member.transforms()`` (resize, crop, mean, std)."""
    t = member.transforms()
    return ImagePipeline(
        resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), mean=tuple(t.mean), std=tuple(t.std)
    )


class TorchvisionClassifier(PooledImageEncoder):
    """VGG fc7 (post-ReLU) or ResNet global-average-pool features ``[N, dim]``."""

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        channels_last: bool = True,
        amp: bool = True,
    ) -> None:
        super().__init__(channels_last=channels_last, amp=amp)
        self.name = name
        self.arch = ARCHITECTURES[name]
        self.dim = self.arch.dim
        self.spec = canonical_spec(name, self.arch.variant)
        self._weights = weights
        self._member = weights_enum_member(self.arch)
        self.pipeline = pipeline_of(self._member)

    def weights_path(self) -> Path:
        return resolve_torchvision_weights(
            self._member.url, self._weights, self.name, BUNDLED_IMAGE_ALTERNATIVE
        )

    def build_module(self) -> torch.nn.Module:
        import torch
        import torchvision.models

        builder = getattr(torchvision.models, self.arch.builder)
        net = build_with_weights(
            lambda: builder(weights=None), self.weights_path(), self.arch.builder
        )
        if self.arch.variant == "fc7":
            # classifier = fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8: keep up to fc7's ReLU.
            net.classifier = torch.nn.Sequential(*list(net.classifier.children())[:5])
        else:
            net.fc = torch.nn.Identity()
        return net


def _register(name: str) -> None:
    arch = ARCHITECTURES[name]
    IMAGE_ENCODERS.register(name)(
        EncoderEntry(
            factory=lambda variant, **options: TorchvisionClassifier(name, **options),
            variants=(arch.variant,),
            options=("weights", "channels_last", "amp"),
            summary=f"{arch.dim}-d {arch.variant}, torchvision {arch.weights_enum}."
            f"{arch.weights_member} from the torch hub cache",
        )
    )


for _name in ARCHITECTURES:
    _register(_name)
