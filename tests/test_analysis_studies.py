"""The analysis of the newer studies: each trial counted once across studies, Holm's correction within an
answer, a study run in parts loaded as one, MixUp / CutMix in the trial frame, the drops, CL-weight,
methods and tuned answers (and what they say without their study), and the convergence evidence. Built
on the fixture studies of tests/fixtures/analysis_study/ (make_fixture.py states the effects built in)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repository root on the path
    sys.path.insert(0, str(ROOT))

from analysis import (  # noqa: E402
    claims,
    completed,
    dedupe,
    holm,
    load_history,
    load_studies,
    methods_table,
    q1_drops,
    q1_grid_scaling,
    q3_cl_weight,
    tidy_trials,
    tuned_answer,
)
from analysis.questions import answer_all  # noqa: E402
from analysis.report import main as report_main  # noqa: E402
from analysis.stats import holm_tables, plateau_table  # noqa: E402
from splicemix.results import convergence  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "analysis_study"


def _load(*names: str) -> pd.DataFrame:
    return load_studies(*(FIX / n for n in names))


# ------------------------------------------------------------------------------------------------
# Holm
# ------------------------------------------------------------------------------------------------


def test_holm_step_down_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.01, math.nan, 0.02])  # NaN is not counted: a family of 2
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]).max() <= 1.0 and len(holm([])) == 0


def test_holm_tables_one_family_over_tables():
    t1 = pd.DataFrame({"mean": [1.0], "lo": [0.1], "hi": [1.9], "p": [0.03], "resolved": [True]})
    t2 = pd.DataFrame({"mean": [-1.0, 2.0], "lo": [-1.9, 1.5], "hi": [-0.1, 2.5], "p": [0.04, 0.001], "resolved": True})
    a, b = holm_tables([t1, t2])
    assert list(a["p_holm"]) == pytest.approx([0.06]) and not a["resolved"].iloc[0] and a["resolved_raw"].iloc[0]
    assert list(b["resolved"]) == [False, True] and int(b["holm_m"].iloc[0]) == 3


# ------------------------------------------------------------------------------------------------
# each trial once; a study in parts
# ------------------------------------------------------------------------------------------------


def test_shared_trials_are_counted_once_first_study_kept():
    df = _load("ratio", "ratio_data")
    kept, dropped = dedupe(completed(df))
    assert len(dropped) == 9 and set(dropped["study"]) == {"ratio_data"} and set(dropped["duplicate_of"]) == {"ratio"}
    assert set(dropped["ratio"]) == {0.0, 0.25, 0.5} and set(dropped["n_train"]) == {2000}
    assert len(kept) + len(dropped) == len(completed(df))
    _, other_way = dedupe(completed(_load("ratio_data", "ratio")))
    assert set(other_way["study"]) == {"ratio"} and len(other_way) == 9
    m = next(a for a in claims(df) if a.key == "claims_map")
    assert any("9 duplicate trials" in n and "kept in ratio" in n for n in m.notes)
    t = m.tables["vs_baseline"]  # ratio_data's 2,000-image cell lost its baseline: no comparison there
    assert not ((t["study"] == "ratio_data") & (t["n_train"] == 2000) & (t["imbalance"] == 0)).any()


def test_a_claims_holm_family_is_its_headline_contrasts_the_other_variants_apart():
    m = next(a for a in claims(_load("ratio", "ratio_data")) if a.key == "claims_map")
    t = m.tables["vs_baseline"]
    head, other = t[t["headline"]], t[~t["headline"]]
    assert len(head) and len(other) and set(head["holm_m"]) == {len(head)} and set(other["holm_m"]) == {len(other)}
    raw = head.drop(columns=["p_holm", "holm_m", "resolved"]).rename(columns={"resolved_raw": "resolved"})
    alone = holm_tables([raw])[0]
    assert list(alone["p_holm"]) == pytest.approx(list(head["p_holm"]))  # more variants leave the headline's p alone
    assert f"over the claim's {len(head)} headline contrasts" in m.verdict and f"the {len(other)} other" in m.verdict


def test_dedupe_ignores_provenance_only_columns_and_keeps_repeats():
    base = {"seed": 0, "final_mAP": 40.0, "cfg.optim.lr": 0.003, "cfg.mix.method": "splicemix", "cfg.train.epochs": 12}
    a = tidy_trials(pd.DataFrame([base | {"cfg.train.device": "cpu"}] * 2), "a")  # a repeat within one study
    b = tidy_trials(pd.DataFrame([base | {"cfg.train.device": "cuda"}, base | {"cfg.optim.lr": 0.01}]), "b")
    kept, dropped = dedupe(pd.concat([a, b], ignore_index=True))
    assert list(kept["study"]) == ["a", "a", "b"] and list(dropped["cfg.optim.lr"]) == [0.003]


def test_a_study_in_two_parts_is_one_study():
    df = _load("ratio_converged-a", "ratio_converged-b")
    assert set(df["study"]) == {"ratio_converged"} and len(df) == 20
    assert set(df["folder"]) == {"ratio_converged-a", "ratio_converged-b"} and sorted(df["seed"].unique()) == [
        0,
        1,
        2,
        3,
        4,
    ]
    h = load_history(FIX / "ratio_converged-a", FIX / "ratio_converged-b")
    assert set(h["study"]) == {"ratio_converged"} and h["arm"].notna().all()
    alone = _load("ratio_converged-a")  # its study.yaml is named by the stem
    assert set(alone["study"]) == {"ratio_converged"}


def test_in_place_methods_have_no_ratio_or_grid():
    df = _load("methods")
    m = df.set_index("method")
    for method in ("mixup", "cutmix"):
        assert math.isnan(m.loc[method, "ratio"].iloc[0]) and pd.isna(m.loc[method, "grid"].iloc[0])
        assert (m.loc[method, "arm"] == method).all()
    assert (m.loc["splicemix", "ratio"] == 0.25).all() and (m.loc["baseline", "arm"] == "baseline").all()


# ------------------------------------------------------------------------------------------------
# the new answers
# ------------------------------------------------------------------------------------------------


def test_drops_answer_known_effects():
    a = q1_drops(_load("drops", "grid_scaling"), n_boot=100)
    assert a.answerable and a.study == "drops" and not a.partial
    v = a.tables["vs_drop0"].set_index(["base", "drop"])
    assert v.loc[("2x2", 3), "mean"] == pytest.approx(-1.8, abs=0.3) and v.loc[("2x3", 5), "mean"] < 0
    slope = a.tables["slope"].set_index("base")["mean"]
    assert slope["2x2"] == pytest.approx(-0.6, abs=0.15) and slope["2x3"] == pytest.approx(-0.3, abs=0.1)
    assert len(a.tables["vs_default"]) == 10 and int(a.tables["vs_drop0"]["holm_m"].iloc[0]) == 18
    assert "Holm-corrected within the question over 18 contrasts" in a.verdict
    assert q1_grid_scaling(_load("drops", "grid_scaling"), n_boot=50).study == "grid_scaling"
    whole = q1_grid_scaling(_load("drops"), n_boot=50)  # on the drops study alone: its whole grids only
    assert set(whole.data["grid"]) == {"2x2", "2x3"}


def test_orientation_compares_transposed_grids():
    a = q1_grid_scaling(_load("grid_scaling"), n_boot=50)
    t = a.tables["transposed"]
    assert list(zip(t["treat"], t["control"], strict=True)) == [("4x1", "1x4")] and "p_holm" in t.columns
    assert "Transposed grids" in a.verdict


def test_cl_weight_answer_best_weight_per_model():
    a = q3_cl_weight(_load("cl_weight", "cl_vit"), n_boot=200)
    assert a.answerable and a.study == "cl_weight" and not a.partial
    best = a.tables["best"].set_index("model")["best"]
    assert best["smallcnn"] == 1.0 and best["vit_tiny"] == 0.5
    v = a.tables["vs_zero"].set_index(["model", "treat"])
    assert v.loc[("smallcnn", 1.0), "mean"] == pytest.approx(2.0, abs=0.3) and v.loc[("smallcnn", 1.0), "resolved"]
    assert "smallcnn" in a.paper and "agrees" in a.paper


def test_cl_weight_vit_minus_cnn_gain_is_seed_paired():
    df = _load("cl_weight")
    a = q3_cl_weight(df, n_boot=50)
    gap = a.tables["vit_vs_cnn"].set_index("weight")
    assert list(gap.index) == [0.25, 0.5, 1.0, 2.0] and set(gap["method"]) == {"paired by seed"}
    m = completed(df).pivot_table(index="seed", columns=["model", "cl_weight"], values="mAP")
    for w in (0.5, 1.0):  # per seed (vit_w − vit_0) − (cnn_w − cnn_0), by hand
        per_seed = (m[("vit_tiny", w)] - m[("vit_tiny", 0.0)]) - (m[("smallcnn", w)] - m[("smallcnn", 0.0)])
        r = gap.loc[w]
        assert r["treat"] == "vit_tiny" and r["control"] == "smallcnn" and r["n"] == 3
        assert r["mean"] == pytest.approx(per_seed.mean()) and r["sd"] == pytest.approx(per_seed.std(ddof=1))
        assert r["treat_mean"] == pytest.approx((m[("vit_tiny", w)] - m[("vit_tiny", 0.0)]).mean())
    assert gap.loc[1.0, "mean"] == pytest.approx(-2.0, abs=0.4)  # built in: ViT +0 at weight 1, the CNN +2
    assert int(gap["holm_m"].iloc[0]) == 12 == int(a.tables["vs_zero"]["holm_m"].iloc[0])  # one family
    at_best = gap.loc[0.5]  # the ViT's best weight
    said = f"CL helps the ViT {'more' if at_best['mean'] > 0 else 'less'} than the CNN"
    if not at_best["resolved"]:
        said = "CL's gains on the ViT and on the CNN are not resolved apart"
    assert f"at weight 0.5 (vit_tiny's best) {said}" in a.verdict
    unshared = df.assign(seed=df["seed"] + 10 * (df["model"] == "vit_tiny"))  # no seed in common: Welch
    w = q3_cl_weight(unshared, n_boot=50).tables["vit_vs_cnn"].set_index("weight").loc[1.0]
    assert w["method"].startswith("Welch") and w["mean"] == pytest.approx(gap.loc[1.0, "mean"])
    assert q3_cl_weight(df[df["model"] == "smallcnn"], n_boot=50).partial  # one kind of model: no comparison


def test_methods_table_beside_the_paper():
    a = methods_table(_load("methods", "cl_vit"), n_boot=50)
    assert a.answerable and a.study == "methods" and not a.partial
    by = a.tables["by_method"]
    assert set(by["method"]) == {"baseline", "MixUp", "CutMix", "SpliceMix", "SpliceMix-CL"}
    assert by.set_index(["method", "metric"]).loc[("SpliceMix", "mAP"), "paper"] == 84.4
    vs = a.tables["vs_baseline"].set_index(["treat", "metric"])
    assert vs.loc[("SpliceMix", "mAP"), "mean"] == pytest.approx(1.4, abs=0.3)
    assert vs.loc[("SpliceMix", "CF1"), "mean"] == pytest.approx(vs.loc[("SpliceMix", "mAP"), "mean"])  # CF1 = mAP - 5
    assert vs.loc[("SpliceMix", "mAP"), "paper"] == pytest.approx(1.4)
    assert vs.loc[("SpliceMix", "mAP"), "direction"].startswith("agrees")
    assert len(vs) == 12 and "over 12 contrasts" in a.verdict
    assert methods_table(_load("cl_vit")).answerable is False  # no MixUp / CutMix: not a methods study


def test_tuned_answer_search_and_confirmation():
    a = tuned_answer(_load("tuned", "tuned_confirm"))
    assert a.answerable and not a.partial and a.study == "tuned, tuned_confirm"
    assert "mix.grids = 2x3-2" in a.verdict and "mix.mixed_ratio = 0.5" in a.verdict and "4 stopped" in a.verdict
    vs = a.tables["vs"].set_index(["treat", "control"])
    assert vs.loc[("tuned", "baseline"), "mean"] == pytest.approx(2.5, abs=0.3)
    assert vs.loc[("tuned", "default preset"), "mean"] == pytest.approx(1.5, abs=0.3)
    assert "5 fresh seeds" in a.verdict
    only_search = tuned_answer(_load("tuned"))
    assert only_search.answerable and only_search.partial and "tuned_confirm.yaml" in only_search.verdict
    only_confirm = tuned_answer(_load("tuned_confirm"))  # arms from the config: the preset is the default grids
    assert only_confirm.partial and set(only_confirm.tables["by_arm"]["tuned_arm"]) == {
        "tuned",
        "default preset",
        "baseline",
    }


def test_the_search_study_answers_only_the_tuned_question():
    df = _load("tuned", "ratio")  # the search varies grids, ratio and CL weight, on one seed
    answers = {a.key: a for a in answer_all(df, n_boot=50)}
    assert answers["tuned"].answerable
    for key in ("q1", "q3_weight"):
        assert not answers[key].answerable
    assert answers["q2"].study == "ratio" and answers["claims_map"].study == "ratio"


def test_new_answers_without_their_study_name_the_search_space():
    answers = {a.key: a for a in answer_all(_load("grid_scaling"), n_boot=50)}
    for key, space in (
        ("q1_drops", "drops.yaml"),
        ("q3_weight", "cl_weight.yaml"),
        ("methods", "methods.yaml"),
        ("tuned", "tuned.yaml"),
    ):
        assert not answers[key].answerable and space in answers[key].verdict


# ------------------------------------------------------------------------------------------------
# convergence and the report
# ------------------------------------------------------------------------------------------------


def test_plateau_of_a_known_curve():
    epochs = np.arange(1, 9)
    h = pd.DataFrame({"arm": "a", "epoch": epochs, "mAP": 40 - 8 * 0.5**epochs})  # within 0.3 from epoch 5
    r = plateau_table(h, "arm").iloc[0]
    assert r["plateau_epoch"] == 5 and r["last_epoch"] == 8 and r["window_start"] == 6
    assert r["window_gain"] == pytest.approx(8 * (0.5**6 - 0.5**8))


def test_report_on_every_fixture_study(tmp_path):
    dirs = sorted(str(p) for p in FIX.iterdir() if (p / "trials.parquet").is_file())
    assert report_main([*dirs, "--out", str(tmp_path), "--n-boot", "50", "--quiet"]) == 0
    md = (tmp_path / "answers.md").read_text()
    assert "cannot be answered" not in md
    assert "9 duplicate trials" in md and "Holm-corrected within the question over" in md
    for heading in (
        "## Q1. Dropped cells",
        "## Q3. The best SpliceMix-CL weight",
        "# The methods table",
        "# Convergence",
    ):
        assert heading in md
    assert md.count("**Versus the paper.**") >= 9
    assert "`ratio_converged`: converged: 20 of 20 trials;" in md
    h = pd.read_parquet(FIX / "ratio" / "history.parquet")  # no final_converged: the rule on the history
    k = sum(convergence(g.to_dict("records")).converged for _, g in h.groupby("trial_id"))
    assert f"`ratio`: converged: {k} of 12 trials (by the trainer's rule on the per-epoch mAP" in md
    assert (tmp_path / "figures" / "learning_curves_ratio_converged.png").is_file()
    for fig in ("q3_cl_weight", "tuned"):  # the CL weight's and the tuned answer's figures, linked from answers.md
        assert (tmp_path / "figures" / f"{fig}.png").is_file() and (tmp_path / "figures" / f"{fig}.svg").is_file()
        assert f"](figures/{fig}.png)" in md
    conv = pd.read_csv(tmp_path / "tables" / "convergence.csv")
    assert {"study", "condition", "converged", "plateau_epoch"} <= set(conv.columns)
    assert conv["plateau_epoch"].notna().all()
    cl = conv[conv["study"] == "cl_vit"]  # per model and arm: 2 x 3 conditions, 18 trials
    assert len(cl) == 6 and cl["trials"].sum() == 18 and cl["condition"].str.contains("model vit_tiny").any()
