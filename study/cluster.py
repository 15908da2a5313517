"""Every contact with Ray's set-up, and every workaround of Ray's internals, in one place.

* :func:`configure_environment`: the environment variables Ray reads (call it before Ray is imported);
* :func:`init_ray`: a private local Ray on loopback, or joining ``--address`` (:func:`split_address`,
  :func:`check_address`, an init with a timeout) with this project's code shipped to the cluster's
  nodes (:func:`runtime_env`), with Ray's deprecation chatter filtered for Ray's own modules only
  (:func:`quiet_ray_warnings`);
* :func:`reattach_callbacks`: ``Tuner.restore`` has no way to hand it this run's callbacks;
* :func:`stored_checkpoint`: the newest whole checkpoint a trial left in the study's storage
  (``trial_<id>/checkpoint_*``, ``_train/<id>/checkpoint_*``; :func:`trial_storage_dirs`).

Written for Ray 2.60 (Train V2). Where a private Ray name is touched, it is looked up with
``hasattr`` first, and the code does without it when it is gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from .schema import StudyError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "RAY_ENV",
    "TRAIN_DIR",
    "configure_environment",
    "local_cores",
    "split_address",
    "check_address",
    "init_ray",
    "RAY_EXTRAS",
    "check_ray_extras",
    "SHIPPED_PACKAGES",
    "read_runtime_env",
    "job_runtime_env",
    "runtime_env",
    "init_abandoned",
    "AUTH_ENV",
    "auth_problem",
    "quiet_ray_warnings",
    "reattach_callbacks",
    "trial_dirname",
    "trial_storage_dirs",
    "stored_checkpoint",
    "heal_checkpoint",
]

CONNECT_TIMEOUT_S = 30.0  #: default of --connect-timeout
#: set (unless already set) before Ray is imported: Ray reads most of them at import time
RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's classic table reporter (CLIReporter), which study.runner configures
    "RAY_TRAIN_V2_ENABLED": "1",  # the Train V2 API: a TorchTrainer fitted inside a Tune function trainable
    "RAY_DEDUP_LOGS": "1",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
TRAIN_DIR = "_train"  #: the study folder's sub-folder for the Ray Train runs of multi-worker trials
_INIT_THREAD = "ray-init"  # the name of the thread that joins a cluster (init_abandoned looks for it)
_RAY_MODULES = r"ray(\.|$)"  # the warnings filter's module pattern: Ray's own modules


def configure_environment() -> None:
    """Set :data:`RAY_ENV` (keeping values the user set); call before Ray is imported."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def local_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- addresses
def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a ``host:port`` / ``ray://host[:port]`` Ray address (StudyError otherwise)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    rest = rest.strip().rstrip("/")
    if scheme not in ("", "ray") or not rest or "/" in rest:
        raise StudyError(
            f"--address {address!r}: expected 'auto', host:port (the Ray head's GCS port, e.g. "
            "10.0.0.5:6379) or ray://host:port (Ray Client)"
        )
    host, colon, port = rest.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = rest, ("10001" if scheme == "ray" else "6379")  # Ray's default client / GCS ports
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(f"--address {address!r}: expected host:port with a port number between 1 and 65535")
    return host, int(port)


def check_address(address: str | None, timeout: float) -> None:
    """Fail fast, naming the address, when nothing listens at a host:port Ray address: ray.init
    itself would retry for minutes. 'auto' / 'local' are left to Ray (and the init timeout)."""
    if not address or address in ("auto", "local"):
        return
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e) or type(e).__name__)
        raise StudyError(
            f"--address {address}: no Ray cluster answers at {host}:{port} within {timeout:g} s ({reason}); expected "
            "the address of a running Ray head ('ray start --head'), 'auto', or no --address for a local Ray"
        ) from None


