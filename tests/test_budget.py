"""train.budget: runs of equal compute (images, steps or seconds) on tiny synthetic data (CPU).

64 training images in batches of 16 give 4 steps per epoch; SpliceMix's default ratio 0.25 adds
4 mixed images per step (20 images per step).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from splicemix.config import load_config
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from splicemix.engine.budget import RunLength
from splicemix.engine.optim import lr_lambda
from splicemix.results import flatten_config
from splicemix.train import CHECKPOINT_FILE, METRICS_FILE, train

TINY = dict(n_train=64, n_val=32, image_size=32, seed=0)
ITERS, PER_STEP = 4, 16 + 4
TIMING = {"images_per_s", "regular_images_per_s", "train_time_s", "eval_time_s", "epoch_time_s", "train_time_total_s"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic_budget"), SyntheticConfig(**TINY))


def overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
        "data.image_size=32",
        "model.name=smallcnn",
        "train.batch_size=16",
        "train.epochs=20",  # a budget decides the length instead
        "train.progress=false",
        "train.cpu_threads=1",
        "train.device=cpu",
        f"train.out_dir={out}",
        *extra,
    ]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines() if line.strip()]


def head_lr_after_run(out: Path) -> float:
    """The head's learning rate the optimiser holds after the last step (what the schedule gave it)."""
    ckpt = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    return float(ckpt["optimizer"]["param_groups"][1]["lr"])


# --------------------------------------------------------------------------- the config
@pytest.mark.parametrize(
    "value, message",
    [
        ("{}", "exactly one of images, steps, seconds"),
        ("{steps: 10, images: 100}", "exactly one of images, steps, seconds"),
        ("{steps: 0}", "greater than or equal to 1"),
        ("{seconds: -1}", "greater than 0"),
        ("{epochs: 3}", "epochs"),
        ("{steps: 2.5}", "steps"),
    ],
)
def test_budget_is_exactly_one_positive_amount(value, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [f"train.budget={value}"])


def test_budget_config_values_and_columns():
    assert load_config(None, []).train.budget is None
    b = load_config(None, ["train.budget={seconds: 90}"]).train.budget
    assert (b.kind, b.amount) == ("seconds", 90.0)
    cfg = load_config(None, ["train.budget={images: 5000}"])
    flat = flatten_config(cfg)
    assert flat["train.budget.images"] == 5000 and flat["train.budget.steps"] is None
    # a step schedule's milestones are epochs; under a budget the epoch count does not bound them
    load_config(None, ["train.budget={steps: 100}", "optim.schedule=step", "optim.milestones=[30]"])


@pytest.mark.parametrize("mix", ["mix.mixed_ratio=paper", "mix.prob=0.5"])
def test_images_budget_needs_a_fixed_number_of_mixed_images(mix):
    with pytest.raises(ValueError, match="train.budget.images needs the same number of mixed images"):
        load_config(None, ["train.budget={images: 1000}", mix])
    load_config(None, ["train.budget={steps: 1000}", mix])  # a step budget does not
    load_config(None, ["train.budget={images: 1000}", mix, "mix.method=baseline"])  # nor the baseline


def test_images_budget_becomes_the_first_step_that_reaches_it():
    cfg = load_config(None, ["train.budget={images: 90}"])
    assert RunLength(cfg, ITERS, PER_STEP).total_steps == 5  # 80 < 90 <= 100
    assert RunLength(cfg, ITERS, 2 * PER_STEP).total_steps == 3  # two processes: 40 per step
    assert RunLength(load_config(None, ["train.budget={images: 100}"]), ITERS, PER_STEP).total_steps == 5
    with pytest.raises(ValueError, match="images per step"):
        RunLength(cfg, ITERS)


