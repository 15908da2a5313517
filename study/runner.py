"""Run (or resume) one study: :class:`StudyOptions` and :func:`run_study`, read top to bottom.

1. check the input (the study file with the command-line changes, the data paths, the Ray address);
2. open the storage (the study folder is probed, not yet made) and the result store;
3. start Ray, check the cluster's resources, make the study folder;
4. build the Tuner (or restore it, for ``--resume``) and fit it, the callback recording every result;
5. summarise: the best configurations, averaged over their seeds (:func:`study.callback.best_table`).

Every check of the input runs before the study folder is created, so a study that cannot start
leaves nothing behind.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import cluster
from .folder import META_JSON, STUDY_YAML, StudyFolder
from .optuna_store import OptunaStore
from .schema import StudyError, StudySpec, check_paths, format_study_error, load_study, materialize, smoke
from .store import ResultStore, join_uri, provenance, resolve_storage

__all__ = ["StudyOptions", "StudyResult", "run_study", "trainable", "experiment_analysis"]


@dataclass
class StudyOptions:
    """How to run a study: the command line's options (see ``python -m study.run --help``).

    The values are checked here (a :class:`StudyError` naming the flag); the study file and the
    ``overrides`` (``key=value``, study or training keys) are checked by :func:`study.schema.load_study`.
    """

    overrides: Sequence[str] = ()
    smoke_run: bool = False  #: 2 trials, 1 epoch, tiny data (study.schema.smoke)
    num_samples: int | None = None
    storage: str = "runs/studies"
    name: str | None = None
    resume: bool = False
    address: str | None = None
    num_cpus: int | None = None
    max_concurrent: int | None = None
    dashboard: bool = False
    data_cache: str = "data"
    report_every: float = 60.0
    quiet: bool = False
    verbose: bool = False
    command: list[str] | None = None  #: stored in the provenance (default: sys.argv)
    skip_corrupt: bool = False
    connect_timeout: float = cluster.CONNECT_TIMEOUT_S
    ship_code: bool = True  #: joining a cluster: ship splicemix and study to its nodes (study.cluster.runtime_env)
    runtime_env: str | None = None  #: a YAML file with a Ray runtime_env (pip, env_vars, ...) for every trial
    #: SQLAlchemy URL of the Optuna storage (default: the study file's search.storage, else optuna.db
    #: in the study folder; study.optuna_store)
    optuna_storage: str | None = None

    def __post_init__(self) -> None:
        for flag, value in (
            ("--num-samples", self.num_samples),
            ("--max-concurrent", self.max_concurrent),
            ("--num-cpus", self.num_cpus),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise StudyError(f"{flag} {value!r}: expected a whole number >= 1")
        t = self.connect_timeout
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise StudyError(f"--connect-timeout {t!r}: expected a number of seconds > 0")
        self.overrides = [*self.overrides, *(["data.skip_corrupt=true"] if self.skip_corrupt else [])]


@dataclass
class StudyResult:
    """A finished study: its folder's URI, its trial rows (by trial id), the wall time in seconds and
    its Optuna study (``study_name``, ``storage``: the URL with its password hidden)."""

    path: str
    trials: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    optuna: dict = field(default_factory=dict)


@dataclass
class _Study:
    """One run of a study once its input is checked: what the Ray part needs."""

    spec: StudySpec
    base: dict
    opts: StudyOptions
    folder: StudyFolder
    store: ResultStore
    optuna: OptunaStore
    study_yaml: str
    meta: dict
    data_cache: str  # absolute
    workdir: str  # the relative paths of the configs are relative to it, in every trial
    epochs: int  # the most epochs a trial may run


def run_study(space: str, options: StudyOptions) -> StudyResult:
    """Run (or resume) the study of the file ``space``; raises StudyError on bad input."""
    t0 = time.time()
    study = _check_input(space, options)
    try:
        _prepare_data(study.spec, study.base, study.data_cache, options.quiet)
    except OSError as e:
        raise StudyError(
            f"--data-cache {study.data_cache!r}: cannot write the synthetic data set there "
            f"({' '.join(str(e).split())}); expected a writable folder"
        ) from None
    with cluster.quiet_ray_warnings():
        started_here = cluster.init_ray(
            options.address,
            options.num_cpus,
            options.dashboard,
            options.verbose,
            options.connect_timeout,
            ship_code=options.ship_code,
            runtime_env_file=options.runtime_env,
            commit=study.meta.get("git_commit"),
        )
        try:
            _fit(study)
        finally:
            if started_here:
                import ray

                ray.shutdown()
    from .callback import best_table

    trials = sorted(study.store.trials.values(), key=lambda r: r["trial_id"])
    wall = time.time() - t0
    optuna = study.optuna
    if not options.quiet:
        print(best_table(trials, study.spec), flush=True)
        print(
            f"study.run: {len(trials)} trials in {wall / 60:.1f} min; results in {study.folder.uri}/trials.parquet "
            "and history.parquet",
            flush=True,
        )
    print(
        f"study.run: Optuna study {optuna.study_name!r} in {optuna.shown_url}"
        + (f" (copied to {optuna.describe()['copy']})" if optuna.local_db else "")
        + f"; view it with: optuna-dashboard {optuna.shown_url}",
        flush=True,
    )
    return StudyResult(study.folder.uri, trials, wall, optuna.describe())


# --------------------------------------------------------------------------- 1.-2. the input, the storage
def _check_input(space: str, opts: StudyOptions) -> _Study:
    """Every check that needs no Ray, and the result store (loaded for ``--resume``); nothing written yet."""
    spec, base = _load(space, opts)
    workdir = os.getcwd()
    _check_data(spec, base, space, workdir, opts.address)
    cluster.check_address(opts.address, opts.connect_timeout)  # before anything slow: a dead address fails in seconds
    folder = StudyFolder.open(opts.storage, opts.name, opts.resume, spec.name)
    optuna = OptunaStore.open(opts.optuna_storage or spec.search.storage, folder, opts.resume)
    study_yaml = _yaml(spec)
    meta = {**provenance(study_yaml, opts.command or sys.argv), "optuna": optuna.describe()}
    store = ResultStore(folder.uri, meta, spec.search.metric, spec.search.mode, [*spec.space, "train.seed"])
    if opts.resume:
        print(f"study.run: resuming {folder.uri} ({store.load()} trials recorded so far)", flush=True)
    data_cache = os.path.abspath(os.path.expanduser(opts.data_cache))
    return _Study(
        spec, base, opts, folder, store, optuna, study_yaml, meta, data_cache, workdir, _epochs_max(spec, base)
    )


def _load(space: str, opts: StudyOptions) -> tuple[StudySpec, dict]:
    """The study of ``space`` with the overrides, ``--smoke``, ``--num-samples`` and ``--max-concurrent``."""
    spec, base, _ = load_study(space, opts.overrides)
    if opts.smoke_run:
        spec = smoke(spec, base)
    if opts.num_samples is not None:
        spec.search.num_samples = opts.num_samples
    if opts.max_concurrent is not None:
        spec.resources.max_concurrent = opts.max_concurrent
    try:
        return StudySpec.model_validate(spec.model_dump()), base  # re-checked after the command-line changes
    except ValidationError as e:
        raise StudyError(format_study_error(e, f"{space} (with the command-line options)")) from None


def _check_data(spec: StudySpec, base: dict, space: str, workdir: str, address: str | None) -> None:
    """Fail on a data path that does not exist (only warn with --address: the cluster's nodes may hold it)."""
    missing = check_paths(spec, base, space, workdir)
    if not missing:
        return
    more = (
        f" (and {len(missing) - 1} more: {', '.join(m.split(' = ')[0] for m in missing[1:])})"
        if len(missing) > 1
        else ""
    )
    if not address:
        raise StudyError(f"{space}: {missing[0]}{more}")
    print(
        f"study.run: warning: {missing[0]}{more} on this machine; the cluster's nodes need it",
        file=sys.stderr,
        flush=True,
    )


def _yaml(spec: StudySpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def _first_trial(spec: StudySpec, base: dict, params: dict[str, Any] | None = None) -> Any:
    """The TrainConfig of the first configuration (each searched key at its smallest value, but ``params``)."""
    first = {k: p.smallest() for k, p in spec.space.items()}
    return materialize(base, spec.fixed, {**first, **(params or {})}, spec.seeds[0])


def _epochs_max(spec: StudySpec, base: dict) -> int:
    """The most epochs a trial may run (the scheduler's horizon)."""
    p = spec.space.get("train.epochs")
    if p is None:
        return int(_first_trial(spec, base).train.epochs)
    return max(int(v) for v in (p.values or [getattr(p, p.kind)[1]]))


def _prepare_data(spec: StudySpec, base: dict, data_cache: str, quiet: bool) -> None:
    """Generate the synthetic data sets of the study up front (when the space does not search them
    continuously), so trials start training at once."""
    from splicemix.data.synthetic import SyntheticConfig, is_complete

    from .trial import prepare_data, synthetic_root

    combos: list[dict] = [{}]
    for k in (k for k in spec.space if k.startswith("data.synthetic.")):
        values = spec.space[k].values
        if values is None:
            return  # a continuous data knob: every trial makes its own (file-locked) data set
        combos = [{**c, k: v} for c in combos for v in values]
    for c in combos:
        cfg = _first_trial(spec, base, c)
        if cfg.data.dataset != "synthetic":
            return
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": synthetic_root(cfg, data_cache)})})
        if is_complete(cfg.data.root, SyntheticConfig(**cfg.data.synthetic.model_dump())):
            continue
        if not quiet:
            s = cfg.data.synthetic
            print(
                f"study.run: generating the synthetic data set ({s.n_train} train / {s.n_val} val, "
                f"{s.image_size} px) under {cfg.data.root} ...",
                flush=True,
            )
        prepare_data(cfg)


# --------------------------------------------------------------------------- 3.-4. Ray, the Tuner
def _use_gpu(spec: StudySpec) -> bool:
    """Whether trials train on GPUs; StudyError when the cluster cannot hold one trial."""
    import ray

    res, r = ray.cluster_resources(), spec.resources
    gpus, cpus = res.get("GPU", 0), res.get("CPU", 0)
    use_gpu = gpus > 0 if r.use_gpu == "auto" else bool(r.use_gpu)
    if use_gpu and gpus < r.num_workers:
        raise StudyError(
            f"resources.use_gpu is on and a trial needs {r.num_workers} GPUs, but the Ray cluster has "
            f"{gpus:g}; expected use_gpu: false/auto or fewer num_workers"
        )
    need = r.num_workers * r.cpus_per_worker + (1 if spec.use_train_backend() else 0)
    if need > cpus:
        raise StudyError(
            f"a trial needs {need:g} logical CPUs (resources.num_workers {r.num_workers} x cpus_per_worker "
            f"{r.cpus_per_worker}{' + 1 for the Tune trial' if spec.use_train_backend() else ''}) but Ray has "
            f"{cpus:g}; expected fewer cpus_per_worker / num_workers, or --num-cpus"
        )
    return use_gpu


def _fit(study: _Study) -> None:
    """Check the cluster, make the study folder (taken back if the study then fails to start), fit."""
    from .callback import StudyCallback

    spec, opts, folder = study.spec, study.opts, study.folder
    created: str | None = None
    try:
        use_gpu = _use_gpu(spec)
        if not opts.resume:  # every check passed: now the study folder
            # what study.runner.trainable needs to rebuild this study's trainable for Tuner.restore
            trial_args = {"base": study.base, "data_cache": study.data_cache, "use_gpu": use_gpu}
            created = folder.create(
                study.study_yaml, {**study.meta, "trainable": {**trial_args, "workdir": study.workdir}}
            )
        r = spec.resources
        concurrent = r.max_concurrent
        if concurrent is None and not opts.address:  # a local Ray (started here or by the caller)
            concurrent = max(1, cluster.local_cores() // (r.num_workers * r.cpus_per_worker))
        planned = spec.planned_trials()
        print(
            f"study.run: {spec.name} -> {folder.uri} | {planned} trials ({spec.search.algorithm}, "
            f"{spec.search.scheduler}, seeds {spec.seeds}) | "
            f"{'Ray Train x' + str(r.num_workers) if spec.use_train_backend() else 'direct'} workers, "
            f"{'GPU' if use_gpu else 'CPU'} | {concurrent or 'unlimited'} at a time | "
            f"up to {study.epochs} epochs each",
            flush=True,
        )
        callback = StudyCallback(
            study.store, spec, study.base, study.data_cache, study.workdir, planned, opts.quiet, study.optuna
        )
        tuner = _tuner(study, _trainable(study, use_gpu), callback, concurrent)
    except BaseException:
        folder.take_back(created)  # a failed start: take back the folders this call made
        raise
    tuner.fit()
    study.store.flush()
    study.optuna.upload()


def _trainable(study: _Study, use_gpu: bool) -> Any:
    """study.trial.run_trial with its fixed arguments and each trial's resources."""
    return _make_trainable(study.spec, study.base, study.data_cache, use_gpu, study.workdir, study.folder.uri)


def _make_trainable(spec: StudySpec, base: dict, data_cache: str, use_gpu: bool, workdir: str, study_uri: str) -> Any:
    from ray import tune

    from .trial import run_trial

    resources: dict[str, float]
    if spec.use_train_backend():
        resources = {"cpu": 1}  # the Tune trial only waits on its TorchTrainer, whose workers hold the rest
    else:
        resources = {"cpu": spec.resources.cpus_per_worker, "gpu": 1 if use_gpu else 0}
    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            spec_json=spec.model_dump_json(),
            base=base,
            data_cache=data_cache,
            use_gpu=use_gpu,
            workdir=workdir,
            study_uri=study_uri,
        ),
        resources,
    )


def _folder_files(path: str) -> tuple[StudySpec, dict]:
    """The study (study.yaml) and provenance.json of the study folder ``path`` (a folder or URI)."""
    import json

    import yaml

    fs, root, _ = resolve_storage(join_uri(path))
    try:
        with fs.open_input_stream(f"{root}/{STUDY_YAML}") as f:
            spec = StudySpec.model_validate(yaml.safe_load(f.read().decode()))
        with fs.open_input_stream(f"{root}/{META_JSON}") as f:
            meta = json.loads(f.read().decode())
    except (OSError, ValueError) as e:
        raise StudyError(f"{path}: not a study folder ({' '.join(str(e).split())[:200]})") from None
    return spec, meta


def trainable(path: str) -> Any:
    """The trainable of the study in the folder ``path`` (a folder or URI), for
    ``ray.tune.Tuner.restore(path, trainable=study.runner.trainable(path))``; its trials keep the
    data cache, working directory and GPU use the study was started with."""
    spec, meta = _folder_files(path)
    args = meta.get("trainable")
    if not isinstance(args, dict):
        raise StudyError(f"{path}: its {META_JSON} has no 'trainable' entry (a study of an older version)")
    return _make_trainable(spec, args["base"], args["data_cache"], args["use_gpu"], args["workdir"], join_uri(path))


def experiment_analysis(path: str) -> Any:
    """``ray.tune.ExperimentAnalysis`` of the study folder ``path`` with the study's metric and mode as
    its defaults (Ray 2.60's ExperimentAnalysis does not read them from the folder; a restored
    Tuner's ``get_results()`` does)."""
    from ray.tune import ExperimentAnalysis

    spec, _ = _folder_files(path)
    return ExperimentAnalysis(path, default_metric=spec.search.metric, default_mode=spec.search.mode)


def _heal_checkpoints(study_uri: str) -> None:
    """``--resume``: the checkpoint each unfinished trial restores from exists
    (:func:`study.cluster.heal_checkpoint`; Ray may have deleted it just before the driver died)."""
    from ray.tune.experiment import Trial

    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)  # not "Failed to fetch metrics" for every trial that has not started yet
    try:
        trials = experiment_analysis(study_uri).trials
    finally:
        log.setLevel(level)
    for trial in trials:
        if trial.status in (Trial.TERMINATED, Trial.ERROR):  # not resumed (resume_errored=False)
            continue
        done = cluster.heal_checkpoint(trial.checkpoint, cluster.trial_storage_dirs(study_uri, trial.trial_id))
        if done:
            print(f"study.run: trial {trial.trial_id}: its last checkpoint {done}", flush=True)