# --------------------------------------------------------------------------- ray.init
def init_ray(
    address: str | None,
    num_cpus: int | None,
    dashboard: bool,
    verbose: bool,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    *,
    ship_code: bool = True,
    runtime_env_file: str | None = None,
    commit: str | None = None,
) -> bool:
    """Start a private local Ray (loopback only; ``num_cpus`` default max(8, 4 x cores)) or join
    ``address`` with :func:`runtime_env` (this project's code, ``runtime_env_file``); True when a
    local instance was started here (the caller shuts it down). A Ray the caller already
    initialised (a notebook, the tests) is used as it is. ``commit`` names the code in the log line."""
    configure_environment()
    check_ray_extras(address, dashboard)
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if not address:
        _loopback_only()
    import ray

    user_env = read_runtime_env(runtime_env_file) if runtime_env_file else {}

    quiet: dict[str, Any] = dict(
        log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING, configure_logging=True
    )
    if address:
        env, line = runtime_env(ship_code, user_env, commit)
        check_address(address, connect_timeout)
        print(f"study.run: {line}", flush=True)
        kwargs = dict(address=address, runtime_env=env or None, **quiet)
        context = _init_within(kwargs, address, connect_timeout, capture=not verbose)
        _print_dashboard(context, dashboard)
        return False
    # address="local": always a new, private instance, even where `ray start --head` left a cluster that
    # a bare ray.init() would join. Its session folder and ports are its own (Ray picks free ports, the
    # dashboard the next free one after 8265), and it writes no /tmp/ray/ray_current_cluster. Its
    # workers run this Python on this file system, so no code is shipped (it would only be copied into
    # Ray's session folder); the user's --runtime-env still applies. Ray 2.60 turns on token
    # authentication for a new local instance unless RAY_AUTH_MODE says otherwise (its token: ~/.ray/auth_token,
    # made by Ray when missing); that default is kept.
    _keep_default_auth_quiet()
    context = ray.init(
        address="local",
        num_cpus=num_cpus or max(8, 4 * local_cores()),
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        runtime_env=user_env or None,
        **quiet,
    )
    _print_dashboard(context, dashboard)
    return True


