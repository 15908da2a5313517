"""Studies on a real multi-node Ray cluster started on this machine (real raylets, no mocks of Ray).

The cluster: a head node with 0 CPUs (so no trial can run on it) and a worker node with 2 CPUs
started inside its own mount namespace (``unshare -m``) where the project's package folders are
hidden under empty tmpfs mounts and the working folder is not the checkout: on that node
``import splicemix`` fails, as on a cluster node that never saw this project. Every trial runs
there, so a study completes only if the driver ships the code:

* ``--address`` from another folder: every trial completes; with ``--no-ship-code`` the trials fail
  with ``ModuleNotFoundError`` (the check that makes this test able to fail);
* ``ray job submit --working-dir <checkout>``: the job's working_dir carries the code;
* no ``--address`` while that cluster runs (found through ray_current_cluster): the study starts its
  own private Ray and the cluster's node list is unchanged; ``--dashboard`` serves on 127.0.0.1;
* node loss: the worker node's raylet is SIGKILLed mid-trial and a new worker node joins; every
  trial finishes once, continuing from its last checkpoint;
* token authentication: with the token the study completes; without it one error line names
  authentication.

Ray on Linux advertises the machine's address for a multi-node cluster even when given 127.0.0.1
(``resolve_ip_for_localhost``), and its loopback-only mode forbids worker nodes, so the nodes of
these clusters listen on this machine's own address; nothing here contacts another machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "ratio.yaml"
PACKAGES = ("splicemix", "study", "analysis")
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.ray, pytest.mark.slow]

# a fresh Python on this machine (cwd /, no PYTHONPATH): where it imports the project's packages from
WHERE = "import importlib.util as u, os; print(*[os.path.dirname(u.find_spec(p).origin) for p in {p!r}], sep='\\n')"
NODES = (
    "import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
    "print(json.dumps(sorted([n['NodeID'], n['Resources'].get('CPU', 0)] for n in ray.nodes() if n['Alive'])))"
)
# a study that runs long enough to lose a node mid-trial: 2 trials of 4 epochs, one retry each
LONG_SPACE = """
name: nodeloss
base: {base}
fixed:
  data.synthetic.n_train: 512
  data.synthetic.n_val: 128
  data.synthetic.image_size: 32
  data.image_size: 32
  data.eval_sizes: []
  mix.method: splicemix
  train.batch_size: 32
  train.epochs: 4
  train.cpu_threads: 1
space:
  mix.mixed_ratio: {{grid: [0.0, 0.5]}}
seeds: [0]
search: {{algorithm: grid, scheduler: fifo}}
resources: {{num_workers: 1, cpus_per_worker: 1, max_failures: 1}}
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Ray address or auth setting (an earlier test's local Ray
    may have set them here), with its own HOME (so no ~/.ray/auth_token is shared) and the venv's tools."""
    drop = {"RAY_ADDRESS", "RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), CI="true", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def _code_dirs() -> list[str]:
    """Every folder through which a Ray worker on this machine could import the project's packages:
    where this process imported them from, and where a fresh Python finds them (the editable install)."""
    import importlib.util

    specs = [importlib.util.find_spec(p) for p in PACKAGES]  # found, not imported (analysis needs its extra)
    dirs = {os.path.dirname(s.origin or "") for s in specs if s is not None}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", WHERE.format(p=PACKAGES)], cwd="/", env=env, capture_output=True, text=True, timeout=60
    )
    dirs |= set(out.stdout.split())
    return sorted(d for d in dirs if d)


def _kill_tree(marker: str) -> None:
    """SIGKILL every process whose command line holds ``marker`` (this test's own temp folder), and
    their children; other Ray instances on the machine are left alone."""
    victims: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                victims[p.pid] = p
                victims.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            continue
    for p in victims.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=20)


