"""The result store: ``trials.parquet`` and ``history.parquet`` of one study, written with pyarrow.

Column names come from :mod:`splicemix.results` (the ``final_`` / ``best_`` / ``cfg.`` prefixes, :class:`Status`).

* ``trials.parquet``: one row per trial: ``trial_id``, ``status`` (completed (its epochs, or its
  ``train.budget``, used up) | stopped (by the early-stopping scheduler) | diverged | error |
  running), ``message``, ``seed``,
  ``epochs_planned`` (``train.epochs``; a trial with a ``train.budget`` runs as many epochs as the
  budget needs, :func:`run_length`), ``epochs_run``, ``wall_time_s``, ``setup_s`` (the trial function's start
  to its first training step), ``launch_s`` (Tune launching the trial to its first training
  step), ``final_<metric>`` (last epoch), ``best_<metric>`` / ``best_epoch``, ``failures`` (Tune's
  retries of the trial) and ``resumed_from_epoch`` (the last checkpoint epoch an attempt of the
  trial continued from, 0 = none), and the trial's whole training config flattened as
  ``cfg.<dotted key>`` (:func:`splicemix.results.flatten_config`: lists and mappings as JSON text).
* ``history.parquet``: one row per trial per epoch: ``trial_id``, ``seed``, the searched
  ``cfg.<key>`` columns and every reported metric. Epochs enter it one way,
  :meth:`ResultStore.add_epoch` with each reported result.

Both files carry the study's YAML, the git commit, the package versions, the command and the
machine as schema metadata (key ``splicemix``; :func:`read_metadata`). Every write goes to a
temporary name first and is then renamed, so a crash mid-write leaves the previous file intact.
``storage`` may be a local folder or any pyarrow filesystem URI (``s3://bucket/studies``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.parse
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from splicemix.config import BudgetConfig
from splicemix.provenance import git_commit, machine
from splicemix.results import (
    BEST_EPOCH,
    BUDGET_SPENT,
    CFG,
    DIVERGED,
    EPOCH,
    EPOCH_TIME_S,
    Status,
    best,
    cfg_column,
    final,
)

__all__ = [
    "ResultStore",
    "join_uri",
    "resolve_storage",
    "read_metadata",
    "TRIALS_FILE",
    "HISTORY_FILE",
    "provenance",
    "RESTORED_EPOCHS",
    "run_length",
]

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
META_KEY = b"splicemix"
#: the result key under which an attempt that resumed from a checkpoint sends the epochs before it
#: (JSON text of their metrics rows), once
RESTORED_EPOCHS = "restored_epochs"
# Tune's bookkeeping fields that say nothing about the training run
_TUNE_NOISE = {
    RESTORED_EPOCHS,
    "config",
    "done",
    "pid",
    "hostname",
    "node_ip",
    "date",
    "checkpoint_dir_name",
    "checkpoint_path",
    "time_since_restore",
    "iterations_since_restore",
    "timestamp",
    "should_checkpoint",
    "trial_id",
    "experiment_tag",
}
# numbers of the last epoch's row that are bookkeeping, not results (no final_<key> column)
_NOT_FINAL = {
    "seed",
    EPOCH,
    "trial_started_at",
    "reported_at",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "resumed_from_epoch",
}


def join_uri(base: str, *parts: str) -> str:
    """``base`` (a local path or a URI) with ``parts`` appended to its path; a URI keeps its query
    (``s3://bucket/studies?endpoint_override=h:9000`` + ``ratio-1`` ->
    ``s3://bucket/studies/ratio-1?endpoint_override=h:9000``). Trailing slashes are dropped. The one
    place a study's or a trial's location is built."""
    if "://" not in base:
        return os.path.join(base.rstrip("/") or "/", *parts)
    url = urllib.parse.urlsplit(base)
    path = "/".join([url.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urllib.parse.urlunsplit(url._replace(path=path))


def resolve_storage(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, path inside it, the URI/absolute path Ray should get) of a storage location."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/"), join_uri(uri)
    path = os.path.abspath(os.path.expanduser(uri))
    return pafs.LocalFileSystem(), path, path


def provenance(study_yaml: str, command: list[str]) -> dict[str, Any]:
    """What produced a study: its YAML, the commit, versions, the command, machine and date."""
    from importlib import metadata

    versions = {}
    for pkg in ("splicemix", "torch", "torchvision", "ray", "optuna", "pyarrow", "numpy", "pydantic"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "study_yaml": study_yaml,
        "git_commit": git_commit(),
        "versions": versions,
        "python": sys.version.split()[0],
        "command": command,
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _table(rows: list[dict], meta: dict) -> pa.Table:
    cols: dict[str, list] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, [])
    data = {k: [_clean(r.get(k)) for r in rows] for k in cols}
    arrays = {}
    for k, v in data.items():
        try:
            arrays[k] = pa.array(v)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep them as text
            arrays[k] = pa.array([None if x is None else (x if isinstance(x, str) else json.dumps(x)) for x in v])
    table = pa.table(arrays) if arrays else pa.table({"trial_id": pa.array([], pa.string())})
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def read_metadata(path: str) -> dict:
    """The provenance stored with a trials/history Parquet file."""
    fs, p, _ = resolve_storage(path)
    md = pq.read_schema(p, filesystem=fs).metadata or {}
    return json.loads(md.get(META_KEY, b"{}"))


class ResultStore:
    """Collects trial rows and per-epoch rows in memory and (re)writes the two Parquet files."""

    def __init__(self, study_uri: str, meta: dict, metric: str, mode: str, searched: list[str]) -> None:
        self.fs, self.path, self.uri = resolve_storage(study_uri)
        self.meta = {**meta, "metric": metric, "mode": mode, "searched": searched}
        self.metric, self.mode, self.searched = metric, mode, searched
        self.trials: dict[str, dict] = {}
        self.history: dict[tuple[str, int], dict] = {}

    # -- reading ------------------------------------------------------------------------
    def load(self) -> int:
        """Read existing files (a resumed study); returns the number of trials read. Temporary
        files a killed writer left behind (``.trials.parquet.<id>.tmp``) are removed."""
        for info in self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)):
            if info.base_name.startswith(".") and info.base_name.endswith(".tmp") and ".parquet." in info.base_name:
                self.fs.delete_file(info.path)
        for name, target in ((TRIALS_FILE, "trials"), (HISTORY_FILE, "history")):
            p = f"{self.path}/{name}"
            if self.fs.get_file_info(p).type != pafs.FileType.File:
                continue
            for r in pq.read_table(p, filesystem=self.fs).to_pylist():
                if target == "trials":
                    self.trials[r["trial_id"]] = r
                else:
                    self.history[(r["trial_id"], int(r[EPOCH]))] = r
        return len(self.trials)

    # -- collecting -----------------------------------------------------------------------
    def epochs_of(self, trial_id: str) -> list[dict]:
        """The history rows of one trial, by epoch."""
        return sorted((r for (t, _), r in self.history.items() if t == trial_id), key=lambda r: int(r[EPOCH]))

    def add_epoch(self, trial_id: str, seed: int, params: dict, metrics: dict) -> None:
        """Record one reported result (the only way epochs enter the history): its epoch, and the
        epochs before the checkpoint that an attempt resuming from one sends once
        (:data:`RESTORED_EPOCHS`), those of them this store does not hold yet (the driver or a
        worker was killed before they arrived)."""
        for rec in _restored(metrics):
            if (trial_id, int(rec[EPOCH])) not in self.history:
                self._put_epoch(trial_id, seed, params, rec)
        if EPOCH in metrics:
            self._put_epoch(trial_id, seed, params, metrics)

    def _put_epoch(self, trial_id: str, seed: int, params: dict, metrics: dict) -> None:
        row = {"trial_id": trial_id, "seed": seed, **{cfg_column(k): _scalar(v) for k, v in params.items()}}
        row.update(
            {
                k: v
                for k, v in metrics.items()
                if isinstance(v, (int, float, str, bool))
                and k not in _TUNE_NOISE
                and not k.startswith(CFG)
                and "/" not in k
            }
        )  # "config/..." columns of Tune's own records
        self.history[(trial_id, int(metrics[EPOCH]))] = row

    def set_trial(
        self,
        trial_id: str,
        status: Status | str,
        message: str,
        seed: int,
        cfg_flat: dict,
        epochs_planned: int,
        last: dict,
        launched_at: float | None = None,
        failures: int | None = None,
    ) -> dict:
        """Record how a trial ended (``last``: its last result) and return its row."""
        hist = self.epochs_of(trial_id)
        epochs_run = int(hist[-1][EPOCH]) if hist else 0
        status, message = _outcome(Status(status), message, last, epochs_run, epochs_planned)
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": status.value,
            "message": message,
            "seed": seed,
            "epochs_planned": epochs_planned,
            "epochs_run": epochs_run,
            "wall_time_s": _float(last.get("time_total_s")),
        }
        row.update(_start_times(hist[0] if hist else {}, launched_at))
        if launched_at is None and trial_id in self.trials:
            row["launch_s"] = self.trials[trial_id].get("launch_s")
        if hist:
            row.update(_finals(hist[-1]))
            row.update(self._best(hist))
        # fault record: Tune-level retries of this trial, and the last epoch an attempt resumed
        # from (a Tune retry, a Ray Train worker-group restart or a --resume; 0 = never)
        row["failures"] = failures
        row["resumed_from_epoch"] = max((int(r.get("resumed_from_epoch") or 0) for r in hist), default=0)
        row.update({cfg_column(k): v for k, v in cfg_flat.items()})
        self.trials[trial_id] = row
        return row

    def _best(self, hist: list[dict]) -> dict[str, Any]:
        """``best_<metric>`` and ``best_epoch`` over the epochs with a finite metric (none without one)."""
        scored = [r for r in hist if isinstance(r.get(self.metric), (int, float)) and math.isfinite(r[self.metric])]
        if not scored:
            return {}
        pick = (max if self.mode == "max" else min)(scored, key=lambda r: r[self.metric])
        return {best(self.metric): pick[self.metric], BEST_EPOCH: int(pick[EPOCH])}

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> None:
        self.fs.create_dir(self.path, recursive=True)
        trials = sorted(self.trials.values(), key=lambda r: r["trial_id"])
        history = [self.history[k] for k in sorted(self.history)]
        self._atomic_write(_table(trials, self.meta), TRIALS_FILE)
        self._atomic_write(_table(history, self.meta), HISTORY_FILE)

    def _atomic_write(self, table: pa.Table, name: str) -> None:
        target = f"{self.path}/{name}"
        tmp = f"{self.path}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, target)  # a rename on a local disk: readers see the old or the new file, never half


def _restored(metrics: dict) -> list[dict]:
    """The epochs a resumed attempt sent with its first result (JSON text of metrics rows)."""
    text = metrics.get(RESTORED_EPOCHS)
    if not isinstance(text, str) or not text:
        return []
    return [rec for rec in json.loads(text) if EPOCH in rec]


def _outcome(status: Status, message: str, last: dict, epochs_run: int, planned: int) -> tuple[Status, str]:
    """The status a trial's row shows: ``diverged`` when its last result says so (study.trial ends a
    run whose loss stopped being finite that way), ``stopped`` when it completed short of its epochs
    (unless its train.budget ended it: a budget, not train.epochs, sets its length)."""
    if last.get(DIVERGED):
        return Status.DIVERGED, str(last[DIVERGED])
    if status == Status.COMPLETED and epochs_run < planned and not last.get(BUDGET_SPENT):
        return Status.STOPPED, message or f"stopped early by the scheduler after {epochs_run} of {planned} epochs"
    return status, message


def run_length(row: dict[str, Any]) -> str:
    """How long a trial ran, for a progress or summary line: ``"12/16 epochs"``, or for a trial with
    a ``train.budget`` ``"48 epochs (train.budget 2,976 steps)"`` (the budget, not train.epochs,
    sets its length, so ``epochs_planned`` says nothing about it)."""
    for kind in BudgetConfig.model_fields:  # images, steps, seconds
        value = row.get(cfg_column(f"train.budget.{kind}"))
        if isinstance(value, int | float) and math.isfinite(value):
            return f"{row.get('epochs_run')} epochs (train.budget {value:,g} {kind})"
    return f"{row.get('epochs_run')}/{row.get('epochs_planned')} epochs"


def _start_times(first: dict, launched_at: float | None) -> dict[str, float | None]:
    """``setup_s`` (the trial function's start to its first training step) and ``launch_s`` (Tune
    launching the trial to its first training step), from the first epoch's row."""
    out: dict[str, float | None] = {"setup_s": None, "launch_s": None}
    if first.get("reported_at") and first.get(EPOCH_TIME_S) is not None:
        first_step = float(first["reported_at"]) - float(first[EPOCH_TIME_S])
        if first.get("trial_started_at"):
            out["setup_s"] = first_step - float(first["trial_started_at"])
        if launched_at is not None:
            out["launch_s"] = first_step - launched_at
    return out


def _finals(last_row: dict) -> dict[str, Any]:
    """``final_<key>`` for every number or flag (``converged``, ``budget_spent``) of the last epoch's
    row (not the bookkeeping ones)."""
    return {
        final(k): v
        for k, v in last_row.items()
        if isinstance(v, (int, float)) and not k.startswith(CFG) and k not in _NOT_FINAL
    }


def _scalar(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict, tuple)) else v


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
