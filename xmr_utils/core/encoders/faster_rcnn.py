"""Faster R-CNN (torchvision ``fasterrcnn_resnet50_fpn_v2``, COCO) as an image encoder.

Variants:
    ``regions``: RoI box-head features (1024-d, after its last ReLU) of the top
        ``max_regions`` (36) detections scoring at least ``score_threshold`` (0.2), re-pooled
        on the final boxes as in bottom-up attention. Stored as ``regions [N, R, 1024]``,
        ``boxes [N, R, 4]`` (x1, y1, x2, y2 as fractions of width/height), ``scores [N, R]``,
        ``counts [N]``; slots past ``counts`` are zero. ``min_size`` (800) is the detector's
        input scale and ``proposals`` (1000) the RPN proposals kept; lower both on a CPU. An
        image with no detection above the threshold gets one whole-image region with score 0,
        so no row is all zeros. The main
        ``[N, 1024]`` output is the mean over each image's regions.
    ``backbone``: the detector's ResNet-50 C5 map, global-average-pooled: ``[N, 2048]``
        (shorter side 256, centre crop 224, ImageNet normalisation).

The model is built with ``weights=None, weights_backbone=None`` and the checkpoint
``fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth`` is loaded from the torch hub cache or
``weights=PATH``; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmr_utils.core.encoders.base import resolve_device
from xmr_utils.core.encoders.catalog import IMAGE_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.images import ImagePipeline, iterate_decoded
from xmr_utils.core.encoders.pooled import PooledImageEncoder
from xmr_utils.core.encoders.weights import (
    build_with_weights,
    resolve_torchvision_weights,
    weights_id_of,
)
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:
    import torch

ALTERNATIVE = "efficientnet_lite0"
REGION_DIM = 1024
DEFAULTS: dict[str, float | int] = {
    "max_regions": 36,
    "score_threshold": 0.2,
    "min_size": 800,
    "proposals": 1000,
}


def weights_url() -> str:
    """URL of ``FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1`` (its file name is the cache key)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights

    return FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url


def build_detector(weights: Path) -> torch.nn.Module:
    """``fasterrcnn_resnet50_fpn_v2`` (91 COCO classes) with ``weights`` loaded, eval mode."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    model = build_with_weights(
        lambda: fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91),
        weights,
        "fasterrcnn_resnet50_fpn_v2",
    )
    return model.eval()


class FasterRcnnBackbone(PooledImageEncoder):
    """The detector's ResNet-50 trunk, C5 global average pool: ``[N, 2048]``."""

    dim = 2048
    pipeline = ImagePipeline()

    def __init__(
        self, weights: str | os.PathLike[str] | None = None, channels_last: bool = True
    ) -> None:
        super().__init__(channels_last=channels_last)
        self.spec = canonical_spec("faster_rcnn", "backbone")
        self._weights = weights

    def weights_path(self) -> Path:
        return resolve_torchvision_weights(weights_url(), self._weights, "faster_rcnn", ALTERNATIVE)

    def build_module(self) -> torch.nn.Module:
        import torch

        body = build_detector(self.weights_path()).backbone.body

        class Trunk(torch.nn.Module):
            def __init__(self, body: torch.nn.Module) -> None:
                super().__init__()
                self.body = body

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                c5 = list(self.body(x).values())[-1]
                return c5.mean(dim=(2, 3))

        return Trunk(body)


