"""One epoch of training (:func:`train_one_epoch`), evaluation (:func:`evaluate`) and the epoch's line.

Everything random in an epoch derives from ``(seed, epoch, rank)`` (:func:`seed_epoch`), so a
run resumed after any epoch continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.utils.data import DataLoader, Dataset, Subset

from splicemix.collate import Mixer
from splicemix.config import TrainConfig
from splicemix.consistency import consistency_loss
from splicemix.metrics import mean_average_precision, multilabel_f1
from splicemix.models import MultiLabelNet
from splicemix.plan import SplicePlan
from splicemix.results import (
    CL_LOSS,
    COMMON_PAIRS,
    EPOCH,
    EPOCH_TIME_S,
    EVAL_TIME_S,
    F1_KEYS,
    IMAGES_PER_S,
    LR,
    MAP,
    METHOD,
    RARE_PAIRS,
    REGULAR_IMAGES_PER_S,
    TOP3,
    TRAIN_LOSS,
    TRAIN_TIME_S,
    map_at,
)

from .data import TrainData, corrupt_val_rows
from .dist import DistContext
from .optim import Optimization

__all__ = [
    "TrainingDiverged",
    "StepModule",
    "EpochStats",
    "epoch_seed",
    "seed_all",
    "seed_epoch",
    "train_one_epoch",
    "predict",
    "predict_sets",
    "inference_model",
    "subset_map",
    "evaluate",
    "format_line",
    "progress_enabled",
]


class TrainingDiverged(FloatingPointError):
    """The mean training loss of an epoch is not finite (raised on every rank: the loss is all-reduced)."""

    @classmethod
    def at(cls, epoch: int, loss: float) -> TrainingDiverged:
        """The error for 1-based ``epoch`` whose mean loss is ``loss``."""
        return cls(f"training diverged: the loss of epoch {epoch} is {loss}; lower optim.lr or enable optim.grad_clip")


# --------------------------------------------------------------------------- seeds
def epoch_seed(seed: int, epoch: int, rank: int, stream: int = 0) -> int:
    """A 32-bit seed for ``(seed, epoch, rank, stream)``."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, rank, stream]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int, load_gen: torch.Generator, mix_gen: torch.Generator) -> None:
    """Re-seed everything random in ``epoch``: the global generators, the data order, the mixing."""
    seed_all(epoch_seed(seed, epoch, rank))
    load_gen.manual_seed(epoch_seed(seed, epoch, rank, 1))
    mix_gen.manual_seed(epoch_seed(seed, epoch, rank, 2))


class Batches(Protocol):
    """What an epoch iterates over: a DataLoader (or a wrapper) that knows its length."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


# --------------------------------------------------------------------------- the step
class StepModule(nn.Module):
    """The training forward as one module (what DDP wraps): returns (loss, cls_loss, cl_loss).

    The loss is the multi-label soft-margin loss (BCE with logits, mean over classes) plus, for
    SpliceMix-CL (``cl``), the consistency loss from the same backbone pass.
    """

    def __init__(
        self, net: MultiLabelNet, cl: bool, cl_weight: float, cl_detach: bool, cl_variant: str = "authors"
    ) -> None:
        super().__init__()
        self.net = net
        self.cl, self.cl_weight, self.cl_detach, self.cl_variant = cl, cl_weight, cl_detach, cl_variant

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, plan: SplicePlan | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.cl:
            logits, fmap = self.net.forward_features(images)
        else:
            logits = self.net(images)
        cls_loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
        if self.cl and plan is not None and plan.num_mixed > 0:
            batch = plan.batch_size if plan.batch_size is not None else images.shape[0] - plan.num_mixed
            cl_loss = consistency_loss(
                fmap,
                plan,
                self.net.pool,
                self.net.head,
                weight=self.cl_weight,
                regular_logits=logits[:batch],
                detach=self.cl_detach,
                variant=self.cl_variant,
            ).float()
        else:
            cl_loss = cls_loss.new_zeros(())
        return cls_loss + cl_loss, cls_loss.detach(), cl_loss.detach()


@dataclass
class EpochStats:
    """One epoch of training, summed over the ranks."""

    loss_sum: float
    cl_sum: float
    batches: float
    images: float  #: regular + mixed
    regular: float
    lr: float  #: the head's learning rate of the epoch's last step
    train_time_s: float  #: the slowest rank's

    def metrics(self, epoch: int, method: str) -> dict[str, Any]:
        """The epoch's first metrics (epoch, method, losses, lr) for 1-based ``epoch``;
        :class:`TrainingDiverged` if the loss is not finite."""
        train_loss = self.loss_sum / max(1.0, self.batches)
        if not math.isfinite(train_loss):
            raise TrainingDiverged.at(epoch, train_loss)
        out: dict[str, Any] = {EPOCH: epoch, METHOD: method, TRAIN_LOSS: train_loss}
        if method == "splicemix_cl":
            out[CL_LOSS] = self.cl_sum / max(1.0, self.batches)
        out[LR] = self.lr
        return out

    def timing(self, eval_time_s: float, epoch_time_s: float) -> dict[str, float]:
        """Throughput and wall-clock times of the epoch."""
        t = self.train_time_s
        return {
            IMAGES_PER_S: self.images / t if t > 0 else float("nan"),
            REGULAR_IMAGES_PER_S: self.regular / t if t > 0 else float("nan"),
            TRAIN_TIME_S: t,
            EVAL_TIME_S: eval_time_s,
            EPOCH_TIME_S: epoch_time_s,
        }


def _on_device(
    batch: Any, mixer: Mixer | None, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor, SplicePlan | None, int]:
    """A loader batch on ``device`` as (images, targets, plan, regular images); mixed when there is a mixer.

    The plan is SpliceMix's (what SpliceMix-CL reads), else None (MixUp / CutMix mix in place)."""
    if mixer is not None:
        # a SpliceBatch: move its buffers as a whole, mix into the reserved rows
        batch = batch.to(device, non_blocking=True)
        regular = batch.batch_size
        images, targets, mixed_plan = batch.mix(mixer)
        plan = mixed_plan if isinstance(mixed_plan, SplicePlan) else None
    else:
        images, targets = batch
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True).float()
        regular, plan = images.shape[0], None
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets, plan, regular


