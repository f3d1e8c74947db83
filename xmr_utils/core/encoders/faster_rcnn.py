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
    ``res4``: the seed's Faster R-CNN feature as closely as torchvision allows: the
        detector's ResNet-50 trunk up to its C4 (``res4``, ``layer3``) map, 1024 x 14 x 14
        for the seed's input (every image squashed to 224 x 224, RGB in [0, 1] with ImageNet
        mean/std), mean-pooled over the map (``pool=mean``, ``[N, 1024]``: the default of
        the seed's ``get_feature_map_rcnn`` and the width of its test features) or over the
        width only, channel-major (``pool=rows``, ``[N, 14336]``: what its ``__main__`` ran,
        ``mean_pool1d``, for the training features its ``task_c_text_to_img.py`` read).

What ``res4`` does not reproduce (the seed: ``src/task_c_get_faster_rcnn_features.py`` of
cesc47/cross-modal-retrieval-with-triplet-network): the seed's detector was detectron2's
``COCO-Detection/faster_rcnn_R_50_C4_3x`` — a C4 model whose res5 is the RoI head, an
MSRA-style ResNet (stride in the 1x1 convolution, frozen BatchNorm, Caffe2 ImageNet
initialisation) trained on COCO with that head. Torchvision has no C4 detector; this trunk is
the one of ``fasterrcnn_resnet50_fpn_v2`` (torchvision-style ResNet-50, stride in the 3x3
convolution, trained on COCO with an FPN), the same layers and map shape. And the seed called
``model.backbone`` on ImageNet-normalised RGB, skipping detectron2's own preprocessing
(BGR, 0-255, its pixel mean): its features came from mis-normalised pixels. The same tensor is
the correct input of torchvision's trunk, so ``res4`` feeds the seed's pixels to a model for
which they are right.

The model is built with ``weights=None, weights_backbone=None`` and the checkpoint
``fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth`` is loaded from the torch hub cache or
``weights=PATH`` (downloaded there with the download switch, see
:mod:`xmr_utils.core.encoders.weights`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from xmr_utils.core.encoders.base import resolve_device, run_record
from xmr_utils.core.encoders.catalog import IMAGE_ENCODERS, EncoderEntry, canonical_spec
from xmr_utils.core.encoders.images import ImagePipeline, LoadOptions, iterate_decoded
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


# torchvision's ``FasterRCNN`` (a ``torch.nn.Module``). torchvision ships no type information,
# so its parts (``transform``, ``backbone``, ``rpn``, ``roi_heads``) are read as Any.
Detector = Any


def build_detector(weights: Path) -> Detector:
    """``fasterrcnn_resnet50_fpn_v2`` (91 COCO classes) with ``weights`` loaded, eval mode."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    model = build_with_weights(
        lambda: fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91),
        weights,
        "fasterrcnn_resnet50_fpn_v2",
    )
    return model.eval()


SEED_PIPELINE = ImagePipeline(resize=224, crop=None, squash=True)
RES4_POOLS: tuple[str, ...] = ("mean", "rows")
TRUNK_LAYERS: dict[str, tuple[str, ...]] = {
    "res4": ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"),
    "backbone": ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
}


class FasterRcnnBackbone(PooledImageEncoder):
    """The detector's ResNet-50 trunk, pooled: C5 average ``[N, 2048]`` (``backbone``), or
    C4 as the seed pooled it (``res4``: ``[N, 1024]``, or ``[N, 14336]`` with ``pool="rows"``).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        channels_last: bool = True,
        variant: str = "backbone",
        pool: str = "mean",
        amp: bool = True,
    ) -> None:
        super().__init__(channels_last=channels_last, amp=amp)
        if pool not in RES4_POOLS or (variant == "backbone" and pool != "mean"):
            raise XmrError(
                f"faster_rcnn:{variant} pool={pool!r}: accepted "
                f"{list(RES4_POOLS) if variant == 'res4' else ['mean']}"
            )
        self.variant, self.pool = variant, pool
        self.pipeline = SEED_PIPELINE if variant == "res4" else ImagePipeline()
        side = (self.pipeline.crop or self.pipeline.resize or 224) // 16  # C4 has stride 16
        self.dim = {"backbone": 2048, "res4": 1024 if pool == "mean" else 1024 * side}[variant]
        extras = {"pool": pool} if pool != "mean" else {}
        self.spec = canonical_spec("faster_rcnn", variant, extras)
        self._weights = weights

    def weights_path(self) -> Path:
        return resolve_torchvision_weights(weights_url(), self._weights, "faster_rcnn", ALTERNATIVE)

    def build_module(self) -> torch.nn.Module:
        import torch

        body = build_detector(self.weights_path()).backbone.body
        trunk = torch.nn.Sequential(*[getattr(body, name) for name in TRUNK_LAYERS[self.variant]])
        rows = self.pool == "rows"

        class Pooled(torch.nn.Module):
            def __init__(self, trunk: torch.nn.Module) -> None:
                super().__init__()
                self.trunk = trunk

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                fmap = self.trunk(x)  # [B, C, H, W]
                return fmap.mean(dim=3).flatten(1) if rows else fmap.mean(dim=(2, 3))

        return Pooled(trunk)


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
        self._model: Detector | None = None
        self.last_run: dict[str, str] = {}

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

    def _detector(self, device: str) -> Detector:
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

    def _detect(self, model: Detector, images: list[np.ndarray], dev: str) -> list[Any]:
        """Per image ``(region features [k, 1024], boxes [k, 4] as fractions, scores [k])``,
        ``k <= max_regions`` (one whole-image region with score 0 when nothing is detected)."""
        import torch

        tensors = [
            torch.from_numpy(im).to(dev).permute(2, 0, 1).float().div_(255.0) for im in images
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
            boxes.append(det["boxes"][: self.max_regions])
            scores.append(det["scores"][: self.max_regions])
        pooled = model.roi_heads.box_roi_pool(feats, boxes, batch.image_sizes)
        per_image = model.roi_heads.box_head(pooled).float().split([len(b) for b in boxes])
        out = []
        for emb, b, sc, (h, w) in zip(per_image, boxes, scores, batch.image_sizes, strict=True):
            scale = torch.tensor([w, h, w, h], device=dev, dtype=b.dtype)
            out.append(
                (emb.cpu().numpy(), (b / scale).float().cpu().numpy(), sc.float().cpu().numpy())
            )
        return out

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
        self.last_run = run_record(dev, amp=False)
        extras = {
            name: np.zeros((len(paths), *shape), dtype=dtype)
            for name, (shape, dtype) in self.extra_outputs.items()
        }
        options = LoadOptions(min(batch_size or 4, 4), num_workers, dev, progress, self.spec)
        start = 0
        with torch.inference_mode():
            for decoded in iterate_decoded(paths, self.pipeline, options):
                images = cast("list[np.ndarray]", decoded.images)  # no None: it raised on those
                for j, (emb, boxes, scores) in enumerate(self._detect(model, images, dev)):
                    k = len(boxes)
                    extras["regions"][start + j, :k] = emb
                    extras["boxes"][start + j, :k] = boxes
                    extras["scores"][start + j, :k] = scores
                    extras["counts"][start + j] = k
                start += len(decoded)
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


TRUNK_OPTIONS = frozenset({"weights", "channels_last", "amp", "pool"})
REGION_OPTIONS = frozenset({"weights", "max_regions", "score_threshold", "min_size", "proposals"})


def _make(variant: str, **options: object) -> FasterRcnnBackbone | FasterRcnnRegions:
    if variant in ("backbone", "res4"):
        unknown = set(options) - TRUNK_OPTIONS
        if unknown:
            raise XmrError(
                f"option(s) {sorted(unknown)} apply to faster_rcnn:regions only; "
                f"faster_rcnn:{variant} accepts {', '.join(sorted(TRUNK_OPTIONS))}"
            )
        return FasterRcnnBackbone(variant=variant, **options)  # type: ignore[arg-type]
    unknown = set(options) - REGION_OPTIONS
    if unknown:
        raise XmrError(
            f"option(s) {sorted(unknown)} apply to faster_rcnn:backbone/res4 only; "
            f"faster_rcnn:regions accepts {', '.join(sorted(REGION_OPTIONS))}"
        )
    return FasterRcnnRegions(**options)  # type: ignore[arg-type]


IMAGE_ENCODERS.register("faster_rcnn")(
    EncoderEntry(
        factory=_make,
        variants=("regions", "backbone", "res4"),
        options=tuple(sorted(TRUNK_OPTIONS | REGION_OPTIONS)),
        summary="COCO fasterrcnn_resnet50_fpn_v2: 1024-d region features (+ boxes), 2048-d "
        "pooled C5, or the seed's mean-pooled C4 (res4, 1024-d), from the torch hub cache",
    )
)
