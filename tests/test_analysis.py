"""Tests of the analysis package (analysis/): statistics with known answers, the question analyses on
constructed frames, loading, the report CLI on the fixture studies in tests/fixtures/analysis_study/,
and (slow) the notebooks executed with nbclient."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repository root on the path
    sys.path.insert(0, str(ROOT))

from analysis import (  # noqa: E402
    StudyLoadError,
    argmax_ci,
    claims,
    completed,
    load_history,
    load_provenance,
    load_studies,
    mean_ci,
    paired_diff,
    q1_grid_scaling,
    q2_main_ratio,
    q2_ratio_by_data,
    q3_cl_vit,
    quad_vertex,
    status_counts,
    summarize,
    supersede,
    tidy_trials,
)
from analysis.report import main as report_main  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "analysis_study"
FIX_DIRS = [FIX / "grid_scaling", FIX / "ratio_data", FIX / "cl_vit"]


# ------------------------------------------------------------------------------------------------
# constructed trial frames
# ------------------------------------------------------------------------------------------------


def _raw(**cfg) -> dict:
    """One raw trials.parquet row with the default configuration, overridden by ``cfg`` (dotted keys
    without the ``cfg.`` prefix, or top-level columns such as ``final_mAP`` / ``seed``)."""
    row = {
        "trial_id": None,
        "status": "completed",
        "seed": 0,
        "epochs_planned": 12,
        "epochs_run": 12,
        "wall_time_s": 10.0,
        "final_mAP": 40.0,
        "final_mAP@32": 30.0,
        "final_mAP_rare_pairs": 35.0,
        "final_mAP_common_pairs": 42.0,
        "cfg.data.dataset": "synthetic",
        "cfg.data.synthetic.n_train": 2000,
        "cfg.data.synthetic.imbalance": 0.0,
        "cfg.data.image_size": 64,
        "cfg.model.name": "smallcnn",
        "cfg.mix.method": "splicemix",
        "cfg.mix.grids": "default",
        "cfg.mix.mixed_ratio": 0.25,
        "cfg.mix.counts": None,
        "cfg.mix.cl_weight": 1.0,
        "cfg.train.epochs": 12,
    }
    for k, v in cfg.items():
        key = k if k in row or k.startswith(("final_", "status", "seed")) else f"cfg.{k}"
        row[key] = v
    return row


def _frame(rows: list[dict], study: str = "s") -> pd.DataFrame:
    raw = pd.DataFrame(rows)
    raw["trial_id"] = [f"t{i}" for i in range(len(raw))]
    return tidy_trials(raw, study)


def _grid_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cells = {"1x2": 2, "2x2": 4, "1x4": 4, "4x1": 4, "3x3": 9}
    rows = []
    for seed in range(4):
        for g, c in cells.items():
            m = 40 - 0.5 * (c - 2) - (1.5 if g in ("1x4", "4x1") else 0) + seed + rng.normal(0, 0.05)
            rows.append(_raw(seed=seed, final_mAP=m, **{"mix.grids": g}))
    return _frame(rows, "grids")


def _ratio_frame(cells=((500, 0.0), (2000, 0.0), (2000, 1.0))) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    peak = {500: 0.125, 2000: 0.5}
    rows = []
    for seed in range(4):
        for n, imb in cells:
            for r in (0.0, 0.125, 0.25, 0.5, 1.0):
                m = 30 - 40 * (r - peak[n]) ** 2 + seed + rng.normal(0, 0.05)
                rows.append(
                    _raw(
                        seed=seed,
                        final_mAP=m,
                        **{"mix.mixed_ratio": r, "data.synthetic.n_train": n, "data.synthetic.imbalance": imb},
                    )
                )
    return _frame(rows, "ratios")


def _cl_frame(vit_gain: float | list = 0.5, cnn_gain: float = 2.0, seeds: int = 4, noise: float = 0.05) -> pd.DataFrame:
    """CL gain ``cnn_gain`` on smallcnn and ``vit_gain`` (per seed when a list) on vit_tiny; SpliceMix +1."""
    rng = np.random.default_rng(2)
    rows = []
    for seed in range(seeds):
        vg = vit_gain[seed] if isinstance(vit_gain, list) else vit_gain
        for model, base, gain in (("smallcnn", 40.0, cnn_gain), ("vit_tiny", 30.0, vg)):
            for method, m in (("baseline", base), ("splicemix", base + 1), ("splicemix_cl", base + 1 + gain)):
                rows.append(
                    _raw(
                        seed=seed,
                        final_mAP=m + 3 * seed + rng.normal(0, noise),
                        **{"model.name": model, "mix.method": method, "mix.mixed_ratio": None},
                    )
                )
    return _frame(rows, "clvit")


# ------------------------------------------------------------------------------------------------
# stats
# ------------------------------------------------------------------------------------------------


def test_mean_ci_t_matches_hand_computation():
    ci = mean_ci([1, 2, 3], level=0.95)
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert ci.mean == pytest.approx(2.0) and ci.sd == pytest.approx(1.0) and ci.n == 3
    assert ci.lo == pytest.approx(2 - half) and ci.hi == pytest.approx(2 + half)
    assert (ci.lo, ci.hi) == pytest.approx(sps.t.interval(0.95, 2, loc=2, scale=1 / math.sqrt(3)))
    ci90 = mean_ci([1, 2, 3], level=0.90)
    assert ci90.hi - ci90.lo < ci.hi - ci.lo


def test_mean_ci_single_value_and_nans():
    ci = mean_ci([5.0])
    assert ci.mean == 5.0 and ci.n == 1 and math.isnan(ci.lo) and math.isnan(ci.hi)
    assert "n=1" in ci.note and not ci.resolved
    assert mean_ci([1.0, np.nan, 3.0]).n == 2
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    with pytest.raises(ValueError, match="level"):
        mean_ci([1, 2], level=1.5)


def test_mean_ci_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.arange(20, dtype=float)
    a = mean_ci(x, method="bootstrap", n_boot=500, seed=3)
    b = mean_ci(x, method="bootstrap", n_boot=500, seed=3)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    assert a.lo < x.mean() < a.hi
    assert a.hi - a.lo < (x.max() - x.min())


def test_summarize_groups():
    df = pd.DataFrame({"g": ["a", "a", "b", "b", "b"], "v": [1.0, 3.0, 10.0, 10.0, 10.0]})
    s = summarize(df, "g", "v").set_index("g")
    assert s.loc["a", "mean"] == 2.0 and s.loc["a", "n"] == 2
    assert s.loc["b", "sd"] == 0.0 and s.loc["b", "lo"] == s.loc["b", "hi"] == 10.0


def test_paired_diff_constant_offset_is_exact():
    control = np.array([10.0, 30.0, 20.0, 50.0])  # large seed effects
    df = pd.DataFrame(
        {"seed": list(range(4)) * 2, "method": ["a"] * 4 + ["b"] * 4, "v": list(control + 1.5) + list(control)}
    )
    r = paired_diff(df, None, "a", "b", "v").iloc[0]
    assert r["mean"] == pytest.approx(1.5) and r["n"] == 4
    assert r["hi"] - r["lo"] == pytest.approx(0.0, abs=1e-9) and bool(r["resolved"])
    # the unpaired interval of the same data is wide: pairing is what resolves it
    unpaired = mean_ci(control + 1.5)
    assert unpaired.hi - unpaired.lo > 10


def test_paired_diff_matches_scipy_and_drops_unpaired_seeds():
    d = np.array([1.0, 2.0, 0.5])
    df = pd.DataFrame(
        {
            "seed": [0, 1, 2, 0, 1, 2, 3],
            "m": ["t"] * 3 + ["c"] * 4,
            "v": list(5 + d) + [5.0, 5.0, 5.0, 99.0],
            "cell": "x",
        }
    )
    r = paired_diff(df, "cell", "t", "c", "v", factor="m").iloc[0]
    assert r["n"] == 3  # seed 3 has no treatment trial
    assert (r["lo"], r["hi"]) == pytest.approx(sps.t.interval(0.95, 2, loc=d.mean(), scale=sps.sem(d)))
    assert r["p"] == pytest.approx(sps.ttest_1samp(d, 0).pvalue)


def test_argmax_clear_winner_has_frequency_one():
    rows = [
        {"seed": s, "ratio": r, "v": 10 + (5 if r == 0.25 else 0) + 0.1 * s + 0.01 * k}
        for s in range(5)
        for k, r in enumerate([0.0, 0.25, 0.5])
    ]
    res = argmax_ci(pd.DataFrame(rows), "ratio", "v", n_boot=300)
    t = res.table.iloc[0]
    assert t["best"] == 0.25 and t["freq_best"] == 1.0 and t["lo"] == t["hi"] == 0.25
    assert res.freq["freq"].sum() == pytest.approx(1.0)


def test_argmax_close_call_is_uncertain():
    rng = np.random.default_rng(0)
    rows = [{"seed": s, "lv": lv, "v": rng.normal(0, 1)} for s in range(8) for lv in ("a", "b")]
    t = argmax_ci(pd.DataFrame(rows), "lv", "v", n_boot=500).table.iloc[0]
    assert 0.3 < t["freq_best"] < 1.0


def test_quad_vertex_recovers_known_peak():
    rng = np.random.default_rng(0)
    rows = [
        {"seed": s, "x": x, "y": 10 - 40 * (x - 0.3) ** 2 + rng.normal(0, 0.02)}
        for s in range(4)
        for x in (0.0, 0.125, 0.25, 0.5, 1.0)
    ]
    v = quad_vertex(pd.DataFrame(rows), "x", "y", n_boot=300).iloc[0]
    assert v["vertex"] == pytest.approx(0.3, abs=0.01) and not v["clipped"]
    assert v["lo"] <= 0.3 <= v["hi"] and v["a"] == pytest.approx(-40, rel=0.05)


def test_quad_vertex_clips_to_the_tested_range():
    rows = [{"seed": s, "x": x, "y": 5 - (x - 3.0) ** 2 + 0.01 * s} for s in range(3) for x in (0.0, 0.5, 1.0)]
    v = quad_vertex(pd.DataFrame(rows), "x", "y", n_boot=100).iloc[0]
    assert v["clipped"] and v["vertex"] == 1.0 and v["raw"] == pytest.approx(3.0)
    assert "clipped" in v["note"]
    two = quad_vertex(pd.DataFrame(rows[:6]).query("x < 1"), "x", "y").iloc[0]
    assert math.isnan(two["vertex"]) and "fewer than 3" in two["note"]


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------


def test_tidy_aliases():
    df = _frame(
        [
            _raw(**{"mix.method": "baseline", "mix.mixed_ratio": 0.5}),
            _raw(**{"mix.mixed_ratio": None}),
            _raw(**{"mix.grids": '["1x2", "2x2"]', "final_mAP@16": 5.0}),
        ]
    )
    assert list(df["ratio"]) == [0.0, 0.25, 0.25]  # baseline -> 0, null -> the preset's 0.25
    assert list(df["arm"]) == ["baseline", "splicemix", "splicemix"]
    assert df["grid"].iloc[2] == "1x2+2x2"
    assert df["low_size"].iloc[0] == 16 and df["mAP_low"].iloc[2] == 5.0  # the smallest eval size
    small = _frame([_raw(final_mAP=0.4, **{"final_mAP@32": 0.3})])  # values are never rescaled
    assert small["mAP"].iloc[0] == pytest.approx(0.4) and small["mAP_low"].iloc[0] == pytest.approx(0.3)


def test_load_fixture_studies_and_history():
    df = load_studies(*FIX_DIRS)
    assert set(df["study"]) == {"grid_scaling", "ratio_data", "cl_vit"}
    assert status_counts(df) == {"completed": 84, "error": 1}
    assert len(completed(df)) == 84
    h = load_history(FIX / "cl_vit")
    assert {"epoch", "mAP", "mAP_low", "method", "model", "arm"} <= set(h.columns)
    assert load_provenance(FIX / "cl_vit")["command"][-1] == "cl_vit"


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        load_studies(tmp_path / "nope")
    with pytest.raises(StudyLoadError, match=r"no trials\.parquet"):
        load_studies(tmp_path)
    (tmp_path / "trials.parquet").write_text("not parquet")
    with pytest.raises(StudyLoadError, match="not a readable Parquet file") as e:
        load_studies(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_null_ratio_is_the_presets_ratio():
    from analysis.load import DEFAULT_RATIO
    from analysis.questions.common import PAPER_RATIO
    from splicemix.grids import DEFAULT_MIXED_RATIO

    assert DEFAULT_RATIO == PAPER_RATIO == DEFAULT_MIXED_RATIO


def test_grid_spec_is_splicemix_parser_or_none():
    from analysis import grid_spec, parse_grid

    assert (grid_spec("2x3-2").rows, grid_spec("2x3-2").cols, grid_spec("2x3-2").kept) == (2, 3, 4)
    assert parse_grid(" 1x4 ") == (1, 4, 0) and parse_grid("2X2") == (2, 2, 0)  # the splicemix spelling rules
    for text in ("default", "1x2+2x2", "1x2:0.3+2x2:0.7", "0x2", "2x2-4", float("nan"), None):
        assert grid_spec(text) is None and parse_grid(text) is None


def test_prose_sentences():
    from analysis.prose import claim_word, diff_text, level_text, levels_text, method_name

    assert level_text(2000.0) == "2000" and level_text(float("nan")) == "n/a" and level_text("2x2") == "2x2"
    assert levels_text(pd.Series([0.5, 0.125, None, 0.5])) == "0.125, 0.5"
    assert method_name("splicemix_cl") == "SpliceMix-CL" and method_name("other") == "other"
    assert (
        diff_text({"mean": 1.234, "lo": 0.4, "hi": 2.06, "n": 3})
        == "+1.23 [+0.40, +2.06] mAP points (3 seeds; resolved, > 0)"
    )
    tab = pd.DataFrame({"headline": [True, True], "lo": [0.1, -1.0], "hi": [1.0, 0.5]})
    assert claim_word(tab) == "is supported in 1 of 2 headline comparisons; the others are unresolved"
    assert (
        claim_word(tab.iloc[:1], better="neg") == "does not hold here (resolved the other way in the one "
        "headline comparison)"
    )


# ------------------------------------------------------------------------------------------------
# the questions on constructed frames
# ------------------------------------------------------------------------------------------------


def test_q1_grid_scaling_known_effects():
    a = q1_grid_scaling(_grid_frame(), n_boot=200)
    assert a.answerable and a.study == "grids" and not a.partial
    trend = a.tables["trend"].iloc[0]
    assert trend["hi"] < 0 and trend["slope_per_cell"] == pytest.approx(-0.5, abs=0.15)
    vs = a.tables["vs_ref"].set_index("treat")
    assert vs.loc["1x4", "mean"] == pytest.approx(-1.5, abs=0.1) and vs.loc["1x4", "resolved"]
    assert vs.loc["1x2", "mean"] == pytest.approx(1.0, abs=0.1)
    assert "falls" in a.verdict and "1x4" in a.verdict and "The best grid is 1x2" in a.verdict


def test_q2_best_ratio_per_cell():
    a = q2_ratio_by_data(_ratio_frame(), n_boot=200)
    assert a.answerable and not a.partial
    best = a.tables["best"].set_index(["n_train", "imbalance"])
    assert best.loc[(500, 0.0), "best"] == 0.125 and best.loc[(2000, 0.0), "best"] == 0.5
    assert best.loc[(2000, 1.0), "freq_best"] == 1.0
    vx = a.tables["vertex"].set_index(["n_train", "imbalance"])
    assert vx.loc[(500, 0.0), "vertex"] == pytest.approx(0.125, abs=0.03)
    vz = a.tables["vs_zero"]
    assert ((vz["treat"] == 0.5) & (vz["n_train"] == 2000) & vz["resolved"] & (vz["mean"] > 0)).any()
    assert "grows as the training set grows" in a.verdict


def test_q2_one_data_cell_is_a_partial_answer():
    a = q2_ratio_by_data(_ratio_frame(cells=((2000, 0.0),)), n_boot=100)
    assert a.answerable and a.partial
    assert "ratio_data.yaml" in a.verdict and "cannot say" in a.verdict
    assert not any("smaller data set" in c for c in a.changes)  # one size: the length compares no sizes
    assert any("smaller data set" in c for c in q2_ratio_by_data(_ratio_frame(), n_boot=100).changes)


def _main_frame(study: str, converged: bool, seeds: int = 4, epochs: int = 12) -> pd.DataFrame:
    """The main job's one data set: ratios 0 / 0.25 / 0.5 / 1 with the peak at 0.25 (+1 over no mixing),
    0.5 at +0.6 and 1 at -1; every trial's convergence flag ``converged``."""
    rng = np.random.default_rng(3)
    gain = {0.0: 0.0, 0.25: 1.0, 0.5: 0.6, 1.0: -1.0}
    rows = [
        _raw(
            seed=seed,
            final_mAP=50 + gain[r] + seed + rng.normal(0, 0.05),
            final_converged=converged,
            **{"mix.mixed_ratio": r, "train.epochs": epochs},
        )
        for seed in range(seeds)
        for r in gain
    ]
    return _frame(rows, study)


