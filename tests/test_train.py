"""splicemix.train: the training loop on tiny synthetic data (CPU), resume, CLI, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splicemix.config import load_config
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from splicemix.results import WALL_CLOCK
from splicemix.train import CHECKPOINT_FILE, hide_labels, train

REPO = Path(__file__).resolve().parents[1]
F1_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
EXPECTED_KEYS = {
    "epoch",
    "method",
    "train_loss",
    "lr",
    "mAP",
    "images_per_s",
    "regular_images_per_s",
    "train_time_s",
    "eval_time_s",
    "epoch_time_s",
    *F1_KEYS,
    *(k + "_top3" for k in F1_KEYS),
}


# --------------------------------------------------------------------------- one epoch per method
@pytest.mark.slow
@pytest.mark.parametrize("method", ["baseline", "splicemix", "splicemix_cl"])
def test_one_epoch_writes_metrics(tiny, tmp_path, method):
    out = tmp_path / "run"
    cfg = load_config(None, tiny.overrides(out, f"mix.method={method}", "data.eval_sizes=[16]"))
    reports = []
    result = train(cfg, report=reports.append)

    rows = tiny.metrics(out)
    assert len(rows) == 1 and len(reports) == 1
    m = rows[0]
    expected = EXPECTED_KEYS | {"mAP@16"} | ({"cl_loss"} if method == "splicemix_cl" else set())
    assert expected <= set(m), expected - set(m)
    assert ("cl_loss" in m) == (method == "splicemix_cl")
    for k, v in m.items():
        if k != "method":
            assert isinstance(v, (int, float)) and math.isfinite(v), (k, v)
    assert m["epoch"] == 1 and m["method"] == method
    for k in ("mAP", "mAP@16", "CF1", "OF1", "CF1_top3"):
        assert 0.0 <= m[k] <= 100.0  # percentages
    assert m["mAP"] > 1.0  # percent, not a fraction
    # 4 batches of 16 regular images; SpliceMix appends 16 // 4 = 4 mixed images per batch
    ratio = m["images_per_s"] / m["regular_images_per_s"]
    assert ratio == pytest.approx(1.0 if method == "baseline" else 1.25)
    if method == "splicemix_cl":
        assert m["cl_loss"] > 0 and m["train_loss"] > m["cl_loss"]

    # report() got what was written; the result adds the best epoch
    assert reports[0] == m
    assert result["best_epoch"] == 1 and result["best_mAP"] == pytest.approx(m["mAP"])
    assert result["mAP"] == pytest.approx(m["mAP"])
    assert (out / CHECKPOINT_FILE).is_file() and (out / "config.yaml").is_file()
    assert not (out / (CHECKPOINT_FILE + ".tmp")).exists()
    assert load_config(out / "config.yaml") == cfg  # the resolved config is reloadable


# --------------------------------------------------------------------------- resume
class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tiny, tmp_path):
    extra = ("mix.method=splicemix_cl", "train.epochs=2", "optim.schedule=cosine", "optim.warmup_epochs=0.5")
    full = train(load_config(None, tiny.overrides(tmp_path / "full", *extra)))

    def stop_after_first(metrics):
        if metrics["epoch"] == 1:
            raise _Interrupt

    part_out = tmp_path / "part"
    with pytest.raises(_Interrupt):
        train(load_config(None, tiny.overrides(part_out, *extra)), report=stop_after_first)
    assert len(tiny.metrics(part_out)) == 1
    ckpt = torch.load(part_out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "mixer_generator"} <= set(ckpt)

    resumed = train(load_config(None, tiny.overrides(part_out, *extra, "train.resume=true")))
    timing = WALL_CLOCK
    assert set(full) == set(resumed)
    for k in set(full) - timing:
        assert full[k] == resumed[k], (k, full[k], resumed[k])
    rows = tiny.metrics(part_out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["mAP"] == tiny.metrics(tmp_path / "full")[0]["mAP"]

    # resuming a finished run trains nothing and returns the final metrics
    again = train(load_config(None, tiny.overrides(part_out, *extra, "train.resume=true")))
    assert again["mAP"] == resumed["mAP"] and len(tiny.metrics(part_out)) == 2


# --------------------------------------------------------------------------- missing labels
def test_hide_labels_fraction_and_determinism():
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(200, 10, generator=g) < 0.3).float()
    n_pos = int(targets.sum())
    for ratio in (0.0, 0.25, 0.5, 0.9):
        hidden = hide_labels(targets, ratio, seed=3)
        assert set(hidden.unique().tolist()) <= {0.0, 1.0}
        assert bool((hidden <= targets).all())  # only positives are hidden
        assert int((targets - hidden).sum()) == round(ratio * n_pos)
    a, b, c = (hide_labels(targets, 0.5, seed=s) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(targets, hide_labels(targets, 0.0, seed=3))
    with pytest.raises(ValueError, match="missing_label_ratio"):
        hide_labels(targets, 1.0, seed=0)


def test_missing_label_ratio_hides_training_labels_only(tiny, tmp_path):
    from splicemix.engine.data import build_data

    cfg = load_config(None, tiny.overrides(tmp_path, "data.missing_label_ratio=0.4"))
    full = load_config(None, tiny.overrides(tmp_path))
    d, d_full = build_data(cfg), build_data(full)
    t, t_full = d.train.targets, d_full.train.targets
    n_pos = int(t_full.sum())
    assert int((t_full - t).sum()) == round(0.4 * n_pos)
    assert d.hidden_fraction == pytest.approx(round(0.4 * n_pos) / n_pos)
    assert bool((t <= t_full).all())
    _, item_target = d.train[0]
    assert torch.equal(item_target, t[0])  # the loader sees the masked targets
    assert torch.equal(d.val_targets, d_full.val_targets)  # evaluation keeps every label


# --------------------------------------------------------------------------- schedule
def test_lr_schedule_warmup_step_cosine():
    from splicemix.engine.optim import lr_lambda

    cfg = load_config(
        None,
        [
            "train.epochs=4",
            "optim.warmup_epochs=1",
            "optim.schedule=step",
            "optim.milestones=[2, 3]",
            "optim.gamma=0.1",
        ],
    )
    f = lr_lambda(cfg, iters_per_epoch=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)  # linear warm-up per iteration
    assert f(10) == 1.0 and f(19) == 1.0 and f(20) == pytest.approx(0.1) and f(30) == pytest.approx(0.01)
    cfg = load_config(None, ["train.epochs=4", "optim.warmup_epochs=0", "optim.schedule=cosine"])
    f = lr_lambda(cfg, iters_per_epoch=10)
    assert f(0) == 1.0 and f(20) == pytest.approx(0.5) and f(39) < 0.01
    assert lr_lambda(load_config(None, ["optim.schedule=constant", "optim.warmup_epochs=0"]), 10)(123) == 1.0


# --------------------------------------------------------------------------- engine units
def test_diverged_loss_raises_a_typed_floating_point_error():
    from splicemix.engine.loop import EpochStats
    from splicemix.train import TrainingDiverged

    stats = EpochStats(
        loss_sum=float("nan"), cl_sum=0.0, batches=4.0, images=64.0, regular=64.0, lr=0.1, train_time_s=1.0
    )
    with pytest.raises(TrainingDiverged) as e:
        stats.metrics(3, "baseline")
    assert isinstance(e.value, FloatingPointError)
    assert str(e.value) == "training diverged: the loss of epoch 3 is nan; lower optim.lr or enable optim.grad_clip"
    ok = EpochStats(8.0, 2.0, 4.0, 80.0, 64.0, 0.1, 2.0)
    assert ok.metrics(1, "splicemix_cl") == {
        "epoch": 1,
        "method": "splicemix_cl",
        "train_loss": 2.0,
        "cl_loss": 0.5,
        "lr": 0.1,
    }
    assert ok.timing(0.5, 3.0)["regular_images_per_s"] == 32.0


def test_train_state_round_trip_and_mismatch(tmp_path):
    from splicemix.engine.dist import DistContext
    from splicemix.engine.optim import Optimization
    from splicemix.engine.rundir import RunDir
    from splicemix.engine.state import TrainState
    from splicemix.models import build_model

    cfg = load_config(None, ["train.epochs=2", "model.name=smallcnn"])
    ctx = DistContext.from_config(load_config(None, ["train.device=cpu"]).train)
    assert (ctx.rank, ctx.world, ctx.is_main, ctx.amp) == (0, 1, True, False)

    def state(num_classes: int) -> TrainState:
        torch.manual_seed(0)
        net = build_model("smallcnn", num_classes, image_size=32)
        return TrainState(net, Optimization.build(cfg, net, 4, ctx), torch.Generator(), ctx.device)

    a = state(5)
    a.record({"epoch": 1, "mAP": 40.0})
    a.record({"epoch": 2, "mAP": 30.0})
    run = RunDir(tmp_path)
    a.save(run, cfg, ctx.world)
    ckpt = run.load_checkpoint()
    assert list(ckpt) == [
        "epoch",
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "mixer_generator",
        "rng",
        "best_mAP",
        "best_epoch",
        "last_metrics",
        "map_history",
        "compute",
        "config",
        "world_size",
    ]
    b = state(5)
    b.resume(run, cfg, log=lambda msg: None)
    assert (b.epoch, b.best_map, b.best_epoch, b.last_metrics) == (2, 40.0, 1, {"epoch": 2, "mAP": 30.0})
    assert b.result() == {"epoch": 2, "mAP": 30.0, "best_mAP": 40.0, "best_epoch": 1}
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint.pt: it does not match this model"):
        state(7).resume(run, cfg, log=lambda msg: None)


# --------------------------------------------------------------------------- CLI
def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "splicemix.train", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def test_cli_help():
    r = run_cli("--help")
    assert r.returncode == 0
    for flag in ("--config", "--set", "--epochs", "--method", "--out", "--resume", "--no-progress"):
        assert flag in r.stdout


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 1\n  colour: blue\n")
    r = run_cli("--config", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "train.colour" in lines[0]
    assert "Traceback" not in r.stderr

    r = run_cli("--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "missing.yaml" in r.stderr
    assert "Traceback" not in r.stderr

    r = run_cli("--set", "mix.grids=[3x]")
    assert r.returncode == 2 and "mix.grids" in r.stderr and "Traceback" not in r.stderr

    r = run_cli("--config", str(bad), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_cli_print_config_applies_shortcuts(tmp_path):
    r = run_cli(
        "--print-config",
        "--epochs",
        "7",
        "--method",
        "baseline",
        "--out",
        str(tmp_path / "x y"),
        "--no-progress",
        "--set",
        "optim.lr=0.5",
    )
    assert r.returncode == 0, r.stderr
    import yaml

    cfg = yaml.safe_load(r.stdout)
    assert cfg["train"]["epochs"] == 7 and cfg["mix"]["method"] == "baseline"
    assert cfg["train"]["out_dir"] == str(tmp_path / "x y") and cfg["train"]["progress"] is False
    assert cfg["optim"]["lr"] == 0.5


@pytest.mark.slow
def test_cli_trains(tiny, tmp_path):
    cfg_file = tmp_path / "tiny.yaml"
    overrides = tiny.overrides(tmp_path / "unused")
    from splicemix.config import apply_overrides

    raw, _ = apply_overrides({}, overrides)
    import yaml

    cfg_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cli_run"
    r = run_cli("--config", str(cfg_file), "--epochs", "1", "--method", "splicemix", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1" in r.stdout and "mAP" in r.stdout and "img/s" in r.stdout
    assert len(tiny.metrics(out)) == 1


# --------------------------------------------------------------------------- DDP (gloo, 2 CPU processes)
DDP_SCRIPT = r"""
import json, os, sys
import torch.distributed as dist
from splicemix.config import load_config
from splicemix.train import train
dist.init_process_group("gloo")
overrides = json.loads(sys.argv[1])
reports = []
result = train(load_config(None, overrides), report=reports.append)
with open(os.path.join(sys.argv[2], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"result": result, "reports": reports}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny, tmp_path):
    script = tmp_path / "ddp_job.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp_run"
    overrides = tiny.overrides(out, "mix.method=splicemix_cl", "train.batch_size=8", "data.eval_sizes=[16]")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            json.dumps(overrides),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    timing = WALL_CLOCK
    for k in set(ranks[0]["result"]) - timing:  # every rank reports the same (gathered) metrics
        assert ranks[0]["result"][k] == ranks[1]["result"][k], k
    assert len(ranks[1]["reports"]) == 1
    rows = tiny.metrics(out)
    assert len(rows) == 1 and "mAP@16" in rows[0]  # only rank 0 wrote
    assert r.stdout.count("epoch 1/1") == 1
    # 64 images over 2 ranks x batch 8 = 4 iterations; each rank adds 8 // 4 = 2 mixed images per batch
    assert rows[0]["images_per_s"] / rows[0]["regular_images_per_s"] == pytest.approx(1.25)


