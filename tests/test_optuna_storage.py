"""Every study's trials in an Optuna storage (the study folder's SQLite file, or a real PostgreSQL
server on loopback), and the study folder as Ray Tune opens it (ExperimentAnalysis, Tuner.restore)."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from loopback import free_port

from study.run import run_study
from study.schema import StudyError

ROOT = Path(__file__).resolve().parent.parent
RATIO = str(ROOT / "search_spaces" / "ratio.yaml")
pytestmark = pytest.mark.ray

TPE_SPACE = """
name: tpe
base: {base}
space:
  mix.mixed_ratio: {{uniform: [0.0, 1.0]}}
  mix.grids: {{choice: [[2x2], [1x2, 2x2]]}}
search: {{algorithm: tpe, scheduler: fifo}}
"""


# --------------------------------------------------------------------------- PostgreSQL
def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return debian[-1] if debian else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (a free port, trust auth, no fsync); yields its
    SQLAlchemy URL. initdb refuses to run as root: then the server runs as the user ``postgres``
    (or ``nobody``) through runuser."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="splicemix-pg-")  # not tmp_path: the server's user must reach it
    if os.geteuid() == 0:
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or not shutil.which("runuser"):
            pytest.skip("running as root without a 'postgres'/'nobody' user and runuser to start PostgreSQL")
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    port = free_port()
    data = f"{folder}/data"
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "splicemix", "--no-sync"], **run)
    opts = f"-k {folder} -h 127.0.0.1 -p {port} -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", data, "-l", f"{folder}/log", "-w", "-t", "60", "-o", opts, "start"], **run)
    try:
        yield f"postgresql+psycopg2://splicemix@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "60", "stop"], timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- checks
def _trials(path: str) -> tuple[list[dict], list[dict]]:
    return pq.read_table(f"{path}/trials.parquet").to_pylist(), pq.read_table(f"{path}/history.parquet").to_pylist()


def _check_grid(path: str, study: optuna.Study) -> None:
    """Every trial of trials.parquet is in the Optuna study once, with its searched value, its final
    mAP as value and its per-epoch mAP as intermediate values."""
    trials, history = _trials(path)
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.get_trials()}
    assert sorted(by_id) == sorted(r["trial_id"] for r in trials) and len(study.trials) == len(trials)
    for r in trials:
        t = by_id[r["trial_id"]]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.params == {"mix.mixed_ratio": r["cfg.mix.mixed_ratio"]}
        assert t.value == pytest.approx(r["final_mAP"])
        epochs = {h["epoch"]: h["mAP"] for h in history if h["trial_id"] == r["trial_id"]}
        assert t.intermediate_values == pytest.approx(epochs) and epochs


def _check_tpe(path: str, study: optuna.Study) -> None:
    """The searcher's Optuna trials are the study's trials: the same searched values and final mAP."""
    trials, _ = _trials(path)
    assert len(study.trials) == len(trials) == 2
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE and 0.0 <= t.params["mix.mixed_ratio"] <= 1.0
        (r,) = [r for r in trials if math.isclose(r["cfg.mix.mixed_ratio"], t.params["mix.mixed_ratio"])]
        assert json.loads(t.params["mix.grids"]) == json.loads(r["cfg.mix.grids"])
        assert t.value == pytest.approx(r["final_mAP"]) and t.intermediate_values == {1: pytest.approx(t.value)}


def _tpe_space(tmp_path: Path) -> str:
    space = tmp_path / "tpe.yaml"
    space.write_text(TPE_SPACE.format(base=ROOT / "configs" / "default.yaml"))
    return str(space)


# --------------------------------------------------------------------------- the studies
@pytest.fixture(scope="module")
def grid_study(ray_local, cache, tmp_path_factory):
    """ratio.yaml --smoke (2 grid trials) with the default storage, optuna.db in the study folder."""
    root = tmp_path_factory.mktemp("grid")
    return run_study(RATIO, smoke_run=True, storage=str(root), name="g", data_cache=cache, quiet=True), root


def test_grid_study_in_its_sqlite_file(grid_study):
    res, _ = grid_study
    assert res.optuna == {
        "study_name": "g",
        "storage": f"sqlite:///{res.path}/optuna.db",
        "explicit": False,
        "copy": None,
    }
    meta = json.loads(Path(res.path, "provenance.json").read_text())
    assert meta["optuna"] == res.optuna
    _check_grid(res.path, optuna.load_study(study_name="g", storage=res.optuna["storage"]))


def test_resume_adds_no_trial_twice(grid_study, cache):
    res, root = grid_study
    again = run_study(RATIO, smoke_run=True, storage=str(root), name="g", resume=True, data_cache=cache, quiet=True)
    _check_grid(again.path, optuna.load_study(study_name="g", storage=res.optuna["storage"]))


def test_resume_with_another_storage_is_refused(grid_study, cache, tmp_path):
    _, root = grid_study
    with pytest.raises(StudyError, match="recorded its Optuna trials in the study folder's optuna.db"):
        run_study(
            RATIO,
            smoke_run=True,
            storage=str(root),
            name="g",
            resume=True,
            data_cache=cache,
            optuna_storage=f"sqlite:///{tmp_path}/other.db",
        )


def test_bad_optuna_storage_is_one_error_before_anything(tmp_path):
    with pytest.raises(StudyError, match=r"Optuna storage nosuchdb://x: .*expected an SQLAlchemy URL"):
        run_study(RATIO, smoke_run=True, storage=str(tmp_path / "s"), optuna_storage="nosuchdb://x")
    assert not (tmp_path / "s").exists()


def test_study_folder_opens_with_tune_from_another_folder(grid_study, tmp_path, monkeypatch):
    """ExperimentAnalysis and Tuner.restore take the study folder itself, from any working directory,
    with the study's metric and mode as defaults (study.runner.experiment_analysis / trainable)."""
    from ray import tune

    from study.runner import experiment_analysis, trainable

    res, _ = grid_study
    trials, _ = _trials(res.path)
    best = max(trials, key=lambda r: r["final_mAP"])
    monkeypatch.chdir(tmp_path)
    assert experiment_analysis(res.path).best_config == {"mix.mixed_ratio": best["cfg.mix.mixed_ratio"]}
    plain = tune.ExperimentAnalysis(res.path)
    assert plain.get_best_config("mAP", "max") == {"mix.mixed_ratio": best["cfg.mix.mixed_ratio"]}
    grid = tune.Tuner.restore(res.path, trainable=trainable(res.path)).get_results()
    assert len(grid) == 2 and grid.get_best_result().config == {"mix.mixed_ratio": best["cfg.mix.mixed_ratio"]}