def test_q2_main_best_ratio_and_contrasts():
    a = q2_main_ratio(_main_frame("main", True), n_boot=200)
    assert a.answerable and a.study == "main" and a.key_results == {"best ratio": "0.25"}
    vz = a.tables["vs_zero"].set_index("treat")
    assert vz.loc[0.25, "mean"] == pytest.approx(1.0, abs=0.1) and vz.loc[0.25, "resolved"]
    assert vz.loc[1.0, "mean"] < 0 and vz.loc[1.0, "resolved"]
    vb = a.tables["vs_best"].set_index("control")
    assert set(vb.index) == {0.5, 1.0} and (vb["treat"] == 0.25).all() and vb.loc[0.5, "resolved"]
    assert int(vz["holm_m"].iloc[0]) == 5 and "Holm-corrected within the question over 5 contrasts" in a.verdict
    assert "beats no mixing (resolved) at 2 of 3 ratios and loses at 1" in a.verdict


def test_q2_main_prefers_the_converged_one_data_set_study_over_the_data_grid_and_the_short_run():
    df = pd.concat(
        [_ratio_frame(), _main_frame("short", False, seeds=5), _main_frame("converged", True, seeds=3, epochs=64)],
        ignore_index=True,
    )
    a = q2_main_ratio(df, n_boot=100)
    assert a.study == "converged" and "short" in " ".join(a.notes) and "ratios" not in " ".join(a.notes)
    assert q2_ratio_by_data(df, n_boot=100).study == "ratios"  # Q2 proper still takes the data grid
    none = q2_main_ratio(_ratio_frame(), n_boot=100)  # only a study over several data cells
    assert not none.answerable and "ratio_converged.yaml" in none.verdict


