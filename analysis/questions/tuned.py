"""The tuned configuration: the best configuration a TPE + ASHA search found (study ``tuned``), and its
confirmation on fresh seeds against the baseline and the authors' default preset (study ``tuned_confirm``).

The two studies are found by name (``study`` after merging parts: :data:`SEARCH`, :data:`CONFIRM`). The
confirmation study's three arms are told apart by their ``cfg.mix.*`` columns: ``baseline`` (nothing
mixed), ``tuned`` (the arm whose searched columns equal the search's best trial's; without the search,
the arm further from the preset) and ``default preset`` (SpliceMix, default grids, ratio 0.25)."""

from __future__ import annotations

import pandas as pd

from ..load import COMPLETED, STOPPED, completed, key_text, run_columns
from ..prose import diff_text, holm_sentence, level_text, levels_text
from ..stats import fmt_num, holm_tables, paired_diff, summarize
from .common import (
    PAPER_RATIO,
    SEARCH_STUDIES,
    Answer,
    cannot,
    common_changes,
    conditions,
    direction_word,
    length_text,
)

__all__ = ["TITLE", "TEXT", "SEARCH", "CONFIRM", "ARMS", "tuned_answer", "search_best", "search_trials", "confirm_arms"]

TITLE = "The tuned configuration vs the default preset and the baseline"
TEXT = (
    "Which configuration did the search find best, and does it beat the baseline and the authors' default "
    "preset on fresh seeds?"
)
SEARCH, CONFIRM = SEARCH_STUDIES[0], "tuned_confirm"
#: the confirmation study's arms, as the answer labels them
ARMS = ("tuned", "default preset", "baseline")
_PRESET = {"method": "splicemix", "grid": "default", "ratio": PAPER_RATIO}


def _searched(s: pd.DataFrame) -> list[str]:
    """The run columns the search varied (its trials' ``cfg.*`` that take more than one value; not the seed)."""
    cols = [c for c in run_columns(s) if c != "cfg.train.seed"]
    return [c for c in cols if s[c].map(key_text).nunique() > 1]


def search_best(df: pd.DataFrame) -> tuple[pd.Series | None, list[str], str]:
    """(the search study's best completed trial, the columns it searched, a sentence), or (None, [], "")."""
    s = df[df["study"] == SEARCH]
    if not len(s):
        return None, [], ""
    cols = _searched(s)
    done = completed(s)
    counts = f"{len(s)} trials, {len(done)} completed, {int((s['status'] == STOPPED).sum())} stopped early by ASHA"
    if not len(done):
        return None, cols, f"The search ({SEARCH}: {counts}) has no completed trial."
    best = done.loc[done["mAP"].idxmax()]
    cfg = ", ".join(f"{c.removeprefix('cfg.')} = {level_text(best[c])}" for c in cols) or "no searched key varies"
    text = (
        f"The search ({SEARCH}: {counts}) found best {cfg}: mAP {fmt_num(best['mAP'])} on seed {best['seed']} "
        f"after {levels_text(pd.Series([best['epochs']]))} epochs (the best of many trials on one seed is "
        f"optimistic: the confirmation below is the estimate)."
    )
    return best, cols, text


def search_trials(s: pd.DataFrame) -> pd.DataFrame:
    """The search's completed and ASHA-stopped trials: how many epochs each ran (``epochs_run``) and its
    mAP at the last epoch it reached, best first."""
    ran = s["epochs_run"] if "epochs_run" in s.columns else s["epochs"]
    t = s.assign(epochs_run=ran)[["trial_id", "status", "seed", "epochs_run", "mAP"]]
    return t[t["mAP"].notna() & t["status"].isin([COMPLETED, STOPPED])].sort_values("mAP", ascending=False)


def _preset_score(g: pd.DataFrame) -> int:
    r = g.iloc[0]
    return sum(bool(r.get(k) == v) for k, v in _PRESET.items())


def confirm_arms(c: pd.DataFrame, best: pd.Series | None, cols: list[str]) -> pd.Series:
    """The label of :data:`ARMS` of every confirmation trial (NaN for a trial of a fourth arm)."""
    mix_cols = [x for x in run_columns(c) if x.startswith("cfg.mix.")]
    key = c[mix_cols].apply(lambda col: col.map(key_text)).agg("|".join, axis=1)
    label = pd.Series(pd.NA, index=c.index, dtype=object)
    label[c["arm"] == "baseline"] = "baseline"
    groups = {k: g for k, g in c[c["arm"] != "baseline"].groupby(key[c["arm"] != "baseline"])}
    if best is not None and cols:
        match = [
            k for k, g in groups.items() if all(key_text(g.iloc[0].get(x)) == key_text(best[x]) for x in cols if x in g)
        ]
        tuned = match[0] if len(match) == 1 else None
    else:
        tuned = None
    rest = sorted(groups, key=lambda k: _preset_score(groups[k]))
    tuned = tuned if tuned is not None else (rest[0] if len(rest) >= 2 else None)
    preset = next((k for k in reversed(rest) if k != tuned), None)
    for k, lab in ((tuned, "tuned"), (preset, "default preset")):
        if k is not None:
            label[key == k] = lab
    return label