def _tuner(study: _Study, trainable: Any, callback: Any, concurrent: int | None) -> Any:
    """A new Tuner, or the study's Tuner restored (``--resume``) with this run's callback."""
    from ray import tune

    from .space import build_scheduler, build_searcher, param_space

    spec, opts, folder = study.spec, study.opts, study.folder
    reporter = _reporter(spec, opts.report_every, opts.quiet)
    if opts.resume:
        _heal_checkpoints(folder.uri)
        tuner = tune.Tuner.restore(
            folder.uri,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            param_space=param_space(spec),
        )
        if not cluster.reattach_callbacks(tuner, [callback], reporter):
            print(
                "study.run: warning: this Ray cannot hand a restored study its callback; trials that finish "
                "now may be missing from trials.parquet",
                file=sys.stderr,
                flush=True,
            )
        return tuner
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.search.metric,
            mode=spec.search.mode,
            search_alg=build_searcher(spec, study.optuna.storage(), study.optuna.study_name),
            scheduler=build_scheduler(spec, study.epochs),
            num_samples=spec.search.samples,
            max_concurrent_trials=concurrent,
            time_budget_s=spec.search.time_budget_s,
            trial_dirname_creator=cluster.trial_dirname,
            # direct trials reuse their process (no new Python, torch and Ray import per
            # trial); train() restores every global setting it changes
            reuse_actors=not spec.use_train_backend(),
        ),
        run_config=tune.RunConfig(
            name=folder.name,
            storage_path=folder.root_uri,
            callbacks=[callback],
            progress_reporter=reporter,
            verbose=0 if opts.quiet else 1,
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _reporter(spec: StudySpec, every: float, quiet: bool) -> Any:
    """Tune's progress table: the searched keys, the epoch, the metric and the loss."""
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