class Cluster:
    """A Ray head (0 CPUs) plus worker nodes (2 CPUs) that cannot import the project, on this machine."""

    def __init__(self, home: Path, auth: dict[str, str] | None = None, head_cpus: int = 0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.home, self.head_cpus = home, head_cpus
        self.env = _env(home, **(auth or {"RAY_AUTH_MODE": "disabled"}))
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []

    def start(self, workers: int = 1) -> Cluster:
        cmd = [str(BIN / "ray"), "start", "--head", "--num-cpus", str(self.head_cpus), "--port", str(self.port)]
        cmd += ["--temp-dir", str(self.root / "ray"), "--dashboard-port", str(self.dashboard_port)]
        cmd += ["--dashboard-host", "127.0.0.1", "--ray-client-server-port", str(free_port())]
        cmd += [*self._node_flags(), "--disable-usage-stats"]
        out = subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        for _ in range(workers):
            self.add_worker()
        return self

    def _node_flags(self) -> list[str]:
        return [
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
        ]

    def add_worker(self) -> None:
        """A worker node in its own mount namespace with the project's packages hidden (and checked gone)."""
        temp = self.root / f"w{len(self.workers)}"
        temp.mkdir()
        hide = "; ".join(f"mount -t tmpfs -o size=1m tmpfs {d}" for d in _code_dirs())
        ray = [str(BIN / "ray"), "start", "--address", self.address, "--num-cpus", "2", "--block"]
        ray += ["--temp-dir", str(temp), *self._node_flags(), "--disable-usage-stats"]
        # an emptied package folder still imports as a namespace package: check a module inside it
        script = (
            f"set -e; {hide}; cd {temp}; "
            f"if {sys.executable} -c 'import splicemix.mixing' 2>/dev/null; then echo 'splicemix is still importable'; "
            f"exit 3; fi; exec {' '.join(ray)}"
        )
        env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
        log = open(temp / "node.log", "w")  # noqa: SIM115 - closed with the node
        self.workers.append(
            subprocess.Popen(["unshare", "-m", "bash", "-c", script], env=env, cwd=temp, stdout=log, stderr=log)
        )
        self.wait_nodes(1 + sum(p.poll() is None for p in self.workers))

    def nodes(self) -> list[list]:
        out = subprocess.run(
            [sys.executable, "-c", NODES, self.address], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def wait_nodes(self, n: int, timeout: float = 180) -> list[list]:
        end, nodes = time.time() + timeout, []
        while time.time() < end:
            nodes = self.nodes()
            if len(nodes) == n:
                return nodes
            newest = self.workers[-1] if self.workers else None
            assert newest is None or newest.poll() is None, (
                self.root / f"w{len(self.workers) - 1}" / "node.log"
            ).read_text()
            time.sleep(1)
        raise AssertionError(f"the cluster has {len(nodes)} nodes, expected {n}: {nodes}")

    def raylet(self, worker: int) -> psutil.Process:
        marker = str(self.root / f"w{worker}")
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "raylet/raylet" in cmd and marker in cmd:
                return p
        raise AssertionError(f"no raylet of worker node {worker}")

    def stop(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.kill()
        _kill_tree(str(self.root))
        for p in self.workers:
            p.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def hidden():
    """Skips when this machine cannot make a mount namespace (root, or a container that allows it)."""
    if shutil.which("unshare") is None:
        pytest.skip("no `unshare` command here: no hidden-checkout node")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"`unshare -m` is not permitted here ({probe.stderr.strip()[:200]}): no hidden-checkout node")


@pytest.fixture(scope="module")
def cluster(hidden, tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("home"))
    try:
        yield c.start()
    finally:
        c.stop()


def _study(tmp: Path, *args: str, env: dict[str, str], space: Path = SPACE, timeout: float = 600) -> tuple:
    """``python -m study.run SPACE`` from ``tmp`` (not the checkout): (exit status, output, trial rows)."""
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "study.run", str(space), "--storage", str(tmp / "st"), "--name", "s"]
    cmd += ["--data-cache", str(tmp.parent / "data"), *args]
    out = subprocess.run(
        cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    trials = tmp / "st" / "s" / "trials.parquet"
    rows = pq.read_table(trials).to_pylist() if trials.is_file() else []
    return out.returncode, out.stdout + out.stderr, rows


# --------------------------------------------------------------------------- --address, code shipping
def test_address_ships_the_code_to_a_node_without_it(cluster, tmp_path):
    env = _env(cluster.home)
    code, log, rows = _study(tmp_path / "a", "--smoke", "--address", cluster.address, "--no-ship-code", env=env)
    assert code == 1 and "code not shipped (--no-ship-code)" in log, log[-3000:]
    assert len(rows) == 2 and all(r["status"] == "error" for r in rows), rows
    assert "ModuleNotFoundError" in log and "No module named" in log, log[-3000:]

    t0 = time.time()
    code, log, rows = _study(tmp_path / "b", "--smoke", "--address", cluster.address, env=env)
    wall = time.time() - t0
    assert code == 0, log[-3000:]
    shipped = [line for line in log.splitlines() if "shipped to the cluster as py_modules" in line]
    assert len(shipped) == 1 and "splicemix, study from" in shipped[0], log[-3000:]
    assert len(rows) == 2 and all(r["status"] == "completed" and r["epochs_run"] == 1 for r in rows), rows
    # the head has 0 CPUs: every trial ran on the worker node, whose Python cannot import the checkout
    assert [n[1] for n in cluster.nodes()] in ([0, 2], [2, 0])
    print(f"--address smoke on the hidden-checkout cluster: {wall:.1f} s (driver start to exit)")


def test_ray_job_submit_with_working_dir(cluster, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    storage = tmp_path / "st"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{cluster.dashboard_port}"]
    cmd += ["--working-dir", str(ROOT), "--", "python", "-m", "study.run", "search_spaces/ratio.yaml", "--smoke"]
    cmd += ["--storage", str(storage), "--name", "s", "--data-cache", str(tmp_path.parent / "data")]
    t0 = time.time()
    out = subprocess.run(
        cmd, cwd=tmp_path, env=_env(cluster.home), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600
    )
    wall = time.time() - t0
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "succeeded" in log, log[-3000:]
    assert "code: the job's working_dir (ray job submit)" in log, log[-3000:]
    rows = pq.read_table(storage / "s" / "trials.parquet").to_pylist()
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows), rows
    print(f"ray job submit smoke on the hidden-checkout cluster: {wall:.1f} s")


# --------------------------------------------------------------------------- no --address: a private Ray
def _fetch_dashboard(proc: subprocess.Popen, seen: dict) -> None:
    """Read the study's output; when it prints the dashboard's URL, fetch that page while the study runs."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.setdefault("log", []).append(line)
        m = re.search(r"Ray dashboard at (http://\S+)", line)
        if m and "url" not in seen:
            seen["url"] = m.group(1)
            try:
                with urllib.request.urlopen(seen["url"], timeout=30) as r:
                    seen["status"] = r.status
            except OSError as e:
                seen["status"] = repr(e)


def test_no_address_starts_a_private_ray_beside_a_running_cluster(cluster, tmp_path):
    """ray.init() without an address would join the cluster that ray_current_cluster names (here:
    RAY_TMPDIR points at the cluster's temp folder); the study must start its own Ray instead."""
    current = cluster.root / "ray" / "ray_current_cluster"
    assert current.read_text().strip().endswith(f":{cluster.port}")
    before = cluster.nodes()
    env = _env(cluster.home, RAY_TMPDIR=str(cluster.root))
    (tmp_path / "a").mkdir()
    cmd = [sys.executable, "-m", "study.run", str(SPACE), "--smoke", "--dashboard", "--storage", str(tmp_path / "st")]
    cmd += ["--name", "s", "--data-cache", str(tmp_path.parent / "data")]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path / "a",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict = {}
    reader = threading.Thread(target=_fetch_dashboard, args=(proc, seen), daemon=True)
    reader.start()
    try:
        code = proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(60)
    log = "".join(seen.get("log", []))
    assert code == 0, log[-3000:]
    assert seen.get("url", "").startswith("http://127.0.0.1:"), log[-3000:]
    assert not seen["url"].endswith(f":{cluster.dashboard_port}")  # its own dashboard, not the cluster's
    assert seen.get("status") == 200, seen.get("status")
    rows = pq.read_table(tmp_path / "st" / "s" / "trials.parquet").to_pylist()
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows), rows
    assert cluster.nodes() == before  # nothing joined or left the other cluster
    assert current.read_text().strip().endswith(f":{cluster.port}")


# --------------------------------------------------------------------------- node loss
def _checkpoints(study: Path) -> list[Path]:
    return sorted(study.glob("trial_*/checkpoint_*"))


def test_lost_node_trials_resume_on_a_new_node(cluster, tmp_path):
    """Runs last on the module's cluster: its worker node is killed and replaced."""
    space = tmp_path / "space.yaml"
    space.write_text(LONG_SPACE.format(base=ROOT / "configs" / "default.yaml"))
    (tmp_path / "a").mkdir()
    study = tmp_path / "a" / "st" / "s"
    cmd = [sys.executable, "-m", "study.run", str(space), "--address", cluster.address, "--quiet"]
    cmd += ["--storage", str(study.parent), "--name", "s", "--data-cache", str(tmp_path.parent / "data")]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path / "a",
        env=_env(cluster.home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        end = time.time() + 400
        while time.time() < end and proc.poll() is None and not _checkpoints(study):
            time.sleep(0.2)
        assert proc.poll() is None and _checkpoints(study), "no checkpoint before the study ended"
        time.sleep(0.3)  # let the checkpoint's files finish (a torn one is skipped anyway)
        lost = [p.parent.name for p in _checkpoints(study)]
        cluster.raylet(len(cluster.workers) - 1).send_signal(signal.SIGKILL)  # the node is gone
        cluster.workers[-1].wait(120)  # `ray start --block` sees its raylet die and ends the node
        cluster.add_worker()
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    rows = pq.read_table(study / "trials.parquet").to_pylist()
    assert sorted(float(r["cfg.mix.mixed_ratio"]) for r in rows) == [0.0, 0.5], rows  # each trial once
    assert all(r["status"] == "completed" and r["epochs_run"] == 4 for r in rows), rows
    history: dict[str, list[int]] = {}
    for r in pq.read_table(study / "history.parquet").to_pylist():
        history.setdefault(r["trial_id"], []).append(int(r["epoch"]))
    assert sorted(map(sorted, history.values())) == [[1, 2, 3, 4]] * 2, history  # no epoch lost or counted twice
    cut = [r for r in rows if f"trial_{r['trial_id']}" in lost]
    assert cut and all(r["failures"] == 1 and r["resumed_from_epoch"] >= 1 for r in cut), rows


# --------------------------------------------------------------------------- token authentication
@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    token = secrets.token_hex(32)
    c = Cluster(tmp_path_factory.mktemp("home"), {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, head_cpus=2)
    try:
        yield c.start(workers=0), token
    finally:
        c.stop()


def test_token_authentication(auth_cluster, tmp_path):
    cluster, token = auth_cluster
    home = cluster.home
    code, log, rows = _study(
        tmp_path / "a",
        "--smoke",
        "--address",
        cluster.address,
        env=_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
    )
    assert code == 0 and len(rows) == 2 and all(r["status"] == "completed" for r in rows), log[-3000:]

    for env in (_env(home), _env(home, RAY_AUTH_TOKEN=token)):  # no token; a token but no mode
        code, log, rows = _study(
            tmp_path / "b", "--smoke", "--address", cluster.address, "--connect-timeout", "8", env=env
        )
        errors = [line for line in log.splitlines() if line.startswith("study.run: error:")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in log, log[-3000:]
        assert "token authentication failed" in errors[0] and "RAY_AUTH_MODE=token" in errors[0], errors
        assert not rows and not (tmp_path / "b" / "st" / "s").exists()


# --------------------------------------------------------------------------- the runtime_env, no Ray started
def test_runtime_env_ships_the_packages_unless_the_job_carries_them(tmp_path, monkeypatch):
    from study.cluster import read_runtime_env, runtime_env
    from study.schema import StudyError

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    env, line = runtime_env(True, {"env_vars": {"A": "1"}}, "abc123-dirty")
    assert [m.__name__ for m in env["py_modules"]] == ["splicemix", "study"] and env["env_vars"] == {"A": "1"}
    assert "git abc123-dirty" in line and "py_modules" in line
    env, line = runtime_env(False, {}, None)
    assert env == {} and "--no-ship-code" in line and "not a git checkout" in line

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://x.zip"}}))
    env, line = runtime_env(True, {"pip": ["x"]}, None)
    assert env == {"pip": ["x"]} and "the job's working_dir" in line
    with pytest.raises(StudyError, match="working_dir already set by the job"):
        runtime_env(True, {"working_dir": "."}, None)

    f = tmp_path / "env.yaml"
    for text, expected in (("pipp: [x]\n", "unknown field 'pipp'"), ("env_vars: {A: 1}\n", "not a valid Ray")):
        f.write_text(text)
        with pytest.raises(StudyError, match=expected):
            read_runtime_env(str(f))
    with pytest.raises(StudyError, match="no such file"):
        read_runtime_env(str(tmp_path / "missing.yaml"))


def test_a_missing_ray_extra_is_one_line(monkeypatch):
    import importlib.util

    from study import cluster
    from study.schema import StudyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(StudyError, match=r"ray://h:1 needs ray\[client\], which is not installed \(no module grpc\)"):
        cluster.check_ray_extras("ray://h:1", False)
    cluster.check_ray_extras("h:1", True)  # joining a cluster: its own dashboard, no local extra needed
