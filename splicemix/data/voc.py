"""PASCAL VOC as a multi-label classification data set (VOCdevkit layout, XML annotations).

A class counts as present (target 1) when the image has at least one non-difficult object
of it. A class present only through objects marked ``difficult`` has target 0 and
``ignore`` True: the evaluation drops that entry (reference, "Evaluation conventions").
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from .base import MultiLabelImages, check_files_exist

__all__ = ["VOCMultiLabel", "VOC_CLASSES"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
_CLASS_INDEX = {name: k for k, name in enumerate(VOC_CLASSES)}


def _resolve_year_dir(root: str, year: str) -> str:
    """Find ``VOC{year}`` under root, root/VOCdevkit, or root itself being VOC{year}."""
    candidates = [
        os.path.join(root, "VOCdevkit", f"VOC{year}"),
        os.path.join(root, f"VOC{year}"),
        root,
    ]
    for c in candidates:
        if os.path.isdir(os.path.join(c, "ImageSets", "Main")) or os.path.isdir(os.path.join(c, "Annotations")):
            return c
    raise FileNotFoundError(
        f"VOC {year} data not found under {root!r}: expected a folder with ImageSets/Main and "
        f"Annotations at one of {candidates}"
    )


def _parse_annotation(path: str) -> tuple[set[int], set[int]]:
    """Return (classes with a non-difficult object, classes with a difficult object)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC annotation file not found: {path!r}")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise ValueError(f"malformed VOC annotation XML {path!r}: {exc}") from exc
    normal: set[int] = set()
    difficult: set[int] = set()
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"VOC annotation {path!r}: an <object> has no <name>")
        if name not in _CLASS_INDEX:
            raise ValueError(
                f"VOC annotation {path!r}: unknown class name {name!r}; expected one of {list(VOC_CLASSES)}"
            )
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise ValueError(f"VOC annotation {path!r}: <difficult> is {flag!r} for {name!r}; expected 0 or 1")
        (difficult if flag == "1" else normal).add(_CLASS_INDEX[name])
    return normal, difficult


class VOCMultiLabel(MultiLabelImages):
    """PASCAL VOC image labels from the VOCdevkit XML annotations.

    Args:
        root: folder containing ``VOCdevkit/VOC{year}``; VOCdevkit or VOC{year} itself also works.
        year: "2007", "2012", ...
        image_set: name of a list in ``ImageSets/Main`` ("train", "val", "trainval", "test").
        transform: applied to the PIL RGB image in ``__getitem__``.

    Attributes: ``categories`` (the 20 classes in the standard order), ``image_ids``,
    ``image_paths``, ``targets`` (float32 ``(N, 20)``), ``ignore`` (bool ``(N, 20)``),
    ``num_classes``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        year: str = "2007",
        image_set: str = "trainval",
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        root, year = os.fspath(root), str(year)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"VOC root directory not found: {root!r}")
        self.root = _resolve_year_dir(root, year)
        self.year, self.image_set, self.transform = year, image_set, transform
        self.categories: list[str] = list(VOC_CLASSES)

        list_file = os.path.join(self.root, "ImageSets", "Main", f"{image_set}.txt")
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"VOC image set file not found: {list_file!r}")
        with open(list_file, encoding="utf-8") as f:
            self.image_ids: list[str] = [line.split()[0] for line in f if line.strip()]
        if not self.image_ids:
            raise ValueError(f"VOC image set file {list_file!r} lists no images")

        ann_dir = os.path.join(self.root, "Annotations")
        n, k = len(self.image_ids), len(VOC_CLASSES)
        positive = torch.zeros((n, k), dtype=torch.bool)
        difficult = torch.zeros((n, k), dtype=torch.bool)
        for i, image_id in enumerate(self.image_ids):
            normal, diff = _parse_annotation(os.path.join(ann_dir, f"{image_id}.xml"))
            positive[i, list(normal)] = True
            difficult[i, list(diff)] = True
        self.targets: torch.Tensor = positive.float()
        self.ignore: torch.Tensor = difficult & ~positive

        self.image_paths: list[str] = [
            os.path.join(self.root, "JPEGImages", f"{image_id}.jpg") for image_id in self.image_ids
        ]
        check_files_exist(self.image_paths, repr(list_file))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(images={len(self)}, year={self.year!r}, "
            f"image_set={self.image_set!r}, root={self.root!r})"
        )
