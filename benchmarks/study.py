"""The study machinery: per-trial overhead, trials per hour, search efficiency (real Ray runs).

* overhead: one trial's end -> the next trial's first training step, trials run one at a time
  (Tune's teardown and launch plus the trial's own set-up), for the direct single-worker path
  and for a 2-worker Ray Train (gloo DDP) trial; target for the direct path: at most 3 s.
* trials/hour of ``search_spaces/ratio.yaml`` as shipped (about 10 minutes here; ``--quick``
  measures its ``--smoke`` version instead). Set ``BENCH_RATIO_STUDY=<study folder>`` to read
  an earlier run's trials.parquet instead of running it again.
* search efficiency on ``benchmarks/spaces/efficiency.yaml`` (4 lr x 4 ratios, 8 epochs, tiny
  data): the exhaustive grid vs Optuna TPE + ASHA over the same categories. Target: TPE+ASHA
  gets within 0.5 mAP of the grid's best final mAP within 40 % of the grid's epoch budget.
  Both best-so-far curves (best final mAP of fully trained trials vs epochs spent) are
  written to ``search_curves.csv`` next to results.json.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import torch

from .table import Row

ROOT = Path(__file__).resolve().parent.parent
SUITE = "study"


def _study(space: str, overrides: list[str], storage: str, cache: str, smoke: bool = False, **kw):
    from study.run import run_study

    return run_study(space, overrides, smoke_run=smoke, storage=storage, data_cache=cache, quiet=True, **kw)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return float("nan") if not n else (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def _gaps(history: list[dict]) -> list[float]:
    """Seconds from one trial's last report to the next trial's first training step, for trials
    run one at a time: Tune tearing the old trial down, starting the new one, and the new
    trial building its data, model and optimiser."""
    by_trial: dict[str, list[dict]] = {}
    for h in history:
        by_trial.setdefault(h["trial_id"], []).append(h)
    spans = []
    for rows in by_trial.values():
        rows.sort(key=lambda r: r["epoch"])
        first_step = rows[0]["reported_at"] - rows[0]["epoch_time_s"]
        spans.append((first_step, rows[-1]["reported_at"]))
    spans.sort()
    return [nxt[0] - prev[1] for prev, nxt in zip(spans, spans[1:], strict=False)]


def _overhead(tmp: str, cache: str) -> list[Row]:
    rows = []
    space = str(ROOT / "search_spaces" / "ratio.yaml")
    for label, extra, target in (
        ("direct path, 1 worker", [], 3.0),
        ("Ray Train, 2 workers (gloo DDP)", ["resources.num_workers=2"], None),
    ):
        # the smoke grid (2 trials) twice, one trial at a time
        res = _study(space, extra, f"{tmp}/ov", cache, smoke=True, max_concurrent=1, num_samples=2)
        hist = pq.read_table(f"{res.path}/history.parquet").to_pylist()
        gaps = _gaps(hist)
        setup = [t["setup_s"] for t in res.trials if t.get("setup_s") is not None]
        ours = _median(gaps)
        rows.append(
            Row(
                SUITE,
                f"trial overhead, {label}",
                ours,
                unit="s",
                target=f"<= {target:g} s" if target else "",
                met=(ours <= target) if target else None,
                note=f"previous trial's last report -> next trial's first training step, one trial at a time, "
                f"median of {len(gaps)}; of which inside the trial function (config, data, model, "
                f"optimiser): {_median(setup):.2f} s",
            )
        )
    return rows


def _trials_per_hour(tmp: str, cache: str, quick: bool) -> list[Row]:
    given = os.environ.get("BENCH_RATIO_STUDY")
    if given and not quick:
        trials = pq.read_table(f"{given}/trials.parquet").to_pylist()
        hist = pq.read_table(f"{given}/history.parquet").to_pylist()
        # first trial's start to the last report (without Ray's start); no history: the trials' sum
        wall = (
            max(h["reported_at"] for h in hist) - min(h["trial_started_at"] for h in hist)
            if hist
            else sum(t.get("wall_time_s") or 0 for t in trials)
        )
        created = json.loads(Path(given, "provenance.json").read_text()).get("created")
        note = f"from {given} (created {created})"
    else:
        res = _study(str(ROOT / "search_spaces" / "ratio.yaml"), [], f"{tmp}/ratio", cache, smoke=quick)
        trials, wall = res.trials, res.wall_s
        note = (
            "search_spaces/ratio.yaml" + (" --smoke" if quick else "") + f", {wall / 60:.1f} min wall incl. Ray start"
        )
    n = len(trials)
    return [
        Row(
            SUITE,
            "ratio.yaml trials per hour" + (" (--smoke)" if quick else ""),
            n / wall * 3600.0,
            unit="trials/h",
            note=f"{n} trials; {note}",
        )
    ]


def _curve(trials: list[dict], history: list[dict], epochs: int) -> list[tuple[int, float]]:
    """(epochs spent, best final mAP of fully trained trials so far), in order of the epochs' reports."""
    events = sorted(history, key=lambda h: h["reported_at"])
    full = {
        t["trial_id"]: t["final_mAP"] for t in trials if t["epochs_run"] == epochs and t.get("final_mAP") is not None
    }
    spent, best, out = 0, float("-inf"), []
    for h in events:
        spent += 1
        if int(h["epoch"]) == epochs and h["trial_id"] in full:
            best = max(best, full[h["trial_id"]])
        out.append((spent, best))
    return out


