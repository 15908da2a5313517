"""The analysis and the training regime: the ``budget`` / ``pretrained`` / ``converged`` aliases read
from raw trials.parquet columns, answers given once per form of the runs' length (equal epochs,
equal compute) with whether the forms agree, trials differing only in budget or starting weights
never pooled, and the convergence count in every answer. Built from constructed frames, plus one
report run on a study folder written here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repository root on the path
    sys.path.insert(0, str(ROOT))

from analysis import claims, load_studies, q2_ratio_by_data, supersede, tidy_trials  # noqa: E402
from analysis.load import BUDGET_KINDS  # noqa: E402
from analysis.questions import answer_all  # noqa: E402
from analysis.report import main as report_main  # noqa: E402
from analysis.report import render_answers  # noqa: E402

RESULTS = ROOT / "analysis" / "results"


def _raw(seed: int = 0, n: int = 2000, ratio: float = 0.25, mAP: float = 40.0, **extra) -> dict:
    """One raw trials.parquet row; ``extra`` adds or overrides columns (full names)."""
    row = {
        "status": "completed",
        "seed": seed,
        "epochs_planned": 12,
        "epochs_run": 12,
        "final_mAP": mAP,
        "cfg.data.dataset": "synthetic",
        "cfg.data.synthetic.n_train": n,
        "cfg.data.synthetic.imbalance": 0.0,
        "cfg.data.image_size": 64,
        "cfg.model.name": "smallcnn",
        "cfg.mix.method": "splicemix",
        "cfg.mix.grids": "default",
        "cfg.mix.mixed_ratio": ratio,
        "cfg.mix.counts": None,
        "cfg.train.epochs": 12,
    }
    row.update(extra)
    return row


def _tidy(rows: list[dict], study: str = "s") -> pd.DataFrame:
    raw = pd.DataFrame(rows)
    raw["trial_id"] = [f"t{i}" for i in range(len(raw))]
    return tidy_trials(raw, study)


def _budget(kind: str, n: int) -> dict:
    """The columns the store writes for ``train.budget: {<kind>: n}`` (flatten_config walks the section)."""
    return {f"cfg.train.budget.{k}": n if k == kind else None for k in BUDGET_KINDS}


def _ratio_rows(peaks: dict, extra: dict | None = None, seeds: int = 3, converged=None) -> list[dict]:
    """A ratio x n_train study whose mAP peaks at ``peaks[n_train]``; ``extra`` columns on every row."""
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(seeds):
        for n, peak in peaks.items():
            for r in (0.0, 0.25, 0.5):
                m = 30 - 40 * (r - peak) ** 2 + seed + rng.normal(0, 0.05)
                conv = {} if converged is None else {"final_converged": converged(seed)}
                rows.append(_raw(seed, n, r, m, **(extra or {}), **conv))
    return rows


def _two_forms(steps_peaks: dict) -> pd.DataFrame:
    """Equal epochs (peaks 0.25 at 500 images, 0 at 2000) and a 1,500-step budget (``steps_peaks``), one study."""
    epochs = _ratio_rows({500: 0.25, 2000: 0.0}, {"cfg.train.budget": None})
    steps = _ratio_rows(steps_peaks, {**_budget("steps", 1500), "epochs_run": 5})
    return _tidy(epochs + steps)


# ------------------------------------------------------------------------------------------------
# the aliases
# ------------------------------------------------------------------------------------------------


def test_budget_pretrained_converged_aliases_from_raw_columns():
    rows = [
        _raw(**{"cfg.train.budget": None}),
        _raw(**{"cfg.train.budget.images": 120000, "epochs_run": 3}),
        _raw(**_budget("steps", 1500), epochs_run=5),
        _raw(**{"cfg.train.budget.seconds": 300.5}),
        _raw(**{"cfg.train.budget": '{"steps": 2000}'}),  # one column holding the mapping as JSON text
        _raw(**{"cfg.train.budget": {"images": 64000}}),
    ]
    pretrained = [None, "shapes", "/w/resnet18-shapes.pt", "", None, None]
    converged = [True, False, None, np.nan, True, False]
    for row, p, c in zip(rows, pretrained, converged, strict=True):
        row.update({"cfg.model.pretrained": p, "final_converged": c})
    df = _tidy(rows)
    assert list(df["budget"]) == [
        "epochs",
        "images 120000",
        "steps 1500",
        "seconds 300.5",
        "steps 2000",
        "images 64000",
    ]
    assert list(df["pretrained"]) == ["none", "shapes", "resnet18-shapes.pt", "none", "none", "none"]
    assert df["converged"].dtype == "boolean"
    assert df["converged"].tolist()[:2] == [True, False] and df["converged"].isna().tolist()[2:4] == [True, True]
    # under a budget the epochs alias is the epochs run; at equal epochs it is train.epochs
    assert list(df["epochs"].iloc[:3]) == [12.0, 3.0, 5.0]


def test_aliases_without_the_columns():
    df = _tidy([_raw(), _raw(seed=1)])  # no budget, no pretrained, no final_converged column at all
    assert list(df["budget"]) == ["epochs", "epochs"] and list(df["pretrained"]) == ["none", "none"]
    assert df["converged"].isna().all() and df["converged"].dtype == "boolean"


def test_committed_studies_load_with_their_regime():
    df = load_studies(*sorted(RESULTS.iterdir()))
    eq = df[df["budget"] == "epochs"]
    assert (eq["epochs"] == pd.to_numeric(eq["cfg.train.epochs"])).all()
    old = df["final_converged"].isna() if "final_converged" in df.columns else pd.Series(True, index=df.index)
    # the studies that predate the converged column ran from scratch; the later ones record both
    assert set(df.loc[old, "pretrained"]) <= {"none"} and df.loc[old, "converged"].isna().all()
    assert df.loc[~old, "converged"].notna().all()
    assert set(df.loc[~old & df["cfg.model.pretrained"].notna(), "pretrained"]) <= {"shapes"}


# ------------------------------------------------------------------------------------------------
# one answer per form
# ------------------------------------------------------------------------------------------------


def _q2(answers: list) -> object:
    return next(a for a in answers if a.key == "q2")


def test_two_forms_give_two_labelled_verdicts_and_say_where_they_differ():
    df = _two_forms({500: 0.5, 2000: 0.5})
    a = _q2(answer_all(df, n_boot=100))
    assert [f.form_label for f in a.forms] == ["at equal epochs (12)", "at equal steps (1,500)"]
    best = [f.tables["best"].set_index("n_train")["best"].to_dict() for f in a.forms]
    assert best == [{500: 0.25, 2000: 0.0}, {500: 0.5, 2000: 0.5}]  # each form from its own trials
    assert a.agreement.startswith("The forms differ")
    assert (
        "best ratio at n_train 2000, imbalance 0: 0 at equal epochs (12) vs 0.5 at equal steps (1,500)" in a.agreement
    )
    assert "resolved < 0 at equal epochs (12) vs resolved > 0 at equal steps (1,500)" in a.agreement
    assert {"best_epochs", "best_steps_1500"} <= set(a.tables)
    assert a.forms[1].conditions["compared at"] == "equal steps (1,500)"
    assert a.forms[1].conditions["training"].startswith("a budget of 1,500 steps (5 epochs run)")
    assert "the study has 36 completed of 36" in a.forms[0].conditions["trials"]  # counts of the whole study
    md = render_answers(answer_all(df, n_boot=100), df, pd.DataFrame(), {}, 0.95, 100, 0, "test")
    i, j, k = (
        md.index("**Answer at equal epochs (12).**"),
        md.index("**Answer at equal steps (1,500).**"),
        md.index("do the forms agree?** The forms differ"),
    )
    assert i < j < k
    glance = md.split("## At a glance")[1].split("# The open questions")[0]
    row = next(line for line in glance.splitlines() if line.startswith("| Q2. The best"))
    # each form's own first sentence, labelled, then the agreement's
    assert row.index("At equal epochs (12): Best tested ratio") < row.index("At equal steps (1,500): Best tested")
    assert row.index("At equal steps (1,500): Best tested") < row.index("The forms differ")


def test_two_forms_that_agree_say_so():
    a = _q2(answer_all(_two_forms({500: 0.25, 2000: 0.0}), n_boot=100))
    assert len(a.forms) == 2
    assert a.agreement.startswith("The forms agree: the same best ratio at n_train 500, imbalance 0 (0.25)")
    assert "no contrast is resolved in opposite directions" in a.agreement


def test_one_form_gives_one_verdict_with_its_form():
    df = _tidy(_ratio_rows({500: 0.5, 2000: 0.5}, {**_budget("steps", 1500), "epochs_run": 5}))
    a = _q2(answer_all(df, n_boot=100))
    assert a.forms == [] and a.agreement == "" and a.form_label == "at equal steps (1,500)"
    assert a.conditions["compared at"] == "equal steps (1,500)"
    assert "at equal" not in a.verdict
    old = _q2(answer_all(_tidy(_ratio_rows({500: 0.25, 2000: 0.0})), n_boot=100))
    assert old.forms == [] and old.conditions["compared at"].startswith("equal epochs (12) (mixed images add compute")


def test_a_budget_cell_rerun_with_a_larger_budget_supersedes_and_keeps_its_form():
    """A step-budget study whose 2,000-image ratio-0.5 cell had not converged, re-run in another part with a
    larger step budget (+2 mAP): the shorter runs are superseded, and the re-runs stay in the 1,500-step form
    (one answer, not two forms), named as the arms re-run longer."""
    first = _tidy(_ratio_rows({500: 0.0, 2000: 0.0}, {**_budget("steps", 1500), "epochs_run": 5}))
    short = first[(first["n_train"] == 2000) & (first["ratio"] == 0.5)]
    pairs = zip(short["seed"], short["mAP"], strict=True)
    again = _tidy([_raw(s, 2000, 0.5, m + 2.0, **_budget("steps", 2250), epochs_run=7) for s, m in pairs])
    first["folder"], again["folder"] = "s-a", "s-b"
    again["trial_id"] = [f"b{i}" for i in range(len(again))]
    df = supersede(pd.concat([first, again], ignore_index=True))
    assert set(df.loc[df["status"] == "superseded", "trial_id"]) == set(short["trial_id"])
    rerun = df[df["rerun_of"].notna()]
    assert len(rerun) == 3 and set(rerun["folder"]) == {"s-b"} and set(rerun["rerun_of"]) == {5.0}
    assert rerun["rerun_gain"].to_numpy() == pytest.approx([2.0] * 3)
    assert set(df["budget"]) == {"steps 1500"}  # the re-runs answer in the form they were re-run for
    a = _q2(answer_all(df, n_boot=100))
    assert a.forms == [] and set(a.tables["by_ratio"]["n"]) == {3}
    assert a.conditions["compared at"] == "equal steps (1,500), except the arms re-run longer (7 epochs)"
    assert "3 trials (arm splicemix, model smallcnn, ratio 0.5, grid default" in a.conditions["re-run longer"]
    same = supersede(pd.concat([first, again.assign(folder="s-a")], ignore_index=True))
    assert same["rerun_of"].isna().all()  # two budgets within one part: a budget study, kept


def test_a_cell_rerun_twice_is_answered_by_its_longest_runs_and_later_seeds_join_them():
    """ratio_data's path: seed 0's 2,000-image ratio-0.5 cell re-run at 2,250 steps (still short, +1), then at
    4,000 (+1 more) with seeds 1-2 run straight at 4,000 (never short): every shorter run is superseded, the
    longest carries the next shorter's epochs and gain, and the cell answers with all three seeds."""
    first = _tidy(_ratio_rows({500: 0.0, 2000: 0.0}, {**_budget("steps", 1500), "epochs_run": 5}))
    cell = (first["n_train"] == 2000) & (first["ratio"] == 0.5)
    first = first[~cell | (first["seed"] == 0)]
    m0 = float(first.loc[cell & (first["seed"] == 0), "mAP"].iloc[0])
    mid = _tidy([_raw(0, 2000, 0.5, m0 + 1.0, **_budget("steps", 2250), epochs_run=7)])
    last = _tidy([_raw(s, 2000, 0.5, m0 + 2.0 + s, **_budget("steps", 4000), epochs_run=13) for s in range(3)])
    for d, part in ((first, "s-a"), (mid, "s-r"), (last, "s-s")):
        d["folder"], d["trial_id"] = part, [f"{part}{i}" for i in range(len(d))]
    df = supersede(pd.concat([first, mid, last], ignore_index=True))
    gone = df[df["status"] == "superseded"]
    assert sorted(gone["folder"]) == ["s-a", "s-r"] and set(gone["seed"]) == {0}
    rerun = df[df["rerun_of"].notna()].sort_values("seed")
    assert list(rerun["folder"]) == ["s-s"] * 3 and set(rerun["rerun_of"]) == {7.0}
    assert rerun["rerun_gain"].iloc[0] == pytest.approx(1.0) and rerun["rerun_gain"].iloc[1:].isna().all()
    assert set(df.loc[df["status"] != "superseded", "budget"]) == {"steps 1500"}  # the first run's form
    a = _q2(answer_all(df, n_boot=100))
    assert a.forms == [] and set(a.tables["by_ratio"]["n"]) == {3}


