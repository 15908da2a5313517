"""Train / test image transforms (torchvision.transforms.v2), the paper's recipe.

Train: multi-scale random crop resized to ``image_size`` x ``image_size``, horizontal flip,
float in [0, 1], ImageNet normalisation. Test: resize to ``image_size`` x ``image_size`` and
normalise. SpliceMix is applied to the normalised batch afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms", "denormalize"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


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
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    size = (image_size, image_size)
    steps: list = []
    if train and scale is not None:
        lo, hi = (float(s) for s in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)!r}")
        steps.append(v2.RandomResizedCrop(size, scale=(lo, hi), antialias=True))
    else:
        steps.append(v2.Resize(size, antialias=True))
    if train and hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
    ]
    return v2.Compose(steps)


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
