"""What the COCO and VOC data sets share: image loading, file checks, the Dataset protocol."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["MultiLabelImages", "load_rgb", "check_files_exist"]

_SHOW_MISSING = 5  # how many missing file names an error message lists


def load_rgb(path: str) -> Image.Image:
    """Open an image file and return it fully decoded as RGB.

    Raises FileNotFoundError for a missing file and OSError (naming ``path``) for a file
    that PIL cannot identify or decode, e.g. truncated or corrupt JPEG bytes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces a full decode inside the try
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise OSError(f"cannot read image file {path!r}: {exc}") from exc


def check_files_exist(paths: Sequence[str], what: str) -> None:
    """Raise FileNotFoundError if any of ``paths`` is missing (count + first few names)."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:_SHOW_MISSING])
        more = f" (and {len(missing) - _SHOW_MISSING} more)" if len(missing) > _SHOW_MISSING else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files listed in {what} are missing: {shown}{more}"
        )


class MultiLabelImages(Dataset):
    """Images on disk with a multi-hot table: subclasses set ``image_paths``, ``targets`` (N, K),
    ``categories`` and ``transform``. ``__getitem__`` returns ``(image, target)``, the image
    decoded as RGB and passed through ``transform`` when given."""

    image_paths: list[str]
    targets: torch.Tensor
    categories: list[str]
    transform: Any

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        image = load_rgb(self.image_paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index].clone()
