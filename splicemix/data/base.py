"""What the COCO and VOC data sets share: image loading, file checks, the Dataset protocol,
and :class:`SkipCorrupt`, which skips undecodable images (``data.skip_corrupt``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["MultiLabelImages", "load_rgb", "check_files_exist", "CorruptImageError", "SkipCorrupt"]

_SHOW_MISSING = 5  # how many missing file names an error message lists
_SHOW_CORRUPT = 3  # how many corrupt file names a skip report lists


class CorruptImageError(OSError):
    """An image file that exists but cannot be decoded (truncated or corrupt bytes, not an
    image); the message names the file, ``path`` holds it (None after a DataLoader worker
    re-raised the error, which keeps only the message)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # keep the path through pickling (DataLoader workers, Ray)
        return (type(self), (str(self), self.path))


def load_rgb(path: str) -> Image.Image:
    """Open an image file and return it fully decoded as RGB.

    Raises FileNotFoundError for a missing file and :class:`CorruptImageError` (an OSError
    naming ``path``) for a file that PIL cannot identify or decode, e.g. truncated or corrupt
    JPEG bytes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces a full decode inside the try
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # (PIL's UnidentifiedImageError is an OSError)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CorruptImageError(
            f"cannot read image file {path!r}: {reason}; expected a readable image "
            "(data.skip_corrupt: true or --skip-corrupt skips such files)",
            path,
        ) from exc


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


class SkipCorrupt(Dataset):
    """``dataset`` with its undecodable images skipped instead of raised (``data.skip_corrupt``).

    ``dataset[i]`` returns ``(image, target)`` and raises :class:`CorruptImageError` for a bad
    file; ``paths[i]`` is that sample's file. What replaces a corrupt sample:

    * ``blank=None`` (training): the next intact sample (``i+1``, ``i+2``, ... wrapping
      around), image and target together, so batches keep their size;
    * ``blank=(C, H, W)`` (evaluation): a zero image with the sample's own target
      (``targets[i]``); the caller leaves the rows in :attr:`bad` out of the metrics.

    Which samples were corrupt is kept in a shared-memory flag tensor, so DataLoader worker
    processes report to the parent; :meth:`summary` says how many and which.
    """

    def __init__(
        self,
        dataset: Dataset,
        paths: Sequence[str],
        blank: tuple[int, int, int] | None = None,
        targets: torch.Tensor | None = None,
        bad: torch.Tensor | None = None,
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; the wrapped ones have it
        if len(paths) != n:
            raise ValueError(f"SkipCorrupt: {len(paths)} paths for {n} samples")
        if blank is not None and targets is None:
            raise ValueError("SkipCorrupt: blank samples need the targets")
        self.dataset, self.paths, self.blank, self.targets = dataset, list(paths), blank, targets
        self.bad = bad if bad is not None else torch.zeros(n, dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        n = len(self.paths)
        for step in range(n):
            j = (index + step) % n
            if step and bool(self.bad[j]):
                continue  # a file already known to be corrupt: do not decode it again
            try:
                return self.dataset[j]
            except CorruptImageError:
                self.bad[j] = True
                if self.blank is not None:
                    assert self.targets is not None
                    return torch.zeros(self.blank), self.targets[j].clone()
        raise CorruptImageError(f"all {n} images are corrupt, e.g. {self.paths[index]!r}", self.paths[index])

    def corrupt(self) -> list[int]:
        """Indices of the samples found corrupt so far (in this process and its loader workers)."""
        return torch.nonzero(self.bad).flatten().tolist()

    def summary(self, what: str = "images", indices: Sequence[int] | None = None) -> str | None:
        """``"skipped N corrupt <what>: first 'a.jpg', 'b.jpg'"``, or None when none was found."""
        idx = sorted(self.corrupt() if indices is None else indices)
        if not idx:
            return None
        first = ", ".join(repr(self.paths[i]) for i in idx[:_SHOW_CORRUPT])
        if len(idx) == 1 and what.startswith(("images", "training images", "validation images")):
            what = what.replace("images", "image", 1).replace("each replaced", "replaced")
        return f"skipped {len(idx)} corrupt {what}: first {first}" + (" ..." if len(idx) > _SHOW_CORRUPT else "")
