"""MS-COCO as a multi-label classification data set (pycocotools).

Conventions (reference, "Evaluation conventions of the field"):

* Classes are the annotation file's categories sorted by category id (COCO's ids run
  1..90 with gaps; the 80 classes come out in the usual order).
* Every annotation, crowd ones included, gives its category to its image.
* Images without any annotation are left out unless ``include_empty=True``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from .base import MultiLabelImages, check_files_exist, load_rgb  # noqa: F401 (re-exported)

__all__ = ["CocoMultiLabel"]


def _lookup(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``values`` in ``sorted_keys`` and a mask of which values were found."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == values


class CocoMultiLabel(MultiLabelImages):
    """COCO-format detection annotations turned into multi-hot image labels.

    Args:
        image_dir: folder holding the images (``file_name`` of each image is relative to it).
        annotation_file: COCO-format json (e.g. ``instances_train2014.json``).
        transform: applied to the PIL RGB image in ``__getitem__``.
        include_empty: keep images that have no annotation (all-zero target).

    Attributes: ``categories`` (names, sorted by category id), ``category_ids``,
    ``image_ids``, ``image_paths``, ``targets`` (float32 ``(N, K)`` multi-hot),
    ``num_classes``.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        annotation_file: str | os.PathLike,
        transform: Callable[[Image.Image], Any] | None = None,
        include_empty: bool = False,
    ) -> None:
        image_dir, annotation_file = os.fspath(image_dir), os.fspath(annotation_file)
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_file!r}")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"COCO image directory not found: {image_dir!r}")
        self.image_dir = image_dir
        self.annotation_file = annotation_file
        self.transform = transform

        from pycocotools.coco import COCO  # imported here: `import splicemix.data` stays light

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(annotation_file)
            cats = sorted(coco.cats.values(), key=lambda c: c["id"])
            self.category_ids: list[int] = [int(c["id"]) for c in cats]
            self.categories: list[str] = [str(c["name"]) for c in cats]
            all_img_ids = np.array(sorted(int(i) for i in coco.imgs), dtype=np.int64)
            anns = coco.dataset.get("annotations", [])
            ann_img = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=len(anns))
            ann_cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=len(anns))
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            # json.JSONDecodeError is a ValueError; KeyError/TypeError: wrong structure.
            raise ValueError(
                f"malformed COCO annotation file {annotation_file!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not self.categories:
            raise ValueError(f"COCO annotation file {annotation_file!r} defines no categories")

        cat_ids = np.array(self.category_ids, dtype=np.int64)  # sorted
        row, ok_img = _lookup(all_img_ids, ann_img)
        col, ok_cat = _lookup(cat_ids, ann_cat)
        if not ok_img.all():
            raise ValueError(
                f"COCO annotation file {annotation_file!r}: {int((~ok_img).sum())} annotations refer "
                f"to unknown image ids, e.g. {int(ann_img[~ok_img][0])}"
            )
        if not ok_cat.all():
            raise ValueError(
                f"COCO annotation file {annotation_file!r}: {int((~ok_cat).sum())} annotations refer "
                f"to unknown category ids, e.g. {int(ann_cat[~ok_cat][0])}; known ids: {self.category_ids}"
            )

        targets = np.zeros((len(all_img_ids), len(cat_ids)), dtype=np.float32)
        targets[row, col] = 1.0  # repeated (image, category) pairs just write 1 again
        keep = np.ones(len(all_img_ids), dtype=bool) if include_empty else targets.any(axis=1)

        self.image_ids: list[int] = all_img_ids[keep].tolist()
        self.targets: torch.Tensor = torch.from_numpy(targets[keep])
        try:
            self.image_paths: list[str] = [os.path.join(image_dir, coco.imgs[i]["file_name"]) for i in self.image_ids]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"malformed COCO annotation file {annotation_file!r}: image entry without a 'file_name' ({exc})"
            ) from exc
        check_files_exist(self.image_paths, f"{annotation_file!r} (image_dir {image_dir!r})")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(images={len(self)}, classes={self.num_classes}, "
            f"annotation_file={self.annotation_file!r})"
        )
