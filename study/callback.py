"""What a study records and prints as it runs: the Tune callback, and the summary table at its end.

Runs on the driver. Each reported result goes to :meth:`study.store.ResultStore.add_epoch` (the
history's one way in); a finished trial gets its row (:meth:`~study.store.ResultStore.set_trial`),
in a grid study it is added to the Optuna study (:meth:`study.optuna_store.OptunaStore.record`;
TPE / random studies have the searcher record it), the files are rewritten and one line is printed::

    [1/2] trial 86c19_00000 completed: mix.mixed_ratio=0 seed=0 | mAP 25.07 (best 25.07 @ epoch 1) | 1/1 epochs | 1 s

A trial's training config is materialized once, at its first event, and kept. At the end,
:func:`best_table` shows the best configurations, averaged over their seeds. This module imports
Ray: study.runner imports it once Ray is set up.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from splicemix.results import BEST_EPOCH, Status, best, cfg_column, final, flatten_config

from .optuna_store import OptunaStore
from .schema import StudySpec
from .space import decode_params, distributions
from .store import ResultStore, run_length
from .trial import trial_config

__all__ = ["StudyCallback", "best_table", "error_line", "fmt"]

# train keys that describe the one attempt, not the trial (left out of its cfg.* columns)
_PER_ATTEMPT = ("train.out_dir", "train.progress", "train.resume")


def fmt(v: Any) -> str:
    """A value as the trial lines and tables show it (floats with 4 significant digits)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def error_line(text: str) -> str:
    """The last line of an error text that says what happened (not Ray's wrapper lines), at most 500 characters."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":")[0]
        if "Error" in head or "Exception" in head:
            return ln[:500]
    return (lines[-1] if lines else "unknown error")[:500]


def _error_text(trial: Any) -> str:
    """A failed trial's error: Tune's exception, else its error file."""
    try:
        err = trial.get_error()
        if err is not None and str(err):
            return str(err)
    except Exception:  # noqa: BLE001 - best effort: an error file may be missing
        pass
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        return Path(path).read_text(errors="replace")
    return ""


@dataclass
class _TrialInfo:
    """What the driver knows of a trial from its Tune config (computed once per trial)."""

    params: dict[str, Any]
    seed: int
    cfg: dict[str, Any]  # its training config, flattened (the cfg.* columns)
    epochs: int


class StudyCallback(Callback):
    """Records every result and every finished trial into ``store`` (and, in a grid study, into the
    Optuna study of ``optuna``); one line per finished trial unless ``quiet``. ``planned``: the number
    of trials the study plans (the ``[k/n]`` counter)."""

    def __init__(
        self,
        store: ResultStore,
        spec: StudySpec,
        base: dict,
        data_cache: str,
        workdir: str,
        planned: int,
        quiet: bool,
        optuna: OptunaStore | None = None,
    ) -> None:
        self.store, self.spec, self.base = store, spec, base
        self.data_cache, self.workdir, self.planned, self.quiet = data_cache, workdir, planned, quiet
        self.done = sum(1 for r in store.trials.values() if r["status"] != Status.RUNNING.value)
        self.launched: dict[str, float] = {}
        self._info: dict[str, _TrialInfo] = {}
        self.optuna = optuna
        self._dists = distributions(spec) if optuna is not None and spec.search.algorithm == "grid" else None
        for row in list(store.trials.values()):  # --resume: finished trials the Optuna study lacks
            self._record(row)

    def info(self, trial: Any) -> _TrialInfo:
        """The trial's searched values, seed and flattened training config (materialized on first use)."""
        known = self._info.get(trial.trial_id)
        if known is None:
            params, seed = decode_params(self.spec, trial.config)
            cfg = trial_config(self.spec, self.base, trial.config, self.data_cache, "", self.workdir)
            flat = {k: v for k, v in flatten_config(cfg).items() if k not in _PER_ATTEMPT}
            known = self._info[trial.trial_id] = _TrialInfo(params, seed, flat, cfg.train.epochs)
        return known

    # -- Tune's events ----------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.launched.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        t = self.info(trial)
        self.store.add_epoch(trial.trial_id, t.seed, t.params, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, Status.COMPLETED, "")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # a diverged run is not an error: study.trial ends it with a `diverged` result (store.set_trial)
        self._finish(trial, Status.ERROR, error_line(_error_text(trial)))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.store.flush()
        if self.optuna is not None:
            self.optuna.upload()

    # -- a finished trial ---------------------------------------------------------------------
    def _finish(self, trial: Any, status: Status, message: str) -> None:
        # a trial recorded as finished before a --resume that Tune still restores (its
        # experiment state was older than our files): it has nothing left to train
        if self.store.trials.get(trial.trial_id, {}).get("status") in (Status.COMPLETED.value, Status.STOPPED.value):
            return
        t = self.info(trial)
        row = self.store.set_trial(
            trial.trial_id,
            status,
            message,
            t.seed,
            t.cfg,
            t.epochs,
            trial.last_result or {},
            self.launched.get(trial.trial_id),
            getattr(trial, "num_failures", None),
        )
        self._record(row)
        self.store.flush()
        if self.optuna is not None:
            self.optuna.upload()
        self.done += 1
        if not self.quiet:
            print(self._line(trial.trial_id, t, row), flush=True)

    def _record(self, row: dict) -> None:
        """A finished trial into the Optuna study (grid studies; TPE / random: the searcher does it)."""
        if self.optuna is not None and self._dists is not None:
            self.optuna.record(self.spec, row, self.store.epochs_of(row["trial_id"]), self._dists)

    def _line(self, trial_id: str, t: _TrialInfo, row: dict) -> str:
        metric = self.spec.search.metric
        shown = " ".join(f"{k}={fmt(v)}" for k, v in t.params.items())
        parts = [f"[{self.done}/{self.planned}] trial {trial_id} {row['status']}: {shown} seed={t.seed}"]
        value: float | None = row.get(final(metric))
        if value is not None:
            parts.append(f"{metric} {value:.2f} (best {row.get(best(metric)):.2f} @ epoch {row.get(BEST_EPOCH)})")
        parts.append(run_length(row))
        if row.get("wall_time_s") is not None:
            parts.append(f"{row['wall_time_s']:.0f} s")
        if row["status"] in (Status.ERROR.value, Status.DIVERGED.value) and row["message"]:
            parts.append(row["message"])
        return " | ".join(parts)


