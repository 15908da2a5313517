"""How long a run trains (:class:`RunLength`): ``train.epochs``, or ``train.budget`` in images, steps or seconds.

Mixed images add compute: each step trains on B + B' images. A budget fixes the compute instead of
the epochs, so a mixed ratio or a data-set size is compared at equal compute:

- ``steps: N`` -- N optimiser steps; ``images: N`` -- training images seen, regular + mixed, over all
  processes: the first step at which they reach N. Both are a step count known before the run
  (an images budget needs the same B' in every batch, which the config checks; the loader drops the
  last partial batch, so every step has B + B' images per process). The run takes as many epochs as
  that needs and stops in the middle of the last one; the learning-rate schedule is laid out over
  the step count, so its decay ends exactly at the last step.
- ``seconds: N`` -- training seconds (the training loop's wall clock, the slowest process's;
  evaluation and checkpoints are not counted): the run stops after the first step at which N
  seconds are used. The step count is not known before the run, so the schedule does not guess
  it: the warm-up is in steps as always, and the decay after it follows the fraction of the
  seconds left when the warm-up ended (measured as the run goes; a resumed run carries its
  seconds on), so it too ends at the budget.

Without a budget the run trains ``train.epochs`` whole epochs. Either way the compute used so far
(steps, images, training seconds) is counted, checkpointed and written to every metrics line.
"""

from __future__ import annotations

import math
import time
from typing import Any

from splicemix.config import TrainConfig
from splicemix.results import BUDGET_SPENT, IMAGES_SEEN, STEPS, TRAIN_TIME_TOTAL_S

from .dist import DistContext

__all__ = ["RunLength", "warmup_steps"]


def warmup_steps(cfg: TrainConfig, iters_per_epoch: int) -> int:
    """The warm-up in steps: ``optim.warmup_steps`` when set, else ``optim.warmup_epochs`` epochs.

    Runs on data sets of different sizes compared at an equal step budget need the same warm-up in
    steps (an epoch of 500 images is a quarter of an epoch of 2,000): they set ``warmup_steps``."""
    if cfg.optim.warmup_steps is not None:
        return cfg.optim.warmup_steps
    return int(round(cfg.optim.warmup_epochs * iters_per_epoch))