def test_q2_main_prefers_four_ratios_to_three_that_converged_more_often():
    """One trial of the four-ratio study not converged does not hand the answer to a three-ratio study
    (as the tuned preset's confirmation: ratio 0, the default 0.25 and the tuned ratio)."""
    four = _main_frame("four", True, seeds=5, epochs=64)
    four.loc[four.index[-1], "converged"] = False
    three = _main_frame("three", True, seeds=5, epochs=80)
    three = three[three["ratio"].isin([0.0, 0.25, 1.0])]
    a = q2_main_ratio(pd.concat([three, four], ignore_index=True), n_boot=100)
    assert a.study == "four" and "three" in " ".join(a.notes)
    assert set(a.tables["by_ratio"]["ratio"]) == {0.0, 0.25, 0.5, 1.0}


def test_an_arm_rerun_longer_in_another_part_supersedes_its_shorter_runs():
    rng = np.random.default_rng(4)
    gain = {0.0: 0.0, 0.25: 1.0, 1.0: -1.0}
    part_a = [
        _raw(seed=s, final_mAP=50 + g + s + rng.normal(0, 0.05), **{"mix.mixed_ratio": r, "train.epochs": 64})
        for s in range(4)
        for r, g in gain.items()
    ]
    part_b = [  # ratio 1 re-run for 80 epochs: +2 over its 64-epoch runs
        _raw(seed=s, final_mAP=51 + s + rng.normal(0, 0.05), **{"mix.mixed_ratio": 1.0, "train.epochs": 80})
        for s in range(4)
    ]
    frames = [_frame(rows, "main") for rows in (part_a, part_b)]
    for f, folder in zip(frames, ("main-a", "main-b"), strict=True):
        f["folder"], f["trial_id"] = folder, [f"{folder}-{i}" for i in range(len(f))]
    df = supersede(pd.concat(frames, ignore_index=True))
    gone = df[df["status"] == "superseded"]
    assert len(gone) == 4 and set(gone["ratio"]) == {1.0} and set(gone["epochs"]) == {64}
    assert set(df.loc[df["rerun_of"].notna(), "folder"]) == {"main-b"} and set(df["rerun_of"].dropna()) == {64.0}
    a = q2_main_ratio(df, n_boot=100)
    vz = a.tables["vs_zero"].set_index("treat")
    assert vz.loc[1.0, "mean"] == pytest.approx(1.0, abs=0.15) and vz.loc[1.0, "n"] == 4  # the 80-epoch runs
    assert "at 80 epochs, superseding their 64-epoch runs" in a.conditions["re-run longer"]
    assert df["rerun_gain"].dropna().to_numpy() == pytest.approx([2.0] * 4, abs=0.2)  # 51 + s vs 50 - 1 + s
    assert "gained +2.0" in a.conditions["re-run longer"]
    assert a.conditions["compared at"].startswith("equal epochs (64), except the arms re-run longer (80 epochs)")
    assert any("gained +2.0" in c and "every arm at 80 epochs" in c for c in a.changes)
    same_part = supersede(pd.concat([frames[0], frames[1].assign(folder="main-a")], ignore_index=True))
    assert (same_part["status"] == "completed").all()  # two lengths within one part: a length study, kept


