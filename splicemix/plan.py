"""The record of one SpliceMix mixing: which regular image went into which cell.

A :class:`SplicePlan` is what :class:`splicemix.SpliceMix` samples and what
:func:`splicemix.apply_plan` executes; SpliceMix-CL (:mod:`splicemix.consistency`) reads it
to match every cell of a mixed image with the regular image it came from. Both classes are
plain dataclasses, so a user can write a plan by hand::

    plan = SplicePlan([SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3]]))], batch_size=4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(init=False)
class SpliceGroup:
    """``n`` mixed images that share one ``rows x cols`` grid.

    ``sources[m, k]`` is the index, in the regular batch, of the image spliced into cell ``k``
    (row-major: ``k = i * cols + j``) of the group's ``m``-th mixed image.
    ``dropped[m, k]`` marks cells that are zeroed and contribute no labels (none when not given).
    Both may be given as nested lists, or for one mixed image as one row.
    """

    rows: int
    cols: int
    sources: torch.Tensor
    dropped: torch.Tensor

    def __init__(
        self,
        rows: int,
        cols: int,
        sources: torch.Tensor | Sequence[Any],
        dropped: torch.Tensor | Sequence[Any] | None = None,
    ) -> None:
        if not (isinstance(rows, int) and isinstance(cols, int)) or rows < 1 or cols < 1:
            raise ValueError(f"SpliceGroup: rows and cols must be positive integers, got {rows!r}x{cols!r}")
        cells = rows * cols
        self.rows, self.cols = rows, cols
        self.sources = _as_matrix(sources, torch.long, cells)
        if self.sources.dim() != 2 or self.sources.shape[1] != cells:
            raise ValueError(
                f"SpliceGroup {rows}x{cols}: sources must have shape (n, {cells}), got {tuple(self.sources.shape)}"
            )
        self.sources = self.sources.long()
        if dropped is None:
            dropped = torch.zeros(self.sources.shape, dtype=torch.bool, device=self.sources.device)
        self.dropped = _as_matrix(dropped, torch.bool, cells)
        if tuple(self.dropped.shape) != tuple(self.sources.shape):
            raise ValueError(
                f"SpliceGroup {rows}x{cols}: dropped must have the shape of sources "
                f"{tuple(self.sources.shape)}, got {tuple(self.dropped.shape)}"
            )
        self.dropped = self.dropped.bool()

    @property
    def n(self) -> int:
        """Number of mixed images in this group."""
        return int(self.sources.shape[0])

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    def to(self, device: torch.device | str) -> SpliceGroup:
        return SpliceGroup(self.rows, self.cols, self.sources.to(device), self.dropped.to(device))


@dataclass
class SplicePlan:
    """An ordered list of groups; mixed images are appended group after group.

    ``batch_size`` is the number of regular images the plan was drawn for (``None`` when a
    user builds a plan without saying); ``apply_plan`` checks that every source index is
    below the actual batch size.
    """

    groups: list[SpliceGroup] = field(default_factory=list)
    batch_size: int | None = None

    @property
    def num_mixed(self) -> int:
        """B': the number of mixed images the plan appends."""
        return sum(g.n for g in self.groups)

    def __len__(self) -> int:
        return self.num_mixed

    @property
    def is_empty(self) -> bool:
        return self.num_mixed == 0

    def offsets(self) -> list[int]:
        """Index of each group's first mixed image among the mixed images (0-based)."""
        out: list[int] = []
        k = 0
        for g in self.groups:
            out.append(k)
            k += g.n
        return out

    def to(self, device: torch.device | str) -> SplicePlan:
        return SplicePlan([g.to(device) for g in self.groups], self.batch_size)

    def __repr__(self) -> str:
        parts: list[str] = []
        for g in self.groups:
            d = int(g.dropped.sum())
            parts.append(f"{g.n}x[{g.rows}x{g.cols}" + (f", {d} cells dropped" if d else "") + "]")
        return f"SplicePlan(batch_size={self.batch_size}, mixed={self.num_mixed}: {', '.join(parts) or 'none'})"


def _as_matrix(x: torch.Tensor | Sequence[Any], dtype: torch.dtype, cells: int) -> torch.Tensor:
    """``x`` as a tensor (lists become ``dtype``); one row of ``cells`` entries becomes a (1, cells) matrix."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype)
    return t.unsqueeze(0) if t.dim() == 1 and t.numel() == cells else t