class RunLength:
    """The run's length and the compute it has used (steps, images, training seconds).

    Per epoch: :meth:`start_epoch`, :meth:`after_step` after every optimiser step (True: the
    budget is used up, stop the epoch), :meth:`end_epoch` with the epoch's totals; then
    :meth:`finished`. ``images_per_step``: B + B' over all processes.
    """

    def __init__(
        self, cfg: TrainConfig, iters_per_epoch: int, images_per_step: int = 0, ctx: DistContext | None = None
    ) -> None:
        self.budget = cfg.train.budget
        self.epochs = cfg.train.epochs
        self.iters_per_epoch = iters_per_epoch
        self.ctx = ctx
        self.total_steps: int | None = self._total_steps(images_per_step)  #: None for a seconds budget
        self.warm = warmup_steps(cfg, iters_per_epoch)  #: warm-up steps (at most the total)
        if self.total_steps is not None:
            self.warm = min(self.warm, self.total_steps)
        # the compute used (checkpointed)
        self.steps, self.images, self.seconds = 0, 0, 0.0
        self.warm_seconds: float | None = 0.0 if self.warm == 0 else None  #: seconds budget: end of warm-up
        # the epoch under way
        self._t0: float | None = None
        self._epoch_steps = 0
        self._elapsed, self._elapsed_at = 0.0, 0  # training seconds after step _elapsed_at (alike on every rank)

    def _total_steps(self, images_per_step: int) -> int | None:
        b = self.budget
        if b is None:
            return max(1, self.epochs * self.iters_per_epoch)
        if b.steps is not None:
            return b.steps
        if b.images is not None:
            if images_per_step < 1:
                raise ValueError(f"an images budget needs the images per step (B + B'), got {images_per_step}")
            return math.ceil(b.images / images_per_step)
        return None

    @property
    def planned_epochs(self) -> int | None:
        """Epochs the run will take (the last one may be partial); None for a seconds budget."""
        if self.budget is None:
            return self.epochs
        return None if self.total_steps is None else math.ceil(self.total_steps / self.iters_per_epoch)

    def describe(self) -> str:
        """The length for the run's first line."""
        b, iters = self.budget, self.iters_per_epoch
        if b is None:
            return f"{self.epochs} epochs x {iters} iterations"
        if self.total_steps is None:
            return f"budget {b.amount:g} training seconds ({iters} iterations per epoch)"
        steps = "" if b.steps is not None else f" = {self.total_steps} steps"
        return f"budget {b.amount:g} {b.kind}{steps} ({self.planned_epochs} epochs of <= {iters} iterations)"

    # -- counting ---------------------------------------------------------------------------
    def start_epoch(self) -> None:
        self._t0 = time.perf_counter()
        self._epoch_steps = 0

    def after_step(self) -> bool:
        """Count one step; True when the budget is used up (the same answer on every rank)."""
        self._epoch_steps += 1
        steps = self.steps + self._epoch_steps
        if self.budget is None:
            return False
        if self.total_steps is not None:
            return steps >= self.total_steps
        return self._clock(steps) >= self.budget.amount

    def _clock(self, steps: int) -> float:
        """Training seconds after ``steps`` steps: measured once per step (by the schedule or by
        :meth:`after_step`, whichever asks first) as the slowest rank's, so every rank agrees."""
        if steps != self._elapsed_at:
            elapsed = self.seconds + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)
            self._elapsed = elapsed if self.ctx is None else self.ctx.max_over_ranks(elapsed)
            self._elapsed_at = steps
        if self.warm_seconds is None and steps >= self.warm:
            self.warm_seconds = self._elapsed
        return self._elapsed

    def end_epoch(self, steps: int, images: float, seconds: float) -> None:
        """Add an epoch's totals (over all processes; ``seconds``: the slowest process's training time)."""
        self.steps += steps
        self.images += int(round(images))
        self.seconds += seconds
        self._t0 = None

    def spent(self) -> bool:
        """The budget is used up (False without a budget)."""
        if self.budget is None:
            return False
        if self.total_steps is not None:
            return self.steps >= self.total_steps
        return self.seconds >= self.budget.amount or self._elapsed >= self.budget.amount

    def finished(self, epochs_done: int) -> bool:
        """Nothing is left to train after ``epochs_done`` epochs."""
        return self.spent() if self.budget is not None else epochs_done >= self.epochs

    def decay_progress(self, it: int) -> float:
        """How far the decay after the warm-up is at step ``it``, in [0, 1]."""
        if self.total_steps is not None:
            span = self.total_steps - self.warm  # 0 when the warm-up takes the whole run: it ends at 1
            return min(1.0, max(0.0, (it - self.warm) / span)) if span > 0 else float(it >= self.total_steps)
        elapsed = self._clock(it)
        if self.warm_seconds is None:
            return 0.0
        left = self.budget.amount - self.warm_seconds  # type: ignore[union-attr]
        return 1.0 if left <= 0 else min(1.0, max(0.0, (elapsed - self.warm_seconds) / left))

    # -- output and checkpoint ----------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """The compute used so far, and whether the budget is used up."""
        return {
            STEPS: self.steps,
            IMAGES_SEEN: self.images,
            TRAIN_TIME_TOTAL_S: self.seconds,
            BUDGET_SPENT: self.spent(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "images": self.images, "seconds": self.seconds, "warm_seconds": self.warm_seconds}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.steps, self.images = int(d.get("steps", 0)), int(d.get("images", 0))
        self.seconds = float(d.get("seconds", 0.0))
        self._elapsed, self._elapsed_at = self.seconds, self.steps
        if "warm_seconds" in d:
            self.warm_seconds = d["warm_seconds"]
