"""The names of a run's results: the one schema the trainer writes, ``study`` stores and ``analysis`` reads.

The trainer reports one dict per epoch (``metrics.jsonl``, and ``report(metrics)``) with the
keys below. A study stores one row per trial (``trials.parquet``: ``final_<metric>`` of the
last epoch, ``best_<metric>`` and ``best_epoch``, the config as ``cfg.<dotted key>``, a
:class:`Status`) and one row per trial per epoch (``history.parquet``). Nothing here imports
torch, Ray or pandas.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = [
    "EPOCH",
    "METHOD",
    "TRAIN_LOSS",
    "CL_LOSS",
    "LR",
    "MAP",
    "F1_KEYS",
    "TOP3",
    "RARE_PAIRS",
    "COMMON_PAIRS",
    "IMAGES_PER_S",
    "REGULAR_IMAGES_PER_S",
    "TRAIN_TIME_S",
    "EVAL_TIME_S",
    "EPOCH_TIME_S",
    "DIVERGED",
    "BEST_EPOCH",
    "STEPS",
    "IMAGES_SEEN",
    "TRAIN_TIME_TOTAL_S",
    "WALL_CLOCK",
    "BUDGET_SPENT",
    "CONVERGED",
    "CONVERGENCE_GAIN",
    "BEST_MAP_EPOCH",
    "CONVERGENCE_WINDOW",
    "CONVERGENCE_MIN_GAIN",
    "Convergence",
    "convergence",
    "FINAL",
    "BEST",
    "CFG",
    "Status",
    "map_at",
    "size_of",
    "final",
    "best",
    "cfg_column",
    "low_res_column",
    "flatten_config",
]

# --------------------------------------------------------------------------- per-epoch keys
EPOCH = "epoch"  #: 1-based epoch the row describes
METHOD = "method"  #: baseline | mixup | cutmix | splicemix | splicemix_cl (splicemix.config.METHODS)
TRAIN_LOSS = "train_loss"  #: mean loss of the epoch (classification + CL)
CL_LOSS = "cl_loss"  #: mean consistency loss (SpliceMix-CL only)
LR = "lr"  #: head learning rate of the epoch's last step
MAP = "mAP"  #: mean average precision in percent, at the training resolution
F1_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")  #: per-class / overall precision, recall, F1 (threshold 0.5)
TOP3 = "_top3"  #: suffix of the same keys with the top-3 labels of each image
RARE_PAIRS = "mAP_rare_pairs"  #: mAP on val images where a pair class appears without its train-time partner
COMMON_PAIRS = "mAP_common_pairs"  #: mAP on the other val images
IMAGES_PER_S = "images_per_s"  #: training throughput, regular + mixed images
REGULAR_IMAGES_PER_S = "regular_images_per_s"
TRAIN_TIME_S, EVAL_TIME_S, EPOCH_TIME_S = "train_time_s", "eval_time_s", "epoch_time_s"
#: set (to the reason) instead of the metrics when a run's loss stopped being finite
DIVERGED = "diverged"
BEST_EPOCH = "best_epoch"
# the compute used so far (cumulative over the epochs, and over a resume): what train.budget counts
STEPS = "steps"  #: optimiser steps
IMAGES_SEEN = "images_seen"  #: training images, regular + mixed (B + B' per step), all processes
TRAIN_TIME_TOTAL_S = "train_time_total_s"  #: training seconds (the sum of train_time_s; no evaluation)
#: the wall-clock keys of a metrics line: the only ones that differ between two identical runs
WALL_CLOCK = frozenset(
    {IMAGES_PER_S, REGULAR_IMAGES_PER_S, TRAIN_TIME_S, EVAL_TIME_S, EPOCH_TIME_S, TRAIN_TIME_TOTAL_S}
)
BUDGET_SPENT = "budget_spent"  #: True once train.budget is used up (what ended the run; False without one)
# convergence (on every evaluated epoch's line: the verdict on the mAP history so far, see convergence())
CONVERGED = "converged"  #: True when the best-so-far mAP gained < CONVERGENCE_MIN_GAIN over the window
CONVERGENCE_GAIN = "convergence_gain"  #: that gain, mAP points (left out when nothing precedes the window)
BEST_MAP_EPOCH = "best_mAP_epoch"  #: the (first) epoch of the best mAP so far

_MAP_AT = re.compile(r"^mAP@(\d+)$")


def map_at(size: int) -> str:
    """The key of mAP evaluated at ``size`` px (``"mAP@32"``)."""
    return f"mAP@{int(size)}"


def size_of(key: str) -> int | None:
    """The resolution of a ``"mAP@S"`` key, else None."""
    m = _MAP_AT.match(key)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- convergence
CONVERGENCE_WINDOW = 0.25  #: the window: the last quarter of the epochs run (at least one epoch)
CONVERGENCE_MIN_GAIN = 0.3  #: mAP points the best-so-far mAP may still gain over the window


@dataclass(frozen=True)
class Convergence:
    """The verdict of :func:`convergence` on one run's mAP history."""

    converged: bool
    gain: float | None  #: mAP points gained over the window; None when no epoch before it was evaluated
    best_epoch: int | None  #: the first epoch with the best mAP; None without any mAP
    window: int  #: epochs in the window

    def metrics(self) -> dict[str, Any]:
        """The keys of a metrics line: :data:`CONVERGED`, :data:`CONVERGENCE_GAIN` (when known) and
        :data:`BEST_MAP_EPOCH` (when known)."""
        out: dict[str, Any] = {CONVERGED: self.converged}
        if self.gain is not None:
            out[CONVERGENCE_GAIN] = self.gain
        if self.best_epoch is not None:
            out[BEST_MAP_EPOCH] = self.best_epoch
        return out


