"""Data sets and transforms: MS-COCO and PASCAL VOC as multi-label data, the paper's transforms,
and the in-memory data path (a small data set decoded once).

The synthetic data set lives in ``splicemix.data.synthetic`` (import it explicitly; it is
not imported here so that ``python -m splicemix.data.synthetic`` runs cleanly).
"""

from .base import CorruptImageError, SkipCorrupt
from .coco import CocoMultiLabel
from .memory import InMemoryImages
from .transforms import IMAGENET_MEAN, IMAGENET_STD, TransformParts, build_transforms, denormalize, transform_parts
from .voc import VOC_CLASSES, VOCMultiLabel

__all__ = [
    "CocoMultiLabel",
    "VOCMultiLabel",
    "VOC_CLASSES",
    "CorruptImageError",
    "SkipCorrupt",
    "InMemoryImages",
    "TransformParts",
    "transform_parts",
    "build_transforms",
    "denormalize",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
