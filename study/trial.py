"""One trial: a splicemix training run inside a Ray Tune trial.

* direct path (1 worker): :func:`run_trial` calls :func:`splicemix.train.train` in the Tune
  trial's own process and reports every epoch with ``ray.tune.report``;
* Ray Train path (``num_workers > 1`` or ``backend: train``): :func:`run_trial` builds a
  ``TorchTrainer`` (DDP over the workers: gloo on CPU, NCCL on GPU) whose workers call
  ``train()``; ``TuneReportCallback`` forwards each epoch to Tune. This is Ray 2.60's Train V2
  pattern: the Tune trainable is a function that fits a trainer.

Each epoch's checkpoint (the trainer's run directory, :class:`splicemix.engine.rundir.RunDir`) is
reported to Ray, so a retried or resumed trial continues from its last epoch (``train.resume``).
A run whose loss stops being finite ends its trial with a ``diverged`` result (not retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from splicemix.config import TrainConfig
from splicemix.engine.rundir import RunDir, last_epoch
from splicemix.models import is_weights_name
from splicemix.results import DIVERGED, EPOCH

from .cluster import TRAIN_DIR, stored_checkpoint, trial_storage_dirs
from .schema import StudySpec, materialize
from .space import decode_params
from .store import RESTORED_EPOCHS, join_uri

__all__ = ["run_trial", "trial_config", "prepare_data", "synthetic_root"]


def synthetic_root(cfg: TrainConfig, cache: str) -> str:
    """The cache folder of a synthetic data set: one per set of knobs, so trials that search
    data-set knobs never overwrite each other's images."""
    knobs = json.dumps(cfg.data.synthetic.model_dump(mode="json"), sort_keys=True)
    return str(Path(cache) / f"synthetic-{hashlib.sha1(knobs.encode()).hexdigest()[:10]}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_data(cfg: TrainConfig) -> None:
    """Generate the synthetic data set of ``cfg`` unless complete (under a file lock, so
    concurrent trials on one machine generate it once)."""
    if cfg.data.dataset != "synthetic":
        return
    from splicemix.data.synthetic import SyntheticConfig, generate, is_complete

    root = Path(cfg.data.root)
    knobs = SyntheticConfig(**cfg.data.synthetic.model_dump())
    if is_complete(root, knobs):
        return
    with _file_lock(root.with_name(root.name + ".lock")):
        if not is_complete(root, knobs):
            generate(root, knobs)


def _under(workdir: str, path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.join(workdir, os.path.expanduser(path)))


def trial_config(
    spec: StudySpec, base: dict, config: dict[str, Any], data_cache: str, out_dir: str, workdir: str
) -> TrainConfig:
    """The full TrainConfig of the trial whose Tune config is ``config``.

    Relative paths (from the base config, ``fixed`` or the space) are taken relative to
    ``workdir``, the directory the study was started from: Tune runs each trial in its own
    trial directory.
    """
    params, seed = decode_params(spec, config)
    cfg = materialize(base, spec.fixed, params, seed)
    updates: dict[str, Any] = {"out_dir": out_dir, "progress": False}
    if cfg.train.cpu_threads is None:
        updates["cpu_threads"] = spec.resources.cpus_per_worker
    train = cfg.train.model_copy(update=updates)
    d = cfg.data
    coco = d.coco.model_copy(update={k: _under(workdir, v) for k, v in d.coco.model_dump().items()})
    voc = d.voc.model_copy(update={"root": _under(workdir, d.voc.root)})
    root = synthetic_root(cfg, data_cache) if d.dataset == "synthetic" else _under(workdir, d.root)
    data = d.model_copy(update={"coco": coco, "voc": voc, "root": root})
    weights = cfg.model.pretrained
    model = cfg.model.model_copy(
        update={"pretrained": weights if is_weights_name(weights) else _under(workdir, weights)}
    )
    return cfg.model_copy(update={"train": train, "data": data, "model": model})


def _scalars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if isinstance(v, (int, float, str, bool))} for r in rows]


def _resume(cfg: TrainConfig, checkpoint: Any) -> tuple[TrainConfig, list[dict]]:
    """Restore ``checkpoint`` (a Ray ``Checkpoint`` of the trainer's files, or None) into the run
    directory of ``cfg``: the config to train with (``train.resume`` on when something was restored)
    and the restored epochs' metrics rows (scalar values)."""
    run = RunDir(cfg.train.out_dir)
    if checkpoint is None:
        return cfg, []
    with checkpoint.as_directory() as d:
        if not run.restore_from(d):
            return cfg, []
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": True})})
    return cfg, _scalars(run.read_metrics())


def _diverged(report_fn: Callable[..., None], metric: str, error: FloatingPointError) -> None:
    """Report a diverged run as a normal end: the metric is NaN (no searcher mistakes it for a
    score) and ``diverged`` carries the reason. Returning instead of raising means neither Tune
    nor Ray Train retries a run that would diverge again from its last checkpoint."""
    report_fn({metric: float("nan"), DIVERGED: str(error)})