def convergence(
    history: Iterable[Mapping[str, Any]],
    window: float = CONVERGENCE_WINDOW,
    min_gain: float = CONVERGENCE_MIN_GAIN,
) -> Convergence:
    """Whether a run has converged, from its metric lines (dicts with :data:`EPOCH` and, on the
    evaluated epochs, :data:`MAP` in percent).

    With E the last epoch of ``history`` and w = max(1, ceil(``window`` x E)) epochs, the gain is
    the best mAP of all epochs minus the best mAP of the epochs up to E - w (the best-so-far mAP's
    rise over the last w epochs); converged when the gain is below ``min_gain`` points. Only
    evaluated epochs count (``train.eval_every`` > 1 leaves gaps); without an evaluated epoch
    before the window (a single epoch, say) the gain is unknown and the run is not converged.
    """
    rows = list(history)
    last = max((int(r[EPOCH]) for r in rows if EPOCH in r), default=0)
    w = max(1, math.ceil(window * last))
    scored = [(int(r[EPOCH]), float(r[MAP])) for r in rows if _finite(r.get(MAP)) and EPOCH in r]
    if not scored:
        return Convergence(False, None, None, w)
    best_map = max(m for _, m in scored)
    best_epoch = min(e for e, m in scored if m == best_map)
    before = [m for e, m in scored if e <= last - w]
    if not before:
        return Convergence(False, None, best_epoch, w)
    gain = best_map - max(before)
    return Convergence(gain < min_gain, gain, best_epoch, w)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- per-trial columns
FINAL = "final_"  #: prefix: the metric at the last epoch a trial ran
BEST = "best_"  #: prefix: the best value of the study's metric over the epochs (with ``best_epoch``)
CFG = "cfg."  #: prefix: one dotted key of the trial's training config


class Status(str, enum.Enum):
    """How a trial ended."""

    COMPLETED = "completed"  #: ran every planned epoch, or used up its train.budget
    STOPPED = "stopped"  #: stopped early by the scheduler (ASHA)
    DIVERGED = "diverged"  #: the loss stopped being finite; the reason is in ``message``
    ERROR = "error"  #: failed (after its retries)
    RUNNING = "running"  #: not finished when the file was written

    def __str__(self) -> str:
        return self.value


def final(metric: str) -> str:
    """The per-trial column of ``metric`` at the last epoch (``final_mAP``)."""
    return FINAL + metric


def best(metric: str) -> str:
    """The per-trial column of the best value of ``metric`` over the epochs (``best_mAP``)."""
    return BEST + metric


def cfg_column(key: str) -> str:
    """The per-trial column of one dotted config key (``cfg.mix.mixed_ratio``)."""
    return CFG + key


def low_res_column(columns: Iterable[str], prefix: str = FINAL) -> tuple[str | None, int | None]:
    """The ``<prefix>mAP@S`` column with the smallest S among ``columns`` (and S), or (None, None)."""
    found = sorted((s, c) for c in columns if c.startswith(prefix) and (s := size_of(c[len(prefix) :])) is not None)
    return (found[0][1], found[0][0]) if found else (None, None)


def flatten_config(config: BaseModel) -> dict[str, Any]:
    """A typed config (``TrainConfig``) as ``{dotted key: scalar}``, walking its sections (nested
    models); a value that is a list or a mapping (``mix.grids: {"2x2": 0.5}``) becomes JSON text,
    so every column holds one type."""
    out: dict[str, Any] = {}
    for key in type(config).model_fields:
        value = getattr(config, key)
        if isinstance(value, BaseModel):
            out.update({f"{key}.{k}": v for k, v in flatten_config(value).items()})
            continue
        value = value if not isinstance(value, (list, tuple, Mapping)) else json.dumps(_plain(value))
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