def test_schedule_ends_at_a_step_budget():
    cfg = load_config(None, ["train.budget={steps: 10}", "optim.warmup_epochs=1", "optim.schedule=cosine"])
    length = RunLength(cfg, ITERS)
    f = lr_lambda(cfg, ITERS, length)
    assert [f(i) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # warm-up: one epoch of steps
    assert f(4) == 1.0 and f(7) == pytest.approx(0.5) and 0 < f(9) < 0.1 and f(10) == 0.0
    # a budget shorter than the warm-up: the warm-up is cut to it, and the decay still ends there
    short = load_config(None, ["train.budget={steps: 3}", "optim.warmup_epochs=2"])
    g = lr_lambda(short, ITERS, RunLength(short, ITERS))
    assert g(2) == 1.0 and g(3) == 0.0


def test_warmup_in_steps_is_the_same_for_every_data_set_size():
    """optim.warmup_steps replaces warmup_epochs: 3 steps whatever an epoch's length."""
    cfg = load_config(None, ["train.budget={steps: 10}", "optim.warmup_steps=3", "optim.warmup_epochs=5"])
    for iters in (2, ITERS, 50):
        f = lr_lambda(cfg, iters, RunLength(cfg, iters))
        assert [f(i) for i in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    by_epochs = load_config(None, ["train.budget={steps: 10}", "optim.warmup_epochs=1"])
    assert RunLength(by_epochs, 2).warm == 2 and RunLength(by_epochs, 8).warm == 8


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def steps_run(root, tmp_path_factory) -> Path:
    """6 steps (1.5 epochs), evaluated every 5 epochs: the partial last epoch is evaluated anyway."""
    out = tmp_path_factory.mktemp("steps") / "run"
    train(load_config(None, overrides(root, out, "train.budget={steps: 6}", "train.eval_every=5")))
    return out


@pytest.mark.slow
def test_steps_budget_stops_mid_epoch_and_ends_the_schedule(steps_run):
    r = rows(steps_run)
    assert [m["epoch"] for m in r] == [1, 2]
    assert [m["steps"] for m in r] == [4, 6]  # the second epoch stopped after 2 of its 4 steps
    assert [m["images_seen"] for m in r] == [4 * PER_STEP, 6 * PER_STEP]
    assert [m["budget_spent"] for m in r] == [False, True]
    assert 0 < r[0]["train_time_total_s"] < r[1]["train_time_total_s"]
    # evaluated: only the last epoch (eval_every 5), which carries the convergence verdict
    assert "mAP" not in r[0] and "converged" not in r[0]
    assert "mAP" in r[1] and r[1]["converged"] is False and r[1]["best_mAP_epoch"] == 2
    assert head_lr_after_run(steps_run) == 0.0  # the cosine reached its end at the last step


@pytest.mark.slow
def test_budget_and_convergence_reach_trials_parquet(steps_run, tmp_path):
    from study.store import ResultStore

    store = ResultStore(str(tmp_path / "study"), {}, "mAP", "max", [])
    for m in rows(steps_run):
        store.add_epoch("t0", 0, {}, m)
    row = store.set_trial("t0", "completed", "", 0, {}, 20, rows(steps_run)[-1])
    store.flush()
    assert row["status"] == "completed"  # 2 of train.epochs 20, but the budget set the length
    (t,) = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    assert t["final_steps"] == 6 and t["final_images_seen"] == 6 * PER_STEP and t["final_budget_spent"] is True
    assert t["final_converged"] is False and t["final_best_mAP_epoch"] == 2 and t["epochs_run"] == 2


@pytest.mark.slow
def test_images_budget_stops_at_the_first_step_that_reaches_it(root, tmp_path):
    out = tmp_path / "run"
    train(load_config(None, overrides(root, out, "train.budget={images: 90}")))
    last = rows(out)[-1]
    assert last["steps"] == 5 and last["images_seen"] == 100 and last["budget_spent"] is True
    assert last["images_seen"] - PER_STEP < 90 <= last["images_seen"]
    assert head_lr_after_run(out) == 0.0


@pytest.mark.slow
def test_seconds_budget_stops_by_the_clock(root, tmp_path):
    # a budget far below one step's time: the run stops after its first step, the rule being
    # "the first step at which the training seconds reach the budget"
    out = tmp_path / "run"
    cfg = load_config(None, overrides(root, out, "train.budget={seconds: 0.000001}", "optim.warmup_epochs=0"))
    result = train(cfg)
    (m,) = rows(out)
    assert m["steps"] == 1 < ITERS and m["budget_spent"] is True and m["train_time_total_s"] >= 1e-6
    assert result["steps"] == 1 and "mAP" in m
    assert head_lr_after_run(out) == 0.0  # the decay follows the seconds: it ended at the budget


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_budget_run_resumes_exactly(root, tmp_path):
    extra = ("mix.method=splicemix_cl", "train.budget={steps: 6}", "optim.warmup_epochs=0.5")
    full = train(load_config(None, overrides(root, tmp_path / "full", *extra)))

    def stop_after_first(metrics):
        if metrics["epoch"] == 1:
            raise _Interrupt

    part = tmp_path / "part"
    with pytest.raises(_Interrupt):
        train(load_config(None, overrides(root, part, *extra)), report=stop_after_first)
    resumed = train(load_config(None, overrides(root, part, *extra, "train.resume=true")))
    assert set(full) == set(resumed)
    for k in set(full) - TIMING:
        assert full[k] == resumed[k], (k, full[k], resumed[k])
    assert [m["steps"] for m in rows(part)] == [4, 6]
    # resuming a spent budget trains nothing
    again = train(load_config(None, overrides(root, part, *extra, "train.resume=true")))
    assert again["steps"] == 6 and len(rows(part)) == 2


def test_a_budget_trial_reports_the_epochs_it_ran_not_a_fraction_of_train_epochs(tmp_path):
    """The progress line of a trial under ``train.budget``: its epochs run and the budget, never
    "48/20 epochs" (train.epochs does not set its length); without a budget, run / planned."""
    from study.store import ResultStore, run_length

    store = ResultStore(str(tmp_path / "study"), {}, "mAP", "max", [])
    budget = {"train.epochs": 20, "train.budget.images": None, "train.budget.steps": 2976, "train.budget.seconds": None}
    for trial_id, cfg in (("b", budget), ("e", {"train.epochs": 20})):
        for epoch in range(1, 49 if trial_id == "b" else 13):
            store.add_epoch(trial_id, 0, {}, {"epoch": epoch, "mAP": 50.0})
        store.set_trial(trial_id, "completed", "", 0, cfg, 20, {"budget_spent": trial_id == "b"})
    assert run_length(store.trials["b"]) == "48 epochs (train.budget 2,976 steps)"
    assert run_length(store.trials["e"]) == "12/20 epochs"
    assert store.trials["e"]["status"] == "stopped"  # short of train.epochs without a budget
