"""Fault injection on the local Ray, for real: processes are SIGKILLed, losses become NaN,
writers die mid-write. Every test here fails if the protection it checks is removed:

* a killed trial process (direct path) or Ray Train worker: the trial is retried from its last
  checkpoint and ends with every epoch, and (direct path, CPU) the same metrics as an
  uninterrupted run;
* a SIGKILLed study driver: ``--resume`` finishes the study, no finished trial is re-run or
  lost, and trials.parquet holds every trial exactly once;
* a trial whose loss becomes NaN ends as ``diverged`` with the reason in its row, is not
  retried, and the study goes on;
* a writer SIGKILLed in the middle of rewriting trials.parquet leaves the previous complete
  file (study.store writes a temporary file and renames it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from study.cluster import stored_checkpoint, trial_storage_dirs
from study.run import run_study

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "configs" / "default.yaml"
pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = """
name: faults
base: {base}
fixed:
  data.synthetic.n_train: 384
  data.synthetic.n_val: 128
  data.synthetic.image_size: 32
  data.image_size: 32
  data.eval_sizes: []
  mix.method: splicemix
  train.batch_size: 32
  train.epochs: {epochs}
space:
  {key}: {{grid: {values}}}
seeds: [0]
search: {{algorithm: grid, scheduler: fifo}}
resources: {{num_workers: {workers}, cpus_per_worker: 1, max_failures: 1}}
"""


def _space(
    tmp_path: Path, epochs: int = 4, key: str = "mix.mixed_ratio", values: str = "[0.25]", workers: int = 1
) -> str:
    p = tmp_path / f"space-{key}-{workers}.yaml"
    p.write_text(SPACE.format(base=BASE, epochs=epochs, key=key, values=values, workers=workers))
    return str(p)


def _rows(study: Path, name: str = "trials.parquet") -> list[dict]:
    return pq.read_table(study / name).to_pylist()


def _epochs_by_trial(study: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in _rows(study, "history.parquet"):
        out.setdefault(r["trial_id"], []).append(int(r["epoch"]))
    return {k: sorted(v) for k, v in out.items()}


def _checkpoints(study: Path) -> list[Path]:
    return sorted(study.glob("trial_*/checkpoint_*")) + sorted(study.glob("_train/*/checkpoint_*"))


def _ray_procs(marker: str) -> list[psutil.Process]:
    """The Ray worker processes of this test's own Ray (descendants of this process: its raylet
    was started here) whose title contains ``marker``; other Ray instances are left alone."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith("ray::") and marker in cmd and os.getpid() in {a.pid for a in p.parents()}:
                found.append(p)
        except psutil.Error:
            continue
    return found


class Killer(threading.Thread):
    """Waits until the study has written its first checkpoint, then SIGKILLs once every Ray
    worker process whose title contains ``marker`` (the trial process, or a Train worker)."""

    def __init__(self, study: Path, marker: str, timeout: float = 300.0) -> None:
        super().__init__(daemon=True)
        self.study, self.marker, self.timeout = study, marker, timeout
        self.killed: list[int] = []
        self.titles: list[str] = []

    def run(self) -> None:
        end = time.time() + self.timeout
        while time.time() < end:
            if _checkpoints(self.study):
                time.sleep(0.3)  # let the checkpoint's files finish (a torn one is skipped anyway)
                procs = _ray_procs(self.marker)
                if procs:
                    for p in procs[:1]:
                        self.titles.append(" ".join(p.cmdline()))
                        p.send_signal(signal.SIGKILL)
                        self.killed.append(p.pid)
                    return
            time.sleep(0.05)


# --------------------------------------------------------------------------- driver SIGKILL + --resume
def _study_cmd(space: str, storage: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "study.run",
        space,
        "--storage",
        str(storage),
        "--name",
        "s",
        "--data-cache",
        str(cache),
        "--quiet",
        *extra,
    ]