# --------------------------------------------------------------------------- the summary
def best_table(trials: list[dict], spec: StudySpec, top: int = 10) -> str:
    """The best configurations, averaged over their seeds (mean +- std of the final metric)."""
    metric = spec.search.metric
    groups: dict[tuple, list[dict]] = {}
    for r in trials:
        if r.get(final(metric)) is not None:
            groups.setdefault(tuple(r.get(cfg_column(k)) for k in spec.space), []).append(r)
    if not groups:
        return "study.run: no trial reported a metric (see the errors above)"
    rows = sorted(
        (_group_row(key, rs, metric) for key, rs in groups.items()),
        key=lambda row: row[0],
        reverse=spec.search.mode == "max",
    )
    header = [k.split(".")[-1] for k in spec.space] + [f"{metric} mean", "std", "seeds", "epochs", "status"]
    body = [
        [fmt(v) for v in key]
        + [f"{mean:.2f}", "-" if math.isnan(std) else f"{std:.2f}", str(n), "/".join(map(str, ep)), st]
        for mean, std, n, key, st, ep in rows[:top]
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    out = [
        f"\nBest configurations of {spec.name} ({metric} at the last epoch, over seeds):",
        line(header),
        line(["-" * w for w in widths]),
    ]
    return "\n".join(out + [line(b) for b in body])


def _group_row(key: tuple, rs: list[dict], metric: str) -> tuple:
    """(mean, std, seeds, key, statuses, epochs) of one configuration's trials."""
    vals = [float(r[final(metric)]) for r in rs]
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else float("nan")
    status = ",".join(sorted({r["status"] for r in rs}))
    epochs = sorted({int(r["epochs_run"]) for r in rs})
    return mean, std, len(vals), key, status, epochs