def test_a_rerun_arm_takes_its_longer_length_for_every_seed():
    """Seed 4 of the re-run arm ran only at 80 epochs (a later part) and seed 5 only at 64: the first counts
    as the arm's re-run (no gain of its own), the second is superseded; the other arms keep every seed."""
    rng = np.random.default_rng(5)

    def arm(s: int, r: float, ep: int) -> dict:
        m = 50 + s + (1.0 if ep == 80 else 0.0) + rng.normal(0, 0.05)
        return _raw(seed=s, final_mAP=m, **{"mix.mixed_ratio": r, "train.epochs": ep})

    parts = {
        "main-a": [arm(s, r, 64) for s in range(4) for r in (0.0, 1.0)] + [arm(5, r, 64) for r in (0.0, 1.0)],
        "main-b": [arm(s, 1.0, 80) for s in range(4)],
        "main-c": [arm(4, 0.0, 64), arm(4, 1.0, 80)],
    }
    frames = []
    for folder, rows in parts.items():
        f = _frame(rows, "main")
        f["folder"], f["trial_id"] = folder, [f"{folder}-{i}" for i in range(len(f))]
        frames.append(f)
    df = supersede(pd.concat(frames, ignore_index=True))
    ratio1 = df[df["ratio"] == 1.0]
    assert set(ratio1.loc[ratio1["status"] == "completed", "seed"]) == {0, 1, 2, 3, 4}
    assert (ratio1.loc[ratio1["status"] == "completed", "epochs"] == 80).all()
    assert set(ratio1.loc[ratio1["status"] == "superseded", "seed"]) == {0, 1, 2, 3, 5}
    seed4 = ratio1[(ratio1["seed"] == 4)].iloc[0]
    assert seed4["rerun_of"] == 64 and np.isnan(seed4["rerun_gain"])
    assert (df.loc[df["ratio"] == 0.0, "status"] == "completed").all() and df.loc[
        df["ratio"] == 0.0, "rerun_of"
    ].isna().all()


