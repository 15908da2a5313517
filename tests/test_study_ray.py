"""Smoke studies through the real Ray (local, CPU), sharing one Ray instance."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from study.run import run_study
from study.store import read_metadata

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "search_spaces"
pytestmark = pytest.mark.ray


def _read(path: str):
    return pq.read_table(f"{path}/trials.parquet").to_pylist(), pq.read_table(f"{path}/history.parquet").to_pylist()


def _check_study(res, n_trials: int = 2, epochs: int = 1):
    trials, history = _read(res.path)
    assert len(trials) == n_trials and len({t["trial_id"] for t in trials}) == n_trials
    assert all(t["status"] == "completed" for t in trials), [t["message"] for t in trials]
    assert all(t["epochs_run"] == epochs for t in trials)
    assert all(0 <= t["final_mAP"] <= 100 and math.isfinite(t["best_mAP"]) for t in trials)
    assert len(history) == n_trials * epochs
    meta = read_metadata(f"{res.path}/trials.parquet")
    assert meta["study_yaml"] and meta["versions"]["ray"] and "command" in meta
    return trials, history


@pytest.mark.parametrize("space", ["ratio", "grid_scaling", "cl_vit", "ratio_data", "coco"])
def test_shipped_space_smoke(ray_local, cache, tmp_path, space):
    res = run_study(str(SPACES / f"{space}.yaml"), smoke_run=True, storage=str(tmp_path), data_cache=cache, quiet=True)
    trials, _ = _check_study(res)
    if space == "coco":  # tpe + asha, Ray Train with 2 workers, a list-valued category
        assert all(t["cfg.model.name"] == "resnet101" for t in trials)


@pytest.mark.parametrize("algorithm,scheduler", [("random", "fifo"), ("grid", "asha"), ("tpe", "fifo")])
def test_searcher_scheduler_pairs(ray_local, cache, tmp_path, algorithm, scheduler):
    res = run_study(
        str(SPACES / "ratio.yaml"),
        [f"search.algorithm={algorithm}", f"search.scheduler={scheduler}"],
        smoke_run=True,
        storage=str(tmp_path),
        data_cache=cache,
        quiet=True,
    )
    _check_study(res)


def test_resume_finished_study_reruns_nothing(ray_local, cache, tmp_path):
    res = run_study(
        str(SPACES / "ratio.yaml"), smoke_run=True, storage=str(tmp_path), name="r", data_cache=cache, quiet=True
    )
    first, _ = _read(res.path)
    again = run_study(
        str(SPACES / "ratio.yaml"),
        smoke_run=True,
        storage=str(tmp_path),
        name="r",
        resume=True,
        data_cache=cache,
        quiet=True,
    )
    trials, _ = _read(again.path)
    assert sorted(t["trial_id"] for t in trials) == sorted(t["trial_id"] for t in first)
    assert [t["wall_time_s"] for t in sorted(trials, key=lambda t: t["trial_id"])] == [
        t["wall_time_s"] for t in sorted(first, key=lambda t: t["trial_id"])
    ]


DDP_SPACE = """
name: ddp
base: {base}
fixed:
  data.synthetic.n_train: 512
  data.synthetic.n_val: 256
  data.synthetic.image_size: 32
  data.image_size: 32
  data.eval_sizes: []
  train.epochs: 3
  mix.method: splicemix
space:
  mix.mixed_ratio: {{grid: [0.25]}}
search: {{algorithm: grid, scheduler: fifo}}
"""


def test_two_worker_ddp_matches_single_worker(ray_local, cache, tmp_path):
    """The same 3 epochs as one worker at batch 64 and as two gloo DDP workers at 32 each
    (the same global batch): the metrics agree within run-to-run noise."""
    space = tmp_path / "ddp.yaml"
    space.write_text(DDP_SPACE.format(base=ROOT / "configs" / "default.yaml"))
    one = run_study(str(space), ["train.batch_size=64"], storage=str(tmp_path / "a"), data_cache=cache, quiet=True)
    two = run_study(
        str(space),
        ["train.batch_size=32", "resources.num_workers=2"],
        storage=str(tmp_path / "b"),
        data_cache=cache,
        quiet=True,
    )
    (t1,), h1 = _read(one.path)
    (t2,), h2 = _read(two.path)
    assert t1["status"] == t2["status"] == "completed" and t1["epochs_run"] == t2["epochs_run"] == 3
    assert {r["world_size"] for r in h1} == {1} and {r["world_size"] for r in h2} == {2}
    # each epoch trains the same number of regular images in both (512 // 64 batches x 64)
    assert [round(r["regular_images_per_s"] * r["train_time_s"]) for r in h2] == [
        round(r["regular_images_per_s"] * r["train_time_s"]) for r in h1
    ]
    assert abs(t1["final_mAP"] - t2["final_mAP"]) < 8.0, (t1["final_mAP"], t2["final_mAP"])
    assert abs(t1["final_train_loss"] - t2["final_train_loss"]) < 0.1 * t1["final_train_loss"]
    print(
        f"single worker mAP {t1['final_mAP']:.2f} loss {t1['final_train_loss']:.4f}; "
        f"2 DDP workers mAP {t2['final_mAP']:.2f} loss {t2['final_train_loss']:.4f}; "
        f"setup {t1['setup_s']:.1f} s vs {t2['setup_s']:.1f} s"
    )


def test_study_benchmark_quick(ray_local, tmp_path, monkeypatch):
    """The study suite of `python -m benchmarks` in its quick form: every row finite, curves written."""
    import csv

    import torch

    from benchmarks import study as bench

    monkeypatch.setenv("BENCH_OUT", str(tmp_path))
    rows = bench.run(True, torch.device("cpu"))
    cases = [r.case for r in rows]
    assert any("direct path" in c for c in cases) and any("Ray Train" in c for c in cases)
    assert any("TPE+ASHA" in c for c in cases) and any("trials per hour" in c for c in cases)
    assert all(math.isfinite(r.ours) and r.ours >= 0 for r in rows if "TPE" not in r.case)
    with open(tmp_path / "search_curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert {c["search"] for c in curves} == {"grid", "tpe_asha"}
    grid = [int(c["epochs_spent"]) for c in curves if c["search"] == "grid"]
    assert grid == list(range(1, len(grid) + 1)) and len(grid) == 4 * 3  # 2 x 2 configs x 3 epochs


def test_gaps_and_curve_on_constructed_history():
    from benchmarks.study import _curve, _gaps

    hist = [  # trial a: epochs at t=10, 12 (first step at 9); trial b: first step at 12.5, ends at 16
        {"trial_id": "a", "epoch": 1, "reported_at": 10.0, "epoch_time_s": 1.0},
        {"trial_id": "a", "epoch": 2, "reported_at": 12.0, "epoch_time_s": 1.0},
        {"trial_id": "b", "epoch": 1, "reported_at": 14.0, "epoch_time_s": 1.5},
        {"trial_id": "b", "epoch": 2, "reported_at": 16.0, "epoch_time_s": 1.0},
    ]
    assert _gaps(hist) == [pytest.approx(0.5)]
    trials = [
        {"trial_id": "a", "epochs_run": 2, "final_mAP": 30.0},
        {"trial_id": "b", "epochs_run": 2, "final_mAP": 40.0},
    ]
    curve = _curve(trials, hist, 2)
    assert [e for e, _ in curve] == [1, 2, 3, 4]
    assert [b for _, b in curve] == [float("-inf"), 30.0, 30.0, 40.0]
