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
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .grids import DEFAULT_MIXED_RATIO, PRESETS, GridLike, GridSpec, parse_grids
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


def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear, align_corners=True (the reference); antialias computed in float32 where needed.

    With ``out`` (contiguous, of the result's shape) the result is written there, without a
    temporary where the kernel allows it: the values are those of ``F.interpolate``.
    """
    if antialias and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        y = F.interpolate(x.float(), size, mode="bilinear", align_corners=True, antialias=True).to(x.dtype)
    elif out is not None and x.is_contiguous() and out.is_contiguous() and not _needs_grad(x):
        # the out= overloads of what F.interpolate calls (scale factors None: the same kernel)
        op = torch._C._nn._upsample_bilinear2d_aa if antialias else torch._C._nn.upsample_bilinear2d
        return op(x, size, True, None, None, out=out)  # type: ignore[call-arg]  # torch's stub lacks the out= overload
    else:
        y = F.interpolate(x, size, mode="bilinear", align_corners=True, antialias=antialias)
    return y if out is None else out.copy_(y)


def splice_images(
    images: torch.Tensor, group: SpliceGroup, antialias: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``group.n`` mixed images of one group, (n, C, H, W); written into ``out`` if given.

    Every source is resized to the cell size once (into one buffer that ends with a zero
    image, which dropped cells copy), then the cells are gathered straight into the output
    by one row ``index_select``: no other temporaries.
    """
    return _splice(images, group, antialias, out, None)


def _splice(
    images: torch.Tensor, group: SpliceGroup, antialias: bool, out: torch.Tensor | None, scratch: _Scratch | None
) -> torch.Tensor:
    B, C, H, W = images.shape
    rows, cols, n = group.rows, group.cols, group.n
    ch, cw = H // rows, W // cols
    if ch < 1 or cw < 1:
        raise ValueError(f"grid {rows}x{cols} does not fit images of {H}x{W} pixels (cells would be empty)")
    if out is None:
        out = images.new_empty((n, C, H, W))
    if n == 0:
        return out
    small, cell_src = _cell_sources(images, group, (ch, cw), antialias, scratch)
    exact = rows * ch == H and cols * cw == W
    # Where the cells go: ``out`` itself, or (sizes not divisible by the grid) a spliced grid
    # of (rows*ch, cols*cw) pixels that is resized back to H x W afterwards.
    direct = exact and out.is_contiguous()
    grid = out if direct else _Scratch.take(scratch, "grid", (n, C, rows * ch, cols * cw), images)
    _gather_cells(small, cell_src, rows, cols, grid)
    if direct:
        return out
    if exact:
        out.copy_(grid)
    elif out.is_contiguous() and not _needs_grad(grid):
        torch._C._nn.upsample_bilinear2d(grid, (H, W), True, None, None, out=out)  # type: ignore[call-arg]  # as above
    else:
        out.copy_(F.interpolate(grid, (H, W), mode="bilinear", align_corners=True))
    return out


class _Scratch:
    """Scratch tensors a SpliceMix reuses from call to call (per thread, CPU only).

    The resized sources and the spliced grid are megabytes each; freed, glibc hands such
    blocks back to the OS, and touching fresh pages on the next call costs about as much as
    the splice itself. On a GPU the caching allocator already reuses memory.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @staticmethod
    def take(scratch: _Scratch | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised ``like``-typed tensor of ``shape`` (a view of a reused buffer)."""
        if scratch is None or like.device.type != "cpu" or _needs_grad(like):
            return like.new_empty(shape)
        bufs: dict[tuple[str, torch.dtype], torch.Tensor] = scratch._local.__dict__.setdefault("bufs", {})
        numel = math.prod(shape)
        buf = bufs.get((name, like.dtype))
        if buf is None or buf.numel() < numel:
            buf = bufs[(name, like.dtype)] = like.new_empty(numel)
        return buf[:numel].view(shape)


def _needs_grad(x: torch.Tensor) -> bool:
    return x.requires_grad and torch.is_grad_enabled()


def _cell_sources(
    images: torch.Tensor, group: SpliceGroup, size: tuple[int, int], antialias: bool, scratch: _Scratch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources resized to the cell size plus, if any cell is dropped, one zero image:
    (S [+ 1], C, ch, cw); and each cell's row in it, (n, cells); dropped cells point at the
    zero image (row S).

    A plan that keeps about every image of the batch resizes the whole batch once; a smaller
    plan gathers only its kept sources (each distinct image once). Dropped cells are never
    resized.
    """
    B, C = images.shape[:2]
    sources, dropped = group.sources, group.dropped
    if dropped.device != sources.device:
        dropped = dropped.to(sources.device)
    keep = ~dropped
    if int(keep.sum()) >= B:
        picked, S = images, B
        cell_src = sources.masked_fill(dropped, S)
    else:
        used, inverse = torch.unique(sources[keep], return_inverse=True)
        picked, S = images.index_select(0, used.to(images.device, non_blocking=True)), used.numel()
        cell_src = torch.full_like(sources, S)
        cell_src[keep] = inverse
    any_dropped = bool(dropped.any())
    small = _Scratch.take(scratch, "small", (S + any_dropped, C, *size), images)
    _resize(picked, size, antialias, out=small[:S])
    if any_dropped:
        small[S].zero_()
    return small, cell_src


def _gather_cells(small: torch.Tensor, cell_src: torch.Tensor, rows: int, cols: int, grid: torch.Tensor) -> None:
    """Splice: ``grid[m, :, i*ch:(i+1)*ch, j*cw:(j+1)*cw] = small[cell_src[m, i*cols + j]]``.

    ``grid`` is a contiguous (n, C, rows*ch, cols*cw) tensor. Seen as rows of ``cw`` pixels,
    both the grid and ``small`` (S, C, ch, cw) are plain matrices, and the splice is one
    row gather: a single ``index_select`` (a memcpy per row, one parallel loop on the CPU,
    one kernel on a GPU), written straight into the grid.
    """
    n, C = grid.shape[:2]
    ch, cw = small.shape[-2:]
    device = small.device
    src = cell_src.to(device, non_blocking=True).view(n, 1, rows, 1, cols)
    channel = torch.arange(C, device=device).view(1, C, 1, 1, 1)
    line = torch.arange(ch, device=device).view(1, 1, 1, ch, 1)
    # grid row (m, c, i, y, j) <- small row (cell_src[m, i, j], c, y)
    index = ((src * C + channel) * ch + line).view(-1)
    lines = small.view(-1, cw)
    if _needs_grad(small):
        grid.view(-1, cw).copy_(lines.index_select(0, index))
    else:
        torch.index_select(lines, 0, index, out=grid.view(-1, cw))


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
    element-wise max over the kept sources. With an empty plan and no buffers the inputs are
    returned as they are.

    ``out`` / ``targets_out`` are optional preallocated buffers with *at least* B + B' rows
    (e.g. ``SpliceMix.max_mixed(B)`` rows reserved after the batch by
    :class:`splicemix.SpliceCollate`); the results are their first B + B' rows (views), and
    rows beyond those are left untouched. When ``images`` already is ``out[:B]`` (same
    memory) the regular batch is not copied; likewise for ``targets``.
    """
    check_batch(images, targets)
    _check_plan(plan, images.shape[0])
    return _apply(images, targets, plan, antialias, out, targets_out)


def _apply(
    images: torch.Tensor,
    targets: torch.Tensor,
    plan: SplicePlan,
    antialias: bool,
    out: torch.Tensor | None,
    targets_out: torch.Tensor | None,
    scratch: _Scratch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """apply_plan without the input checks (for plans the mixer drew for this very batch)."""
    B = images.shape[0]
    total = B + plan.num_mixed
    if out is None and targets_out is None and plan.num_mixed == 0:
        return images, targets
    out = _buffer(out, images, total, "out")
    targets_out = _buffer(targets_out, targets, total, "targets_out")
    if not _same_view(images, out[:B]):
        out[:B].copy_(images)
    if not _same_view(targets, targets_out[:B]):
        targets_out[:B].copy_(targets)
    start = B
    for g in plan.groups:
        if g.n == 0:
            continue
        _splice(images, g, antialias, out[start : start + g.n], scratch)
        targets_out[start : start + g.n] = _mixed_targets(targets, g)
        start += g.n
    return out, targets_out


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` are the same elements of the same memory (nothing to copy)."""
    return a.device == b.device and a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and a.shape == b.shape


def _buffer(buf: torch.Tensor | None, like: torch.Tensor, total: int, name: str) -> torch.Tensor:
    """``buf[:total]`` (``buf`` may have more rows than needed), or a new (total, ...) tensor."""
    shape = (total, *like.shape[1:])
    if buf is None:
        return like.new_empty(shape)
    if (
        not isinstance(buf, torch.Tensor)
        or buf.dim() != len(shape)
        or buf.shape[0] < total
        or tuple(buf.shape[1:]) != shape[1:]
        or buf.dtype != like.dtype
        or buf.device != like.device
    ):
        got = f"{buf.dtype} {tuple(buf.shape)} on {buf.device}" if isinstance(buf, torch.Tensor) else type(buf).__name__
        raise ValueError(
            f"{name} must be a {like.dtype} tensor of shape {shape} on {like.device} "
            f"(or with more than {total} rows; only the first {total} are written), got {got}"
        )
    return buf if buf.shape[0] == total else buf[:total]


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    raw = [total * w for w in weights]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _check_ratio(ratio: float | str) -> float | str:
    """``mixed_ratio`` as given: a finite number >= 0, or ``"paper"``."""
    if isinstance(ratio, str):
        if ratio != "paper":
            raise ValueError(f"mixed_ratio must be a number >= 0 or 'paper', got {ratio!r}")
    elif isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 <= ratio < float("inf")):
        raise ValueError(f"mixed_ratio must be a number >= 0 or 'paper', got {ratio!r}")
    return ratio


def _check_counts(counts: Sequence[int], specs: Sequence[GridSpec]) -> list[int]:
    """``counts`` as a list: one integer >= 0 per grid."""
    counts = list(counts)
    if len(counts) != len(specs) or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError(
            f"counts must give one integer >= 0 per grid ({len(specs)} grids: "
            f"{', '.join(map(str, specs))}), got {counts!r}"
        )
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

    On the CPU a mixer keeps its scratch memory (the resized sources and, for grids that do
    not divide the image, the spliced grid: about B * C * H * W / cells + B' * C * H * W
    elements) from call to call, per thread; copies and pickles of it start without.
    Pass ``out`` / ``targets_out`` buffers with at least B + B' rows (see
    :class:`splicemix.SpliceCollate`) to skip the copy of the regular batch.
    """

    def __init__(
        self,
        grids: GridLike | Sequence[GridLike] | Mapping[GridLike, float] = "default",
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
        preset: dict[str, Any] = {}
        self.preset: str | None = None
        if isinstance(grids, str) and grids.strip().lower() in PRESETS:
            self.preset = grids.strip().lower()
            preset = PRESETS[self.preset]
            grids = preset["grids"]
        self.specs, self.weights = parse_grids(grids)
        self.mixed_ratio = _check_ratio(
            mixed_ratio if mixed_ratio is not None else preset.get("mixed_ratio", DEFAULT_MIXED_RATIO)
        )
        if grid_sampling not in ("batch", "split"):
            raise ValueError(f"grid_sampling must be 'batch' or 'split', got {grid_sampling!r}")
        self.counts = None if counts is None else _check_counts(counts, self.specs)
        if self.counts is not None:
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
        self._scratch = _Scratch()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_scratch", None)  # per-thread scratch memory: neither copied nor pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._scratch = _Scratch()

    # -- sampling ---------------------------------------------------------------------------
    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def _num_mixed(self, spec: GridSpec, batch_size: int, share: float, drop: int) -> int:
        if isinstance(self.mixed_ratio, str):  # "paper"
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
            chosen: list[tuple[GridSpec, float, int | None]] = [(self.specs[k], 1.0, None)]
        else:
            chosen = [
                (s, w, None if self.counts is None else self.counts[i])
                for i, (s, w) in enumerate(zip(self.specs, self.weights, strict=True))
                if w > 0 or self.counts
            ]
        groups: list[SpliceGroup] = []
        # In split mode with a ratio, B' is shared out by weight with largest remainders.
        if self.grid_sampling == "split" and self.counts is None and not isinstance(self.mixed_ratio, str):
            total = math.floor(self.mixed_ratio * batch_size + 1e-9)
            shares = _largest_remainder(total, [w for _, w, _ in chosen])
            chosen = [(s, w, c) for (s, w, _), c in zip(chosen, shares, strict=True)]
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
        images_out, targets_out = _apply(images, targets, plan, self.antialias, out, targets_out, self._scratch)
        return images_out, targets_out, plan

    def max_mixed(self, batch_size: int) -> int:
        """The largest B' this mixer can append to a batch of ``batch_size`` (to size buffers)."""
        if self.counts is not None:
            return sum(self.counts)
        if not isinstance(self.mixed_ratio, str):  # not "paper"
            return math.floor(self.mixed_ratio * batch_size + 1e-9)
        per: list[int] = []
        for spec, weight in zip(self.specs, self.weights, strict=True):
            # the paper's B' grows with the drop count: take the most drops this mixer can draw
            most = spec.drop or (min(spec.cells - 1, self.max_drop or spec.cells) if self.drop_prob else 0)
            share = 1.0 if self.grid_sampling == "batch" else weight
            per.append(self._num_mixed(spec, batch_size, share, most))
        return sum(per) if self.grid_sampling == "split" else max(per)

    def __repr__(self) -> str:
        grids = ", ".join(f"{s}: {w:.2g}" for s, w in zip(self.specs, self.weights, strict=True))
        ratio = self.mixed_ratio if self.counts is None else f"counts={self.counts}"
        return (
            f"SpliceMix(grids={{{grids}}}, mixed_ratio={ratio}, grid_sampling={self.grid_sampling!r}, "
            f"drop_prob={self.drop_prob}, asymmetric={self.asymmetric}, prob={self.prob}, antialias={self.antialias})"
        )