def _reporter(
    report_fn: Callable[..., None],
    checkpoint_cls: Any,
    out_dir: Path,
    every: int,
    epochs: int,
    is_main: bool,
    started: float,
    world_size: int = 1,
    restored: Sequence[dict] = (),
) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """The ``report`` the trainer calls after every epoch: the metrics plus the trial's bookkeeping
    to Ray, with the run's files as a checkpoint every ``every`` epochs and at the last (rank 0 only)."""
    resumed_from = last_epoch(list(restored))
    pending = list(restored) if is_main else []
    run = RunDir(out_dir)

    sent: list[int] = []

    def report(metrics: dict) -> None:
        sent.append(int(metrics.get(EPOCH, 0)))
        m = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        m["world_size"] = world_size
        m["resumed_from_epoch"] = resumed_from  # > 0: this attempt continued from a checkpoint
        if pending:  # once per attempt: the epochs before the checkpoint, which the driver may
            # never have received (a worker or the driver died first); study.store fills them in
            m[RESTORED_EPOCHS] = json.dumps(pending)
            pending.clear()
        m["trial_started_at"] = started
        m["reported_at"] = time.time()
        epoch = int(metrics.get(EPOCH, 0))
        if not (is_main and (epoch % every == 0 or epoch == epochs)):
            report_fn(m)
            return
        with tempfile.TemporaryDirectory(prefix="splicemix-ckpt-") as tmp:
            run.copy_to(tmp)
            report_fn(m, checkpoint=checkpoint_cls.from_directory(tmp))

    def finish() -> None:
        """After the run: an attempt that resumed from a checkpoint of its last epoch trains nothing and so
        reported nothing; it sends that epoch again (on every rank, as Ray Train wants), with the restored
        ones, so the driver records them (it may have been killed before they arrived)."""
        if restored and not sent:
            report(dict(restored[-1]))

    return report, finish


def _train_worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker: the splicemix loop under DDP (process group set up by Ray)."""
    import ray.train
    from ray.train import Checkpoint

    from splicemix.train import train

    cfg = TrainConfig.model_validate(loop_config["cfg"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    if rank:  # only rank 0 writes files; every rank restores a checkpoint into its own folder
        out = Path(cfg.train.out_dir) / f"rank{rank}"
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"out_dir": str(out)})})
    # the newest whole checkpoint this trial stored (covers one that was written but not yet
    # registered when a worker died), else Ray Train's, else the one the Tune trial was given
    checkpoint = (
        stored_checkpoint(loop_config.get("stored", [])) or ray.train.get_checkpoint() or loop_config.get("checkpoint")
    )
    cfg, restored = _resume(cfg, checkpoint)
    prepare_data(cfg)  # every node needs the data; the file lock makes one process per node generate it
    report, finish = _reporter(
        ray.train.report,
        Checkpoint,
        Path(cfg.train.out_dir),
        loop_config["every"],
        cfg.train.epochs,
        rank == 0,
        loop_config["started"],
        ctx.get_world_size(),
        restored,
    )
    try:
        train(cfg, report=report)
    except FloatingPointError as e:  # raised on every rank at once: the check is on the all-reduced loss
        _diverged(ray.train.report, loop_config["metric"], e)
    else:
        finish()
    RunDir(cfg.train.out_dir).remove()


def run_trial(
    config: dict[str, Any], spec_json: str, base: dict, data_cache: str, use_gpu: bool, workdir: str, study_uri: str
) -> None:
    """The Tune trainable (a function): one training run of the configuration ``config``.

    It continues from Tune's checkpoint of the trial (a retry after a failure, or a resumed
    study), else from the newest checkpoint the trial left in ``study_uri`` (a study resumed
    after its driver was killed before Tune registered that checkpoint). A run whose loss stops
    being finite (``FloatingPointError``, of which ``splicemix.train.TrainingDiverged`` is one)
    ends the trial with a ``diverged`` result instead of an error."""
    import ray.tune as tune

    started = time.time()
    spec = StudySpec.model_validate_json(spec_json)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    out_dir = Path(tempfile.gettempdir()) / "splicemix-study" / f"{ctx.get_experiment_name()}" / trial_id
    cfg = trial_config(spec, base, config, data_cache, str(out_dir), workdir)
    if not use_gpu:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
    stored = trial_storage_dirs(study_uri, trial_id)
    checkpoint = tune.get_checkpoint() or stored_checkpoint(stored)
    if spec.use_train_backend():
        _fit_trainer(spec, cfg, checkpoint, stored, started, use_gpu, join_uri(study_uri, TRAIN_DIR), trial_id)
    else:
        _train_here(spec, cfg, checkpoint, started)


def _train_here(spec: StudySpec, cfg: TrainConfig, checkpoint: Any, started: float) -> None:
    """The direct path: train() in the Tune trial's own process."""
    import ray.tune as tune
    from ray.tune import Checkpoint

    from splicemix.train import train

    cfg, restored = _resume(cfg, checkpoint)
    prepare_data(cfg)
    out_dir = Path(cfg.train.out_dir)
    report, finish = _reporter(
        tune.report,
        Checkpoint,
        out_dir,
        spec.resources.checkpoint_every,
        cfg.train.epochs,
        True,
        started,
        restored=restored,
    )
    try:
        train(cfg, report=report)
    except FloatingPointError as e:
        _diverged(tune.report, spec.search.metric, e)
    else:
        finish()
    RunDir(out_dir).remove()  # every epoch's files went to Ray's storage with its checkpoint


def _fit_trainer(
    spec: StudySpec,
    cfg: TrainConfig,
    checkpoint: Any,
    stored: list[str],
    started: float,
    use_gpu: bool,
    train_storage: str,
    trial_id: str,
) -> None:
    """The Ray Train path: a TorchTrainer over ``resources.num_workers`` DDP workers, each epoch
    forwarded to this Tune trial by ``TuneReportCallback`` (Ray 2.60's Train V2 pattern)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    r = spec.resources
    callbacks: list[Any] = [TuneReportCallback()]  # a Train V2 callback; Ray's annotation names the V1 base class
    trainer = TorchTrainer(
        _train_worker_loop,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "every": r.checkpoint_every,
            "started": started,
            "checkpoint": checkpoint,
            "metric": spec.search.metric,
            "stored": stored,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": r.cpus_per_worker}
        ),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=train_storage,
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=r.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()