def _kill_group(driver: subprocess.Popen) -> None:
    """What survives a killed driver (its raylet, GCS, idle workers) goes too, as on a pre-empted node."""
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _resume(space: str, storage: Path, cache: Path, env: dict) -> subprocess.CompletedProcess:
    """``python -m study.run --resume`` of the study, run to its end."""
    return subprocess.run(
        _study_cmd(space, storage, cache, "--resume"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )


def test_driver_sigkill_then_resume_keeps_every_trial_once(tmp_path):
    """Runs before this module starts its own in-process Ray: the driver is a real
    ``python -m study.run`` process with its own local Ray."""
    space = _space(tmp_path, epochs=4, values="[0.0, 0.25, 0.5, 1.0]")
    storage, cache = tmp_path / "st", tmp_path / "data"
    study = storage / "s"
    env = {**os.environ, "CI": "true"}
    driver = subprocess.Popen(
        _study_cmd(space, storage, cache),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    before: list[dict] = []
    try:
        end = time.time() + 400
        while time.time() < end and driver.poll() is None:
            if (study / "trials.parquet").is_file():
                before = _rows(study)
                if any(r["status"] == "completed" for r in before):
                    break
            time.sleep(0.2)
        assert driver.poll() is None, "the study ended before the fault could be injected:\n" + driver.stdout.read()
        assert before and len(before) < 4, before
        os.kill(driver.pid, signal.SIGKILL)  # the fault: the driver dies, mid-study, with no chance to clean up
        driver.wait(30)
    finally:
        _kill_group(driver)
    finished = {r["trial_id"]: r for r in before if r["status"] == "completed"}
    # trials cut off mid-way that had stored a whole checkpoint: --resume must continue them from
    # it. A checkpoint folder the kill tore (the group dies while Ray copies it) does not count: the
    # trial starts again, as it should.
    started = {c.parent.name[len("trial_") :] for c in study.glob("trial_*/checkpoint_*")} - set(finished)
    cut = {t for t in started if stored_checkpoint(trial_storage_dirs(str(study), t)) is not None}

    t0 = time.time()
    again = _resume(space, storage, cache, env)
    resume_s = time.time() - t0
    assert again.returncode == 0, again.stdout + again.stderr
    rows = _rows(study)
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == 4 and len(set(ids)) == 4, ids  # every trial, exactly once
    outcome = [(r["trial_id"], r["status"], r["epochs_run"], r["resumed_from_epoch"], r["message"]) for r in rows]
    assert all(r["status"] == "completed" and r["epochs_run"] == 4 for r in rows), (outcome, again.stdout[-3000:])
    after = {r["trial_id"]: r for r in rows}
    for tid, r in finished.items():  # finished before the kill: not re-run (same row, same wall time)
        assert after[tid]["wall_time_s"] == r["wall_time_s"] and after[tid]["final_mAP"] == r["final_mAP"]
    assert all(e == [1, 2, 3, 4] for e in _epochs_by_trial(study).values())
    assert all(after[t]["resumed_from_epoch"] >= 1 for t in cut), {t: after[t]["resumed_from_epoch"] for t in cut}
    assert sorted(set(float(r["cfg.mix.mixed_ratio"]) for r in rows)) == [0.0, 0.25, 0.5, 1.0]
    print(
        f"driver killed with {len(finished)} of 4 trials finished, {len(cut)} cut off after a whole checkpoint "
        f"({len(started) - len(cut)} after a torn one); "
        f"--resume took {resume_s:.1f} s "
        f"(Ray start included); resumed-from epochs: {[after[t]['resumed_from_epoch'] for t in sorted(after)]}"
    )


def _state_checkpoints(study: Path) -> dict[str, Path]:
    """The checkpoint that the experiment state names for each unfinished trial (what Tuner.restore
    would hand it); {} while the state cannot be read yet."""
    from study.runner import experiment_analysis

    try:
        trials = experiment_analysis(str(study)).trials
    except Exception:  # the driver is writing it
        return {}
    # a running trial is saved as PENDING
    return {t.trial_id: Path(t.checkpoint.path) for t in trials if t.status == "PENDING" and t.checkpoint}


def test_resume_when_ray_deleted_the_checkpoint_the_state_names(tmp_path):
    """Ray's race, made to happen: under CheckpointConfig(num_to_keep=1) Ray deletes a trial's
    checkpoint when it registers the next and saves the experiment state (which names the newest)
    only afterwards; a driver killed in between leaves a state naming a deleted checkpoint. Here
    the driver is killed, then each running trial's named checkpoint is moved to the next index
    (as if the next had been registered and the named one deleted). --resume must continue those
    trials from the checkpoint that is there, not fail them ("does not exist on storage anymore")."""
    space = _space(tmp_path, epochs=8, values="[0.0, 0.5]")
    storage, cache = tmp_path / "st", tmp_path / "data"
    study = storage / "s"
    env = {**os.environ, "CI": "true"}
    driver = subprocess.Popen(
        _study_cmd(space, storage, cache), cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        end = time.time() + 400
        named: dict[str, Path] = {}
        while time.time() < end and driver.poll() is None and not named:
            named = {t: p for t, p in _state_checkpoints(study).items() if p.name != "checkpoint_000000"}
            time.sleep(0.2)
        assert named, "no running trial had a second checkpoint named in the experiment state"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        _kill_group(driver)
    raced = _state_checkpoints(study)
    for path in raced.values():
        if path.is_dir():  # (not there: Ray's own race came first)
            newer = path.with_name(f"checkpoint_{int(path.name.split('_')[1]) + 1:06d}")
            if newer.exists():
                shutil.rmtree(path)
            else:
                path.rename(newer)
    assert raced, "the killed study's state names no checkpoint of a running trial"

    again = _resume(space, storage, cache, env)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = {r["trial_id"]: r for r in _rows(study)}
    outcome = {t: (r["status"], r["epochs_run"], r["resumed_from_epoch"], r["message"]) for t, r in rows.items()}
    assert len(rows) == 2 and all(r["status"] == "completed" and r["epochs_run"] == 8 for r in rows.values()), outcome
    assert all(rows[t]["resumed_from_epoch"] >= 1 for t in raced), outcome  # continued, not started again
    assert all(e == list(range(1, 9)) for e in _epochs_by_trial(study).values())
    for tid, path in raced.items():
        assert f"trial {tid}: its last checkpoint {path} was gone" in again.stdout, again.stdout


# --------------------------------------------------------------------------- in-process Ray (tests/conftest.py)
def _run_and_kill(tmp_path: Path, space: str, marker: str, cache: str) -> tuple[dict, Path]:
    """Run a one-trial study while a Killer SIGKILLs one process titled ``marker``; its row and folder."""
    killer = Killer(tmp_path / "a" / "k", marker)
    killer.start()
    res = run_study(space, storage=str(tmp_path / "a"), name="k", data_cache=cache, quiet=True)
    killer.join(5)
    assert killer.killed, f"no {marker} process was found to kill"
    (row,) = _rows(Path(res.path))
    return row, Path(res.path)


def test_killed_trial_process_is_retried_from_its_checkpoint(ray_local, cache, tmp_path):
    space = _space(tmp_path, epochs=5)
    row, path = _run_and_kill(tmp_path, space, "ImplicitFunc", cache)  # the Tune trial's own process
    assert row["status"] == "completed" and row["epochs_run"] == 5, row["message"]
    assert row["failures"] == 1  # Tune saw the dead process and retried the trial once
    assert 1 <= row["resumed_from_epoch"] < 5  # ... from a checkpoint, not from scratch
    assert _epochs_by_trial(path) == {row["trial_id"]: [1, 2, 3, 4, 5]}

    # the same trial without a fault: on the CPU a resumed run is exact, so the result is the same
    ref = run_study(space, storage=str(tmp_path / "b"), name="k", data_cache=cache, quiet=True)
    (clean,) = _rows(Path(ref.path))
    assert clean["failures"] == 0 and clean["resumed_from_epoch"] == 0
    assert row["final_mAP"] == pytest.approx(clean["final_mAP"], abs=1e-9)
    assert row["final_train_loss"] == pytest.approx(clean["final_train_loss"], rel=1e-9)


def test_killed_train_worker_restarts_the_group_from_its_checkpoint(ray_local, cache, tmp_path):
    space = _space(tmp_path, epochs=4, workers=2)
    row, path = _run_and_kill(tmp_path, space, "RayTrainWorker", cache)
    assert row["status"] == "completed" and row["epochs_run"] == 4, row["message"]
    assert 1 <= row["resumed_from_epoch"] < 4  # Ray Train restarted the worker group from the checkpoint
    assert _epochs_by_trial(path) == {row["trial_id"]: [1, 2, 3, 4]}


def test_nan_loss_trial_is_recorded_as_diverged_and_the_study_goes_on(ray_local, cache, tmp_path):
    # lr 1e30 overflows the weights in the first steps: the loss of epoch 1 is NaN
    space = _space(tmp_path, epochs=2, key="optim.lr", values="[0.003, 1.0e+30]")
    res = run_study(space, storage=str(tmp_path / "a"), name="n", data_cache=cache, quiet=True)
    rows = {float(r["cfg.optim.lr"]): r for r in _rows(Path(res.path))}
    good, bad = rows[0.003], rows[1e30]
    assert good["status"] == "completed" and good["epochs_run"] == 2
    assert bad["status"] == "diverged"
    assert "diverged" in bad["message"] and "nan" in bad["message"] and "epoch 1" in bad["message"]
    assert "Traceback" not in bad["message"]
    assert bad["failures"] == 0  # ended cleanly: not retried into the same NaN
    assert bad["epochs_run"] == 0 and bad["best_mAP"] is None


# --------------------------------------------------------------------------- atomic writes, for real
WRITER = """
import sys
from study.store import ResultStore
store = ResultStore(sys.argv[1], {{"command": "test"}}, "mAP", "max", [])
for t in range({rows}):
    store.add_epoch(f"t{{t}}", 0, {{}}, {{"epoch": 1, "mAP": 1.0}})
    store.set_trial(f"t{{t}}", "completed", "x" * 20000, 0, {{"v": 0}}, 1, {{}})
i = 0
while True:  # rewrite both files again and again, each time a new version (cfg.v) of every row
    i += 1
    for row in store.trials.values():
        row["cfg.v"] = i
    store.flush()
    print(i, flush=True)
"""


def test_writer_killed_mid_write_leaves_a_complete_file(tmp_path):
    """A process rewriting trials.parquet / history.parquet in a loop (6 MB each time) is
    SIGKILLed, half the time the moment a temporary file appears (inside a write), half the
    time at a random moment: each time the files read back whole, at one version."""
    import random

    rng = random.Random(0)
    study = tmp_path / "st"
    script = WRITER.format(rows=300)
    kills = mid_write = 0  # mid_write: kills that left a temporary file behind (a write in progress)
    for k in range(8):
        tmp_before = set(study.glob(".*.tmp")) if study.is_dir() else set()
        p = subprocess.Popen([sys.executable, "-c", script, str(study)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip()  # at least one complete write
        if k % 2 == 0:
            end = time.time() + 30
            while time.time() < end and not (set(study.glob(".*.tmp")) - tmp_before):
                pass  # busy-wait: the next write has begun
        else:
            time.sleep(rng.uniform(0.0, 0.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        trials = _rows(study)
        assert len(trials) == 300 and len({r["cfg.v"] for r in trials}) == 1  # one whole version
        assert len(_rows(study, "history.parquet")) == 300
        mid_write += bool(set(study.glob(".*.tmp")) - tmp_before)
    assert mid_write >= 1, "no kill landed inside a write: the test did not test anything"
    from study.store import ResultStore

    store = ResultStore(str(study), {}, "mAP", "max", [])
    assert store.load() == 300 and not list(study.glob(".*.tmp"))  # a resume reads the rows, drops the debris
    print(f"{kills} writers killed, {mid_write} of them mid-write; the files read back whole every time")