def test_q3_cl_gain_and_interaction():
    a = q3_cl_vit(_cl_frame(), n_boot=100)
    assert a.answerable and not a.partial
    g = a.tables["cl_gain"].set_index("model")
    assert g.loc["smallcnn", "mean"] == pytest.approx(2.0, abs=0.1)
    assert g.loc["vit_tiny", "mean"] == pytest.approx(0.5, abs=0.1)
    it = a.tables["interaction"].iloc[0]
    assert it["mean"] == pytest.approx(-1.5, abs=0.1) and it["hi"] < 0 and it["method"] == "paired by seed"
    assert "smaller on the ViT" in a.verdict
    # the ViT's gain is 2 on average, like the CNN's, but varies by seed: the interaction is not resolved
    same = q3_cl_vit(_cl_frame(vit_gain=[1.0, 3.0, 1.5, 2.5], noise=0.0), n_boot=100)
    assert same.tables["interaction"].iloc[0]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert "do not resolve" in same.verdict


def test_q3_keeps_splicemix_trials_recorded_at_cl_weight_zero_as_its_splicemix_arm():
    """A study that trains SpliceMix-CL at weights 0, 1 and 2: the runner records weight 0 as plain SpliceMix
    (cl_weight 0). Q3 holds the weight at the paper's 1 over SpliceMix-CL's trials only, so those SpliceMix
    trials stay its SpliceMix arm (the weight means nothing to them); q3_weight alone counts them as weight 0."""
    df = _cl_frame()
    df.loc[df["method"] == "splicemix", "cl_weight"] = 0.0
    heavy = df[df["method"] == "splicemix_cl"].assign(cl_weight=2.0, mAP=lambda d: d["mAP"] - 5.0)
    heavy["trial_id"] = heavy["trial_id"] + "w2"
    a = q3_cl_vit(pd.concat([df, heavy], ignore_index=True), n_boot=100)
    g = a.tables["cl_gain"].set_index("model")
    assert g.loc["smallcnn", "mean"] == pytest.approx(2.0, abs=0.1)
    assert g.loc["vit_tiny", "mean"] == pytest.approx(0.5, abs=0.1)
    assert any("holds cl_weight at 1" in n for n in a.notes)


def test_q3_compares_a_model_whose_arms_were_rerun_longer():
    """The CNN's three arms re-run at 48 epochs in another part (the 16-epoch ones superseded): Q3 takes the
    CNN's gains from the longer runs and the ViT's from its 16-epoch runs, each model's arms at equal epochs, and
    says so."""
    df = _cl_frame()
    df["epochs"], df["folder"] = 16, "clvit-a"
    cnn = df[df["model"] == "smallcnn"].copy()
    cnn["folder"], cnn["epochs"], cnn["trial_id"] = "clvit-c", 48, [f"c{i}" for i in range(len(cnn))]
    cnn.loc[cnn["method"] == "splicemix_cl", "mAP"] += 1.0  # at 48 epochs the CNN's CL gain is 3, not 2
    df = supersede(pd.concat([df, cnn], ignore_index=True))
    assert (df.loc[df["status"] == "superseded", "epochs"] == 16).all() and (df["status"] == "superseded").sum() == 12
    a = q3_cl_vit(df, n_boot=50)
    g = a.tables["cl_gain"].set_index("model")
    assert g.loc["smallcnn", "mean"] == pytest.approx(3.0, abs=0.1) and g.loc["smallcnn", "n"] == 4
    assert g.loc["vit_tiny", "mean"] == pytest.approx(0.5, abs=0.1)
    assert a.conditions["compared at"].startswith("equal epochs within each model (smallcnn 48, vit_tiny 16 epochs)")
    assert a.conditions["re-run longer"].startswith("12 trials (arm baseline, splicemix, splicemix_cl, model smallcnn")


