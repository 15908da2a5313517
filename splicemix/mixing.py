"""SpliceMix: splice downsampled images of a batch into grids and append them to the batch.

Two halves, as in ``torchvision.transforms.v2``: :meth:`SpliceMix.sample_plan` draws the
random parameters (a :class:`~splicemix.plan.SplicePlan`, small CPU tensors), and
:func:`apply_plan` executes a plan deterministically on whatever device the batch is on.
``SpliceMix.__call__`` does both.

>>> mixer = SpliceMix("default", generator=torch.Generator().manual_seed(0))
>>> images_out, targets_out, plan = mixer(images, targets)   # B regular, then B' mixed
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from .grids import PRESETS, GridLike, GridSpec, parse_grids
from .plan import SpliceGroup, SplicePlan

__all__ = ["SpliceMix", "apply_plan", "splice_images", "check_batch"]


def check_batch(images: torch.Tensor, targets: torch.Tensor | None = None) -> None:
    """Raise a readable ValueError unless images is (B, C, H, W) float and targets (B, K)."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be 4-D (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be a floating-point tensor (normalised images), got dtype {images.dtype}; "
            "convert with .float() (or ToDtype(torch.float32, scale=True)) first"
        )
    if targets is None:
        return
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a torch.Tensor of shape (B, K), got {type(targets).__name__}")
    if targets.dim() != 2:
        raise ValueError(f"targets must be 2-D multi-hot (B, K), got shape {tuple(targets.shape)}")
    if targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch size mismatch: images has {images.shape[0]} images but targets has {targets.shape[0]} rows"
        )
    if targets.device != images.device:
        raise ValueError(f"images are on {images.device} but targets on {targets.device}; put both on one device")


def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear, align_corners=True (the reference); antialias computed in float32 where needed."""
    if antialias and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return F.interpolate(x.float(), size, mode="bilinear", align_corners=True, antialias=True).to(x.dtype)
    return F.interpolate(x, size, mode="bilinear", align_corners=True, antialias=antialias)


def splice_images(
    images: torch.Tensor, group: SpliceGroup, antialias: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``group.n`` mixed images of one group, (n, C, H, W); written into ``out`` if given."""
    B, C, H, W = images.shape
    rows, cols, n = group.rows, group.cols, group.n
    ch, cw = H // rows, W // cols
    if ch < 1 or cw < 1:
        raise ValueError(f"grid {rows}x{cols} does not fit images of {H}x{W} pixels (cells would be empty)")
    idx = group.sources.reshape(-1).to(images.device, non_blocking=True)
    if idx.numel() >= B:
        # The plan touches (about) every image: downsample the whole batch once, then gather.
        small = _resize(images, (ch, cw), antialias).index_select(0, idx)
    else:
        small = _resize(images.index_select(0, idx), (ch, cw), antialias)
    dropped = group.dropped.reshape(-1).to(images.device, non_blocking=True)
    small = small.masked_fill(dropped.view(-1, 1, 1, 1), 0)
    cells = small.view(n, rows, cols, C, ch, cw)
    if rows * ch == H and cols * cw == W:
        if out is None:
            out = images.new_empty((n, C, H, W))
        out.view(n, C, rows, ch, cols, cw).permute(0, 2, 4, 1, 3, 5).copy_(cells)
        return out
    # Not divisible: splice at (rows*ch, cols*cw), then resize the grid back to H x W.
    grid = cells.permute(0, 3, 1, 4, 2, 5).reshape(n, C, rows * ch, cols * cw)
    grid = F.interpolate(grid, (H, W), mode="bilinear", align_corners=True)
    if out is None:
        return grid
    out.copy_(grid)
    return out


def _mixed_targets(targets: torch.Tensor, group: SpliceGroup) -> torch.Tensor:
    idx = group.sources.reshape(-1).to(targets.device, non_blocking=True)
    t = targets.index_select(0, idx).view(group.n, group.cells, -1)
    t = t.masked_fill(group.dropped.to(targets.device, non_blocking=True).unsqueeze(-1), 0)
    return t.any(1) if t.dtype == torch.bool else t.amax(1)


