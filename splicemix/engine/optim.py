"""The optimiser, its learning-rate schedule and the gradient scaler, as one :class:`Optimization`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from splicemix.config import TrainConfig

from .budget import RunLength
from .dist import DistContext

__all__ = ["HEAD_GROUP", "Optimization", "build_optimizer", "lr_lambda"]

HEAD_GROUP = 1  #: the head's parameter group; its learning rate is the one reported


def lr_lambda(cfg: TrainConfig, iters_per_epoch: int, length: RunLength | None = None) -> Callable[[int], float]:
    """The learning-rate factor per iteration: linear warm-up over ``optim.warmup_steps`` (or ``warmup_epochs``), then
    ``optim.schedule`` (step at ``optim.milestones`` by ``optim.gamma``, cosine to 0 at the run's
    end, or constant).

    ``length``: the run's :class:`~splicemix.engine.budget.RunLength` (None: ``train.epochs``
    epochs, or a step budget); the cosine reaches 0 at its last step, or at the end of a seconds
    budget."""
    o = cfg.optim
    length = length if length is not None else RunLength(cfg, iters_per_epoch)
    warm = length.warm
    milestones = list(o.milestones)

    def f(it: int) -> float:
        if it < warm:
            return (it + 1) / warm
        if o.schedule == "step":
            epoch = it // iters_per_epoch
            return float(o.gamma ** sum(1 for m in milestones if m <= epoch))
        if o.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * length.decay_progress(it)))
        return 1.0

    return f


def build_optimizer(cfg: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over two groups: the backbone (``lr * optim.backbone_lr_factor``) and the head (``lr``)."""
    o = cfg.optim
    groups = [
        {
            "params": [p for p in net.backbone_parameters() if p.requires_grad],  # type: ignore[operator]
            "lr": o.lr * o.backbone_lr_factor,
            "name": "backbone",
        },
        {
            "params": [p for p in net.head_parameters() if p.requires_grad],  # type: ignore[operator]
            "lr": o.lr,
            "name": "head",
        },
    ]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


@dataclass
class Optimization:
    """The optimiser, its per-iteration schedule and the (float16) gradient scaler."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    grad_clip: float | None = None

    @classmethod
    def build(
        cls, cfg: TrainConfig, net: nn.Module, iters_per_epoch: int, ctx: DistContext, length: RunLength | None = None
    ) -> Optimization:
        """The optimiser and its schedule over ``length`` (see :func:`lr_lambda`)."""
        optimizer = build_optimizer(cfg, net)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, iters_per_epoch, length))
        return cls(optimizer, scheduler, ctx.grad_scaler(), cfg.optim.grad_clip)

    @property
    def lr(self) -> float:
        """The head's current learning rate."""
        return float(self.optimizer.param_groups[HEAD_GROUP]["lr"])

    def step(self, loss: torch.Tensor, params: Iterable[torch.Tensor]) -> float:
        """Backward ``loss``, clip the gradients of ``params`` (``optim.grad_clip``), step; returns the lr used."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.lr
        self.scheduler.step()
        return lr
