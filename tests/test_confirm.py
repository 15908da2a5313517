"""study.confirm: the confirmation study written from a search study folder (no Ray, no training).

The search folder is built the way study.run writes one: study.yaml is search_spaces/tuned.yaml as
load_study dumps it, provenance.json names the command and working directory, and each trial's
cfg.* columns are the flattened TrainConfig that materialize gives for its searched values."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from splicemix.config import TrainConfig
from splicemix.results import best, cfg_column, final, flatten_config
from study.confirm import main, write_confirm
from study.schema import load_study, materialize

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "search_spaces" / "tuned.yaml"

# (trial_id, status, final mAP, epochs run, searched values); the stopped trial scores highest but ran 8 epochs
TRIALS = [
    ("t0", "completed", 50.0, 32, {"mix.grids": "2x3", "mix.drop_prob": 0.1, "mix.mixed_ratio": 0.5}),
    ("t1", "stopped", 60.0, 8, {"mix.grids": "3x3", "mix.drop_prob": 0.4, "mix.mixed_ratio": 0.9}),
    ("t2", "completed", 55.5, 32, {"mix.grids": "1x2", "mix.drop_prob": 0.123456789012345, "mix.mixed_ratio": 1 / 3}),
    ("t3", "error", None, 2, {"mix.grids": "default", "mix.drop_prob": 0.2, "mix.mixed_ratio": 0.25}),
]
BEST_VALUES = {**TRIALS[2][4], "mix.cl_weight": 0.7071067811865476, "mix.prob": 0.8660254037844386}


def _params(values: dict) -> dict:
    return {"mix.cl_weight": 0.7071067811865476, "mix.prob": 0.8660254037844386, **values}


def make_search(root: Path, trials=TRIALS, overrides: tuple[str, ...] = (), study: Path = TUNED) -> Path:
    """A search study folder of ``study`` (run from the repository root) with ``trials`` (seed 0)."""
    spec, base, text = load_study(study, overrides)
    folder = root / "studies" / "tuned-a"  # (a part of study "tuned" for analysis)
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(text)
    space = study.relative_to(REPO) if study.is_relative_to(REPO) else study
    command = ["python", "-m", "study.run", "--storage", "runs/studies", str(space)]
    meta = {"study_yaml": text, "command": command, "trainable": {"base": base, "workdir": str(REPO)}}
    (folder / "provenance.json").write_text(json.dumps(meta))
    for tid, status, score, epochs, values in trials:
        add_trial(folder, materialize(base, spec.fixed, _params(values), 0), tid, status, score, epochs)
    return folder


def add_trial(folder: Path, cfg: TrainConfig, tid: str, status: str, score: float | None, epochs: int) -> None:
    """Append one trial row (the store's columns, the config as cfg.* columns) to folder/trials.parquet."""
    path = folder / "trials.parquet"
    rows = pq.read_table(path).to_pylist() if path.exists() else []
    row = {"trial_id": tid, "status": status, "message": "", "seed": cfg.train.seed, "epochs_planned": 32}
    row.update({"epochs_run": epochs, final("mAP"): score, best("mAP"): score, "best_epoch": epochs})
    rows.append({**row, **{cfg_column(k): v for k, v in flatten_config(cfg).items()}})
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def search(tmp_path):
    return make_search(tmp_path)


def test_written_study_loads_with_three_arms_and_the_best_completed_trial(search, tmp_path):
    out = tmp_path / "confirm" / "tuned_confirm.yaml"
    _, chosen, _ = write_confirm(str(search), str(out))
    assert chosen["trial_id"] == "t2"  # t1 scores higher but ASHA stopped it
    spec, base, _ = load_study(out)
    assert spec.name == "tuned_confirm"
    assert spec.seeds == [1, 2, 3, 4, 5]
    assert (spec.search.algorithm, spec.search.scheduler, spec.search.metric, spec.search.mode) == (
        "grid",
        "fifo",
        "mAP",
        "max",
    )
    assert spec.planned_trials() == 15
    tuned, _, _ = load_study(TUNED)
    assert spec.fixed == {k: v for k, v in tuned.fixed.items() if not k.startswith("mix.")}
    assert spec.resources == tuned.resources
    assert (out.parent / spec.base).resolve() == (REPO / "configs" / "default.yaml").resolve()
    baseline, preset, arm = spec.space["mix"].grid
    assert baseline == {"method": "baseline"}
    assert preset == {"method": "splicemix", "grids": "default"}
    assert arm == {"method": "splicemix_cl", **{k.removeprefix("mix."): v for k, v in BEST_VALUES.items()}}
    assert arm["drop_prob"] == 0.123456789012345 and arm["mixed_ratio"] == 1 / 3  # full precision
    header = out.read_text().split("\nname:")[0]
    assert "t2" in header and "55.5" in header and "python -m study.run" in header


def test_the_base_is_this_checkouts_copy_when_the_search_ran_in_another(search, tmp_path, monkeypatch):
    """The search ran in one checkout (provenance's workdir, here REPO); the confirmation is written in another
    whose base config is the same: the written ``base`` points into this checkout, so the file works in a clone."""
    here = tmp_path / "checkout"
    (here / "configs").mkdir(parents=True)
    (here / "search_spaces").mkdir()
    (here / "configs" / "default.yaml").write_text((REPO / "configs" / "default.yaml").read_text())
    monkeypatch.chdir(here)
    write_confirm(str(search))
    written = yaml.safe_load((here / "search_spaces" / "tuned_confirm.yaml").read_text())
    assert written["base"] == "../configs/default.yaml"


def test_each_arm_materializes_and_the_tuned_arm_reproduces_the_trial(search, tmp_path):
    out = tmp_path / "c.yaml"
    write_confirm(str(search), str(out), seeds=[7, 8])
    spec, base, _ = load_study(out)
    cfgs = [materialize(base, spec.fixed, {"mix": arm}, 7) for arm in spec.space["mix"].grid]
    assert all(isinstance(c, TrainConfig) for c in cfgs)
    assert [c.mix.method for c in cfgs] == ["baseline", "splicemix", "splicemix_cl"]
    assert cfgs[1].mix.grids == "default" and cfgs[1].mix.mixed_ratio is None  # the preset's ratio
    assert all(c.model.pretrained == "shapes" and c.train.epochs == 32 and c.train.seed == 7 for c in cfgs)
    trial = pq.read_table(search / "trials.parquet").to_pylist()[2]
    mine = flatten_config(cfgs[2])
    assert {k: v for k, v in mine.items() if k.startswith("mix.")} == {
        k.removeprefix("cfg."): v for k, v in trial.items() if k.startswith("cfg.mix.")
    }


def test_cli_writes_and_prints_the_best_trial(search, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert main([str(search), "--seeds", "3,4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "t2" in text and str(out) in text
    assert yaml.safe_load(out.read_text())["seeds"] == [3, 4]
    assert f"python -m study.confirm {search} --seeds 3,4 --out {out}" in out.read_text()


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("study.confirm: error: ") and err.count("\n") == 1
    return err


def test_refuses_seeds_the_search_used(search, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert "the search used seeds [0]" in _error(capsys, [str(search), "--seeds", "0,1", "--out", str(out)])
    assert "integers" in _error(capsys, [str(search), "--seeds", "1,x", "--out", str(out)])
    assert not out.exists()


def test_refuses_an_existing_out_unless_force(search, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    out.write_text("keep me\n")
    assert "already exists" in _error(capsys, [str(search), "--out", str(out)])
    assert out.read_text() == "keep me\n"
    assert main([str(search), "--out", str(out), "--force"]) == 0
    assert load_study(out)[0].name == "tuned_confirm"


def test_refuses_a_folder_without_trials(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "trials.parquet" in _error(capsys, [str(tmp_path / "empty"), "--out", str(tmp_path / "c.yaml")])


def test_refuses_a_search_without_a_completed_trial(tmp_path, capsys):
    folder = make_search(tmp_path, trials=[TRIALS[1], TRIALS[3]])
    err = _error(capsys, [str(folder), "--out", str(tmp_path / "c.yaml")])
    assert "no completed trial" in err and "1 stopped" in err


def test_refuses_a_grid_study(tmp_path, capsys):
    grid = ["search.algorithm=grid", "space.mix.drop_prob={grid: [0.1]}", "space.mix.mixed_ratio={grid: [0.5]}"]
    grid += ["space.mix.cl_weight={grid: [1.0]}", "space.mix.prob={grid: [1.0]}"]
    folder = make_search(tmp_path, overrides=tuple(grid))
    assert "expected a tpe / random search" in _error(capsys, [str(folder), "--out", str(tmp_path / "c.yaml")])


def test_a_mix_key_of_the_base_config_joins_the_tuned_arm(tmp_path):
    """The grid over whole mix mappings replaces the base's mix section: a non-default base mix key
    (cl_detach false) must be carried into the tuned arm for it to reproduce the trial."""
    base = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    base["mix"]["cl_detach"] = False
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    study = yaml.safe_load(TUNED.read_text())
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({**study, "base": "base.yaml"}))
    folder = make_search(tmp_path, study=tmp_path / "tuned.yaml")
    out = tmp_path / "c.yaml"
    write_confirm(str(folder), str(out))
    spec, base_cfg, _ = load_study(out)
    arm = spec.space["mix"].grid[2]
    assert arm["cl_detach"] is False
    assert materialize(base_cfg, spec.fixed, {"mix": arm}, 1).mix.cl_detach is False
    assert "cl_detach" not in spec.space["mix"].grid[1]


def test_the_analysis_tells_the_written_arms_apart(search, tmp_path):
    """analysis.questions.tuned labels the confirmation's trials baseline / default preset / tuned by their
    cfg.mix.* columns: the written arms must give exactly those labels."""
    from analysis.load import completed, key_text, load_studies
    from analysis.questions.tuned import confirm_arms, search_best

    out = tmp_path / "c.yaml"
    write_confirm(str(search), str(out), seeds=[1, 2])
    spec, base, _ = load_study(out)
    folder = tmp_path / "studies" / "tuned_confirm-a"
    folder.mkdir()
    (folder / "study.yaml").write_text(out.read_text())
    for i, arm in enumerate(spec.space["mix"].grid):
        for seed in spec.seeds:
            add_trial(
                folder, materialize(base, spec.fixed, {"mix": arm}, seed), f"c{i}{seed}", "completed", 40.0 + i, 32
            )
    df = load_studies(search, folder)
    found, cols, _ = search_best(df)
    assert found["trial_id"] == "t2"
    c = completed(df[df["study"] == "tuned_confirm"])
    labels = dict(zip(c["trial_id"], confirm_arms(c, found, cols), strict=True))
    arms = ["baseline", "default preset", "tuned"]
    assert labels == {f"c{i}{seed}": arms[i] for i in range(3) for seed in (1, 2)}
    tuned = c[c["trial_id"].str.startswith("c2")]  # matched by the searched columns, not by elimination
    assert cols and all(key_text(v) == key_text(found[x]) for x in cols for v in tuned[x])