def _cl_rerun_per_model(cnn_gain: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Q3's frame as two parts: every arm at 16 epochs (``clvit-a``), then every arm re-run to its model's length
    (``clvit-c``: the CNN at 48 epochs, ``cnn_gain`` mAP higher; the ViT at 24, unchanged)."""
    df = _cl_frame()
    df["epochs"], df["folder"] = 16, "clvit-a"
    longer = df.copy()
    cnn = longer["model"] == "smallcnn"
    longer["folder"], longer["trial_id"] = "clvit-c", [f"c{i}" for i in range(len(longer))]
    longer["epochs"] = np.where(cnn, 48, 24)
    longer.loc[cnn, "mAP"] += cnn_gain
    return df, longer


def test_q3_when_every_arm_was_rerun_each_model_at_its_own_length():
    """Both models' arms re-run longer, each model to its own length (the CNN 16 -> 48 epochs, gaining 10; the
    ViT 16 -> 24, gaining nothing): the re-run line names every arm and each model's gain, and no "other arms"
    or "run every arm at that length" advice is given (every arm already was)."""
    df, longer = _cl_rerun_per_model(cnn_gain=10.0)
    a = q3_cl_vit(supersede(pd.concat([df, longer], ignore_index=True)), n_boot=50)
    text = a.conditions["re-run longer"]
    assert text.startswith(f"every arm ({len(longer)} trials) at smallcnn 48, vit_tiny 24 epochs, superseding")
    assert "smallcnn +10.00 mAP on average" in text and "vit_tiny +0.00 mAP on average" in text
    assert "other arms" not in text and not any("would compare them all" in c for c in a.changes)
    assert a.conditions["compared at"].startswith("equal epochs within each model (smallcnn 48, vit_tiny 24 epochs)")


def test_q3_an_arm_rerun_longer_than_the_rest_of_its_model():
    """Every arm re-run to its model's length (the CNN 48, the ViT 24 epochs), then the CNN's CL arm alone again
    at 96: it is the one arm "re-run longer" in "compared at", and the advice is to run every CNN arm at 96."""
    df, longer = _cl_rerun_per_model()
    cl = longer[(longer["model"] == "smallcnn") & (longer["method"] == "splicemix_cl")].copy()
    cl["folder"], cl["epochs"], cl["trial_id"] = "clvit-f", 96, [f"f{i}" for i in range(len(cl))]
    cl["mAP"] += 1.0
    a = q3_cl_vit(supersede(pd.concat([df, longer, cl], ignore_index=True)), n_boot=50)
    assert a.tables["cl_gain"].set_index("model").loc["smallcnn", "mean"] == pytest.approx(3.0, abs=0.1)
    assert a.conditions["compared at"].startswith(
        "equal epochs within each model (smallcnn 48, vit_tiny 24 epochs), except the arms re-run longer (96 epochs)"
    )
    advice = [c for c in a.changes if "would compare them all" in c]
    assert len(advice) == 1 and "+1.00 mAP on average" in advice[0] and "every smallcnn arm at 96 epochs" in advice[0]


def test_q3_arms_rerun_longer_stay_marked_when_they_outnumber_the_rest():
    """Two of the CNN's three arms re-run at 96 (the CL arm and SpliceMix): more of its trials then train 96
    epochs than 48, and the 96-epoch arms are still the ones "re-run longer" (the CNN's arms differ in length)."""
    df, longer = _cl_rerun_per_model()
    again = longer[(longer["model"] == "smallcnn") & (longer["method"] != "baseline")].copy()
    again["folder"], again["epochs"], again["trial_id"] = "clvit-f", 96, [f"f{i}" for i in range(len(again))]
    a = q3_cl_vit(supersede(pd.concat([df, longer, again], ignore_index=True)), n_boot=50)
    assert a.conditions["compared at"].startswith(
        "equal epochs within each model (smallcnn 48, vit_tiny 24 epochs), except the arms re-run longer (96 epochs)"
    )
    assert any("every smallcnn arm at 96 epochs" in c for c in a.changes)


def test_q3_arms_rerun_longer_per_model_name_each_length_and_a_loss():
    """Only the CL arm of each model re-run longer, each to its own length (the CNN 16 -> 48 epochs, gaining 1; the
    ViT 16 -> 24, losing 1): "compared at" and the advice give each model's length, and a loss is not a gain."""
    df, longer = _cl_rerun_per_model()
    cl = longer[longer["method"] == "splicemix_cl"].copy()
    cl["mAP"] += np.where(cl["model"] == "smallcnn", 1.0, -1.0)
    a = q3_cl_vit(supersede(pd.concat([df, cl], ignore_index=True)), n_boot=50)
    assert a.conditions["compared at"].startswith(
        "equal epochs (16), except the arms re-run longer (smallcnn 48, vit_tiny 24 epochs)"
    )
    text = a.conditions["re-run longer"]
    assert "the longer runs changed by smallcnn +1.00" in text and "vit_tiny -1.00" in text
    assert "a change the other arms did not get" in text and "gain" not in text
    advice = [c for c in a.changes if "would compare them all" in c]
    assert len(advice) == 1 and "every arm at its model's longer length (smallcnn 48, vit_tiny 24 epochs)" in advice[0]


def test_q3_compares_models_each_run_at_its_own_length():
    """Parts of one study, one per model, each at the length its model needs (the CNN at 48 epochs, the ViT
    at 16, no shorter runs): Q3 keeps both models, compares each model's arms at equal epochs and says so. A
    model whose own arms differ in length is still held at one length."""
    df = _cl_frame()
    cnn = df["model"] == "smallcnn"
    df["epochs"] = np.where(cnn, 48, 16)
    df["folder"] = np.where(cnn, "clvit-c", "clvit-b")
    df.loc[cnn & (df["method"] == "splicemix_cl"), "mAP"] += 1.0
    a = q3_cl_vit(supersede(df), n_boot=50)
    assert (a.data["status"] == "completed").all() and not a.partial
    g = a.tables["cl_gain"].set_index("model")
    assert g.loc["smallcnn", "mean"] == pytest.approx(3.0, abs=0.1)
    assert g.loc["vit_tiny", "mean"] == pytest.approx(0.5, abs=0.1)
    assert a.conditions["compared at"].startswith("equal epochs within each model (smallcnn 48, vit_tiny 16 epochs)")
    assert any("each model was trained for its own number of epochs" in n for n in a.notes)
    mixed = df.copy()
    mixed.loc[cnn & (mixed["method"] == "baseline"), "epochs"] = 16  # the CNN's arms at two lengths
    b = q3_cl_vit(supersede(mixed), n_boot=50)
    assert any("holds epochs at" in n for n in b.notes) and "within each model" not in b.conditions["compared at"]


def test_q3_says_where_its_vit_started():
    scratch = q3_cl_vit(_cl_frame(), n_boot=50)
    assert any("ViT trained from scratch" in c for c in scratch.changes)
    df = _cl_frame()
    df["pretrained"] = "shapes"
    tuned = q3_cl_vit(df, n_boot=50)
    vit_line = next(c for c in tuned.changes if "data-hungry" in c)
    assert "fine-tuned from weights pretrained" in vit_line and "(shapes)" in vit_line and "scratch" not in vit_line
    assert any("search_spaces/cl_weight.yaml" in c for c in tuned.changes)


def test_questions_without_their_study_say_so():
    df = _ratio_frame(cells=((2000, 0.0),))
    for fn, space in ((q1_grid_scaling, "grid_scaling.yaml"), (q3_cl_vit, "cl_vit.yaml")):
        a = fn(df, n_boot=50)
        assert not a.answerable and a.tables == {}
        assert "cannot answer" in a.verdict and space in a.verdict
    b = q2_ratio_by_data(_cl_frame(), n_boot=50)  # baseline vs one ratio is not a ratio study
    assert not b.answerable and "ratio_data.yaml" in b.verdict


def test_claims_on_constructed_frame():
    res = {a.key: a for a in claims(_cl_frame())}
    assert set(res) == {"claims_map", "claims_lowres", "claims_cooc"}
    m = res["claims_map"]
    vs = m.tables["vs_baseline"]
    sm = vs[vs["treat"].str.startswith("SpliceMix (") & (vs["model"] == "smallcnn")].iloc[0]
    assert sm["mean"] == pytest.approx(1.0, abs=0.1) and sm["resolved"] and sm["headline"]
    assert "holds here" in m.verdict
    assert not claims(_grid_frame())[0].answerable  # no baseline trials


# ------------------------------------------------------------------------------------------------
# figures and the report CLI
# ------------------------------------------------------------------------------------------------


def test_figure_labels_and_nodata(tmp_path):
    from analysis import plots

    fig = plots.fig_cl_gain(_cl_frame())
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert plots.MAP_LABEL in labels and plots.GAIN_LABEL in labels
    assert fig._suptitle is not None and "ViT" in fig._suptitle.get_text()
    paths = plots.save(fig, tmp_path, "cl")
    assert all(p.stat().st_size > 1000 for p in paths) and {p.suffix for p in paths} == {".png", ".svg"}
    again = plots.save(plots.fig_cl_gain(_cl_frame()), tmp_path / "again", "cl")  # a report re-run diffs nothing
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
    with pytest.raises(plots.NoData, match="grid_scaling"):
        plots.fig_grid_scaling(_cl_frame())
    main = plots.fig_ratio_main(_main_frame("main", True))
    assert [ax.get_ylabel() for ax in main.axes] == [plots.MAP_LABEL, "mAP(ratio) − mAP(0) (points)"]
    assert "best 0.25" in main.axes[0].get_title() and "main job" in main._suptitle.get_text()
    with pytest.raises(plots.NoData, match="ratio_converged"):
        plots.fig_ratio_main(_cl_frame())


def test_report_on_fixture_studies(tmp_path):
    out = tmp_path / "rep"
    rc = report_main([*map(str, FIX_DIRS), "--out", str(out), "--n-boot", "200", "--quiet"])
    assert rc == 0
    md = (out / "answers.md").read_text()
    for heading in ("## Q1.", "## Q2.", "## Q3.", "# The paper's claims", "# Provenance"):
        assert heading in md
    glance = md.split("## At a glance")[1].split("# The open questions")[0]
    cannot = [line for line in glance.splitlines() if "cannot be answered" in line]
    assert len(cannot) == 5  # the drops, the main job's ratio (no one-data-set study), the CL weight, methods, tuned
    topics = ("Dropped cells", "main job", "CL weight", "Methods", "tuned")
    assert all(any(t in line for line in cannot) for t in topics)
    assert "per extra cell" in md and "n_train 500, imbalance 0: best ratio 0.125" in md
    assert "python -m study.run search_spaces/cl_vit.yaml" in md  # provenance command
    assert "1 error" in md  # the failed trial is counted, not used
    for name in ("q1_grid_scaling", "q2_ratio_by_data", "q3_cl_gain", "claims", "learning_curves"):
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.svg").is_file()
    summary = pd.read_csv(out / "summary.csv")
    assert {"study", "metric", "mean", "lo", "hi", "n"} <= set(summary.columns)
    assert (out / "tables" / "q3_interaction.csv").is_file()


def test_report_says_what_it_cannot_answer_and_prunes_an_earlier_reports_files(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "learning_curves_gone.png").write_bytes(b"old")  # a study no longer loaded
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "q2_best.csv").write_text("old\n")  # a question no longer answered
    (tmp_path / "notes.txt").write_text("mine")  # not the report's: left alone
    rc = report_main([str(FIX / "grid_scaling"), "--out", str(tmp_path), "--n-boot", "50", "--quiet"])
    assert rc == 0
    md = (tmp_path / "answers.md").read_text()
    assert md.count("cannot be answered from the loaded results") >= 3
    assert "ratio_data.yaml" in md and "cl_vit.yaml" in md
    assert not (tmp_path / "figures" / "learning_curves_gone.png").exists()
    assert not (tmp_path / "tables" / "q2_best.csv").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "figures" / "q1_grid_scaling.png").is_file()
    assert (tmp_path / "tables" / "q1_by_grid.csv").is_file()