def _efficiency(tmp: str, cache: str, quick: bool, out_dir: str | None) -> list[Row]:
    space = str(ROOT / "benchmarks" / "spaces" / "efficiency.yaml")
    shrink = (
        ["train.epochs=3", "space.optim.lr={grid: [0.001, 0.01]}", "space.mix.mixed_ratio={grid: [0.0, 0.5]}"]
        if quick
        else []
    )
    epochs = 3 if quick else 8
    grid = _study(space, shrink, f"{tmp}/grid", cache)
    n_cfg = len(grid.trials)
    tpe_over = shrink + [
        "search.algorithm=tpe",
        "search.scheduler=asha",
        f"search.num_samples={n_cfg}",
        "search.asha={grace_period: 1, reduction_factor: 3}",
    ]
    tpe = _study(space, tpe_over, f"{tmp}/tpe", cache)
    curves = {}
    for label, res in (("grid", grid), ("tpe_asha", tpe)):
        hist = pq.read_table(f"{res.path}/history.parquet").to_pylist()
        curves[label] = _curve(res.trials, hist, epochs)
    budget = n_cfg * epochs
    grid_best = max(t["final_mAP"] for t in grid.trials if t["epochs_run"] == epochs)
    reach = next((e for e, b in curves["tpe_asha"] if b >= grid_best - 0.5), None)
    spent = curves["tpe_asha"][-1][0] if curves["tpe_asha"] else 0
    tpe_best = curves["tpe_asha"][-1][1] if curves["tpe_asha"] else float("nan")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(out_dir) / "search_curves.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["search", "epochs_spent", "best_final_mAP"])
            for label, pts in curves.items():
                w.writerows([(label, e, None if b == float("-inf") else round(b, 4)) for e, b in pts])
    frac = None if reach is None else reach / budget
    return [
        Row(
            SUITE,
            "TPE+ASHA epochs to within 0.5 mAP of the grid's best",
            float(reach) if reach is not None else float("nan"),
            reference=float(budget),
            unit="epochs",
            target="<= 0.4 x grid budget",
            met=(frac is not None and frac <= 0.4),
            note=f"grid best {grid_best:.2f} mAP over {n_cfg} configs x {epochs} epochs; TPE+ASHA best {tpe_best:.2f} "
            f"after {spent} epochs ({len(tpe.trials)} trials)" + ("" if reach is not None else "; never within 0.5"),
        ),
    ]


def run(quick: bool, device: torch.device, out_dir: str | None = None) -> list[Row]:
    """The study suite (CPU; Ray is started and stopped per study)."""
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        cache = str(ROOT / "data") if not quick else f"{tmp}/data"
        rows = _overhead(tmp, cache)
        rows += _efficiency(tmp, cache, quick, out_dir or os.environ.get("BENCH_OUT"))
        rows += _trials_per_hour(tmp, cache, quick)
    return rows
