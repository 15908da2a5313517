"""The in-memory data path (``data.in_memory``): a small data set decoded once, its batches built on tensors.

:class:`InMemoryImages` holds the images of a :class:`~splicemix.data.base.MultiLabelImages`
decoded once, with the deterministic steps of the transform already applied (the resize), as
one uint8 ``(N, 3, H, W)`` tensor. A sample is then its row through the random steps (flips,
crops) and the float conversion + normalisation, which runs on whole batches: the DataLoader
asks for a batch through ``__getitems__``.

The same seed gives the same samples as the file path: the random steps are the same
torchvision transforms drawing from the same generator in the same order, and the float
conversion is elementwise. The pixels are bit-identical when the random steps only flip
(:attr:`~splicemix.data.transforms.TransformParts.exact_on_tensors`); a RandomResizedCrop
resamples a tensor with torch's kernel, which rounds unlike PIL's.

The decoded images are kept per process (:func:`decoded_images`, keyed by the files' paths,
sizes and modification times and the deterministic steps), so a reused trial process, or a
second data set over the same files, does not decode them again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .base import MultiLabelImages, load_rgb
from .transforms import TransformParts

__all__ = ["InMemoryImages", "decoded_images", "files_bytes", "clear_decoded"]

_KEEP = 4  # decoded data sets kept per process (least recently used dropped first)
_DECODED: OrderedDict[tuple[Any, ...], torch.Tensor | list[torch.Tensor]] = OrderedDict()


def files_bytes(paths: Sequence[str]) -> int:
    """The total size in bytes of the files ``paths`` (what decides ``data.in_memory: auto``)."""
    return sum(os.stat(p).st_size for p in paths)


def _stamp(paths: Sequence[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def decoded_images(paths: Sequence[str], fixed: Sequence[v2.Transform] = ()) -> torch.Tensor | list[torch.Tensor]:
    """The images ``paths`` decoded (as :func:`~splicemix.data.base.load_rgb`), through the
    deterministic steps ``fixed``, as uint8 ``(3, H, W)``: one ``(N, 3, H, W)`` tensor when
    they all have one size, else a list. Kept per process: the same files (paths, sizes and
    modification times) with the same steps are decoded once."""
    key = (tuple(paths), _stamp(paths), repr(list(fixed)))
    if key in _DECODED:
        _DECODED.move_to_end(key)
        return _DECODED[key]
    step = v2.Compose([*fixed, v2.ToImage()])
    images = [step(load_rgb(p)).as_subclass(torch.Tensor) for p in paths]
    out: torch.Tensor | list[torch.Tensor] = images
    if images and all(x.shape == images[0].shape for x in images):
        out = torch.stack(images)
    _DECODED[key] = out
    while len(_DECODED) > _KEEP:
        _DECODED.popitem(last=False)
    return out


def clear_decoded() -> None:
    """Forget every decoded data set of this process."""
    _DECODED.clear()


class InMemoryImages(Dataset):
    """``dataset``'s first ``limit`` images (all when None) decoded once, transformed by ``parts``.

    ``dataset[i]`` and ``dataset.__getitems__(indices)`` return ``(image, target)`` like the
    file-backed ``dataset`` with ``parts.compose()`` as its transform (see the module docstring
    for when the pixels are bit-identical).
    """

    def __init__(self, dataset: MultiLabelImages, parts: TransformParts, limit: int | None = None) -> None:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        self.image_paths = list(dataset.image_paths[:n])
        self.targets = dataset.targets[:n]
        self.categories = list(getattr(dataset, "categories", []))
        self.parts = parts
        self.random = v2.Compose(parts.random) if parts.random else None
        self.images = decoded_images(self.image_paths, parts.fixed)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The samples ``indices`` in order (one random draw per sample, as the file path makes them)."""
        if self.random is None and isinstance(self.images, torch.Tensor):
            batch = [self.images[torch.as_tensor(indices, dtype=torch.long)]]
        else:
            rows = [self.images[i] for i in indices]
            if self.random is not None:
                rows = [self.random(x) for x in rows]
            same = all(x.shape == rows[0].shape for x in rows)
            batch = [torch.stack(rows)] if same else [x.unsqueeze(0) for x in rows]
        images = [x for b in batch for x in self.parts.finish(b).unbind(0)]
        return [(x, self.targets[i].clone()) for x, i in zip(images, indices, strict=True)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(images={len(self)}, fixed={self.parts.fixed}, random={self.parts.random})"