def _contrasts(c: pd.DataFrame, level: float) -> pd.DataFrame:
    """tuned − baseline, tuned − default preset, default preset − baseline: seed-paired, Holm over the three."""
    pairs = [("tuned", "baseline"), ("tuned", "default preset"), ("default preset", "baseline")]
    t = [paired_diff(c, None, a, b, "mAP", factor="tuned_arm", level=level) for a, b in pairs]
    t = [x for x in t if len(x)]
    return holm_tables([pd.concat(t, ignore_index=True)], level)[0] if t else pd.DataFrame()


def _confirm_text(vs: pd.DataFrame, seeds: list[int], search_seeds: set[int]) -> str:
    fresh = "fresh seeds" if not (set(seeds) & search_seeds) else "seeds some search trials also used"
    lines = "; ".join(f"{r['treat']} − {r['control']} {diff_text(r)}" for _, r in vs.iterrows())
    return f"On {len(seeds)} {fresh} ({CONFIRM}): {lines}."


def tuned_answer(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """The search's best configuration and the confirmation's seed-paired tuned − baseline, tuned − default
    preset and default preset − baseline (Holm over the three). Partial with only one of the two studies.

    Tables: ``search_top`` (the search's five best completed trials), ``search_trials`` (every completed or
    stopped search trial: epochs run, mAP at its last epoch), ``by_arm``, ``vs``.
    """
    best, cols, search_text = search_best(df)
    c = completed(df[df["study"] == CONFIRM]).copy()
    if best is None and not len(c):
        why = f"no study named {SEARCH} (the search) or {CONFIRM} (the confirmation) is loaded"
        return cannot("tuned", TITLE, TEXT, why, df)
    tables: dict[str, pd.DataFrame] = {}
    s = completed(df[df["study"] == SEARCH])
    if len(s):
        tables["search_top"] = s.nlargest(5, "mAP")[["trial_id", "seed", "epochs", "mAP", *cols]]
        tables["search_trials"] = search_trials(df[df["study"] == SEARCH])
    verdict, paper, used = search_text, "", s
    if len(c):
        c["tuned_arm"] = confirm_arms(c, best, cols)
        c = c[c["tuned_arm"].notna()]
        vs = _contrasts(c, level)
        tables["by_arm"], tables["vs"] = summarize(c, "tuned_arm", "mAP", level), vs
        verdict = f"{verdict} {_confirm_text(vs, sorted(int(x) for x in c['seed'].unique()), set(s['seed']))}"
        verdict += " " + holm_sentence([vs], level)
        paper = _paper_line(vs, c)
        used = c
    else:
        verdict += f" Not yet confirmed: search_spaces/{CONFIRM}.yaml would, on fresh seeds."
    return Answer(
        "tuned",
        TITLE,
        TEXT,
        True,
        verdict.strip(),
        ", ".join(x for x in (SEARCH if best is not None else "", CONFIRM if len(c) else "") if x),
        partial=not (len(c) and best is not None),
        tables=tables,
        conditions=conditions(df, used),
        changes=common_changes(used),
        notes=[f"arms told apart by cfg.mix.*: tuned = the search's best configuration ({', '.join(cols) or 'n/a'})"],
        data=used,
        paper=paper,
        key_results={"best configuration": search_text.split(": mAP")[0]} if search_text else {},
    )


def _paper_line(vs: pd.DataFrame, c: pd.DataFrame) -> str:
    r = vs[(vs["treat"] == "default preset") & (vs["control"] == "baseline")] if len(vs) else vs
    if not len(r):
        return ""
    r = r.iloc[0]
    return (
        f"The paper: SpliceMix (its default preset) +1.4 mAP over the baseline on MS-COCO. Here ({length_text(c)}): "
        f"default preset − baseline {fmt_num(r['mean'], sign=True)}: "
        f"{direction_word(r['mean'], bool(r['resolved']), 1.4)}."
    )
