"""The result store: ``trials.parquet`` and ``history.parquet`` of one study, written with pyarrow.

* ``trials.parquet``: one row per trial: ``trial_id``, ``status`` (completed | stopped (by the
  early-stopping scheduler) | diverged | error | running), ``message``, ``seed``,
  ``epochs_planned``, ``epochs_run``, ``wall_time_s``, ``setup_s`` (the trial function's start
  to its first training step), ``launch_s`` (Tune launching the trial to its first training step), ``final_<metric>`` (last epoch), ``best_<metric>`` / ``best_epoch``, ``failures`` (Tune's
  retries of the trial) and ``resumed_from_epoch`` (the last checkpoint epoch an attempt of the
  trial continued from, 0 = none), and the
  trial's whole training config flattened as ``cfg.<dotted key>`` (lists as JSON text).
* ``history.parquet``: one row per trial per epoch: ``trial_id``, ``seed``, the searched
  ``cfg.<key>`` columns and every reported metric.

Both files carry the study's YAML, the git commit, the package versions, the command and the
machine as schema metadata (key ``splicemix``; :func:`read_metadata`). Every write goes to a
temporary name first and is then renamed, so a crash mid-write leaves the previous file intact.
``storage`` may be a local folder or any pyarrow filesystem URI (``s3://bucket/studies``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["ResultStore", "resolve_storage", "read_metadata", "flatten", "TRIALS_FILE", "HISTORY_FILE", "provenance"]

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
META_KEY = b"splicemix"
# Tune's bookkeeping fields that say nothing about the training run
_TUNE_NOISE = {"restored_epochs", "config", "done", "pid", "hostname", "node_ip", "date", "checkpoint_dir_name",
               "checkpoint_path",
               "time_since_restore", "iterations_since_restore", "timestamp", "should_checkpoint", "trial_id",
               "experiment_tag"}


def resolve_storage(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, path inside it, the URI/absolute path Ray should get) of a storage location."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/"), uri.rstrip("/")
    path = os.path.abspath(os.path.expanduser(uri))
    return pafs.LocalFileSystem(), path, path


def _git_commit() -> Optional[str]:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


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
        "git_commit": _git_commit(),
        "versions": versions,
        "python": sys.version.split()[0],
        "command": command,
        "machine": {"node": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted key: scalar}; lists / tuples / dicts in leaves become JSON text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v) and not key.endswith("mix.grids"):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


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
                    self.history[(r["trial_id"], int(r["epoch"]))] = r
        return len(self.trials)

    # -- collecting -----------------------------------------------------------------------
    def add_epoch(self, trial_id: str, seed: int, params: dict, metrics: dict) -> None:
        restored = metrics.get("restored_epochs")
        if isinstance(restored, str) and restored:
            # an attempt that resumed from a checkpoint sends the epochs before it once: keep those
            # this driver never received (it or a worker was killed before they arrived)
            for rec in json.loads(restored):
                if "epoch" in rec and (trial_id, int(rec["epoch"])) not in self.history:
                    self.add_epoch(trial_id, seed, params, rec)
        if "epoch" not in metrics:
            return
        row = {"trial_id": trial_id, "seed": seed, **{f"cfg.{k}": _scalar(v) for k, v in params.items()}}
        row.update({k: v for k, v in metrics.items()
                    if isinstance(v, (int, float, str, bool)) and k not in _TUNE_NOISE
                    and not k.startswith("cfg.") and "/" not in k})  # "config/..." columns of Tune's own records
        self.history[(trial_id, int(metrics["epoch"]))] = row

    def set_trial(self, trial_id: str, status: str, message: str, seed: int, cfg_flat: dict, epochs_planned: int,
                  last: dict, launched_at: Optional[float] = None, failures: Optional[int] = None) -> dict:
        hist = sorted((r for (t, _), r in self.history.items() if t == trial_id), key=lambda r: int(r["epoch"]))
        row: dict[str, Any] = {"trial_id": trial_id, "status": status, "message": message, "seed": seed,
                               "epochs_planned": epochs_planned, "epochs_run": int(hist[-1]["epoch"]) if hist else 0}
        if last.get("diverged"):  # the trial ended itself on a NaN / infinite loss (study.trial)
            status, message = "diverged", str(last["diverged"])
            row.update(status=status, message=message)
        if status == "completed" and row["epochs_run"] < epochs_planned:
            row["status"] = "stopped"
            row["message"] = message or f"stopped early by the scheduler after {row['epochs_run']} of {epochs_planned} epochs"
        row["wall_time_s"] = _float(last.get("time_total_s"))
        first = hist[0] if hist else {}
        row["setup_s"] = row["launch_s"] = None
        if first.get("reported_at") and first.get("epoch_time_s") is not None:
            first_step = float(first["reported_at"]) - float(first["epoch_time_s"])
            if first.get("trial_started_at"):  # the trial's function began -> its first training step
                row["setup_s"] = first_step - float(first["trial_started_at"])
            if launched_at is not None:  # Tune launched the trial -> its first training step
                row["launch_s"] = first_step - launched_at
        if launched_at is None and trial_id in self.trials:
            row["launch_s"] = self.trials[trial_id].get("launch_s")
        if hist:
            lastrow = hist[-1]
            for k, v in lastrow.items():
                if (isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("cfg.")
                        and k not in ("seed", "epoch", "trial_started_at", "reported_at", "training_iteration",
                                      "time_this_iter_s", "time_total_s", "resumed_from_epoch")):
                    row[f"final_{k}"] = v
            scored = [r for r in hist if isinstance(r.get(self.metric), (int, float)) and math.isfinite(r[self.metric])]
            if scored:
                pick = (max if self.mode == "max" else min)(scored, key=lambda r: r[self.metric])
                row[f"best_{self.metric}"] = pick[self.metric]
                row["best_epoch"] = int(pick["epoch"])
        # fault record: Tune-level retries of this trial, and the last epoch an attempt resumed
        # from (a Tune retry, a Ray Train worker-group restart or a --resume; 0 = never)
        row["failures"] = failures
        row["resumed_from_epoch"] = max((int(r.get("resumed_from_epoch") or 0) for r in hist), default=0)
        row.update({f"cfg.{k}": v for k, v in cfg_flat.items()})
        self.trials[trial_id] = row
        return row

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> None:
        self.fs.create_dir(self.path, recursive=True)
        trials = sorted(self.trials.values(), key=lambda r: r["trial_id"])
        history = [self.history[k] for k in sorted(self.history)]
        self._atomic_write(_table(trials, self.meta), TRIALS_FILE)
        self._atomic_write(_table(history, self.meta), HISTORY_FILE)

    def _atomic_write(self, table: pa.Table, name: str) -> None:
        final = f"{self.path}/{name}"
        tmp = f"{self.path}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, final)  # a rename on a local disk: readers see the old or the new file, never half


def _scalar(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict, tuple)) else v


def _float(v: Any) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