def test_tpe_study_is_the_searchers_storage(ray_local, cache, tmp_path):
    res = run_study(_tpe_space(tmp_path), smoke_run=True, storage=str(tmp_path), data_cache=cache, quiet=True)
    _check_tpe(res.path, optuna.load_study(study_name=res.optuna["study_name"], storage=res.optuna["storage"]))


@pytest.mark.slow
def test_postgresql_storage(ray_local, cache, tmp_path, postgres):
    """A grid study with --optuna-storage and a TPE study with search.storage, both in PostgreSQL."""
    grid = run_study(
        RATIO,
        smoke_run=True,
        storage=str(tmp_path),
        name="pg-grid",
        data_cache=cache,
        quiet=True,
        optuna_storage=postgres,
    )
    assert grid.optuna["storage"] == postgres and grid.optuna["explicit"]
    tpe = run_study(
        _tpe_space(tmp_path),
        [f"search.storage={postgres}"],
        smoke_run=True,
        storage=str(tmp_path),
        name="pg-tpe",
        data_cache=cache,
        quiet=True,
    )
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(postgres)) == ["pg-grid", "pg-tpe"]
    _check_grid(grid.path, optuna.load_study(study_name="pg-grid", storage=postgres))
    _check_tpe(tpe.path, optuna.load_study(study_name="pg-tpe", storage=postgres))
    assert not Path(grid.path, "optuna.db").exists()


def test_record_states_and_once(tmp_path):
    """Grid trials enter the Optuna study once each, with the state of how they ended (no Ray)."""
    from study.folder import StudyFolder
    from study.optuna_store import OptunaStore
    from study.schema import load_study
    from study.space import distributions

    spec, _, _ = load_study(RATIO)
    folder = StudyFolder.open(str(tmp_path), "u", False, spec.name)
    store = OptunaStore.open(None, folder, False)
    dists = distributions(spec)
    assert set(dists) == {"mix.mixed_ratio", "train.seed"}  # ratio.yaml: 4 ratios x 2 seeds

    def row(i: str, status: str, final: float | None) -> dict:
        return {"trial_id": i, "status": status, "seed": 1, "cfg.mix.mixed_ratio": 0.5, "final_mAP": final}

    hist = [{"epoch": 1, "mAP": 20.0, "cfg.mix.mixed_ratio": 0.5}, {"epoch": 2, "mAP": float("nan")}]
    ends = {
        "a": (row("a", "completed", 30.0), hist[:1], "COMPLETE"),
        "b": (row("b", "stopped", 20.0), hist[:1], "PRUNED"),
        "c": (row("c", "diverged", float("nan")), hist, "FAIL"),
        "d": (row("d", "error", None), [], "FAIL"),
    }
    folder.fs.create_dir(folder.path)
    for r, h, _ in ends.values():
        assert store.record(spec, r, h, dists)
    assert not store.record(spec, row("e", "running", None), [], dists)
    again = OptunaStore.open(None, folder, True)  # a --resume: the same trials are not added twice
    assert not any(again.record(spec, r, h, dists) for r, h, _ in ends.values())
    trials = {t.user_attrs["tune_trial_id"]: t for t in optuna.load_study(study_name="u", storage=store.url).trials}
    assert sorted(trials) == ["a", "b", "c", "d"]
    for i, (_, _, state) in ends.items():
        assert trials[i].state.name == state and trials[i].params == {"mix.mixed_ratio": 0.5, "train.seed": 1}
    assert trials["a"].value == 30.0 and trials["a"].intermediate_values == {1: 20.0}
    assert trials["b"].value == 20.0 and trials["c"].value is None and trials["c"].intermediate_values == {1: 20.0}