def test_the_seeds_line_says_when_conditions_have_different_numbers_of_seeds():
    """ratio_data's noisier small-data cells get seeds 3-4 while the 2,000-image cells keep 3: the seeds line
    counts every seed and says how many each condition has (and says nothing more when they are equal)."""
    rows = _ratio_rows({500: 0.0, 2000: 0.0}, {**_budget("steps", 1500), "epochs_run": 5}, seeds=5)
    more = _tidy([r for r in rows if r["seed"] < 3 or r["cfg.data.synthetic.n_train"] == 500])
    assert _q2(answer_all(more, n_boot=100)).conditions["seeds"] == "5 (0, 1, 2, 3, 4); 3 to 5 per condition"
    equal = _tidy([r for r in rows if r["seed"] < 3])
    assert _q2(answer_all(equal, n_boot=100)).conditions["seeds"] == "3 (0, 1, 2)"


def test_the_paper_direction_pairs_ratios_at_equal_images_though_their_epochs_differ():
    """At equal images seen a ratio-0.25 trial runs fewer epochs than a ratio-0 one (8 / 1.25): the paper's
    SpliceMix − baseline contrast still pairs them by seed within the budget, as it pairs a re-run arm with the
    arms whose length it re-ran."""
    from analysis.questions.common import paper_direction

    rows = _ratio_rows({2000: 0.25}, _budget("images", 64000))
    for r in rows:
        r["epochs_run"] = 8 / (1 + r["cfg.mix.mixed_ratio"])
    text = paper_direction(_tidy(rows))
    assert "SpliceMix − baseline +" in text and "(paper +1.4): agrees" in text


