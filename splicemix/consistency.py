"""SpliceMix-CL: consistency between the cells of a mixed image and their source images.

The backbone's feature map of each mixed image is cut into the same ``rows x cols`` grid as
the image (resized first when the map does not divide evenly); each sub-map goes through the
same global pooling and classifier as a whole image, which gives one prediction per cell.
The cell's prediction is trained towards the sigmoid of the prediction the model made for
that cell's source as a regular image (multi-label soft-margin loss); dropped cells are
masked out; the regular prediction is detached by default (the authors' MS-COCO setting).

Two variants (``variant``, the config's ``mix.cl_variant``; :data:`CL_VARIANTS`):

- ``"authors"`` (the default, and what studies use): as the authors' ``models/SpliceMix_CL.py``.
  A dropped cell adds nothing to the loss but counts in its mean (their code fills its logits
  and target logits with -1e3, which gives a loss of 0), so the loss is averaged over every
  cell of the mixed images; a map that the grid does not divide is resized by rounding DOWN,
  to ``(h // rows * rows, w // cols * cols)`` (an 8x8 map and a 2x3 grid: 8x6).
- ``"kept_cells"``: the mean over the kept cells only, and a non-dividing map resized by
  rounding UP, to ``(rows * ceil(h / rows), cols * ceil(w / cols))`` (8x9). Its reason: the
  loss is then the mean consistency of the cells that show an image, whatever the drop rate
  (with the authors' mean, drops scale the CL term down by the kept fraction, so ``drop_prob``
  and ``cl_weight`` interact), and rounding up never discards feature rows or columns. This
  project computed SpliceMix-CL this way before it matched the authors.

Either way the resize is bilinear with ``align_corners=True``; when rounding down would leave
a cell without a row or column (a map smaller than the grid), it rounds up.

Model-agnostic: it needs only the feature maps of the whole SpliceMixed batch (the ``B``
regular images followed by the ``B'`` mixed ones, in plan order) and two callables,
``pool`` ((n, C, h, w) -> (n, C)) and ``classifier`` ((n, C) -> (n, K))::

    logits, fmap = model.forward_features(mixed_batch)
    loss = F.multilabel_soft_margin_loss(logits, mixed_targets)
    loss = loss + consistency_loss(fmap, plan, model.pool, model.head, weight=1.0,
                                   regular_logits=logits)

For a Vision Transformer, lay its patch tokens out as a map first with :func:`tokens_to_map`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .plan import SplicePlan

__all__ = [
    "CL_VARIANTS",
    "ConsistencyLoss",
    "ConsistencyOutput",
    "consistency_loss",
    "consistency_predictions",
    "split_cells",
    "split_cells_by_group",
    "resized_map_size",
    "tokens_to_map",
]


CL_VARIANTS = ("authors", "kept_cells")
"""The ways to compute SpliceMix-CL (see the module docstring); the first is the default."""


def _check_variant(variant: str) -> None:
    if variant not in CL_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(CL_VARIANTS)}, got {variant!r}")


def resized_map_size(h: int, w: int, rows: int, cols: int, variant: str = "authors") -> tuple[int, int]:
    """The (h, w) a feature map is resized to before it is cut into ``rows x cols`` cells
    (unchanged when the grid divides it): rounded down for ``"authors"`` (rounded up when that
    leaves no row or column per cell), up for ``"kept_cells"``."""
    _check_variant(variant)
    if variant == "authors" and h >= rows and w >= cols:
        return h // rows * rows, w // cols * cols
    return rows * math.ceil(h / rows), cols * math.ceil(w / cols)


class ConsistencyOutput(NamedTuple):
    """Per-cell predictions of SpliceMix-CL (M = number of cells of all mixed images).

    ``cell_logits`` (M, K): prediction of each cell's sub-map; ``target_logits`` (M, K): the
    regular prediction of each cell's source (detached if asked); ``mask`` (M,) bool: True
    for cells that were not dropped. Cells are ordered group, image, row-major cell.
    """

    cell_logits: torch.Tensor
    target_logits: torch.Tensor
    mask: torch.Tensor


def _check_map(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a 4-D (N, C, h, w) feature map, got {shape}")


def _group_cells(f: torch.Tensor, rows: int, cols: int, variant: str) -> torch.Tensor:
    """(n, C, h, w) -> (n*rows*cols, C, ch, cw), cells in image, row-major order."""
    n, c, h, w = f.shape
    h2, w2 = resized_map_size(h, w, rows, cols, variant)
    if (h2, w2) != (h, w):
        f = F.interpolate(f, size=(h2, w2), mode="bilinear", align_corners=True)
        h, w = h2, w2
    ch, cw = h // rows, w // cols
    f = f.reshape(n, c, rows, ch, cols, cw).permute(0, 2, 4, 1, 3, 5)
    return f.reshape(n * rows * cols, c, ch, cw)


def split_cells_by_group(fmap_mixed: torch.Tensor, plan: SplicePlan, variant: str = "authors") -> list[torch.Tensor]:
    """Cut each mixed image's map into its grid; one ``(n*rows*cols, C, ch, cw)`` tensor per group.

    ``fmap_mixed`` is (B', C, h, w), the maps of the mixed images in plan order. A group whose
    grid does not divide (h, w) is resized bilinearly (align_corners=True) to
    :func:`resized_map_size` first (``variant``). Groups can have different cell sizes.
    """
    _check_map(fmap_mixed, "fmap_mixed")
    if fmap_mixed.shape[0] != plan.num_mixed:
        raise ValueError(f"fmap_mixed has {fmap_mixed.shape[0]} maps but the plan has {plan.num_mixed} mixed images")
    return [
        _group_cells(fmap_mixed[o : o + g.n], g.rows, g.cols, variant)
        for g, o in zip(plan.groups, plan.offsets(), strict=True)
    ]


def split_cells(fmap_mixed: torch.Tensor, plan: SplicePlan, variant: str = "authors") -> torch.Tensor:
    """Cut each mixed image's map into its grid: (B', C, h, w) -> (M, C, ch, cw).

    M = sum over groups of n*rows*cols; cells are ordered group, image, row-major cell. All
    groups must give the same cell size (use :func:`split_cells_by_group` otherwise, e.g. a
    plan mixing 1x2 and 2x2 grids).
    """
    parts = split_cells_by_group(fmap_mixed, plan, variant)
    if not parts:
        c = fmap_mixed.shape[1]
        return fmap_mixed.new_zeros((0, c, fmap_mixed.shape[2], fmap_mixed.shape[3]))
    sizes = {tuple(p.shape[-2:]) for p in parts}
    if len(sizes) > 1:
        raise ValueError(
            f"the plan's groups give cells of different sizes {sorted(sizes)}; "
            "use split_cells_by_group to get one tensor per group"
        )
    return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]


def _regular_size(features: torch.Tensor, plan: SplicePlan) -> int:
    _check_map(features, "features")
    n = features.shape[0]
    b = plan.batch_size if plan.batch_size is not None else n - plan.num_mixed
    if b < 0 or n != b + plan.num_mixed:
        raise ValueError(
            f"features has {n} maps but the plan expects B + B' = {plan.batch_size} regular + "
            f"{plan.num_mixed} mixed = {'?' if plan.batch_size is None else plan.batch_size + plan.num_mixed} "
            "(the whole SpliceMixed batch, regular images first)"
        )
    for gi, g in enumerate(plan.groups):
        if g.sources.numel() and (int(g.sources.max()) >= b or int(g.sources.min()) < 0):
            raise ValueError(
                f"plan group {gi} ({g.rows}x{g.cols}) has source index "
                f"{int(g.sources.max()) if int(g.sources.max()) >= b else int(g.sources.min())} "
                f"outside the regular batch of size {b}"
            )
    return b


def consistency_predictions(
    features: torch.Tensor,
    plan: SplicePlan,
    pool: Callable[[torch.Tensor], torch.Tensor],
    classifier: Callable[[torch.Tensor], torch.Tensor],
    regular_logits: torch.Tensor | None = None,
    detach: bool = True,
    variant: str = "authors",
) -> ConsistencyOutput:
    """Per-cell predictions of the mixed images and the regular predictions of their sources.

    ``features``: (B + B', C, h, w) feature maps of the whole SpliceMixed batch, B =
    ``plan.batch_size`` (or ``features.shape[0] - plan.num_mixed`` when that is None).
    ``regular_logits``: the model's logits for the regular images, (B, K), or for the whole
    batch, (B + B', K) (the first B rows are used); computed as
    ``classifier(pool(features[:B]))`` when not given. ``detach`` detaches them. ``variant``
    (:data:`CL_VARIANTS`) sets how a map the grid does not divide is resized.
    """
    _check_variant(variant)
    b = _regular_size(features, plan)
    if regular_logits is None:
        regular_logits = classifier(pool(features[:b]))
    else:
        if regular_logits.dim() != 2 or regular_logits.shape[0] not in (b, b + plan.num_mixed):
            raise ValueError(
                f"regular_logits must have shape (B, K) or (B + B', K) with B = {b}, "
                f"B' = {plan.num_mixed}, got {tuple(regular_logits.shape)}"
            )
        regular_logits = regular_logits[:b]
    if detach:
        regular_logits = regular_logits.detach()

    k = regular_logits.shape[1]
    if plan.is_empty:
        empty = regular_logits.new_zeros((0, k))
        return ConsistencyOutput(empty, empty, torch.zeros(0, dtype=torch.bool, device=features.device))

    cells = split_cells_by_group(features[b:], plan, variant)
    cell_logits = torch.cat([classifier(pool(c)) for c in cells], dim=0)
    sources = torch.cat([g.sources.reshape(-1) for g in plan.groups]).to(regular_logits.device)
    target_logits = regular_logits.index_select(0, sources)
    mask = torch.cat([~g.dropped.reshape(-1) for g in plan.groups]).to(cell_logits.device)
    if cell_logits.shape != target_logits.shape:
        raise ValueError(
            f"classifier gave cell logits of shape {tuple(cell_logits.shape)}, expected {tuple(target_logits.shape)}"
        )
    return ConsistencyOutput(cell_logits, target_logits, mask)


def consistency_loss(
    features: torch.Tensor,
    plan: SplicePlan,
    pool: Callable[[torch.Tensor], torch.Tensor],
    classifier: Callable[[torch.Tensor], torch.Tensor],
    weight: float = 1.0,
    regular_logits: torch.Tensor | None = None,
    detach: bool = True,
    variant: str = "authors",
) -> torch.Tensor:
    """``weight`` x the mean of the multi-label soft-margin loss between each kept cell's logits
    and the sigmoid of its source's regular logits; a dropped cell's loss is 0.

    The mean is over every cell of the mixed images (``variant="authors"``) or over the kept
    cells (``"kept_cells"``); see the module docstring. A zero scalar (still connected to
    ``features`` for autograd) when the plan is empty or every cell is dropped. Arguments as
    in :func:`consistency_predictions`.
    """
    out = consistency_predictions(features, plan, pool, classifier, regular_logits, detach, variant)
    if not bool(out.mask.any()):
        zero = features.sum() * 0.0
        if out.cell_logits.numel():
            zero = zero + out.cell_logits.sum() * 0.0
        return zero
    cell = out.cell_logits[out.mask]
    target = torch.sigmoid(out.target_logits[out.mask].to(cell.dtype))
    per_cell = F.binary_cross_entropy_with_logits(cell, target, reduction="none").mean(dim=1)
    cells = out.mask.numel() if variant == "authors" else per_cell.numel()
    return per_cell.sum() / cells * weight


class ConsistencyLoss(nn.Module):
    """:func:`consistency_loss` with its ``weight``, ``detach`` and ``variant`` fixed."""

    def __init__(self, weight: float = 1.0, detach: bool = True, variant: str = "authors") -> None:
        super().__init__()
        _check_variant(variant)
        self.weight = float(weight)
        self.detach = bool(detach)
        self.variant = variant

    def forward(
        self,
        features: torch.Tensor,
        plan: SplicePlan,
        pool: Callable[[torch.Tensor], torch.Tensor],
        classifier: Callable[[torch.Tensor], torch.Tensor],
        regular_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return consistency_loss(
            features,
            plan,
            pool,
            classifier,
            self.weight,
            regular_logits=regular_logits,
            detach=self.detach,
            variant=self.variant,
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, detach={self.detach}, variant={self.variant!r}"


def tokens_to_map(tokens: torch.Tensor, h: int | None = None, w: int | None = None) -> torch.Tensor:
    """ViT patch tokens (N, L, C), class token excluded, -> (N, C, h, w) map (square by default)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be (N, L, C) patch tokens, got {shape}")
    n, length, c = tokens.shape
    if h is not None and w is not None:
        pass
    elif w is not None:
        h = length // w if w else 0
    elif h is not None:
        w = length // h if h else 0
    else:
        h = w = math.isqrt(length)
    if h * w != length or h < 1:
        raise ValueError(
            f"cannot lay {length} tokens out as a {h}x{w} map"
            + (" (not a square number; pass h and w, and drop the class token)" if h == w else "")
        )
    return tokens.transpose(1, 2).reshape(n, c, h, w)