class _DefaultAuthNotice(logging.Filter):
    """Drops Ray's warning that a new local instance turned token authentication on (its default,
    which the private Ray keeps): a line on every study's stderr that asks nothing of the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _keep_default_auth_quiet() -> None:
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DefaultAuthNotice) for f in log.filters):
        log.addFilter(_DefaultAuthNotice())


def _print_dashboard(context: Any, dashboard: bool) -> None:
    url = getattr(context, "dashboard_url", None)
    if dashboard and url:
        print(f"study.run: Ray dashboard at {url if '://' in url else 'http://' + url}", flush=True)


# --------------------------------------------------------------------------- optional pieces of Ray
#: the pip extra of Ray a feature needs, and the modules that tell whether it is installed
RAY_EXTRAS = {
    "default": ("aiohttp", "aiohttp_cors", "prometheus_client"),  # the dashboard, the job server
    "client": ("grpc",),  # ray:// addresses (Ray Client)
}


def check_ray_extras(address: str | None, dashboard: bool) -> None:
    """One error line when a requested feature needs a Ray extra that is not installed (instead of
    Ray's traceback from deep inside ray.init)."""
    needs = []
    if dashboard and not address:
        needs.append(("--dashboard", "default"))
    if address and address.startswith("ray://"):
        needs.append((f"--address {address}", "client"))
    for flag, extra in needs:
        missing = [m for m in RAY_EXTRAS[extra] if importlib.util.find_spec(m) is None]
        if missing:
            raise StudyError(
                f"{flag} needs ray[{extra}], which is not installed (no module {', '.join(missing)}); expected "
                f"pip install 'ray[{extra}]' (the study extra of this project has it)"
            )


# --------------------------------------------------------------------------- code shipping
#: the packages a trial imports, shipped to the nodes of a cluster (analysis reads Parquet, on the driver)
SHIPPED_PACKAGES = ("splicemix", "study")
# Ray's job supervisor hands a `ray job submit` driver the job's runtime_env in this variable
# (ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR in 2.60); ray.init merges its own
# runtime_env into that one and fails when both set the same field.
_JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def read_runtime_env(path: str) -> dict[str, Any]:
    """A Ray runtime_env from a YAML file (``--runtime-env``: pip, env_vars, working_dir, ...)."""
    from splicemix.config import read_yaml_mapping

    if not os.path.isfile(path):
        raise StudyError(f"--runtime-env {path!r}: no such file; expected a YAML file holding a Ray runtime_env")
    env = read_yaml_mapping(path, "a Ray runtime_env mapping (pip, env_vars, working_dir, py_modules, ...)")
    from ray.runtime_env import RuntimeEnv

    known = sorted(k for k in getattr(RuntimeEnv, "known_fields", ()) if not k.startswith("_"))
    unknown = [k for k in env if known and k not in known]
    if unknown:
        raise StudyError(f"--runtime-env {path}: unknown field {unknown[0]!r}; expected one of {', '.join(known)}")
    try:
        RuntimeEnv(**env)  # Ray's own check of the fields' values
    except (TypeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StudyError(f"--runtime-env {path}: not a valid Ray runtime_env ({first[:300]})") from None
    return env


def job_runtime_env() -> dict[str, Any] | None:
    """The runtime_env of the Ray job this driver runs in (``ray job submit``), or None outside a job."""
    raw = os.environ.get(_JOB_ENV_VAR)
    if not raw:
        return None
    try:
        env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return {}
    return env if isinstance(env, dict) else {}


def runtime_env(ship_code: bool, user_env: dict[str, Any], commit: str | None) -> tuple[dict[str, Any], str]:
    """The runtime_env a driver that joins a cluster gives Ray, and one line saying which code went.

    The packages of :data:`SHIPPED_PACKAGES` go as ``py_modules`` (Ray zips each package folder,
    uploads it once per content hash and puts it on every worker's ``sys.path``): no data, runs,
    virtual environment or ``.git``. Not shipped with ``--no-ship-code`` (the cluster's image has the
    package), nor when the job this driver runs in already carries code (``ray job submit
    --working-dir``, or a job's ``py_modules``), which Ray hands to every task of the job.
    """
    version = f"git {commit}" if commit else "not a git checkout"
    env = {k: list(v) if isinstance(v, list) else v for k, v in user_env.items()}
    job = job_runtime_env()
    if job is not None:
        clash = sorted((set(env) & set(job)) - {"env_vars"})
        clash += sorted(set(env.get("env_vars") or {}) & set(job.get("env_vars") or {}))
        if clash:
            raise StudyError(
                f"--runtime-env: {', '.join(clash)} already set by the job's runtime_env (ray job submit "
                "--runtime-env / --working-dir); expected each field in one of the two"
            )
    if not ship_code:
        return env, f"code not shipped (--no-ship-code): the cluster's nodes import their own ({version} here)"
    if job is not None and ("working_dir" in job or "py_modules" in job):
        carried = "working_dir" if "working_dir" in job else "py_modules"
        return env, f"code: the job's {carried} (ray job submit) carries it to every node ({version})"
    modules = [importlib.import_module(name) for name in SHIPPED_PACKAGES]
    env["py_modules"] = [*env.get("py_modules", []), *modules]
    if job is None or "excludes" not in job:
        env["excludes"] = [*env.get("excludes", []), "__pycache__/"]
    where = os.path.dirname(os.path.dirname(os.path.abspath(modules[0].__file__ or "")))
    return env, f"code: {', '.join(SHIPPED_PACKAGES)} from {where} ({version}) shipped to the cluster as py_modules"


def _loopback_only() -> None:
    """Make the Ray this process starts bind every server to 127.0.0.1: Ray's "no cluster" mode, meant
    for macOS / Windows (the opt-in flag of ray-project/ray#31166, issue #30770). Without it a local
    Ray advertises and listens on the machine's external address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # Ray reads that variable once, when ray._private.ray_constants is imported: a Ray imported before
    # this call (a notebook, the tests) needs its constant changed too. Left alone where it is gone.
    constants: Any = sys.modules.get("ray._private.ray_constants")
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False


def init_abandoned() -> bool:
    """Whether a ray.init that outlived --connect-timeout is still waiting on its cluster (then the
    process should end with os._exit: Ray's shutdown hooks would wait for it)."""
    return any(t.name == _INIT_THREAD and t.is_alive() for t in threading.enumerate())


class _NotMainThread(logging.Filter):
    """ray.init from a helper thread logs that it cannot install signal handlers there: true, and harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


class _HeldStderr:
    """File descriptor 2 redirected into a temporary file: Ray's core writes its connection retries
    (a line a second while a cluster does not answer) straight to fd 2, not through sys.stderr."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)

    def release(self, still_writing: bool) -> None:
        sys.stderr.flush()
        if still_writing:  # the init thread keeps logging to fd 2: leave that captured, print to the real stderr
            sys.stderr = open(self.saved, "w", buffering=1, closefd=False)
            return
        os.dup2(self.saved, 2)
        os.close(self.saved)

    def refused(self) -> bool:
        """Whether Ray's core logged that the cluster refused this process's authentication token."""
        self.file.seek(0)
        text = self.file.read().decode(errors="replace")
        return "Unauthenticated" in text or "InvalidAuthToken" in text

    def replay(self) -> None:
        self.file.seek(0)
        sys.stderr.write(self.file.read().decode(errors="replace"))
        sys.stderr.flush()


def _init_within(kwargs: dict[str, Any], address: str, timeout: float, capture: bool = True) -> Any:
    """ray.init(**kwargs) in a helper thread, waiting at most ``timeout`` seconds for it (ray.init has
    no timeout of its own); its RayContext. With ``capture``, what Ray writes to stderr meanwhile is
    held back: replayed when the connection worked, read for an authentication refusal (then one
    error line says how to authenticate) and dropped when it did not."""
    import ray

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["context"] = ray.init(**kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name=_INIT_THREAD, daemon=True)
    not_main, worker_log = _NotMainThread(), logging.getLogger("ray._private.worker")
    worker_log.addFilter(not_main)
    held = _HeldStderr() if capture else None
    try:
        thread.start()
        thread.join(timeout)
    finally:
        worker_log.removeFilter(not_main)
        if held is not None:
            held.release(still_writing=thread.is_alive())
    err = box.get("error")
    refused = isinstance(err, ray.exceptions.AuthenticationError) or (held is not None and held.refused())
    if refused and (err is not None or thread.is_alive()):
        raise StudyError(auth_problem(address))
    if thread.is_alive():
        raise StudyError(
            f"--address {address}: Ray did not connect within {timeout:g} s (--connect-timeout); "
            "expected a running, reachable Ray cluster at that address"
        )
    if held is not None and err is None:
        held.replay()
    if isinstance(err, (ConnectionError, TimeoutError, ValueError, RuntimeError)):
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError(
            f"--address {address}: cannot connect to Ray ({first[:300]}); expected a running Ray "
            "cluster at that address, or no --address for a local Ray"
        ) from None
    if err is not None:
        raise err
    return box.get("context")


# Ray 2.60's names for token authentication (ray._private.authentication): the mode, the token itself
# or the file that holds it, and the default file (~/.ray/auth_token)
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def auth_problem(address: str) -> str:
    """The one line for a cluster that refused this driver's (missing) token, with what this process has."""
    mode = os.environ.get("RAY_AUTH_MODE")
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    sources = [v for v in AUTH_ENV[1:] if os.environ.get(v)] + ([default] if os.path.isfile(default) else [])
    return (
        f"--address {address}: the Ray cluster refused this driver: token authentication failed "
        f"(RAY_AUTH_MODE is {mode or 'unset'}; token from {', '.join(sources) if sources else 'nowhere'}); "
        "expected RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, in the file RAY_AUTH_TOKEN_PATH "
        "names or in ~/.ray/auth_token (`ray get-auth-token` on the head prints it)"
    )


@contextlib.contextmanager
def quiet_ray_warnings() -> Iterator[None]:
    """Deprecation- and FutureWarnings raised in Ray's own modules hidden while the block runs (the
    process's filters are restored afterwards): a newer Ray's notices about its APIs stay out of a
    study's output. Ray 2.60 raises none in a smoke study, with or without this filter."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=_RAY_MODULES)
        yield


# --------------------------------------------------------------------------- Tune
def reattach_callbacks(tuner: Any, callbacks: list[Any], reporter: Any) -> bool:
    """Hand a ``Tuner.restore``-d tuner this run's callbacks and progress reporter; False when this Ray
    offers no way to.

    ``Tuner.restore`` takes no ``callbacks``: it keeps the pickled copies of the first run's, whose
    result store is not this run's (ray-project/ray#41364 asks for a public access to a restored
    tuner's RunConfig; none exists in 2.60). The local tuner's run config is private, hence the guards.
    """
    internal = getattr(tuner, "_local_tuner", None)  # None under Ray Client: the tuner runs remotely
    if internal is None:
        return False
    if hasattr(internal, "get_run_config"):
        run_config = internal.get_run_config()
    else:
        run_config = getattr(internal, "_run_config", None)
    if run_config is None or not hasattr(run_config, "callbacks"):
        return False
    run_config.callbacks = list(callbacks)
    run_config.progress_reporter = reporter
    return True


def trial_dirname(trial: Any) -> str:
    """The folder of a Tune trial inside the study folder (Tune's ``trial_dirname_creator``)."""
    return f"trial_{trial.trial_id}"


def trial_storage_dirs(study_uri: str, trial_id: str) -> list[str]:
    """Where a trial's checkpoints are stored: its Tune trial folder, and its Ray Train run's folder."""
    from .store import join_uri

    return [join_uri(study_uri, f"trial_{trial_id}"), join_uri(study_uri, TRAIN_DIR, trial_id)]


def stored_checkpoint(dirs: list[str]) -> Any:
    """The newest whole checkpoint a trial left in storage, as a Ray ``Checkpoint`` (or None).

    After a killed driver, ``--resume`` can restart a trial without handing it a checkpoint: Tune's
    experiment state was saved before the trial's last checkpoint was registered. The checkpoints
    the trial wrote are still in its folders (:func:`trial_storage_dirs`; Ray names them
    ``checkpoint_<n>``); the newest epoch whose ``checkpoint.pt`` is a whole file is used, a
    truncated one is skipped.
    """
    from ray.tune import Checkpoint

    from splicemix.engine.rundir import RunDir, last_epoch, parse_metrics

    from .store import resolve_storage

    best: tuple[int, Any] | None = None
    for uri in dirs:
        fs, path, _ = resolve_storage(uri)
        for folder in _checkpoint_folders(fs, path):
            try:
                with fs.open_input_stream(f"{folder}/{RunDir.METRICS}") as f:
                    epoch = last_epoch(parse_metrics(f.read().decode()))
                with fs.open_input_file(f"{folder}/{RunDir.CHECKPOINT}") as f:
                    whole = RunDir.checkpoint_is_whole(f)
            except (OSError, ValueError):
                continue
            if whole and epoch > 0 and (best is None or epoch > best[0]):
                best = (epoch, Checkpoint(folder, filesystem=fs))
    return best[1] if best else None


def heal_checkpoint(checkpoint: Any, dirs: list[str]) -> str | None:
    """Make the checkpoint Tune will restore a trial from exist again, when it is gone; returns what
    was done (None: nothing was needed).

    ``CheckpointConfig(num_to_keep)`` has Ray delete a trial's older checkpoint the moment it
    registers a newer one, and save the experiment state (which names the newest) only at its next
    step, in the background. A driver killed in between leaves a state that names a deleted
    checkpoint; ``Tuner.restore`` would then fail that trial on every retry ("Could not recover from
    checkpoint as it does not exist on storage anymore"). The trial's newest whole stored checkpoint
    (:func:`stored_checkpoint` of ``dirs``) is copied to the missing path, so it continues from
    there; with none, an empty folder makes it start again from epoch 1.
    """
    import pyarrow.fs as pafs

    if checkpoint is None:
        return None
    fs, path = checkpoint.filesystem, checkpoint.path
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return None
    newest = stored_checkpoint(dirs)
    fs.create_dir(path, recursive=True)
    if newest is None:
        return f"{path} was gone and no other checkpoint was stored: it starts again"
    pafs.copy_files(newest.path, path, source_filesystem=newest.filesystem, destination_filesystem=fs)
    return f"{path} was gone: it continues from the newest stored one, {newest.path}"


def _checkpoint_folders(fs: Any, path: str) -> list[str]:
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return [i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
