"""Data sets and transforms: MS-COCO and PASCAL VOC as multi-label data, the paper's transforms.

The synthetic data set lives in ``splicemix.data.synthetic`` (import it explicitly; it is
not imported here so that ``python -m splicemix.data.synthetic`` runs cleanly).
"""

from .base import CorruptImageError, SkipCorrupt
from .coco import CocoMultiLabel
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, denormalize
from .voc import VOC_CLASSES, VOCMultiLabel

__all__ = [
    "CocoMultiLabel",
    "VOCMultiLabel",
    "VOC_CLASSES",
    "CorruptImageError",
    "SkipCorrupt",
    "build_transforms",
    "denormalize",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
