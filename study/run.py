"""``python -m study.run SPACE.yaml``: a SpliceMix hyperparameter study with Ray Tune + Optuna.

Every trial is one splicemix training run (directly inside the Tune trial for one worker, or
a Ray Train ``TorchTrainer`` over ``resources.num_workers`` DDP workers). Without
``--address`` (or ``RAY_ADDRESS``) a local Ray is started on loopback with its dashboard
off; with ``--address auto`` the same command uses a running cluster and its GPUs.
Results: ``<storage>/<name>/trials.parquet`` and ``history.parquet`` (see study.store).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Optional

# Ray's classic table reporter (CLIReporter) and no deprecation chatter; set before Ray is imported.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from splicemix.config import ConfigError  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from .schema import StudyError, StudySpec, check_paths, load_study, smoke  # noqa: E402
from .store import ResultStore, flatten, provenance, resolve_storage  # noqa: E402

__all__ = ["main", "run_study", "StudyResult"]

STUDY_YAML = "study.yaml"
META_JSON = "provenance.json"
CONNECT_TIMEOUT_S = 30.0  # default of --connect-timeout
_OUR_FILES = {STUDY_YAML, META_JSON, ".write-test"}
_abandoned_init = False  # a ray.init that did not return within --connect-timeout is still running


class StudyResult:
    def __init__(self, path: str, trials: list[dict], wall_s: float) -> None:
        self.path, self.trials, self.wall_s = path, trials, wall_s


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def _epochs_max(spec: StudySpec, base: dict) -> int:
    from .schema import materialize

    epochs = materialize(base, spec.fixed, {k: p.smallest() for k, p in spec.space.items()}, spec.seeds[0]).train.epochs
    p = spec.space.get("train.epochs")
    if p is not None:
        vals = p.values or [getattr(p, p.kind)[1]]
        epochs = max(int(v) for v in vals)
    return epochs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# --------------------------------------------------------------------------- Tune callback
def _make_callback(store: ResultStore, spec: StudySpec, base: dict, data_cache: str, workdir: str, planned: int,
                   quiet: bool):
    from ray.tune import Callback

    from .space import decode_params
    from .trial import trial_config

    class StudyCallback(Callback):
        """Records every epoch and every finished trial into the store; one line per finished trial."""

        def __init__(self) -> None:
            self.done = sum(1 for r in store.trials.values() if r["status"] != "running")
            self.launched: dict[str, float] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.launched.setdefault(trial.trial_id, time.time())

        def _params(self, trial) -> tuple[dict, int]:
            return decode_params(spec, trial.config)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            params, seed = self._params(trial)
            store.add_epoch(trial.trial_id, seed, params, result)

        def _finish(self, trial, status: str, message: str) -> None:
            params, seed = self._params(trial)
            # a trial recorded as finished before a --resume that Tune still restores (its
            # experiment state was older than our files): it has nothing left to train
            if store.trials.get(trial.trial_id, {}).get("status") in ("completed", "stopped"):
                return
            cfg = trial_config(spec, base, trial.config, data_cache, "", workdir)
            flat = {k: v for k, v in flatten(cfg.model_dump(mode="json")).items()
                    if k not in ("train.out_dir", "train.progress", "train.resume")}
            row = store.set_trial(trial.trial_id, status, message, seed, flat, cfg.train.epochs, trial.last_result or {},
                                  self.launched.get(trial.trial_id), getattr(trial, "num_failures", None))
            store.flush()
            self.done += 1
            if quiet:
                return
            metric = spec.search.metric
            final = row.get(f"final_{metric}")
            best = row.get(f"best_{metric}")
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            parts = [f"[{self.done}/{planned}] trial {trial.trial_id} {row['status']}: {shown} seed={seed}"]
            if final is not None:
                parts.append(f"{metric} {final:.2f} (best {best:.2f} @ epoch {row.get('best_epoch')})")
            parts.append(f"{row['epochs_run']}/{row['epochs_planned']} epochs")
            if row.get("wall_time_s") is not None:
                parts.append(f"{row['wall_time_s']:.0f} s")
            if row["status"] in ("error", "diverged") and row["message"]:
                parts.append(row["message"])
            print(" | ".join(parts), flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._finish(trial, "completed", "")

        def on_trial_error(self, iteration, trials, trial, **info):
            msg = _error_message(trial)
            status = "diverged" if ("FloatingPointError" in msg or "diverged" in msg) else "error"
            self._finish(trial, status, msg)

        def on_experiment_end(self, trials, **info):
            store.flush()

    return StudyCallback()


def _error_message(trial) -> str:
    """The last line of a trial's error that says what happened (not Ray's wrapper lines)."""
    text = ""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
    except Exception:  # noqa: BLE001 - best effort: an error file may be missing
        pass
    if not text and getattr(trial, "error_file", None) and os.path.isfile(trial.error_file):
        text = Path(trial.error_file).read_text(errors="replace")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0]:
            return ln[:500]
    return (lines[-1] if lines else "unknown error")[:500]


# --------------------------------------------------------------------------- Ray
def _split_address(address: str) -> tuple[str, int]:
    """(host, port) of a ``host:port`` / ``ray://host[:port]`` Ray address (StudyError otherwise)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    rest = rest.strip().rstrip("/")
    if scheme not in ("", "ray") or not rest or "/" in rest:
        raise StudyError(f"--address {address!r}: expected 'auto', host:port (the Ray head's GCS port, e.g. "
                         "10.0.0.5:6379) or ray://host:port (Ray Client)")
    host, colon, port = rest.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = rest, ("10001" if scheme == "ray" else "6379")  # Ray's default client / GCS ports
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(f"--address {address!r}: expected host:port with a port number between 1 and 65535")
    return host, int(port)


