"""Image and text encoders behind one registry each.

>>> from xmr_utils.core.encoders import build_image_encoder, build_text_encoder
>>> enc = build_text_encoder("glove:mean")        # name or name:variant, options as keywords
>>> sorted(IMAGE_ENCODERS)                        # doctest: +NORMALIZE_WHITESPACE
['clip', 'efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2', 'faster_rcnn',
 'resnet152', 'resnet50', 'vgg16', 'vgg19']

Importing this package is cheap: torch, torchvision, transformers, gensim and open_clip are
imported inside the encoders when they first need them. Weights are never downloaded unless
the download switch is on (:func:`~xmr_utils.core.encoders.weights.allow_downloads`,
``XMR_DOWNLOAD_WEIGHTS=1``).
"""

from xmr_utils.core.encoders import clip as _clip  # noqa: F401  (registers)
from xmr_utils.core.encoders import efficientnet as _efficientnet  # noqa: F401  (registers)
from xmr_utils.core.encoders import faster_rcnn as _faster_rcnn  # noqa: F401
from xmr_utils.core.encoders import tfidf as _tfidf  # noqa: F401
from xmr_utils.core.encoders import torchvision_cnn as _torchvision_cnn  # noqa: F401
from xmr_utils.core.encoders import transformer_text as _transformer_text  # noqa: F401
from xmr_utils.core.encoders import word_vectors as _word_vectors  # noqa: F401
from xmr_utils.core.encoders.base import (
    ImageEncoder,
    TextEncoder,
    TextReport,
    default_num_workers,
    safe_l2_normalize,
)
from xmr_utils.core.encoders.catalog import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    EncoderEntry,
    build_image_encoder,
    build_image_encoders,
    build_text_encoder,
    build_text_encoders,
    parse_spec,
    spec_file_stem,
    split_concatenated,
)
from xmr_utils.core.encoders.word_vectors import tokenize

__all__ = [
    "IMAGE_ENCODERS",
    "TEXT_ENCODERS",
    "EncoderEntry",
    "ImageEncoder",
    "TextEncoder",
    "TextReport",
    "build_image_encoder",
    "build_image_encoders",
    "build_text_encoder",
    "build_text_encoders",
    "default_num_workers",
    "parse_spec",
    "safe_l2_normalize",
    "spec_file_stem",
    "split_concatenated",
    "tokenize",
]