class FasterRcnnRegions:
    """Region features of the top detections; see the module docstring for the layout."""

    dim = REGION_DIM

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        max_regions: int = 36,
        score_threshold: float = 0.2,
        min_size: int = 800,
        proposals: int = 1000,
    ) -> None:
        if int(max_regions) < 1:
            raise XmrError(f"max_regions={max_regions} must be at least 1")
        if not 0.0 <= float(score_threshold) < 1.0:
            raise XmrError(f"score_threshold={score_threshold} must be in [0, 1)")
        self.max_regions = int(max_regions)
        self.score_threshold = float(score_threshold)
        self.min_size = int(min_size)
        self.proposals = int(proposals)
        if self.proposals < self.max_regions:
            raise XmrError(f"proposals={proposals} must be at least max_regions={max_regions}")
        chosen = {
            "max_regions": self.max_regions,
            "score_threshold": self.score_threshold,
            "min_size": self.min_size,
            "proposals": self.proposals,
        }
        self.spec = canonical_spec(
            "faster_rcnn", "regions", {k: v for k, v in chosen.items() if v != DEFAULTS[k]}
        )
        self.pipeline = ImagePipeline(resize=self.min_size, crop=None)
        r = self.max_regions
        self.extra_outputs: dict[str, tuple[tuple[int, ...], str]] = {
            "regions": ((r, REGION_DIM), "float32"),
            "boxes": ((r, 4), "float32"),
            "scores": ((r,), "float32"),
            "counts": ((), "int32"),
        }
        self._weights = weights
        self._model: torch.nn.Module | None = None

    def weights_path(self) -> Path:
        return resolve_torchvision_weights(weights_url(), self._weights, "faster_rcnn", ALTERNATIVE)

    def weights_id(self) -> str:
        return weights_id_of(self.weights_path())

    def preprocessing_id(self) -> str:
        return (
            f"{self.pipeline.id()}; detector transform min_size={self.min_size}; "
            f"{self.proposals} RPN proposals; top {self.max_regions} detections with "
            f"score >= {self.score_threshold}"
        )

    def _detector(self, device: str) -> torch.nn.Module:
        if self._model is None:
            model = build_detector(self.weights_path())
            model.roi_heads.score_thresh = self.score_threshold
            model.roi_heads.detections_per_img = self.max_regions
            model.transform.min_size = (self.min_size,)
            model.transform.max_size = max(self.min_size, round(1333 * self.min_size / 800))
            model.rpn._post_nms_top_n["testing"] = self.proposals
            model.rpn._pre_nms_top_n["testing"] = max(
                self.proposals, model.rpn._pre_nms_top_n["testing"]
            )
            self._model = model
        return self._model.to(device)

    def encode_images_with_extras(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 4,
        num_workers: int | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Mean-pooled ``[N, 1024]`` and the per-region arrays named in ``extra_outputs``."""
        import torch

        dev = resolve_device(device)
        model = self._detector(dev)
        n, r = len(paths), self.max_regions
        extras = {
            name: np.zeros((n, *shape), dtype=dtype)
            for name, (shape, dtype) in self.extra_outputs.items()
        }
        start = 0
        with torch.inference_mode():
            for images in iterate_decoded(
                paths,
                self.pipeline,
                batch_size=min(batch_size, 4),
                num_workers=num_workers,
                progress=progress,
                desc=self.spec,
                device=dev,
            ):
                tensors = [
                    torch.from_numpy(im).to(dev).permute(2, 0, 1).float().div_(255.0)
                    for im in images
                ]
                batch, _ = model.transform(tensors)
                feats = model.backbone(batch.tensors)
                proposals, _ = model.rpn(batch, feats)
                detections, _ = model.roi_heads(feats, proposals, batch.image_sizes)
                boxes, scores = [], []
                for det, (h, w) in zip(detections, batch.image_sizes, strict=True):
                    if len(det["boxes"]) == 0:  # nothing above the threshold: whole image
                        det = {
                            "boxes": torch.tensor([[0.0, 0.0, w, h]], device=dev),
                            "scores": torch.zeros(1, device=dev),
                        }
                    boxes.append(det["boxes"][:r])
                    scores.append(det["scores"][:r])
                pooled = model.roi_heads.box_roi_pool(feats, boxes, batch.image_sizes)
                per_image = model.roi_heads.box_head(pooled).float().split([len(b) for b in boxes])
                for j, (emb, b, s, (h, w)) in enumerate(
                    zip(per_image, boxes, scores, batch.image_sizes, strict=True)
                ):
                    k = len(b)
                    scale = torch.tensor([w, h, w, h], device=dev, dtype=b.dtype)
                    extras["regions"][start + j, :k] = emb.cpu().numpy()
                    extras["boxes"][start + j, :k] = (b / scale).float().cpu().numpy()
                    extras["scores"][start + j, :k] = s.float().cpu().numpy()
                    extras["counts"][start + j] = k
                start += len(images)
        counts = np.maximum(extras["counts"], 1).astype(np.float32)
        pooled_view = extras["regions"].sum(axis=1) / counts[:, None]
        return pooled_view.astype(np.float32), extras

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 4,
        num_workers: int | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> np.ndarray:
        """The mean-pooled region view ``[N, 1024]`` float32."""
        pooled, _ = self.encode_images_with_extras(
            paths, batch_size=batch_size, num_workers=num_workers, device=device, progress=progress
        )
        return pooled


def _make(variant: str, **options: object) -> FasterRcnnBackbone | FasterRcnnRegions:
    if variant == "backbone":
        unknown = set(options) - {"weights", "channels_last"}
        if unknown:
            raise XmrError(
                f"option(s) {sorted(unknown)} apply to faster_rcnn:regions only; "
                "faster_rcnn:backbone accepts weights, channels_last"
            )
        return FasterRcnnBackbone(**options)  # type: ignore[arg-type]
    if "channels_last" in options:
        raise XmrError("option channels_last applies to faster_rcnn:backbone only")
    return FasterRcnnRegions(**options)  # type: ignore[arg-type]


IMAGE_ENCODERS.register("faster_rcnn")(
    EncoderEntry(
        factory=_make,
        variants=("regions", "backbone"),
        options=(
            "weights",
            "max_regions",
            "score_threshold",
            "min_size",
            "proposals",
            "channels_last",
        ),
        summary="COCO fasterrcnn_resnet50_fpn_v2: 1024-d region features (+ boxes) or 2048-d "
        "pooled backbone, from the torch hub cache",
    )
)