# ------------------------------------------------------------------------------------------------
# never pooled
# ------------------------------------------------------------------------------------------------


def test_trials_differing_only_in_budget_or_weights_are_not_pooled():
    scratch = _ratio_rows({500: 0.25, 2000: 0.0}, {"cfg.model.pretrained": None})
    shapes = _ratio_rows({500: 0.5, 2000: 0.5}, {"cfg.model.pretrained": "shapes"}, seeds=4)
    a = q2_ratio_by_data(_tidy(scratch + shapes), n_boot=100)
    assert set(a.data["pretrained"]) == {"shapes"}  # held at one level: 4 seeds per ratio, not 3 + 4
    assert set(a.tables["by_ratio"]["n"]) == {4}
    assert any("pretrained" in n for n in a.notes) and "(pre-trained: shapes)" in a.conditions["model"]
    b = q2_ratio_by_data(_two_forms({500: 0.5, 2000: 0.5}), n_boot=100)  # a question called directly
    assert b.data["budget"].nunique() == 1 and set(b.tables["by_ratio"]["n"]) == {3}
    rows = [dict(r, **{"cfg.model.pretrained": "shapes"}) for r in scratch] + scratch  # same seeds, two weights
    vs = claims(_tidy(rows))[0].tables["vs_baseline"]
    assert set(vs["pretrained"]) == {"none", "shapes"} and set(vs["n"]) == {3}