def test_planned_trials_from_study_yaml():
    from analysis.report import planned_trials

    text = (
        "space:\n  mix.mixed_ratio: {grid: [0.0, 0.25, 0.5]}\n  model.name: {grid: [a, b], choice: null}\n"
        "seeds: [0, 1]\nsearch: {algorithm: grid}\n"
    )
    assert planned_trials(text) == 12
    assert planned_trials(text.replace("grid}", "tpe}")) is None
    assert planned_trials("") is None and planned_trials(": bad: [") is None


def test_report_missing_dir_exits_2_without_traceback(tmp_path):
    missing = tmp_path / "no_such_study"
    p = subprocess.run(
        [sys.executable, "-m", "analysis.report", str(missing), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert str(missing) in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_report_bad_parquet_and_help(tmp_path, capsys):
    (tmp_path / "trials.parquet").write_bytes(b"PAR1 garbage")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "trials.parquet" in err and "Parquet" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        report_main(["--help"])
    assert e.value.code == 0
    assert "--n-boot" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# notebooks
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_notebooks_execute_check():
    """Every committed notebook runs top to bottom (in memory; nothing written), whatever results exist."""
    nb_dir = ROOT / "analysis" / "notebooks"
    before = {p.name: p.read_bytes() for p in nb_dir.glob("*.ipynb")}
    p = subprocess.run(
        [sys.executable, "-m", "analysis.notebooks.execute", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in nb_dir.glob("*.ipynb")} == before
    assert len(before) == 9


def test_notebooks_build_the_same_bytes_twice():
    import nbformat

    from analysis.notebooks.build import notebooks

    first = {k: nbformat.writes(nb) for k, nb in notebooks().items()}
    assert first == {k: nbformat.writes(nb) for k, nb in notebooks().items()} and len(first) == 9
    for nb in notebooks().values():
        nbformat.validate(nb)
        assert len({c.id for c in nb.cells}) == len(nb.cells)


@pytest.mark.slow
def test_executed_notebook_has_no_timestamps(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from analysis.notebooks.execute import execute

    path = tmp_path / "t.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print(1 + 1)")]), path)
    nb = execute(path)
    assert nb.cells[0].outputs[0]["text"] == "2\n" and "execution" not in nb.cells[0].metadata