def _check_address(address: Optional[str], timeout: float) -> None:
    """Fail fast, naming the address, when nothing listens at a host:port Ray address: ray.init
    itself would retry for minutes. 'auto' / 'local' are left to Ray (and the init timeout)."""
    if not address or address in ("auto", "local"):
        return
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e) or type(e).__name__)
        raise StudyError(
            f"--address {address}: no Ray cluster answers at {host}:{port} within {timeout:g} s ({reason}); expected "
            "the address of a running Ray head ('ray start --head'), 'auto', or no --address for a local Ray"
        ) from None


def _init_within(kwargs: dict, address: str, timeout: float, capture: bool = True) -> None:
    """ray.init(**kwargs) in a helper thread, waiting at most ``timeout`` seconds for it.

    With ``capture``, what Ray writes to stderr meanwhile (its core logs a line per second
    while a cluster does not answer) is held back: replayed when the connection worked,
    dropped when it did not (the one error line says why).
    """
    import logging
    import tempfile

    import ray

    class _NoThreadWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "not the main thread" not in record.getMessage()

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    flt = _NoThreadWarning()
    worker_log = logging.getLogger("ray._private.worker")
    worker_log.addFilter(flt)
    held = tempfile.TemporaryFile() if capture else None
    saved = None
    if held is not None:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
    t = threading.Thread(target=target, name="ray-init", daemon=True)
    try:
        t.start()
        t.join(timeout)
    finally:
        worker_log.removeFilter(flt)
        if saved is not None:
            sys.stderr.flush()
            if t.is_alive():  # the thread keeps logging to fd 2: leave that captured, print to the real stderr
                sys.stderr = open(saved, "w", buffering=1, closefd=False)
            else:
                os.dup2(saved, 2)
                os.close(saved)
    if held is not None and not t.is_alive() and "error" not in box:
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))
        sys.stderr.flush()
    if t.is_alive():
        global _abandoned_init
        _abandoned_init = True
        raise StudyError(f"--address {address}: Ray did not connect within {timeout:g} s (--connect-timeout); "
                         "expected a running, reachable Ray cluster at that address")
    err = box.get("error")
    if isinstance(err, (ConnectionError, TimeoutError, ValueError, RuntimeError)):
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError(f"--address {address}: cannot connect to Ray ({first[:300]}); expected a running Ray "
                         "cluster at that address, or no --address for a local Ray") from None
    if err is not None:
        raise err


