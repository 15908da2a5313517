"""A DataLoader collate function that leaves room for SpliceMix's mixed images.

SpliceMix appends B' mixed images to a batch of B. Out of place, that means a new
(B + B', C, H, W) tensor and a copy of the whole regular batch. :class:`SpliceCollate`
instead stacks the B samples into the first rows of a (B + reserve, C, H, W) buffer, so the
mixer writes the mixed images into the rows after them and copies nothing::

    collate = SpliceCollate(mixer)                   # reserves mixer.max_mixed(B) rows
    loader = DataLoader(ds, batch_size=32, collate_fn=collate, pin_memory=True, num_workers=4)
    for batch in loader:
        batch = batch.to(device, non_blocking=True)  # moves the buffers, keeps the aliasing
        images, targets, plan = batch.mix(mixer)     # B + B' rows, views of batch.buffer

A :class:`SpliceBatch` unpacks as ``images, targets = batch`` (the B regular rows), so code
written for the default collate keeps working. It defines ``pin_memory()``, which the
DataLoader calls, and ``to()``: both move the *whole* buffers and re-view the first B rows,
so ``batch.images`` stays ``batch.buffer[:B]`` (a plain tuple or namedtuple would be pinned
tensor by tensor and lose that). Only the B filled rows are copied; the reserved rows of the
new buffers are left uninitialised, as the mixer overwrites what it uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from .mixup import PairPlan
    from .plan import SplicePlan

__all__ = ["SpliceCollate", "SpliceBatch", "Mixer"]


class Mixer(Protocol):
    """What the collate and the trainer need of a mixer: :class:`~splicemix.SpliceMix`
    (appends B' mixed images) or :class:`~splicemix.MixUp` / :class:`~splicemix.CutMix` (mix
    in place, ``max_mixed(B) == 0``)."""

    def __call__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        out: torch.Tensor | None = None,
        targets_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, SplicePlan | PairPlan]: ...

    def max_mixed(self, batch_size: int) -> int: ...


class SpliceBatch:
    """B regular samples in the first rows of larger buffers, with room for the mixed images.

    Attributes:
        buffer: (B + reserve, C, H, W) images; rows [:B] hold the batch.
        targets_buffer: (B + reserve, K) float targets; rows [:B] hold the batch.
        batch_size: B.
        images: ``buffer[:B]`` (a view).
        targets: ``targets_buffer[:B]`` (a view).
    """

    __slots__ = ("buffer", "targets_buffer", "batch_size", "images", "targets")

    def __init__(self, buffer: torch.Tensor, targets_buffer: torch.Tensor, batch_size: int) -> None:
        if buffer.shape[0] != targets_buffer.shape[0] or not 0 <= batch_size <= buffer.shape[0]:
            raise ValueError(
                f"SpliceBatch: buffers of {buffer.shape[0]} and {targets_buffer.shape[0]} rows cannot hold "
                f"a batch of {batch_size}"
            )
        self.buffer = buffer
        self.targets_buffer = targets_buffer
        self.batch_size = int(batch_size)
        self.images = buffer[:batch_size]
        self.targets = targets_buffer[:batch_size]

    @property
    def reserve(self) -> int:
        """The number of rows after the batch (room for mixed images)."""
        return self.buffer.shape[0] - self.batch_size

    # -- unpacking as (images, targets) -----------------------------------------------------
    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.images, self.targets))

    def __len__(self) -> int:
        return 2

    # -- moving ------------------------------------------------------------------------------
    def _moved(self, non_blocking: bool, **where: Any) -> SpliceBatch:
        """New full-size buffers (``torch.empty(**where)``) holding a copy of the B filled rows."""
        B = self.batch_size
        buf = torch.empty(self.buffer.shape, dtype=self.buffer.dtype, **where)
        tbuf = torch.empty(self.targets_buffer.shape, dtype=self.targets_buffer.dtype, **where)
        buf[:B].copy_(self.images, non_blocking=non_blocking)
        tbuf[:B].copy_(self.targets, non_blocking=non_blocking)
        return SpliceBatch(buf, tbuf, B)

    def pin_memory(self, device: Any = None) -> SpliceBatch:
        """The batch in page-locked memory (what ``DataLoader(pin_memory=True)`` calls)."""
        if self.buffer.is_pinned() and self.targets_buffer.is_pinned():
            return self
        return self._moved(False, pin_memory=True)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SpliceBatch:
        """The batch on ``device`` (the same object if it is there already).

        The new buffers have the full (B + reserve) rows; only the B filled rows travel.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.buffer.device == device and self.targets_buffer.device == device:
            return self
        return self._moved(non_blocking, device=device)

    # -- mixing ------------------------------------------------------------------------------
    def mix(self, mixer: Mixer) -> tuple[torch.Tensor, torch.Tensor, SplicePlan | PairPlan]:
        """``mixer(images, targets, out=buffer, targets_out=targets_buffer)``: the regular batch
        followed by the mixed images (views of the buffers; nothing is copied), targets, plan.
        MixUp / CutMix mix the B rows in place."""
        return mixer(self.images, self.targets, out=self.buffer, targets_out=self.targets_buffer)

    # -- pickling (DataLoader workers): send the buffers once, rebuild the views -------------
    def __reduce__(self) -> tuple[type[SpliceBatch], tuple[torch.Tensor, torch.Tensor, int]]:
        return (SpliceBatch, (self.buffer, self.targets_buffer, self.batch_size))

    def __repr__(self) -> str:
        return (
            f"SpliceBatch(batch_size={self.batch_size}, reserve={self.reserve}, images={tuple(self.images.shape)} "
            f"{self.buffer.dtype} on {self.buffer.device}, targets={tuple(self.targets.shape)})"
        )


