"""Study storage URIs: the join of a study folder onto ``--storage`` (query kept), and a study on a
real S3-protocol server (moto's server mode on loopback) whose driver is SIGKILLed and resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from loopback import free_port

from study.store import join_uri, resolve_storage

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "base,parts,expected",
    [
        (
            "s3://b/studies?endpoint_override=127.0.0.1:9000&scheme=http",
            ("ratio-1",),
            "s3://b/studies/ratio-1?endpoint_override=127.0.0.1:9000&scheme=http",
        ),
        ("s3://b/studies/?region=x", ("r", "trial_1/"), "s3://b/studies/r/trial_1?region=x"),
        ("s3://b", ("r",), "s3://b/r"),
        ("s3://b/a//", (), "s3://b/a"),
        ("gs://b/a", ("_train", "t1"), "gs://b/a/_train/t1"),
        ("file:///tmp/x/", ("r",), "file:///tmp/x/r"),
        ("/tmp/x/", ("r",), "/tmp/x/r"),
        ("runs/studies", ("r",), "runs/studies/r"),
        ("/", ("r",), "/r"),
    ],
)
def test_join_uri(base, parts, expected):
    assert join_uri(base, *parts) == expected


def test_resolve_storage_keeps_the_query():
    fs, path, uri = resolve_storage("s3://b/studies/?endpoint_override=127.0.0.1:9&scheme=http")
    assert path == "b/studies" and uri == "s3://b/studies?endpoint_override=127.0.0.1:9&scheme=http"
    assert fs.type_name == "s3"


# --------------------------------------------------------------------------- a real S3 server
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in its own process on 127.0.0.1 with a bucket ``studies``; yields the
    environment (dummy credentials) and the endpoint."""
    import boto3

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env = {**os.environ, **creds}
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    patch = pytest.MonkeyPatch()  # this process reads the bucket with pyarrow too
    for k, v in creds.items():
        patch.setenv(k, v)
    try:
        for _ in range(100):  # up to ~30 s for the server to answer
            try:
                client.create_bucket(Bucket="studies")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert server.poll() is None, "moto server exited"
                time.sleep(0.3)
        else:
            pytest.fail("moto server did not answer within 30 s")
        yield env, f"127.0.0.1:{port}", client
    finally:
        patch.undo()
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="studies", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _study(args: list[str], env: dict, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "study.run", "search_spaces/ratio.yaml", "--smoke", "--quiet", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, text=True, **kw)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the study's process group (the driver and whatever it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.ray
def test_s3_study_killed_and_resumed(s3, tmp_path, request):
    """A 4-trial smoke study (one trial at a time) on s3://...?endpoint_override=...&scheme=http: its
    driver is SIGKILLed once the first trial is in trials.parquet, then ``--resume`` finishes it.
    Every trial is in trials.parquet once, and the Tune state, the checkpoints and optuna.db are in
    the bucket under the study's folder (not after the query string)."""
    env, endpoint, client = s3
    short_tmp = tempfile.mkdtemp(prefix="sm-")  # TMPDIR: Ray's sockets (107 bytes at most) and the local optuna.db
    request.addfinalizer(lambda: shutil.rmtree(short_tmp, ignore_errors=True))
    env = {**env, "TMPDIR": short_tmp}
    storage = f"s3://studies/runs?endpoint_override={endpoint}&scheme=http"
    common = ["--storage", storage, "--name", "s", "--data-cache", str(tmp_path / "data")]
    t0 = time.monotonic()
    driver = _study([*common, "--num-samples", "2", "--max-concurrent", "1"], env)
    try:
        deadline = time.time() + 300
        while "runs/s/trials.parquet" not in _keys(client, "runs/s/") and time.time() < deadline:
            assert driver.poll() is None, "the study ended before it was killed"
            time.sleep(0.5)
        assert time.time() < deadline, "no trial finished within 300 s"
    finally:
        _kill_group(driver)
    fs, path, _ = resolve_storage(join_uri(storage, "s"))
    at_kill = pq.read_table(f"{path}/trials.parquet", filesystem=fs).num_rows
    assert 1 <= at_kill < 4, f"{at_kill} trials recorded when the driver was killed; expected a study mid-run"
    killed_after = time.monotonic() - t0
    for db in Path(short_tmp, "splicemix-study").glob("optuna-*.db"):
        db.unlink()  # as on another machine: --resume starts from the bucket's copy of optuna.db

    resumed = _study(
        [*common, "--num-samples", "2", "--max-concurrent", "1", "--resume"],
        env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = resumed.communicate(timeout=400)
    finally:
        _kill_group(resumed)
    assert resumed.returncode == 0, out[-3000:]
    print(
        f"driver SIGKILLed after {killed_after:.0f} s ({at_kill} of 4 trials recorded); --resume took "
        f"{time.monotonic() - t0 - killed_after:.0f} s"
    )

    trials = pq.read_table(f"{path}/trials.parquet", filesystem=fs).to_pylist()
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == 4 and len(set(ids)) == 4, ids
    ends = [(t["trial_id"], t["status"], t["epochs_run"], t["message"]) for t in trials]
    assert all(t["status"] == "completed" and t["epochs_run"] == 1 for t in trials), ends
    keys = _keys(client, "")
    assert all(k.startswith("runs/s/") or k == "runs/" for k in keys), keys
    assert any(k.startswith("runs/s/experiment_state-") for k in keys) and "runs/s/tuner.pkl" in keys
    for i in ids:  # each trial's Ray checkpoint (the trainer's checkpoint.pt) is in the bucket
        assert any(k.startswith(f"runs/s/trial_{i}/checkpoint_") and k.endswith("checkpoint.pt") for k in keys), i
    assert "runs/s/history.parquet" in keys and "runs/s/optuna.db" in keys

    import optuna

    db = tmp_path / "copy.db"
    db.write_bytes(client.get_object(Bucket="studies", Key="runs/s/optuna.db")["Body"].read())
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(ids)