# ------------------------------------------------------------------------------------------------
# convergence
# ------------------------------------------------------------------------------------------------


def test_convergence_count_and_what_would_change_it():
    df = _tidy(_ratio_rows({500: 0.25, 2000: 0.0}, converged=lambda seed: seed != 0))
    a = _q2(answer_all(df, n_boot=100))
    assert a.conditions["convergence"] == (
        "12 of 18 trials converged (best-so-far val mAP gained < 0.3 points over the last quarter of the epochs)"
    )
    assert any(c.startswith("6 of 18 trials had not converged") for c in a.changes)
    assert not any("Longer training" in c for c in a.changes)
    every = _q2(answer_all(_tidy(_ratio_rows({500: 0.25, 2000: 0.0}, converged=lambda s: True)), n_boot=100))
    assert every.conditions["convergence"].startswith("18 of 18") and not any("converge" in c for c in every.changes)
    old = _q2(answer_all(_tidy(_ratio_rows({500: 0.25, 2000: 0.0})), n_boot=100))
    assert "convergence" not in old.conditions and any("Longer training" in c for c in old.changes)


def test_report_on_a_study_with_both_forms(tmp_path):
    study = tmp_path / "ratio_budget"
    study.mkdir()
    epochs = _ratio_rows({500: 0.25, 2000: 0.0}, {"cfg.train.budget": None}, converged=lambda s: True)
    steps = _ratio_rows({500: 0.5, 2000: 0.5}, {**_budget("steps", 1500), "epochs_run": 5}, converged=lambda s: s > 0)
    raw = pd.DataFrame(epochs + steps)
    raw["trial_id"] = [f"t{i}" for i in range(len(raw))]
    raw.to_parquet(study / "trials.parquet")
    out = tmp_path / "rep"
    assert report_main([str(study), "--out", str(out), "--n-boot", "50", "--quiet"]) == 0
    md = (out / "answers.md").read_text()
    assert "**Answer at equal epochs (12).**" in md and "**Answer at equal steps (1,500).**" in md
    assert "- convergence: 18 of 18 trials converged" in md and "- convergence: 12 of 18 trials converged" in md
    assert (out / "tables" / "q2_best_steps_1500.csv").is_file()
    assert (out / "figures" / "q2_ratio_by_data_epochs.png").is_file()
    assert (out / "figures" / "q2_ratio_by_data_steps_1500.png").is_file()


def test_figure_subtitle_names_the_budget_and_the_weights():
    from analysis.plots import fig_ratio_by_data

    rows = _ratio_rows(
        {500: 0.5, 2000: 0.5}, {**_budget("steps", 1500), "epochs_run": 5, "cfg.model.pretrained": "shapes"}
    )
    title = fig_ratio_by_data(_tidy(rows)).get_suptitle()
    assert "from shapes, a budget of 1,500 steps (5 epochs run), 3 seeds" in title
    old = fig_ratio_by_data(_tidy(_ratio_rows({500: 0.25, 2000: 0.0}))).get_suptitle()
    assert "12 epochs, 3 seeds" in old and "from" not in old and "run)" not in old


@pytest.mark.parametrize("budget", ["images 120000", "steps 1500", "seconds 300", "epochs"])
def test_form_labels(budget):
    from analysis.prose import form_label

    want = {
        "images 120000": "at equal images seen (120,000)",
        "steps 1500": "at equal steps (1,500)",
        "seconds 300": "at equal training seconds (300)",
        "epochs": "at equal epochs (12)",
    }
    assert form_label(budget, pd.Series([12.0])) == want[budget]
