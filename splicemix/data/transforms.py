"""Train / test image transforms (torchvision.transforms.v2), the paper's recipe.

Train: multi-scale random crop resized to ``image_size`` x ``image_size``, horizontal flip,
float in [0, 1], ImageNet normalisation. Test: resize to ``image_size`` x ``image_size`` and
normalise. SpliceMix is applied to the normalised batch afterwards. :func:`transform_parts`
gives the same steps split into the deterministic, the random and the elementwise ones (the
in-memory data path applies the first once, the last to whole batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TransformParts", "transform_parts", "build_transforms", "denormalize"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TransformParts:
    """:func:`build_transforms` in its three parts, for the in-memory data path
    (:class:`~splicemix.data.memory.InMemoryImages`):

    * ``fixed``: deterministic steps on the decoded PIL image (the test resize, the train resize
      when there is no crop), applied once per image when it is decoded;
    * ``random``: the random steps (RandomResizedCrop, RandomHorizontalFlip), per sample;
    * ``finish``: uint8 -> float in [0, 1] -> ImageNet normalisation, elementwise, so a whole
      batch at once gives the same floats as one image at a time.

    ``build_transforms`` is ``fixed + random + ToImage + finish`` in that order.
    """

    fixed: list[v2.Transform]
    random: list[v2.Transform]
    finish: v2.Compose

    @property
    def exact_on_tensors(self) -> bool:
        """Whether the random steps give the same pixels on a uint8 tensor as on the PIL image
        (flips do; a RandomResizedCrop resamples, and torch's resampling rounds unlike PIL's)."""
        return all(isinstance(t, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for t in self.random)

    def compose(self) -> v2.Compose:
        """The whole transform of one PIL image (or uint8 tensor): what :func:`build_transforms` returns."""
        return v2.Compose([*self.fixed, *self.random, v2.ToImage(), *self.finish.transforms])


def transform_parts(
    image_size: int,
    train: bool,
    scale: tuple[float, float] | None = (0.5, 1.0),
    hflip: bool = True,
) -> TransformParts:
    """The steps of :func:`build_transforms` (same arguments, same checks), split as :class:`TransformParts`."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    size = (image_size, image_size)
    fixed: list[v2.Transform] = []
    random: list[v2.Transform] = []
    if train and scale is not None:
        lo, hi = (float(s) for s in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)!r}")
        random.append(v2.RandomResizedCrop(size, scale=(lo, hi), antialias=True))
    else:
        fixed.append(v2.Resize(size, antialias=True))
    if train and hflip:
        random.append(v2.RandomHorizontalFlip())
    finish = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))]
    )
    return TransformParts(fixed, random, finish)


def build_transforms(
    image_size: int,
    train: bool,
    scale: tuple[float, float] | None = (0.5, 1.0),
    hflip: bool = True,
) -> v2.Compose:
    """Return the transform for a PIL image (or uint8 tensor) -> normalised float32 (3, S, S).

    ``scale`` is the RandomResizedCrop area range for training; None trains on the plain
    resized image. ``scale`` and ``hflip`` are ignored when ``train`` is False.
    """
    return transform_parts(image_size, train, scale, hflip).compose()


def denormalize(
    tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo Normalize for display: (..., 3, H, W) -> values clamped to [0, 1] (a new tensor)."""
    if tensor.ndim < 3 or tensor.shape[-3] != len(mean):
        raise ValueError(f"expected a (..., {len(mean)}, H, W) tensor, got shape {tuple(tensor.shape)}")
    m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return (tensor * s + m).clamp(0.0, 1.0)
