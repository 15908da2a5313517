"""Grid strategies: ``"RxC"`` or ``"RxC-D"`` (R rows, C columns, D of the R*C cells dropped).

>>> parse_grid("2x3-2")
GridSpec(rows=2, cols=3, drop=2)
>>> str(parse_grid(" 1X2 "))
'1x2'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_GRID_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
MAX_SIDE = 16  # a 16x16 grid of 448 px images gives 28 px cells; beyond that is a typo


@dataclass(frozen=True)
class GridSpec:
    """One grid strategy. ``drop`` is a fixed number of cells dropped in every mixed image."""

    rows: int
    cols: int
    drop: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "drop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"grid {name} must be an integer, got {v!r}")
        if not (1 <= self.rows <= MAX_SIDE and 1 <= self.cols <= MAX_SIDE):
            raise ValueError(f"grid {self.rows}x{self.cols}: rows and cols must be between 1 and {MAX_SIDE}")
        if not 0 <= self.drop < self.cells:
            raise ValueError(
                f"grid {self.rows}x{self.cols}-{self.drop}: drops {self.drop} cells but it has "
                f"{self.cells}; expected 0 <= drops <= {self.cells - 1}"
            )

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    @property
    def kept(self) -> int:
        """Cells that keep their source: R*C - D."""
        return self.cells - self.drop

    @property
    def square(self) -> bool:
        return self.rows == self.cols

    def transposed(self) -> GridSpec:
        return GridSpec(self.cols, self.rows, self.drop)

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}" + (f"-{self.drop}" if self.drop else "")


#: a grid as text (``"2x3-2"``) or as a GridSpec
GridLike = str | GridSpec


def parse_grid(grid: GridLike | Sequence[int]) -> GridSpec:
    """Parse ``"RxC"`` / ``"RxC-D"`` (also accepts a GridSpec or an ``(R, C[, D])`` tuple)."""
    if isinstance(grid, GridSpec):
        return grid
    if isinstance(grid, (tuple, list)) and len(grid) in (2, 3):
        return GridSpec(*grid)
    if not isinstance(grid, str):
        raise ValueError(f"grid must be a string like '2x2' or '2x3-2', got {grid!r}")
    m = _GRID_RE.match(grid)
    if not m:
        raise ValueError(
            f"malformed grid {grid!r}: expected 'RxC' or 'RxC-D' with integers, e.g. '2x2', '1x2', '2x3-2'"
        )
    rows, cols, drop = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return GridSpec(rows, cols, drop)


def parse_grids(
    grids: GridLike | Sequence[GridLike] | Mapping[GridLike, float],
) -> tuple[list[GridSpec], list[float]]:
    """Normalise the ``grids`` argument into (specs, weights); weights sum to 1."""
    items: list[tuple[GridLike, float]]
    if isinstance(grids, (str, GridSpec)):
        items = [(grids, 1.0)]
    elif isinstance(grids, Mapping):
        items = list(grids.items())
    elif isinstance(grids, Sequence):
        items = [(g, 1.0) for g in grids]
    else:
        raise ValueError(f"grids must be a grid string, a list of them or a mapping grid->weight, got {grids!r}")
    if not items:
        raise ValueError("grids is empty: give at least one grid such as '2x2'")
    specs: list[GridSpec] = []
    weights: list[float] = []
    for g, raw in items:
        spec = parse_grid(g)
        try:
            w = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"weight of grid {g!r} must be a number, got {raw!r}") from None
        if not w >= 0 or w == float("inf"):
            raise ValueError(f"weight of grid {g!r} must be a finite number >= 0, got {w!r}")
        specs.append(spec)
        weights.append(w)
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"grid weights must not all be zero, got {dict(zip(map(str, specs), weights, strict=True))}")
    return specs, [w / total for w in weights]


# The authors' two settings (zuiran/SpliceMix): "default" samples one grid per batch
# (1x2: 0.3, 2x2: 0.4, 2x3: 0.3) and with probability 0.3 drops 1..R*C-1 cells;
# "minimal" is a fixed 2x2 grid without drops. Both use |B'| = |B| // 4.
#: |B'| / |B| of both presets: what ``mixed_ratio: null`` means everywhere (trainer, study, analysis)
DEFAULT_MIXED_RATIO = 0.25
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(
        grids={"1x2": 0.3, "2x2": 0.4, "2x3": 0.3}, drop_prob=0.3, mixed_ratio=DEFAULT_MIXED_RATIO, asymmetric=True
    ),
    "minimal": dict(grids=["2x2"], drop_prob=0.0, mixed_ratio=DEFAULT_MIXED_RATIO, asymmetric=True),
}
