"""``python -m study.run SPACE.yaml``: a SpliceMix hyperparameter study with Ray Tune + Optuna.

Every trial is one splicemix training run (directly inside the Tune trial for one worker, or
a Ray Train ``TorchTrainer`` over ``resources.num_workers`` DDP workers). Without
``--address`` (or ``RAY_ADDRESS``) a local Ray is started on loopback with its dashboard
off; with ``--address auto`` the same command uses a running cluster and its GPUs.
Results: ``<storage>/<name>/trials.parquet`` and ``history.parquet`` (see study.store).

This module is the command line; the study is run by :mod:`study.runner`, Ray is set up by
:mod:`study.cluster`, one trial is :mod:`study.trial`, and :mod:`study.callback` records the results.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from splicemix.config import ConfigError
from splicemix.results import Status

from . import cluster
from .runner import StudyOptions, StudyResult
from .runner import run_study as _run
from .schema import StudyError

__all__ = ["main", "run_study", "StudyResult"]


def run_study(space: str, overrides: Sequence[str] = (), **options: Any) -> StudyResult:
    """Run (or resume) the study of the file ``space``: :func:`study.runner.run_study` with the
    keyword arguments of :class:`study.runner.StudyOptions` (``smoke_run``, ``storage``, ``name``,
    ``resume``, ``quiet``, ...). Raises StudyError on bad input."""
    return _run(space, StudyOptions(overrides=overrides, **options))


# --------------------------------------------------------------------------- CLI
_EPILOG = """\
examples:
  python -m study.run search_spaces/ratio.yaml
  python -m study.run search_spaces/ratio.yaml --smoke                 # 2 trials, 1 epoch, tiny data
  python -m study.run search_spaces/grid_scaling.yaml --set train.epochs=10 --num-samples 2
  python -m study.run search_spaces/ratio.yaml --name ratio-a --resume  # continue an interrupted study
  python -m study.run search_spaces/coco.yaml --address auto --storage s3://bucket/studies
  ray job submit --address http://HEAD:8265 --working-dir . -- python -m study.run search_spaces/ratio.yaml

On a cluster (--address, RAY_ADDRESS or `ray job submit`), splicemix and study are shipped to
every node as Ray py_modules (one line says which code, with its git commit); --no-ship-code
when the nodes have them installed. A cluster with token authentication needs RAY_AUTH_MODE=token
and its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) in the driver's environment.

--set key=value: a study key (search.num_samples=4, resources.num_workers=2, seeds=[0,1,2])
or a training key (optim.lr=0.01, train.epochs=5), which is then fixed for every trial.
Bad input (the study file, a --set value, a missing data path, an unwritable --storage, an
--address that does not answer within --connect-timeout) is one error line naming the file,
key, value or path, exit status 2, before Ray starts and before the study folder is made.
Values are YAML. Results: <storage>/<name>/trials.parquet (one row per trial) and
history.parquet (one row per trial per epoch), plus study.yaml, provenance.json and the Optuna
study of every trial (optuna.db unless --optuna-storage names another storage).
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
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study or training key (repeatable)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="2 trials, 1 epoch, tiny embedded data (a few minutes on a CPU)"
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="N",
        help="tpe / random: configurations to try; grid: repeats of the grid",
    )
    p.add_argument(
        "--storage",
        default=os.environ.get("SPLICEMIX_STUDY_STORAGE", "runs/studies"),
        help="folder or pyarrow URI (s3://...) for the study folders (default: runs/studies)",
    )
    p.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the Optuna storage that records every trial (postgresql://user@host/db; "
        "default: the study file's search.storage, else optuna.db, a SQLite file in the study folder)",
    )
    p.add_argument("--name", default=None, help="study folder name (default: <space name>-<date-time>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study --name (default: the newest <space name>-*) in --storage",
    )
    _add_ray_flags(p.add_argument_group("Ray and clusters (docs/studies.md#on-a-cluster)"))
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once (default: cores / CPUs per trial locally)"
    )
    p.add_argument("--data-cache", default="data", help="where synthetic data sets are generated (default: data/)")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="every trial skips images that cannot be decoded, counting them (sets data.skip_corrupt=true); "
        "without it a corrupt image fails the trial with an error naming the file",
    )
    p.add_argument("--report-every", type=float, default=60.0, metavar="S", help="seconds between progress tables")
    p.add_argument("--quiet", action="store_true", help="no progress tables or trial lines")
    p.add_argument("--verbose", action="store_true", help="show the trials' own output and Ray's logs")
    p.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks on errors (bad input is otherwise one line, exit status 2)",
    )
    return p


def _add_ray_flags(g: Any) -> None:
    """--address, the code shipping, the local Ray's CPUs and dashboard, into the argument group ``g``."""
    g.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster to join ('auto', host:port or ray://host:port; default: RAY_ADDRESS, which `ray job "
        "submit` sets; else a private local Ray on 127.0.0.1, even when another Ray runs on this machine)",
    )
    g.add_argument(
        "--runtime-env",
        default=None,
        metavar="FILE",
        help="YAML file with a Ray runtime_env for every trial (pip, env_vars, ...), merged with the shipped code",
    )
    g.add_argument(
        "--no-ship-code",
        dest="ship_code",
        action="store_false",
        help="with --address: do not ship splicemix and study to the cluster (its nodes have them installed); "
        "by default they go as Ray py_modules, unless `ray job submit --working-dir` carries them",
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=cluster.CONNECT_TIMEOUT_S,
        metavar="S",
        help=f"give up on an --address that does not answer after S seconds, with one error line "
        f"(default: {cluster.CONNECT_TIMEOUT_S:g})",
    )
    g.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="logical CPUs of a local Ray (default: max(8, 4 x cores), room for trial, Train controller and workers)",
    )
    g.add_argument(
        "--dashboard",
        action="store_true",
        help="start Ray's dashboard on 127.0.0.1 with the local Ray and print its URL (with --address: print the "
        "cluster's); off by default",
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: exit status 0 (a trial finished), 1 (none did), 2 (bad input), 130 (interrupted)."""
    args = _parser().parse_args(argv)
    try:
        result = run_study(
            args.space,
            args.overrides,
            smoke_run=args.smoke,
            num_samples=args.num_samples,
            storage=args.storage,
            name=args.name,
            resume=args.resume,
            address=args.address,
            num_cpus=args.num_cpus,
            max_concurrent=args.max_concurrent,
            dashboard=args.dashboard,
            data_cache=args.data_cache,
            report_every=args.report_every,
            quiet=args.quiet,
            verbose=args.verbose,
            command=["python", "-m", "study.run", *(argv if argv is not None else sys.argv[1:])],
            skip_corrupt=args.skip_corrupt,
            connect_timeout=args.connect_timeout,
            ship_code=args.ship_code,
            runtime_env=args.runtime_env,
            optuna_storage=args.optuna_storage,
        )
    except (StudyError, ConfigError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"study.run: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study.run: interrupted; continue with --resume --name <the study's name>", file=sys.stderr)
        return 130
    ok = [t for t in result.trials if t["status"] in (Status.COMPLETED.value, Status.STOPPED.value)]
    if not ok:
        print("study.run: error: no trial finished (see the messages above and trials.parquet)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    if cluster.init_abandoned():  # a ray.init thread is still waiting on the cluster: do not wait for it at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