class SpliceCollate:
    """``collate_fn`` for a DataLoader whose batches SpliceMix will extend.

    Stacks the B ``(image, target)`` samples into rows [:B] of a freshly allocated
    (B + reserve, C, H, W) image buffer and a (B + reserve, K) float target buffer and
    returns a :class:`SpliceBatch`.

    Args:
        reserve: rows to leave after the batch: an int, or a mixer (:class:`~splicemix.SpliceMix`,
            :class:`~splicemix.MixUp`, :class:`~splicemix.CutMix`), which reserves
            ``mixer.max_mixed(B)`` rows (enough for any plan it draws; 0 for MixUp / CutMix).
        batch_size: the loader's batch size (optional). With it, a short last batch gets the
            same buffer shape as a full one (``batch_size`` + reserve rows), which keeps
            allocator reuse (and static shapes) intact.
        targets_dtype: dtype of the target buffer (float32: what the BCE loss takes).

    In a DataLoader worker the buffers are allocated in shared memory, as
    ``default_collate`` does, so they reach the main process without another copy.
    """

    def __init__(
        self, reserve: int | Mixer = 0, *, batch_size: int | None = None, targets_dtype: torch.dtype = torch.float32
    ) -> None:
        self.mixer: Mixer | None = None
        self.reserve: int | None = None  # None when the mixer sizes the reserve
        if isinstance(reserve, int) and not isinstance(reserve, bool):
            if reserve < 0:
                raise ValueError(f"reserve must be an integer >= 0 or a SpliceMix / MixUp / CutMix, got {reserve!r}")
            self.reserve = reserve
        elif not isinstance(reserve, int) and callable(getattr(reserve, "max_mixed", None)):
            # keep what max_mixed needs, not the mixer's random generator (workers pickle this)
            self.mixer = copy.copy(reserve)
            if hasattr(self.mixer, "generator"):
                self.mixer.generator = None
        else:
            raise ValueError(
                f"reserve must be an integer >= 0 or a SpliceMix / MixUp / CutMix, got {type(reserve).__name__}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.batch_size = batch_size
        self.targets_dtype = targets_dtype

    def rows(self, batch_size: int) -> int:
        """Rows of the buffers for a batch of ``batch_size`` samples."""
        base = max(batch_size, self.batch_size or 0)
        extra = self.mixer.max_mixed(base) if self.mixer is not None else (self.reserve or 0)
        return base + extra

    def __call__(self, samples: Sequence[Any]) -> SpliceBatch:
        B = len(samples)
        if B == 0:
            raise ValueError("SpliceCollate: cannot collate an empty list of samples")
        images: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        for i, s in enumerate(samples):
            if not isinstance(s, (tuple, list)) or len(s) != 2:
                raise ValueError(
                    f"SpliceCollate: sample {i} must be an (image, target) pair, got {type(s).__name__}"
                    + (f" of length {len(s)}" if isinstance(s, (tuple, list)) else "")
                )
            img, tgt = s
            if not isinstance(img, torch.Tensor):
                raise ValueError(
                    f"SpliceCollate: sample {i}'s image must be a (C, H, W) tensor (apply the ToTensor/ToImage "
                    f"transforms first), got {type(img).__name__}"
                )
            images.append(img)
            targets.append(torch.as_tensor(tgt))
        first, t_first = images[0], targets[0]
        for i, (img, tgt) in enumerate(zip(images, targets, strict=True)):
            if img.shape != first.shape or img.dtype != first.dtype:
                raise ValueError(
                    f"SpliceCollate: sample {i}'s image is {img.dtype} {tuple(img.shape)}, sample 0's "
                    f"{first.dtype} {tuple(first.shape)}; every image of a batch must have one shape and dtype"
                )
            if tgt.shape != t_first.shape:
                raise ValueError(
                    f"SpliceCollate: sample {i}'s target has shape {tuple(tgt.shape)}, sample 0's "
                    f"{tuple(t_first.shape)}"
                )
        total = self.rows(B)
        buf = _new_buffer(first, (total, *first.shape))
        tbuf = _new_buffer(t_first, (total, *t_first.shape), self.targets_dtype)
        torch.stack(images, 0, out=buf[:B])
        tbuf[:B].copy_(torch.stack(targets, 0))
        return SpliceBatch(buf, tbuf, B)

    def __repr__(self) -> str:
        what = f"mixer.max_mixed(B) of {self.mixer!r}" if self.mixer is not None else str(self.reserve)
        return f"SpliceCollate(reserve={what}, batch_size={self.batch_size})"


def _new_buffer(like: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    dtype = like.dtype if dtype is None else dtype
    if torch.utils.data.get_worker_info() is not None and like.device.type == "cpu":
        # as default_collate: allocate in shared memory so that sending it to the main
        # process does not copy it once more
        numel = 1
        for s in shape:
            numel *= s
        try:
            # torch leaves _new_shared unannotated, hence the ignore
            storage = torch.UntypedStorage._new_shared(numel * dtype.itemsize, device="cpu")  # type: ignore[no-untyped-call]
            return torch.empty(0, dtype=dtype).set_(storage).view(shape)
        except (AttributeError, RuntimeError, TypeError):
            pass
    return torch.empty(shape, dtype=dtype, device=like.device)
