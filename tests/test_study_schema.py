"""The study's YAML schema, search-space translation and Parquet store (no Ray cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from study.schema import StudyError, StudySpec, load_study, materialize, smoke
from study.space import build_searcher, decode_params, param_space
from study.store import ResultStore, read_metadata

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
BASE = "base: " + str(ROOT / "configs" / "default.yaml") + "\n"


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _err(tmp_path: Path, text: str, overrides=()) -> str:
    with pytest.raises(StudyError) as e:
        load_study(_write(tmp_path, text), overrides)
    return str(e.value)


# --------------------------------------------------------------------------- shipped spaces
def test_the_four_required_spaces_ship():
    names = {p.stem for p in SPACES}
    assert {"ratio", "grid_scaling", "cl_vit", "ratio_data", "coco"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_space_loads_and_smokes_to_two_trials(path):
    spec, base, text = load_study(path)
    assert spec.space and text
    s = smoke(spec, base)
    assert s.planned_trials() == 2
    cfg = materialize(base, s.fixed, {k: p.smallest() for k, p in s.space.items()}, s.seeds[0])
    assert cfg.train.epochs == 1 and cfg.data.dataset == "synthetic" and cfg.data.image_size == 32
    assert cfg.model.pretrained is None
    assert cfg.train.budget is None and cfg.optim.warmup_steps is None  # one epoch, whatever budget the study sets


def test_grid_scaling_holds_mixed_count_constant():
    from splicemix.mixing import SpliceMix

    spec, base, _ = load_study(ROOT / "search_spaces" / "grid_scaling.yaml")
    grids = spec.space["mix.grids"].values
    assert {"1x4", "2x2", "4x1"} <= set(grids)
    counts = set()
    for g in grids:
        cfg = materialize(base, spec.fixed, {"mix.grids": g}, 0)
        m = SpliceMix(generator=None, **cfg.mix.mixer_kwargs())
        plan = m.sample_plan(cfg.train.batch_size)
        counts.add(plan.num_mixed)
        assert [(gr.rows, gr.cols) for gr in plan.groups] == [tuple(int(x) for x in g.split("x"))]
    assert len(counts) == 1


# --------------------------------------------------------------------------- errors
def test_malformed_yaml_names_line(tmp_path):
    msg = _err(tmp_path, "name: x\nspace: {a: [1,\n")
    assert "not valid YAML" in msg and "line" in msg and "s.yaml" in msg


def test_unknown_study_key(tmp_path):
    msg = _err(tmp_path, "name: x\nserch: {}\nspace: {optim.lr: {grid: [0.1]}}\n")
    assert "unknown key 'serch'" in msg and "expected one of" in msg and "search" in msg


def test_wrong_type(tmp_path):
    msg = _err(tmp_path, "name: x\nseeds: zero\nspace: {optim.lr: {grid: [0.1]}}\n")
    assert "seeds" in msg and "'zero'" in msg


def test_empty_space(tmp_path):
    msg = _err(tmp_path, "name: x\nspace: {}\n")
    assert "space is empty" in msg


def test_param_needs_exactly_one_distribution(tmp_path):
    msg = _err(tmp_path, "name: x\nspace: {optim.lr: {grid: [0.1], uniform: [0.1, 0.2]}}\n")
    assert "space.optim.lr" in msg and "exactly one" in msg
    msg = _err(tmp_path, "name: x\nspace: {optim.lr: {gird: [0.1]}}\n")
    assert "unknown key 'space.optim.lr.gird'" in msg and "grid" in msg


def test_bad_range(tmp_path):
    msg = _err(tmp_path, "name: x\nsearch: {algorithm: tpe}\nspace: {optim.lr: {loguniform: [0, 1]}}\n")
    assert "loguniform" in msg and "0 < low" in msg


def test_grid_algorithm_rejects_continuous(tmp_path):
    msg = _err(tmp_path, "name: x\nsearch: {algorithm: grid}\nspace: {optim.lr: {uniform: [0.1, 0.2]}}\n")
    assert "continuous" in msg and "optim.lr" in msg


def test_seeds_with_asha_under_tpe_rejected(tmp_path):
    msg = _err(
        tmp_path,
        "name: x\nseeds: [0, 1]\nsearch: {algorithm: tpe, scheduler: asha}\nspace: {optim.lr: {uniform: [0.1, 0.2]}}\n",
    )
    assert "fifo" in msg


def test_unknown_training_key_in_space(tmp_path):
    msg = _err(tmp_path, BASE + "name: x\nspace: {optim.lrr: {grid: [0.1]}}\n")
    assert "space.optim.lrr" in msg and "unknown key 'optim.lrr'" in msg


def test_bad_training_value_in_space(tmp_path):
    msg = _err(tmp_path, BASE + "name: x\nspace: {mix.grids: {grid: ['2x2', '2x']}}\n")
    assert "space.mix.grids value '2x'" in msg


def test_impossible_grids(tmp_path):
    msg = _err(tmp_path, BASE + "name: x\nspace: {mix.grids: {grid: ['2x2-4']}}\n")
    assert "2x2-4" in msg
    msg = _err(tmp_path, BASE + "name: x\nfixed: {train.batch_size: 4}\nspace: {mix.grids: {grid: ['2x3']}}\n")
    assert "batch" in msg


def test_bad_fixed_key(tmp_path):
    msg = _err(tmp_path, BASE + "name: x\nfixed: {train.epochz: 3}\nspace: {optim.lr: {grid: [0.1]}}\n")
    assert "fixed" in msg and "train.epochz" in msg


def test_missing_base_file(tmp_path):
    msg = _err(tmp_path, "name: x\nbase: nope.yaml\nspace: {optim.lr: {grid: [0.1]}}\n")
    assert "nope.yaml" in msg


def test_overrides(tmp_path):
    p = _write(tmp_path, BASE + "name: x\nspace: {optim.lr: {grid: [0.1, 0.2]}, mix.prob: {grid: [0.5, 1.0]}}\n")
    spec, _, _ = load_study(
        p, ["search.num_samples=3", "train.epochs=2", "optim.lr=0.5", "space.mix.mixed_ratio={grid: [0.5, 1.0]}"]
    )
    assert spec.search.num_samples == 3
    assert spec.fixed == {"train.epochs": 2, "optim.lr": 0.5}
    assert set(spec.space) == {"mix.prob", "mix.mixed_ratio"}  # a fixed key is no longer searched


def test_override_that_empties_space_is_an_error(tmp_path):
    p = _write(tmp_path, BASE + "name: x\nspace: {optim.lr: {grid: [0.1, 0.2]}}\n")
    with pytest.raises(StudyError, match="space is empty"):
        load_study(p, ["optim.lr=0.5"])


def test_missing_study_file():
    with pytest.raises(StudyError, match="not found"):
        load_study("no/such/space.yaml")


# --------------------------------------------------------------------------- space
def test_param_space_and_decode_roundtrip(tmp_path):
    p = _write(
        tmp_path,
        BASE + "name: x\nseeds: [3, 4]\nsearch: {algorithm: tpe, scheduler: fifo}\n"
        "space:\n  mix.grids: {choice: [default, ['1x2', '2x2']]}\n  optim.lr: {loguniform: [0.001, 0.01]}\n"
        "  train.batch_size: {randint: [16, 32]}\n",
    )
    spec, _, _ = load_study(p)
    space = param_space(spec)
    assert set(space) == {"mix.grids", "optim.lr", "train.batch_size"}
    cats = space["mix.grids"].categories
    assert all(isinstance(c, str) for c in cats)  # Optuna holds only primitives
    params, seed = decode_params(
        spec, {"mix.grids": cats[1], "optim.lr": 0.002, "train.batch_size": 20.0, "__trial_index__": 1}
    )
    assert params == {"mix.grids": ["1x2", "2x2"], "optim.lr": 0.002, "train.batch_size": 20}
    assert seed == 4
    from ray.tune.search import Repeater

    assert isinstance(build_searcher(spec), Repeater)


def test_grid_space_adds_seed_dimension(tmp_path):
    p = _write(
        tmp_path,
        BASE + "name: x\nseeds: [0, 1, 2]\nsearch: {algorithm: grid}\nspace: {mix.mixed_ratio: {grid: [0.25, 0.5]}}\n",
    )
    spec, _, _ = load_study(p)
    space = param_space(spec)
    assert space["train.seed"] == {"grid_search": [0, 1, 2]}
    assert spec.planned_trials() == 6
    assert build_searcher(spec) is None
    assert decode_params(spec, {"mix.mixed_ratio": 0.5, "train.seed": 2}) == ({"mix.mixed_ratio": 0.5}, 2)


def test_cl_weight_zero_means_plain_splicemix():
    base = StudySpec.model_fields  # noqa: F841 - just to use the import
    from splicemix.config import TrainConfig

    cfg = materialize(TrainConfig().model_dump(mode="json"), {"mix.method": "splicemix_cl"}, {"mix.cl_weight": 0.0}, 0)
    assert cfg.mix.method == "splicemix"
    cfg = materialize(TrainConfig().model_dump(mode="json"), {"mix.method": "splicemix_cl"}, {"mix.cl_weight": 0.5}, 1)
    assert cfg.mix.method == "splicemix_cl" and cfg.train.seed == 1


# --------------------------------------------------------------------------- store
def _store(tmp_path) -> ResultStore:
    return ResultStore(str(tmp_path / "st"), {"git_commit": "abc"}, "mAP", "max", ["optim.lr", "train.seed"])


def test_store_roundtrip(tmp_path):
    s = _store(tmp_path)
    for ep, m in enumerate([10.0, 30.0, 20.0], start=1):
        s.add_epoch(
            "t1",
            0,
            {"optim.lr": 0.1},
            {
                "epoch": ep,
                "mAP": m,
                "train_loss": 1.0 / ep,
                "pid": 1,
                "reported_at": 100.0 + ep,
                "trial_started_at": 90.0,
                "epoch_time_s": 4.0,
                "time_total_s": 12.0 + ep,
            },
        )
    row = s.set_trial("t1", "completed", "", 0, {"optim.lr": 0.1, "mix.grids": '["2x2"]'}, 5, {"time_total_s": 15.0})
    assert row["status"] == "stopped" and row["epochs_run"] == 3  # 3 of 5 epochs: the scheduler stopped it
    assert row["best_mAP"] == 30.0 and row["best_epoch"] == 2 and row["final_mAP"] == 20.0
    assert row["setup_s"] == pytest.approx(101.0 - 4.0 - 90.0)
    s.flush()
    t = pq.read_table(tmp_path / "st" / "trials.parquet").to_pylist()
    h = pq.read_table(tmp_path / "st" / "history.parquet").to_pylist()
    assert len(t) == 1 and t[0]["cfg.optim.lr"] == 0.1 and json.loads(t[0]["cfg.mix.grids"]) == ["2x2"]
    assert [r["epoch"] for r in h] == [1, 2, 3] and "pid" not in h[0]
    assert read_metadata(str(tmp_path / "st" / "trials.parquet"))["git_commit"] == "abc"
    s2 = _store(tmp_path)
    assert s2.load() == 1 and len(s2.history) == 3


def test_provenance_names_the_machine_and_the_cpu_kernels_torch_used():
    """Runs match to the bit only on CPUs whose kernels match: provenance says which torch used."""
    import os

    import torch

    from study.store import provenance

    p = provenance("name: x\n", ["python", "-m", "study.run", "x.yaml"])
    m = p["machine"]
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and m["cpu_capability"]
    assert m["cpu_count"] == os.cpu_count() and isinstance(m["cpu_model"], str) and m["cpu_model"]
    boot = Path("/proc/sys/kernel/random/boot_id")
    assert m["boot_id"] == (boot.read_text().strip() if boot.is_file() else None)
    assert json.loads(json.dumps(p)) == p  # written as provenance.json


def test_git_commit_is_head_marked_dirty_only_by_tracked_changes_in_its_scope():
    from splicemix.provenance import git_commit

    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert len(head) == 40
    assert git_commit(root / "no-such-folder") == head  # nothing tracked there: never dirty
    assert git_commit() in (head, head + "-dirty")


def test_store_write_is_atomic(tmp_path, monkeypatch):
    s = _store(tmp_path)
    s.add_epoch("t1", 0, {}, {"epoch": 1, "mAP": 1.0})
    s.set_trial("t1", "completed", "", 0, {}, 1, {})
    s.flush()
    before = (tmp_path / "st" / "trials.parquet").read_bytes()

    def crash(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")  # a crash in the middle of writing
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    s.set_trial("t2", "completed", "", 0, {}, 1, {})
    with pytest.raises(OSError):
        s.flush()
    assert (tmp_path / "st" / "trials.parquet").read_bytes() == before
    assert len(pq.read_table(tmp_path / "st" / "trials.parquet")) == 1


# --------------------------------------------------------------------------- CLI
def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_help():
    r = _cli("--help")
    assert r.returncode == 0 and "--smoke" in r.stdout and "--resume" in r.stdout and "examples" in r.stdout


def test_cli_bad_input_one_line_exit_2(tmp_path):
    p = _write(tmp_path, "name: x\nspace: {}\n")
    r = _cli(str(p), "--storage", str(tmp_path / "st"))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("study.run: error:") and "space is empty" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_store_accepts_a_filesystem_uri(tmp_path):
    s = ResultStore(f"file://{tmp_path}/u", {}, "mAP", "max", [])
    s.add_epoch("t", 0, {}, {"epoch": 1, "mAP": 3.0})
    s.set_trial("t", "completed", "", 0, {}, 1, {})
    s.flush()
    assert pq.read_table(tmp_path / "u" / "trials.parquet").to_pylist()[0]["final_mAP"] == 3.0


def test_trial_config_takes_relative_paths_from_the_study_directory(tmp_path):
    """Tune runs a trial in its own directory: relative paths in base, fixed or space must
    still mean the directory the study was started from."""
    from study.trial import trial_config

    p = _write(
        tmp_path,
        BASE + "name: x\nfixed:\n  data.dataset: coco\n  data.coco.train_images: coco/train\n"
        "  data.coco.train_annotations: /abs/train.json\n  data.coco.val_images: coco/val\n"
        "  data.coco.val_annotations: coco/val.json\n"
        "space: {model.pretrained: {grid: [w/r18.pth, null]}}\nsearch: {algorithm: grid}\n",
    )
    spec, base, _ = load_study(p)
    cfg = trial_config(spec, base, {"model.pretrained": "w/r18.pth"}, str(tmp_path / "cache"), "out", "/work/dir")
    assert cfg.data.coco.train_images == "/work/dir/coco/train"
    assert cfg.data.coco.train_annotations == "/abs/train.json"
    assert cfg.data.coco.val_annotations == "/work/dir/coco/val.json"
    assert cfg.model.pretrained == "/work/dir/w/r18.pth"
    assert cfg.train.out_dir == "out" and cfg.train.progress is False
    cfg = trial_config(spec, base, {"model.pretrained": None}, str(tmp_path / "cache"), "out", "/work/dir")
    assert cfg.model.pretrained is None


# --------------------------------------------------------------------------- validations, counted
def test_validations_of_ratio_yaml(monkeypatch):
    """A trial's config is one TrainConfig validation constructing SpliceMix once; the driver
    validates each distinct trial config of ratio.yaml once (base, fixed, 4 ratios) and reuses them."""
    import splicemix.config.schema as config_schema
    from splicemix.config import TrainConfig
    from study.schema import check_paths, forget_validated
    from study.trial import trial_config

    counts = {"validations": 0, "splicemix": 0}

    class CountingValidator:
        def __init__(self, inner):
            self.inner = inner

        def validate_python(self, *args, **kwargs):
            counts["validations"] += 1
            return self.inner.validate_python(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    class CountingSpliceMix(config_schema.SpliceMix):
        def __init__(self, *args, **kwargs):
            counts["splicemix"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(TrainConfig, "__pydantic_validator__", CountingValidator(TrainConfig.__pydantic_validator__))
    monkeypatch.setattr(config_schema, "SpliceMix", CountingSpliceMix)

    def counted(fn):
        counts.update(validations=0, splicemix=0)
        out = fn()
        return out, dict(counts)

    forget_validated()  # a fresh process: nothing validated yet
    (spec, base, _), n = counted(lambda: load_study(ROOT / "search_spaces" / "ratio.yaml"))
    assert n == {"validations": 6, "splicemix": 6}  # was 10 validations, 20 SpliceMix
    _, n = counted(lambda: check_paths(spec, base, "ratio.yaml", str(ROOT)))
    assert n == {"validations": 0, "splicemix": 0}  # was 4 and 8: the configs load_study validated
    trial = {"mix.mixed_ratio": 0.5, "train.seed": 1}
    cfg, n = counted(lambda: trial_config(spec, base, trial, "cache", "out", "/w"))
    assert n == {"validations": 0, "splicemix": 0}  # the driver: validated by load_study, with seed 0
    assert cfg.mix.mixed_ratio == 0.5 and cfg.train.seed == 1
    forget_validated()  # a trial process
    cfg, n = counted(lambda: trial_config(spec, base, trial, "cache", "out", "/w"))
    assert n == {"validations": 1, "splicemix": 1}  # was 1 and 2
    assert cfg.mix.mixed_ratio == 0.5 and cfg.train.seed == 1