def _init_ray(address: Optional[str], num_cpus: Optional[int], dashboard: bool, verbose: bool,
              connect_timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Start or join Ray; True when a local instance was started."""
    import logging

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False  # a caller (a notebook, the tests) already connected: use that instance
    if not address:
        # A Ray this command starts binds every server to 127.0.0.1: Ray's "no cluster" mode
        # (otherwise it advertises and listens on the machine's external address).
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    import ray._private.ray_constants as ray_constants

    if not address:
        ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before this call

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, loopback-only instance: no token files
    quiet = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING,
                 configure_logging=True)
    if address:
        _check_address(address, connect_timeout)
        _init_within(dict(address=address, **quiet), address, connect_timeout, capture=not verbose)
        return False
    cores = _cores()
    ray.init(
        num_cpus=num_cpus or max(8, 4 * cores),
        include_dashboard=dashboard,
        **quiet,
    )
    return True


def run_study(
    space: str,
    overrides: list[str] = (),  # type: ignore[assignment]
    *,
    smoke_run: bool = False,
    num_samples: Optional[int] = None,
    storage: str = "runs/studies",
    name: Optional[str] = None,
    resume: bool = False,
    address: Optional[str] = None,
    num_cpus: Optional[int] = None,
    max_concurrent: Optional[int] = None,
    dashboard: bool = False,
    data_cache: str = "data",
    report_every: float = 60.0,
    quiet: bool = False,
    verbose: bool = False,
    command: Optional[list[str]] = None,
    skip_corrupt: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> StudyResult:
    """Run (or resume) a study; returns its directory and trial rows. Raises StudyError on bad input.

    Every check of the input (the study file, the data paths, the storage, the Ray address and
    the cluster's resources) runs before the study folder is created, so a study that cannot
    start leaves nothing behind.
    """
    t0 = time.time()
    for flag, value, low in (("--num-samples", num_samples, 1), ("--max-concurrent", max_concurrent, 1),
                             ("--num-cpus", num_cpus, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise StudyError(f"{flag} {value!r}: expected a whole number >= {low}")
    if not (isinstance(connect_timeout, (int, float)) and math.isfinite(connect_timeout) and connect_timeout > 0):
        raise StudyError(f"--connect-timeout {connect_timeout!r}: expected a number of seconds > 0")
    overrides = list(overrides) + (["data.skip_corrupt=true"] if skip_corrupt else [])
    spec, base, _ = load_study(space, overrides)
    if smoke_run:
        spec = smoke(spec, base)
    if num_samples is not None:
        spec.search.num_samples = num_samples
    if max_concurrent is not None:
        spec.resources.max_concurrent = max_concurrent
    try:
        spec = StudySpec.model_validate(spec.model_dump())  # re-check after the command-line changes
    except ValidationError as e:
        from .schema import _format_error

        raise StudyError(_format_error(e, f"{space} (with the command-line options)")) from None
    workdir = os.getcwd()  # relative paths in the configs are relative to it, in every trial
    missing = check_paths(spec, base, space, workdir)
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(m.split(' = ')[0] for m in missing[1:])})" if len(missing) > 1 else ""
        if not address:
            raise StudyError(f"{space}: {missing[0]}{more}")
        # a cluster's nodes may hold data this machine does not
        print(f"study.run: warning: {missing[0]}{more} on this machine; the cluster's nodes need it",
              file=sys.stderr, flush=True)
    _check_address(address, connect_timeout)  # before anything slow: a dead address fails in seconds

    try:
        fs, root, root_uri = resolve_storage(storage)
    except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise StudyError(f"--storage {storage!r}: {' '.join(str(e).split())}; expected a folder or a URI such "
                         "as s3://bucket/studies") from None
    name = _study_name(spec, name, resume, fs, root)
    study_path = f"{root}/{name}"
    study_uri = f"{root_uri}/{name}"
    _check_writable(fs, study_path, resume, study_uri, storage)  # probes, and leaves nothing behind
    data_cache = os.path.abspath(os.path.expanduser(data_cache))

    import yaml

    study_yaml = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    meta = provenance(study_yaml, command or sys.argv)
    searched = list(spec.space) + ["train.seed"]
    store = ResultStore(study_uri, meta, spec.search.metric, spec.search.mode, searched)
    if resume:
        n = store.load()
        print(f"study.run: resuming {study_uri} ({n} trials recorded so far)", flush=True)

    planned = spec.planned_trials()
    epochs = _epochs_max(spec, base)
    try:
        _prepare_base_data(spec, base, data_cache, quiet)
    except OSError as e:
        raise StudyError(f"--data-cache {data_cache!r}: cannot write the synthetic data set there "
                         f"({' '.join(str(e).split())}); expected a writable folder") from None

    started_here = _init_ray(address, num_cpus, dashboard, verbose, connect_timeout)
    import ray
    from ray import tune

    from .space import build_scheduler, build_searcher, param_space
    from .trial import run_trial

    created_top: Optional[str] = None  # the highest folder this call made for the study (once every check passed)
    fitting = False
    try:
        res = ray.cluster_resources()
        r = spec.resources
        use_gpu = (res.get("GPU", 0) > 0) if r.use_gpu == "auto" else bool(r.use_gpu)
        if use_gpu and res.get("GPU", 0) < r.num_workers:
            raise StudyError(
                f"resources.use_gpu is on and a trial needs {r.num_workers} GPUs, but the Ray cluster has "
                f"{res.get('GPU', 0):g}; expected use_gpu: false/auto or fewer num_workers"
            )
        per_trial_cpus = r.num_workers * r.cpus_per_worker
        need = per_trial_cpus + (1 if spec.use_train_backend() else 0)
        if need > res.get("CPU", 0):
            raise StudyError(
                f"a trial needs {need:g} logical CPUs (resources.num_workers {r.num_workers} x cpus_per_worker "
                f"{r.cpus_per_worker}{' + 1 for the Tune trial' if spec.use_train_backend() else ''}) but Ray has "
                f"{res.get('CPU', 0):g}; expected fewer cpus_per_worker / num_workers, or --num-cpus"
            )
        if not resume:  # every check passed: now the study folder
            created_top = _first_missing(fs, study_path)
            fs.create_dir(study_path, recursive=True)
            with fs.open_output_stream(f"{study_path}/{STUDY_YAML}") as f:
                f.write(study_yaml.encode())
            with fs.open_output_stream(f"{study_path}/{META_JSON}") as f:
                f.write(json.dumps(meta, indent=1).encode())
        concurrent = r.max_concurrent
        if concurrent is None and not address:  # a local Ray (started here or by the caller)
            concurrent = max(1, _cores() // per_trial_cpus)
        if spec.use_train_backend():
            resources = {"cpu": 1}  # the Tune trial only waits on its TorchTrainer, whose workers hold the rest
        else:
            resources = {"cpu": r.cpus_per_worker, "gpu": 1 if use_gpu else 0}
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, spec_json=spec.model_dump_json(), base=base, data_cache=data_cache,
                                 train_storage=f"{study_uri}/_train", use_gpu=use_gpu, workdir=workdir,
                                 study_uri=study_uri),
            resources,
        )
        print(
            f"study.run: {spec.name} -> {study_uri} | {planned} trials ({spec.search.algorithm}, {spec.search.scheduler}, "
            f"seeds {spec.seeds}) | {'Ray Train x' + str(r.num_workers) if spec.use_train_backend() else 'direct'} "
            f"workers, {'GPU' if use_gpu else 'CPU'} | {concurrent or 'unlimited'} at a time | up to {epochs} epochs each",
            flush=True,
        )
        callback = _make_callback(store, spec, base, data_cache, workdir, planned, quiet)
        reporter = _reporter(spec, report_every, quiet)
        if resume:
            tuner = tune.Tuner.restore(
                study_uri, trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False,
                param_space=param_space(spec),
            )
            _reattach(tuner, callback, reporter)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(spec),
                tune_config=tune.TuneConfig(
                    metric=spec.search.metric,
                    mode=spec.search.mode,
                    search_alg=build_searcher(spec),
                    scheduler=build_scheduler(spec, epochs),
                    num_samples=spec.search.samples,
                    max_concurrent_trials=concurrent,
                    time_budget_s=spec.search.time_budget_s,
                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
                    # direct trials reuse their process (no new Python, torch and Ray import per
                    # trial); train() restores every global setting it changes
                    reuse_actors=not spec.use_train_backend(),
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=root_uri,
                    callbacks=[callback],
                    progress_reporter=reporter,
                    verbose=0 if quiet else 1,
                    failure_config=tune.FailureConfig(max_failures=r.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                ),
            )
        fitting = True
        grid = tuner.fit()
        _merge_from_grid(store, grid)
        store.flush()
    except BaseException:
        if created_top and not fitting:  # a failed start: take back the folders this call made
            _remove_if_ours(fs, created_top)
        raise
    finally:
        if started_here:
            ray.shutdown()
    trials = sorted(store.trials.values(), key=lambda r: r["trial_id"])
    wall = time.time() - t0
    if not quiet:
        print(best_table(trials, spec), flush=True)
        print(f"study.run: {len(trials)} trials in {wall / 60:.1f} min; results in {study_uri}/trials.parquet "
              "and history.parquet", flush=True)
    return StudyResult(study_uri, trials, wall)


def _reattach(tuner, callback, reporter) -> None:
    """Tuner.restore keeps the pickled callbacks of the first run; hand it this run's instead."""
    internal = getattr(tuner, "_local_tuner", None)
    rc = getattr(internal, "_run_config", None) if internal is not None else None
    if rc is not None:
        rc.callbacks = [callback]
        rc.progress_reporter = reporter


def _reporter(spec: StudySpec, every: float, quiet: bool):
    from ray.tune import CLIReporter

    params = {k: k.split(".")[-1] for k in spec.space}
    if spec.search.algorithm == "grid" and len(spec.seeds) > 1:
        params["train.seed"] = "seed"
    elif len(spec.seeds) > 1:
        params["__trial_index__"] = "repeat"
    return CLIReporter(
        metric_columns={"epoch": "epoch", spec.search.metric: spec.search.metric, "train_loss": "loss"},
        parameter_columns=params,
        max_report_frequency=max(1, int(every)) if not quiet else 10**9,
        sort_by_metric=True,
        max_progress_rows=20,
        max_error_rows=5,
        print_intermediate_tables=not quiet,
    )


def _merge_from_grid(store: ResultStore, grid) -> None:
    """Add Tune's own per-epoch records (they survive a restore) to the history."""
    for result in grid:
        df = getattr(result, "metrics_dataframe", None)
        trial_id = (result.metrics or {}).get("trial_id")
        if df is None or trial_id is None or "epoch" not in df:
            continue
        known = {e for (t, e) in store.history if t == trial_id}
        base_row = next((r for (t, _), r in store.history.items() if t == trial_id), None)
        if base_row is None:
            continue
        keys = [k for k in base_row if k.startswith("cfg.") or k == "seed"]
        for rec in df.to_dict("records"):
            ep = rec.get("epoch")
            if ep is None or (isinstance(ep, float) and math.isnan(ep)) or int(ep) in known:
                continue
            store.add_epoch(trial_id, base_row["seed"], {k[4:]: base_row[k] for k in keys if k != "seed"}, rec)


def best_table(trials: list[dict], spec: StudySpec, top: int = 10) -> str:
    """The best configurations, averaged over their seeds (mean +- std of the final metric)."""
    metric = spec.search.metric
    groups: dict[tuple, list[dict]] = {}
    for r in trials:
        if r.get(f"final_{metric}") is None:
            continue
        key = tuple(r.get(f"cfg.{k}") for k in spec.space)
        groups.setdefault(key, []).append(r)
    if not groups:
        return "study.run: no trial reported a metric (see the errors above)"
    rows = []
    for key, rs in groups.items():
        vals = [float(r[f"final_{metric}"]) for r in rs]
        mean = sum(vals) / len(vals)
        std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else float("nan")
        status = ",".join(sorted({r["status"] for r in rs}))
        epochs = sorted({int(r["epochs_run"]) for r in rs})
        rows.append((mean, std, len(vals), key, status, epochs))
    rows.sort(key=lambda t: t[0], reverse=spec.search.mode == "max")
    names = [k.split(".")[-1] for k in spec.space]
    header = names + [f"{metric} mean", "std", "seeds", "epochs", "status"]
    body = [[_fmt(v) for v in key] + [f"{mean:.2f}", "-" if math.isnan(std) else f"{std:.2f}", str(n),
                                      "/".join(map(str, ep)), st] for mean, std, n, key, st, ep in rows[:top]]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [f"\nBest configurations of {spec.name} ({metric} at the last epoch, over seeds):", line(header),
           line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


# --------------------------------------------------------------------------- helpers
def _study_name(spec: StudySpec, name: Optional[str], resume: bool, fs, root: str) -> str:
    import pyarrow.fs as pafs

    if name:
        bad = [c for c in name if not (c.isalnum() or c in "-_.")]
        if bad:
            raise StudyError(f"--name {name!r}: expected letters, digits, '-', '_' or '.'")
        return name
    if not resume:
        return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    info = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    mine = sorted(i.base_name for i in info if i.type == pafs.FileType.Directory and i.base_name.startswith(spec.name + "-"))
    if not mine:
        raise StudyError(f"--resume: no study named {spec.name}-* under {root}; expected --name of an existing study")
    return mine[-1]


def _first_missing(fs, path: str) -> Optional[str]:
    """The highest folder on the way to ``path`` that does not exist yet (what a recursive
    create_dir makes), or None when ``path`` exists."""
    import pyarrow.fs as pafs

    top = None
    cur = path.rstrip("/")
    while cur and fs.get_file_info(cur).type == pafs.FileType.NotFound:
        top = cur
        parent = cur.rsplit("/", 1)[0]
        if parent == cur:
            break
        cur = parent
    return top


def _remove_if_ours(fs, top: str) -> None:
    """Delete ``top`` (a folder this run created) when it holds nothing but this module's files."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(top, recursive=True, allow_not_found=True))
        if all(i.type == pafs.FileType.Directory or i.base_name in _OUR_FILES for i in infos):
            fs.delete_dir(top)
    except OSError:
        pass  # best effort: the error being reported matters more


def _os_reason(e: OSError) -> str:
    """The reason of an OSError in a few words (pyarrow's "... Detail: [errno 20] Not a directory")."""
    text = " ".join(str(e.strerror or e).split())
    if "Detail: " in text:
        text = text.rsplit("Detail: ", 1)[1]
    if text.lower().startswith("[errno"):
        text = text.split("]", 1)[-1].strip()
    return text


def _check_writable(fs, study_path: str, resume: bool, study_uri: str, storage: str = "") -> None:
    """Fail (StudyError, naming the path) unless the study folder can be written; leaves nothing
    behind (the probe's folders are removed again, the study folder is made once Ray is up)."""
    import pyarrow.fs as pafs

    try:
        info = fs.get_file_info(study_path)
    except OSError as e:
        raise StudyError(f"--storage {storage or study_uri.rsplit('/', 1)[0]}: cannot read {study_uri} ({_os_reason(e)}); "
                         "expected a readable, writable folder or URI") from None
    if resume:
        if info.type != pafs.FileType.Directory or fs.get_file_info(f"{study_path}/{STUDY_YAML}").type != pafs.FileType.File:
            raise StudyError(f"--resume: {study_uri} is not a study folder (no {STUDY_YAML}); expected the --storage and --name of an earlier run")
        top = None
    elif info.type != pafs.FileType.NotFound:
        raise StudyError(f"{study_uri} already exists; expected a new --name, or --resume to continue that study")
    else:
        top = _first_missing(fs, study_path)
    probe = f"{study_path}/.write-test"
    try:
        fs.create_dir(study_path, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except OSError as e:
        raise StudyError(f"--storage {storage or study_uri.rsplit('/', 1)[0]}: cannot write the study folder {study_uri} "
                         f"({_os_reason(e)}); expected a writable folder or URI") from None
    finally:
        if top:
            _remove_if_ours(fs, top)


def _prepare_base_data(spec: StudySpec, base: dict, data_cache: str, quiet: bool) -> None:
    """Generate the synthetic data sets of the study up front (when the space does not search them
    continuously), so trials start training at once."""
    from .schema import materialize
    from .trial import prepare_data, synthetic_root

    keys = [k for k in spec.space if k.startswith("data.synthetic.")]
    combos: list[dict] = [{}]
    for k in keys:
        vals = spec.space[k].values
        if vals is None:
            return  # a continuous data knob: every trial makes its own (file-locked) data set
        combos = [{**c, k: v} for c in combos for v in vals]
    first = {k: p.smallest() for k, p in spec.space.items()}
    for c in combos:
        cfg = materialize(base, spec.fixed, {**first, **c}, spec.seeds[0])
        if cfg.data.dataset != "synthetic":
            return
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": synthetic_root(cfg, data_cache)})})
        from splicemix.data.synthetic import SyntheticConfig, is_complete

        if not is_complete(cfg.data.root, SyntheticConfig(**cfg.data.synthetic.model_dump())):
            if not quiet:
                s = cfg.data.synthetic
                print(f"study.run: generating the synthetic data set ({s.n_train} train / {s.n_val} val, "
                      f"{s.image_size} px) under {cfg.data.root} ...", flush=True)
            prepare_data(cfg)


# --------------------------------------------------------------------------- CLI
_EPILOG = """\
examples:
  python -m study.run search_spaces/ratio.yaml
  python -m study.run search_spaces/ratio.yaml --smoke                 # 2 trials, 1 epoch, tiny data
  python -m study.run search_spaces/grid_scaling.yaml --set train.epochs=10 --num-samples 2
  python -m study.run search_spaces/ratio.yaml --name ratio-a --resume  # continue an interrupted study
  python -m study.run search_spaces/coco.yaml --address auto --storage s3://bucket/studies

--set key=value: a study key (search.num_samples=4, resources.num_workers=2, seeds=[0,1,2])
or a training key (optim.lr=0.01, train.epochs=5), which is then fixed for every trial.
Bad input (the study file, a --set value, a missing data path, an unwritable --storage, an
--address that does not answer within --connect-timeout) is one error line naming the file,
key, value or path, exit status 2, before Ray starts and before the study folder is made.
Values are YAML. Results: <storage>/<name>/trials.parquet (one row per trial) and
history.parquet (one row per trial per epoch), plus study.yaml and provenance.json.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Run a SpliceMix hyperparameter study (Ray Tune + Optuna; each trial a splicemix training run, "
                    "Ray Train DDP when resources.num_workers > 1).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("space", help="search space YAML (see search_spaces/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study or training key (repeatable)")
    p.add_argument("--smoke", action="store_true", help="2 trials, 1 epoch, tiny embedded data (a few minutes on a CPU)")
    p.add_argument("--num-samples", type=int, default=None, metavar="N",
                   help="tpe / random: configurations to try; grid: repeats of the grid")
    p.add_argument("--storage", default=os.environ.get("SPLICEMIX_STUDY_STORAGE", "runs/studies"),
                   help="folder or pyarrow URI (s3://...) for the study folders (default: runs/studies)")
    p.add_argument("--name", default=None, help="study folder name (default: <space name>-<date-time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study --name (default: the newest <space name>-*) in --storage")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to use ('auto', host:port or ray://host:port; default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"give up on an --address that does not answer after S seconds, with one error line "
                        f"(default: {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="logical CPUs of a local Ray (default: max(8, 4 x cores), room for trial, Train controller and workers)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: cores / CPUs per trial locally)")
    p.add_argument("--data-cache", default="data", help="where synthetic data sets are generated (default: data/)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="every trial skips images that cannot be decoded, counting them (sets data.skip_corrupt=true); "
                        "without it a corrupt image fails the trial with an error naming the file")
    p.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (local Ray; off by default)")
    p.add_argument("--report-every", type=float, default=60.0, metavar="S", help="seconds between progress tables")
    p.add_argument("--quiet", action="store_true", help="no progress tables or trial lines")
    p.add_argument("--verbose", action="store_true", help="show the trials' own output and Ray's logs")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (bad input is otherwise one line, exit status 2)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = run_study(
            args.space, args.overrides, smoke_run=args.smoke, num_samples=args.num_samples, storage=args.storage,
            name=args.name, resume=args.resume, address=args.address, num_cpus=args.num_cpus,
            max_concurrent=args.max_concurrent, dashboard=args.dashboard, data_cache=args.data_cache,
            report_every=args.report_every, quiet=args.quiet, verbose=args.verbose,
            command=["python", "-m", "study.run", *(argv if argv is not None else sys.argv[1:])],
            skip_corrupt=args.skip_corrupt, connect_timeout=args.connect_timeout,
        )
    except (StudyError, ConfigError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"study.run: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study.run: interrupted; continue with --resume --name <the study's name>", file=sys.stderr)
        return 130
    ok = [t for t in result.trials if t["status"] in ("completed", "stopped")]
    if not ok:
        print("study.run: error: no trial finished (see the messages above and trials.parquet)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    if _abandoned_init:  # a ray.init thread is still waiting on the cluster: do not wait for it at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