def _with_progress(batches: Batches, desc: str | None) -> Iterable[Any]:
    if desc is None:
        return batches
    from tqdm import tqdm

    return tqdm(
        batches,
        total=len(batches),
        file=sys.stderr,
        leave=False,
        desc=desc,
        dynamic_ncols=True,
    )


def train_one_epoch(
    step: nn.Module,
    net: nn.Module,
    batches: Batches,
    opt: Optimization,
    mixer: Mixer | None,
    ctx: DistContext,
    channels_last: bool = False,
    progress: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> EpochStats:
    """One pass over ``batches``: forward ``step`` (``net`` wrapped), backward, optimiser step per batch.

    ``progress``: a progress bar's title, or None for none. ``stop``: asked after every step;
    True ends the epoch there (``train.budget``; it must answer alike on every rank).
    """
    t0 = time.perf_counter()
    step.train()
    sums = torch.zeros(5, dtype=torch.float64, device=ctx.device)  # loss, cl, batches, images, regular
    one = torch.ones((), dtype=torch.float64, device=ctx.device)
    lr = opt.lr
    for batch in _with_progress(batches, progress):
        images, targets, plan, regular = _on_device(batch, mixer, ctx.device, channels_last)
        with ctx.autocast():
            loss, _, cl_loss = step(images, targets, plan)
        lr = opt.step(loss, net.parameters())
        sums += torch.stack(
            [
                loss.detach().double(),
                cl_loss.double(),
                one,
                torch.tensor(float(images.shape[0]), dtype=torch.float64, device=ctx.device),
                torch.tensor(float(regular), dtype=torch.float64, device=ctx.device),
            ]
        )
        if stop is not None and stop():
            break
    ctx.synchronize()
    t_train = time.perf_counter() - t0
    loss_sum, cl_sum, n_batches, n_images, n_regular = ctx.sum_over_ranks(sums).tolist()
    return EpochStats(loss_sum, cl_sum, n_batches, n_images, n_regular, lr, ctx.max_over_ranks(t_train))


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_sets(net: nn.Module, sets: dict[Any, Dataset], cfg: TrainConfig, ctx: DistContext) -> dict[Any, np.ndarray]:
    """Sigmoid scores (N, K) for every set of ``sets`` -- the same N images, e.g. at several
    resolutions -- in one pass: each batch of rows through every set in turn; sharded over ranks
    and gathered. The batches (and so the scores) are those of one pass per set."""
    n = len(next(iter(sets.values())))  # type: ignore[arg-type]
    idx = list(range(ctx.rank, n, ctx.world))
    loaders = [
        DataLoader(
            Subset(ds, idx),
            batch_size=max(1, cfg.train.batch_size * 2),
            shuffle=False,
            num_workers=cfg.data.workers,
            pin_memory=ctx.device.type == "cuda",
        )
        for ds in sets.values()
    ]
    was_training = net.training
    net.eval()
    model, channels_last = inference_model(net, cfg)
    chunks: list[list[torch.Tensor]] = [[] for _ in sets]
    for batches in zip(*loaders, strict=True):
        for out, (images, _) in zip(chunks, batches, strict=True):
            images = images.to(ctx.device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with ctx.autocast():
                logits = model(images)
            out.append(torch.sigmoid(logits.float()).cpu())
    net.train(was_training)
    return {key: _gathered(idx, c, n, ctx) for key, c in zip(sets, chunks, strict=True)}


def inference_model(net: nn.Module, cfg: TrainConfig) -> tuple[nn.Module, bool]:
    """The model evaluation runs (``net`` in eval mode) and whether its inputs go channels-last.

    ``train.eval_fused``: a copy of ``net`` with each BatchNorm folded into the convolution
    before it (``torch.fx``'s ``fuse``), channels-last: about 2x faster on a CPU, scores within
    float rounding of ``net``'s. Else, or when fx cannot trace the model, ``net`` itself.
    """
    if not cfg.train.eval_fused:
        return net, cfg.train.channels_last
    try:
        fused = fuse(net)  # a deep copy: the training model is left as it is
    except (torch.fx.proxy.TraceError, TypeError, NotImplementedError, RuntimeError):
        return net, cfg.train.channels_last
    return fused.to(memory_format=torch.channels_last), True


def _gathered(idx: list[int], chunks: list[torch.Tensor], n: int, ctx: DistContext) -> np.ndarray:
    """This rank's scores of rows ``idx`` (in ``chunks``), gathered into the (n, K) scores of every rank."""
    local = torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)
    if not ctx.distributed:
        return local
    parts = ctx.all_gather_object((idx, local))
    k = next(p[1].shape[1] for p in parts if len(p[0]))
    scores = np.empty((n, k), dtype=np.float32)
    for ids, s in parts:
        if len(ids):
            scores[np.asarray(ids)] = s
    return scores


def predict(net: nn.Module, ds: Dataset, cfg: TrainConfig, ctx: DistContext) -> np.ndarray:
    """Sigmoid scores (N, K) for the whole of ``ds``, sharded over ranks and gathered."""
    return predict_sets(net, {0: ds}, cfg, ctx)[0]


def subset_map(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None) -> float | None:
    """mAP (percent) over the images selected by ``mask``; None if undefined there."""
    if mask.sum() < 2:
        return None
    try:
        return 100.0 * mean_average_precision(scores[mask], targets[mask], None if ignore is None else ignore[mask])
    except ValueError:
        return None


def _ignored(data: TrainData, cfg: TrainConfig, ctx: DistContext) -> np.ndarray | None:
    """The (N, K) labels left out of the metrics: the data set's own, and every row of a corrupt image."""
    ignore = None if data.val_ignore is None else data.val_ignore.numpy()
    corrupt = corrupt_val_rows(data, ctx) if cfg.data.skip_corrupt else []
    if corrupt:  # blank images stood in for them: leave their rows out of every metric
        ignore = np.zeros(data.val_targets.shape, dtype=bool) if ignore is None else ignore.copy()
        ignore[np.asarray(corrupt)] = True
    return ignore


def evaluate(net: nn.Module, data: TrainData, cfg: TrainConfig, ctx: DistContext) -> dict[str, float]:
    """mAP, CP/CR/CF1/OP/OR/OF1 (threshold 0.5, and top-3), the co-occurrence subsets' mAP and the
    mAP at every ``data.eval_sizes`` resolution, in percent (keys of :mod:`splicemix.results`)."""
    every = predict_sets(net, {None: data.val, **data.eval_sets}, cfg, ctx)  # one pass over the images
    scores = every.pop(None)
    targets = data.val_targets.numpy()
    ignore = _ignored(data, cfg, ctx)
    out: dict[str, float] = {MAP: 100.0 * mean_average_precision(scores, targets, ignore)}
    for suffix, top_k in (("", None), (TOP3, 3)):
        f = multilabel_f1(scores, targets, threshold=0.5, top_k=top_k, ignore=ignore)
        for k in F1_KEYS:
            out[k + suffix] = 100.0 * f[k]
    if data.rare_mask is not None:
        # co-occurrence bias: mAP where a pair class appears without its train-time partner
        for key, mask in ((RARE_PAIRS, data.rare_mask), (COMMON_PAIRS, ~data.rare_mask)):
            v = subset_map(scores, targets, mask, ignore)
            if v is not None:
                out[key] = v
    for s, sc in every.items():
        out[map_at(s)] = 100.0 * mean_average_precision(sc, targets, ignore)
    return out


# --------------------------------------------------------------------------- output
def format_line(m: dict[str, Any], epochs: int | str) -> str:
    """The one line printed per epoch."""
    parts = [f"epoch {m[EPOCH]}/{epochs}", f"loss {m[TRAIN_LOSS]:.4f}"]
    if CL_LOSS in m:
        parts.append(f"cl {m[CL_LOSS]:.4f}")
    parts.append(f"lr {m[LR]:.2e}")
    if MAP in m:
        parts.append(f"mAP {m[MAP]:.2f}")
        parts.append(f"CF1 {m['CF1']:.2f} OF1 {m['OF1']:.2f}")
        parts.append(f"top3 CF1 {m['CF1' + TOP3]:.2f} OF1 {m['OF1' + TOP3]:.2f}")
        extra = [f"{k} {v:.2f}" for k, v in m.items() if k.startswith(MAP + "@") or k.startswith(MAP + "_")]
        if extra:
            parts.append(" ".join(extra))
    parts.append(f"{m[IMAGES_PER_S]:.0f} img/s ({m[REGULAR_IMAGES_PER_S]:.0f} regular/s)")
    parts.append(f"{m[EPOCH_TIME_S]:.1f} s")
    return " | ".join(parts)


def progress_enabled(cfg: TrainConfig, rank: int) -> bool:
    """A progress bar: ``train.progress``, rank 0, not under CI, on a terminal."""
    if not cfg.train.progress or rank != 0:
        return False
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        return sys.stderr.isatty()
    except Exception:
        return False
