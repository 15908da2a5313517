"""MixUp and CutMix for multi-hot targets: the baselines of the paper's comparison table.

Each mixes a batch *in place*: image ``i`` with image ``i - 1`` (the batch rolled by one),
``lam ~ Beta(alpha, alpha)``, and the targets by the same weight,
``y = lam * y + (1 - lam) * y_rolled`` (multi-hot targets stay in [0, 1]). CutMix pastes a box of
the partner image instead of blending, and ``lam`` becomes the area the image keeps. No image is
appended (``max_mixed(B) == 0``). As :class:`splicemix.SpliceMix`, in two halves:
``sample_plan(B, H, W)`` draws a :class:`PairPlan` from an explicit ``torch.Generator``, and
:func:`apply_pair_plan` executes it deterministically on whatever device the batch is on::

    mixer = CutMix(alpha=1.0, generator=torch.Generator().manual_seed(0))
    images, targets, plan = mixer(images, targets)    # still B images; targets mixed by area

What comes from ``torchvision.transforms.v2.MixUp`` / ``CutMix`` (0.29): the pairing (roll by
one), the ``Beta(alpha, alpha)`` of ``torch.distributions`` with the same float32 parameters,
CutMix's box (a uniform centre, half-sides ``int(0.5 * sqrt(1 - lam) * W)`` and ``... * H``,
clipped to the image) and its area-adjusted lambda, and the arithmetic of the mixing, in the
same order, so the outputs are bit-identical to theirs for the same draws
(tests/test_baselines_mixing.py). Their ``forward`` cannot be called: ``make_params`` draws from torch's
global RNG (the trainer derives every random draw of an epoch from ``(seed, epoch, rank)``
through its own generator, so that a resumed run continues exactly), it allocates new
tensors (the trainer mixes into the loader's buffer) and it has no ``prob``. And
``Beta.sample()`` takes no generator, so the draw calls the sampler it runs,
``torch._sample_dirichlet`` over ``(alpha, alpha)``, with ours: the same values as
``Beta.sample()`` from a global RNG seeded alike (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .mixing import _buffer, _same_view, check_batch

__all__ = ["MixUp", "CutMix", "PairPlan", "apply_pair_plan"]


@dataclass(frozen=True)
class PairPlan:
    """One MixUp / CutMix draw: image ``i`` is mixed with image ``i - shift`` (mod B).

    Attributes:
        lam: the weight of each image's own pixels and labels (1.0: the batch is not mixed).
            For CutMix, the fraction of the image outside the pasted box.
        box: CutMix's ``(x1, y1, x2, y2)``, pixels ``[y1:y2, x1:x2]`` pasted from the partner;
            ``None`` for MixUp (the images are blended by ``lam``).
        shift: the pairing: the batch rolled by ``shift`` (1, torchvision's).
        batch_size: the batch the plan was drawn for (``None``: not checked).
    """

    lam: float = 1.0
    box: tuple[int, int, int, int] | None = None
    shift: int = 1
    batch_size: int | None = None

    @property
    def num_mixed(self) -> int:
        """Images appended to the batch: none (MixUp and CutMix mix in place)."""
        return 0


def _check_plan(plan: PairPlan, images: torch.Tensor) -> None:
    if not isinstance(plan, PairPlan):
        raise ValueError(f"plan must be a PairPlan (from MixUp / CutMix), got {type(plan).__name__}")
    B, _, H, W = images.shape
    if plan.batch_size is not None and plan.batch_size != B:
        raise ValueError(f"the plan was drawn for a batch of {plan.batch_size} images, got {B}")
    if not 0.0 <= plan.lam <= 1.0:
        raise ValueError(f"plan.lam must be in [0, 1], got {plan.lam!r}")
    if plan.box is not None:
        x1, y1, x2, y2 = plan.box
        if not (0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H):
            raise ValueError(f"plan.box {plan.box} must satisfy 0 <= x1 <= x2 <= {W} and 0 <= y1 <= y2 <= {H}")


def apply_pair_plan(
    images: torch.Tensor,
    targets: torch.Tensor,
    plan: PairPlan,
    *,
    out: torch.Tensor | None = None,
    targets_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Execute ``plan``: the B mixed images and their targets (float).

    ``out`` / ``targets_out``: optional buffers with at least B rows (the first B are
    returned, as views); ``images`` may be ``out[:B]`` itself (mixed in place). Without
    buffers the inputs are left as they are (new tensors are returned), and an unmixed plan
    returns the inputs themselves.
    """
    check_batch(images, targets)
    _check_plan(plan, images)
    return _apply(images, targets, plan, out, targets_out)


def _apply(
    images: torch.Tensor,
    targets: torch.Tensor,
    plan: PairPlan,
    out: torch.Tensor | None,
    targets_out: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    B = images.shape[0]
    if not targets.is_floating_point():
        targets = targets.float()  # fractions of labels (torchvision converts alike)
    if out is None and targets_out is None and plan.lam == 1.0:
        return images, targets
    out = _buffer(out, images, B, "out")
    targets_out = _buffer(targets_out, targets, B, "targets_out")
    if plan.box is None:
        _blend(images, plan.lam, plan.shift, out)
    else:
        x1, y1, x2, y2 = plan.box
        patch = images[..., y1:y2, x1:x2].roll(plan.shift, 0)  # a copy: out may be images itself
        if not _same_view(images, out):
            out.copy_(images)
        out[..., y1:y2, x1:x2] = patch
    _blend(targets, plan.lam, plan.shift, targets_out)
    return out, targets_out


def _blend(x: torch.Tensor, lam: float, shift: int, out: torch.Tensor) -> None:
    """``out = x * lam + x.roll(shift, 0) * (1 - lam)`` (torchvision's products; ``out`` may be ``x``)."""
    if lam == 1.0:
        if not _same_view(x, out):
            out.copy_(x)
        return
    rolled = x.roll(shift, 0).mul_(1.0 - lam)  # a copy, taken before out (maybe x) changes
    torch.mul(x, lam, out=out)
    out.add_(rolled)


class _PairMix:
    """What MixUp and CutMix share: the checks, the Beta draw, ``prob`` and the call."""

    def __init__(self, *, alpha: float = 1.0, prob: float = 1.0, generator: torch.Generator | None = None) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0 < alpha < math.inf):
            raise ValueError(f"alpha must be a finite number > 0 (lambda ~ Beta(alpha, alpha)), got {alpha!r}")
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be a number in [0, 1] (the chance a batch is mixed), got {prob!r}")
        self.alpha, self.prob, self.generator = float(alpha), float(prob), generator
        # torchvision's Beta(tensor([alpha]), tensor([alpha])); its Dirichlet's parameters, (1, 2) float32
        beta = torch.distributions.Beta(torch.tensor([self.alpha]), torch.tensor([self.alpha]))
        self._concentration = torch.stack([beta.concentration1, beta.concentration0], -1)

    def _lam(self) -> float:
        """``Beta(alpha, alpha).sample()``, drawn from ``self.generator`` (Beta.sample takes none)."""
        return float(torch._sample_dirichlet(self._concentration, generator=self.generator)[0, 0])

    def sample_plan(self, batch_size: int, height: int, width: int) -> PairPlan:
        """Draw the random half: whether the batch is mixed (``prob``), lambda and (CutMix) the box."""
        for name, v in (("batch_size", batch_size), ("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.prob < 1.0 and float(torch.rand((), generator=self.generator)) >= self.prob:
            return PairPlan(batch_size=batch_size)
        return self._draw(batch_size, height, width)

    def _draw(self, batch_size: int, height: int, width: int) -> PairPlan:
        raise NotImplementedError

    def __call__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        out: torch.Tensor | None = None,
        targets_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, PairPlan]:
        check_batch(images, targets)
        B, _, H, W = images.shape
        plan = self.sample_plan(B, H, W)
        images_out, targets_out = _apply(images, targets, plan, out, targets_out)
        return images_out, targets_out, plan

    def max_mixed(self, batch_size: int) -> int:
        """Images appended to a batch (to size buffers): none, the batch is mixed in place."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, prob={self.prob})"


class MixUp(_PairMix):
    """MixUp (arXiv 1710.09412) for multi-hot targets, in place, as torchvision's pairing.

    ``mixer(images, targets)`` takes a float batch (B, C, H, W) and targets (B, K) on any
    device and returns ``(images, targets, plan)``: every image blended with its neighbour,
    ``lam * x[i] + (1 - lam) * x[i - 1]``, and the targets alike (float, in [0, 1]).

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)`` (1.0: uniform, torchvision's default).
        prob: probability that a batch is mixed at all (else it is returned unmixed).
        generator: ``torch.Generator`` for the plan (CPU); ``None`` uses torch's global RNG.
    """

    def _draw(self, batch_size: int, height: int, width: int) -> PairPlan:
        return PairPlan(lam=self._lam(), batch_size=batch_size)


class CutMix(_PairMix):
    """CutMix (arXiv 1905.04899) for multi-hot targets, in place, as torchvision's.

    Every image gets a box of its neighbour's pixels (the same box for the batch): side ratios
    ``sqrt(1 - lam)`` around a uniform centre, clipped to the image; the targets are mixed by
    the area kept, ``lam = 1 - box area / (H * W)``. Arguments as :class:`MixUp`.
    """

    def _draw(self, batch_size: int, height: int, width: int) -> PairPlan:
        lam = self._lam()
        r_x = int(torch.randint(width, (1,), generator=self.generator))
        r_y = int(torch.randint(height, (1,), generator=self.generator))
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * width), int(r * height)
        x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
        x2, y2 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
        lam_adjusted = float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))
        return PairPlan(lam=lam_adjusted, box=(x1, y1, x2, y2), batch_size=batch_size)