@pytest.mark.slow
def test_notebook_check_names_the_failing_cell(tmp_path, capsys):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from analysis.notebooks.execute import main as nb_main

    path = tmp_path / "broken.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# x"), new_code_cell("x = 1"), new_code_cell("1 / 0")]), path)
    before = path.read_bytes()
    assert nb_main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "broken.ipynb" in err and "cell 3" in err and "ZeroDivisionError" in err
    assert path.read_bytes() == before


def test_the_rerun_line_names_each_setting_only_for_the_arms_it_means_something_for():
    """A CutMix and a SpliceMix arm re-run longer, the baseline not: the CL weight (recorded as 1 for every
    trial) belongs to neither, the ratio and grid to the SpliceMix arm only; one re-run's gain is not called an
    average."""
    from analysis.questions.common import rerun_text

    r = pd.DataFrame(
        {
            "study": "methods",
            "arm": ["cutmix", "cutmix", "splicemix", "splicemix", "baseline"],
            "method": ["cutmix", "cutmix", "splicemix", "splicemix", "baseline"],
            "model": "smallcnn",
            "ratio": [np.nan, np.nan, 0.25, 0.25, 0.0],
            "grid": [np.nan, np.nan, "default", "default", "default"],
            "cl_weight": 1.0,
            "epochs": [96, 96, 48, 48, 32],
            "rerun_of": [48.0, 48.0, 32.0, 32.0, np.nan],  # the baseline was not re-run
            "rerun_gain": [np.nan, np.nan, np.nan, 1.17, np.nan],
        }
    )
    text = rerun_text(r)
    assert text.startswith("4 trials (arm cutmix, splicemix, model smallcnn, ratio 0.25, grid default) at 48, 96")
    assert "cl_weight" not in text
    assert "gained +1.17 mAP (one trial)" in text and "on average" not in text
    r.loc[r["arm"] == "splicemix", ["method", "arm"]] = "splicemix_cl"
    assert "cl_weight 1" in rerun_text(r)


def test_provenance_wall_time_is_the_span_and_trial_time_the_sum(tmp_path):
    study = tmp_path / "grid_scaling"
    shutil.copytree(FIX / "grid_scaling", study)
    t = pd.read_parquet(study / "trials.parquet")
    t["wall_time_s"] = 600.0  # 18 trials of 10 min: 3 h of trial time
    t.to_parquet(study / "trials.parquet")
    h = pd.read_parquet(study / "history.parquet")
    pair = h["trial_id"].map({tid: i // 2 for i, tid in enumerate(sorted(h["trial_id"].unique()))})
    h["trial_started_at"] = 1.0e9 + 600.0 * pair  # two at a time, one pair after another: 90 min
    h["reported_at"] = h["trial_started_at"] + 600.0 * h["epoch"] / h["epoch"].max()
    h.to_parquet(study / "history.parquet")
    assert report_main([str(study), "--out", str(tmp_path / "rep"), "--n-boot", "50", "--quiet"]) == 0
    row = pd.read_csv(tmp_path / "rep" / "tables" / "provenance.csv").iloc[0]
    assert (row["wall time"], row["trial time"]) == ("1 h 30 min", "3 h 00 min")
    assert "*wall time*: from its first trial's start" in (tmp_path / "rep" / "answers.md").read_text()