# --------------------------------------------------------------------------- it learns
@pytest.mark.slow
def test_learns_well_above_chance(tmp_path_factory):
    """baseline and SpliceMix both beat the chance level (mean class frequency) by a wide margin."""
    knobs = dict(
        n_train=2048,
        n_val=256,
        image_size=32,
        num_classes=3,
        mean_objects=1.0,
        objects=[1, 1],
        scale=[0.5, 0.9],
        cooc_strength=0.0,
        seed=1,
    )
    root = ensure_synthetic(tmp_path_factory.mktemp("synthetic_learn"), SyntheticConfig(**knobs))
    meta = json.loads((root / "synthetic.json").read_text())
    chance = 100.0 * float(np.mean(meta["class_frequency"]["val"]))
    base = [
        f"data.root={root}",
        *(f"data.synthetic.{k}={json.dumps(v)}" for k, v in knobs.items()),
        "data.image_size=32",
        "data.workers=0",
        "train.batch_size=32",
        "train.epochs=6",
        "optim.lr=0.003",
        "train.progress=false",
        "train.cpu_threads=1",
    ]
    for method in ("baseline", "splicemix"):
        out = tmp_path_factory.mktemp(f"learn_{method}")
        result = train(load_config(None, base + [f"mix.method={method}", f"train.out_dir={out}"]))
        assert result["mAP"] > chance + 12.0, (method, result["mAP"], chance)