def _check_plan(plan: SplicePlan, batch_size: int) -> None:
    if not isinstance(plan, SplicePlan):
        raise ValueError(f"plan must be a SplicePlan, got {type(plan).__name__}")
    if plan.batch_size is not None and plan.batch_size != batch_size:
        raise ValueError(f"the plan was drawn for a batch of {plan.batch_size} images, got {batch_size}")
    for g in plan.groups:
        if g.n and (int(g.sources.min()) < 0 or int(g.sources.max()) >= batch_size):
            raise ValueError(
                f"plan group {g.rows}x{g.cols} has source indices outside [0, {batch_size}) "
                f"(min {int(g.sources.min())}, max {int(g.sources.max())})"
            )


def apply_plan(
    images: torch.Tensor,
    targets: torch.Tensor,
    plan: SplicePlan,
    *,
    antialias: bool = False,
    out: torch.Tensor | None = None,
    targets_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Execute ``plan``: return the regular batch followed by the mixed images, and targets.

    Cell (i, j) of a mixed image is its source resized to (H // rows, W // cols) (bilinear,
    align_corners=True), dropped cells are 0 and carry no labels, and the mixed target is the
    element-wise max over the kept sources. ``out`` / ``targets_out`` may be preallocated
    (B + B', ...) buffers; when ``images`` already is ``out[:B]`` the regular batch is not copied.
    With an empty plan and no buffers the inputs are returned as they are.
    """
    check_batch(images, targets)
    _check_plan(plan, images.shape[0])
    return _apply(images, targets, plan, antialias, out, targets_out)


def _apply(images, targets, plan: SplicePlan, antialias: bool, out, targets_out) -> tuple[torch.Tensor, torch.Tensor]:
    """apply_plan without the input checks (for plans the mixer drew for this very batch)."""
    B = images.shape[0]
    total = B + plan.num_mixed
    if out is None and targets_out is None and plan.num_mixed == 0:
        return images, targets
    out = _buffer(out, images, total, "out")
    targets_out = _buffer(targets_out, targets, total, "targets_out")
    if out.data_ptr() != images.data_ptr():
        out[:B].copy_(images)
    if targets_out.data_ptr() != targets.data_ptr():
        targets_out[:B].copy_(targets)
    start = B
    for g in plan.groups:
        if g.n == 0:
            continue
        splice_images(images, g, antialias=antialias, out=out[start : start + g.n])
        targets_out[start : start + g.n] = _mixed_targets(targets, g)
        start += g.n
    return out, targets_out


def _buffer(buf: torch.Tensor | None, like: torch.Tensor, total: int, name: str) -> torch.Tensor:
    shape = (total, *like.shape[1:])
    if buf is None:
        return like.new_empty(shape)
    if tuple(buf.shape) != shape or buf.dtype != like.dtype or buf.device != like.device:
        raise ValueError(
            f"{name} must be a {like.dtype} tensor of shape {shape} on {like.device}, "
            f"got {buf.dtype} {tuple(buf.shape)} on {buf.device}"
        )
    return buf


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    raw = [total * w for w in weights]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class SpliceMix:
    """SpliceMix batch augmentation (arXiv 2311.15200) for multi-label classification.

    ``mixer(images, targets)`` takes a normalised float batch (B, C, H, W) and multi-hot
    targets (B, K) on any device and returns ``(images_out, targets_out, plan)``: the B regular
    images unchanged, then B' mixed images (and their targets), and the :class:`SplicePlan`.

    Args:
        grids: ``"default"`` or ``"minimal"`` (the authors' two settings, see
            :data:`splicemix.grids.PRESETS`), one grid (``"2x2"``, ``"2x3-2"``, a GridSpec),
            a list of grids (equal weights) or a mapping grid -> weight.
        mixed_ratio: |B'| / |B| as a float (B' = floor(ratio * B); the authors use 0.25), or
            ``"paper"`` for the paper's reference B' = floor(B / (R*C - D)).
        counts: exact number of mixed images per grid per batch (one int per grid, in order);
            overrides ``mixed_ratio`` and implies ``grid_sampling="split"``.
        grid_sampling: ``"batch"``: one grid per batch, picked by weight (the authors'
            default); ``"split"``: every batch uses all grids, B' shared out by weight.
        drop_prob: chance that a group drops cells (random count in 1..min(R*C-1, max_drop),
            the same count for the group, cells chosen per image); for grids without a fixed
            ``-D``. ``None`` takes the preset's value (0.3 for "default", else 0).
        max_drop: cap on the random drop count (``None``: R*C - 1).
        asymmetric: transpose a non-square grid with probability 1/2 (per group).
        prob: probability that a batch is mixed at all (else an empty plan).
        antialias: antialiased downsampling (the reference does not antialias).
        generator: ``torch.Generator`` for the plan sampling (CPU); ``None`` uses torch's global RNG.
    """

    def __init__(
        self,
        grids: str | GridLike | Sequence[GridLike] | Mapping[GridLike, float] = "default",
        *,
        mixed_ratio: float | str | None = None,
        counts: Sequence[int] | None = None,
        grid_sampling: str = "batch",
        drop_prob: float | None = None,
        max_drop: int | None = None,
        asymmetric: bool | None = None,
        prob: float = 1.0,
        antialias: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        preset = {}
        if isinstance(grids, str) and grids.strip().lower() in PRESETS:
            self.preset = grids.strip().lower()
            preset = PRESETS[self.preset]
            grids = preset["grids"]
        else:
            self.preset = None
        self.specs, self.weights = parse_grids(grids)
        self.mixed_ratio = mixed_ratio if mixed_ratio is not None else preset.get("mixed_ratio", 0.25)
        if isinstance(self.mixed_ratio, str):
            if self.mixed_ratio != "paper":
                raise ValueError(f"mixed_ratio must be a number >= 0 or 'paper', got {self.mixed_ratio!r}")
        elif isinstance(self.mixed_ratio, bool) or not isinstance(self.mixed_ratio, (int, float)) or not (
            0 <= self.mixed_ratio < float("inf")
        ):
            raise ValueError(f"mixed_ratio must be a number >= 0 or 'paper', got {self.mixed_ratio!r}")
        if grid_sampling not in ("batch", "split"):
            raise ValueError(f"grid_sampling must be 'batch' or 'split', got {grid_sampling!r}")
        self.counts = None
        if counts is not None:
            counts = list(counts)
            if len(counts) != len(self.specs) or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts
            ):
                raise ValueError(
                    f"counts must give one integer >= 0 per grid ({len(self.specs)} grids: "
                    f"{', '.join(map(str, self.specs))}), got {counts!r}"
                )
            self.counts = counts
            grid_sampling = "split"
        self.grid_sampling = grid_sampling
        self.drop_prob = float(drop_prob if drop_prob is not None else preset.get("drop_prob", 0.0))
        if not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
        if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, int) or max_drop < 1):
            raise ValueError(f"max_drop must be an integer >= 1 or None, got {max_drop!r}")
        self.max_drop = max_drop
        self.asymmetric = bool(asymmetric if asymmetric is not None else preset.get("asymmetric", True))
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        self.prob = float(prob)
        self.antialias = bool(antialias)
        self.generator = generator

    # -- sampling ---------------------------------------------------------------------------
    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def _num_mixed(self, spec: GridSpec, batch_size: int, share: float, drop: int) -> int:
        if self.mixed_ratio == "paper":
            return math.floor(share * (batch_size // (spec.cells - drop)))
        return math.floor(self.mixed_ratio * batch_size * share + 1e-9)

    def _draw_sources(self, n: int, cells: int, batch_size: int) -> torch.Tensor:
        if n * cells <= batch_size:  # one permutation: every image used at most once
            return torch.randperm(batch_size, generator=self.generator)[: n * cells].view(n, cells)
        # without replacement within each mixed image
        return torch.rand((n, batch_size), generator=self.generator).argsort(dim=1)[:, :cells]

    def _group(self, spec: GridSpec, n: int, batch_size: int, drop: int) -> SpliceGroup:
        rows, cols = spec.rows, spec.cols
        if self.asymmetric and not spec.square and self._rand() < 0.5:
            rows, cols = cols, rows
        sources = self._draw_sources(n, spec.cells, batch_size)
        dropped = torch.zeros((n, spec.cells), dtype=torch.bool)
        if drop:
            cells_dropped = torch.rand((n, spec.cells), generator=self.generator).argsort(dim=1)[:, :drop]
            dropped.scatter_(1, cells_dropped, True)
        return SpliceGroup(rows, cols, sources, dropped)

    def _drop_count(self, spec: GridSpec) -> int:
        if spec.drop or self.drop_prob == 0.0:
            return spec.drop
        if self._rand() >= self.drop_prob:
            return 0
        high = spec.cells - 1 if self.max_drop is None else min(spec.cells - 1, self.max_drop)
        return self._randint(1, high) if high >= 1 else 0

    def sample_plan(self, batch_size: int) -> SplicePlan:
        """Draw the random half: which grid(s), orientation, sources and dropped cells."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.prob < 1.0 and self._rand() >= self.prob:
            return SplicePlan([], batch_size)
        if self.grid_sampling == "batch":
            k = int(torch.multinomial(torch.tensor(self.weights), 1, generator=self.generator))
            chosen = [(self.specs[k], 1.0, None)]
        else:
            chosen = [(s, w, None if self.counts is None else self.counts[i])
                      for i, (s, w) in enumerate(zip(self.specs, self.weights)) if w > 0 or self.counts]
        groups = []
        # In split mode with a ratio, B' is shared out by weight with largest remainders.
        if self.grid_sampling == "split" and self.counts is None and self.mixed_ratio != "paper":
            total = math.floor(self.mixed_ratio * batch_size + 1e-9)
            shares = _largest_remainder(total, [w for _, w, _ in chosen])
            chosen = [(s, w, c) for (s, w, _), c in zip(chosen, shares)]
        for spec, share, count in chosen:
            if spec.cells > batch_size:
                raise ValueError(
                    f"grid {spec} needs {spec.cells} distinct source images per mixed image but the "
                    f"batch has only {batch_size}; use a larger batch or a smaller grid"
                )
            drop = self._drop_count(spec)
            n = count if count is not None else self._num_mixed(spec, batch_size, share, drop)
            if n > 0:
                groups.append(self._group(spec, n, batch_size, drop))
        return SplicePlan(groups, batch_size)

    # -- apply ------------------------------------------------------------------------------
    def __call__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        out: torch.Tensor | None = None,
        targets_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, SplicePlan]:
        check_batch(images, targets)
        plan = self.sample_plan(images.shape[0])
        images_out, targets_out = _apply(images, targets, plan, self.antialias, out, targets_out)
        return images_out, targets_out, plan

    def max_mixed(self, batch_size: int) -> int:
        """The largest B' this mixer can append to a batch of ``batch_size`` (to size buffers)."""
        if self.counts is not None:
            return sum(self.counts)
        if self.mixed_ratio != "paper":
            return math.floor(self.mixed_ratio * batch_size + 1e-9)
        per = []
        for spec, weight in zip(self.specs, self.weights):
            # the paper's B' grows with the drop count: take the most drops this mixer can draw
            most = spec.drop or (min(spec.cells - 1, self.max_drop or spec.cells) if self.drop_prob else 0)
            share = 1.0 if self.grid_sampling == "batch" else weight
            per.append(self._num_mixed(spec, batch_size, share, most))
        return sum(per) if self.grid_sampling == "split" else max(per)

    def __repr__(self) -> str:
        grids = ", ".join(f"{s}: {w:.2g}" for s, w in zip(self.specs, self.weights))
        ratio = self.mixed_ratio if self.counts is None else f"counts={self.counts}"
        return (
            f"SpliceMix(grids={{{grids}}}, mixed_ratio={ratio}, grid_sampling={self.grid_sampling!r}, "
            f"drop_prob={self.drop_prob}, asymmetric={self.asymmetric}, prob={self.prob}, antialias={self.antialias})"
        )
