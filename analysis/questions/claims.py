"""The paper's three claims, checked on every study with baseline and mixing trials: SpliceMix
raises mAP, is robust to low-resolution evaluation, and relies less on co-occurrence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import completed, dedupe
from ..prose import (
    claim_sentences,
    claim_word,
    join_limited,
    level_list,
    level_text,
    levels_text,
    method_name,
)
from ..stats import fmt_ci, holm_tables, paired_diff, summarize
from .common import PAPER_RATIO, Answer, cannot, common_changes, conditions, controlled, paper_direction

__all__ = ["TITLES", "TEXTS", "claims"]

TITLES = {
    "claims_map": "Claim: SpliceMix and SpliceMix-CL improve mAP over the baseline",
    "claims_lowres": "Claim: robustness to low-resolution evaluation",
    "claims_cooc": "Claim: less co-occurrence bias",
}
TEXTS = {
    "claims_map": "Does SpliceMix (and SpliceMix-CL) raise mAP over training without mixing?",
    "claims_lowres": (
        "Does SpliceMix keep more of its mAP when evaluated at a lower resolution than it was trained at?"
    ),
    "claims_cooc": (
        "Does SpliceMix do better on images whose class pairs were rare in training, i.e. rely less on co-occurrence?"
    ),
}
_CELL = ["study", "model", "n_train", "imbalance"]  # a comparison with the baseline is paired within one cell
_SPLICEMIX_ARMS = ("baseline", "splicemix", "splicemix_cl")  # the claims are SpliceMix's: MixUp/CutMix are in "methods"
_SPLIT = ["budget", "pretrained"]  # also part of the cell where they vary: trials differing in them are never pooled
_NOTES = [
    f"headline = the paper's default setting (ratio {PAPER_RATIO:g}, default grids) when tested, else the "
    "closest tested ratio; every variant is in the tables"
]


def _cell(c: pd.DataFrame) -> list[str]:
    """The columns of a cell: :data:`_CELL`, and ``budget`` / ``pretrained`` where they vary in ``c``."""
    return _CELL + [f for f in _SPLIT if f in c.columns and c[f].nunique() > 1]


def _variant(r: pd.Series) -> str:
    if r["arm"] == "baseline":
        return "baseline"
    return f"{method_name(r['method'])} (ratio {level_text(r['ratio'])}, grids {r['grid']})"


def _mark_headline(c: pd.DataFrame) -> None:
    """``headline``: the baseline, and per study and method the paper's default setting (ratio 0.25,
    default grids) or the closest tested ratio; every variant of a method without a numeric ratio."""
    c["headline"] = c["arm"] == "baseline"
    for _, g in c[c["arm"] != "baseline"].groupby(["study", "method"]):
        cand = g[g["grid"] == "default"] if (g["grid"] == "default").any() else g
        dist = np.abs(cand["ratio"].to_numpy(float) - PAPER_RATIO)
        if np.isfinite(dist).any():
            r = cand["ratio"].iloc[int(np.nanargmin(dist))]
            c.loc[cand.index[cand["ratio"] == r], "headline"] = True
        else:  # no numeric ratio (e.g. "paper"): every variant of the method is a headline
            c.loc[cand.index, "headline"] = True


def _claims_data(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Completed SpliceMix / SpliceMix-CL / baseline trials of the studies that have both baseline and
    mixing trials, each trial once (:func:`analysis.load.dedupe`), with ``variant``, ``headline``, ``gap``
    (rare − common pair mAP) and ``drop`` (mAP − mAP_low) columns; and the duplicates dropped."""
    c, dropped = dedupe(completed(controlled(df)))
    c = c[c["arm"].isin(_SPLICEMIX_ARMS)].copy()
    keep = [s for s, g in c.groupby("study") if (g["arm"] == "baseline").any() and (g["arm"] != "baseline").any()]
    c = c[c["study"].isin(keep)].copy()
    if not len(c):
        return c, dropped
    c["variant"] = c.apply(_variant, axis=1)
    c["gap"] = c["mAP_rare"] - c["mAP_common"]
    c["drop"] = c["mAP"] - c["mAP_low"]
    _mark_headline(c)
    return c, dropped


def _vs_baseline(c: pd.DataFrame, value: str, level: float) -> pd.DataFrame:
    """Every variant − the baseline on ``value``, seed-paired within a cell, flagged ``headline``."""
    out = []
    for v in sorted(c.loc[c["variant"] != "baseline", "variant"].unique()):
        t = paired_diff(c, _cell(c), v, "baseline", value, factor="variant", level=level)
        if len(t):
            out.append(t)
    if not out:
        return pd.DataFrame()
    t = pd.concat(out, ignore_index=True)
    t["headline"] = t["treat"].isin(set(c.loc[c["headline"], "variant"]))
    return t


def _holm_claim(tables: list[pd.DataFrame], level: float) -> list[pd.DataFrame]:
    """Holm over a claim's headline contrasts together (the comparisons its verdict counts: one family),
    and over its other variants together (a second, exploratory family): ``holm_tables`` per family."""
    heads = holm_tables([t[t["headline"]] if len(t) else t for t in tables], level)
    others = holm_tables([t[~t["headline"]] if len(t) else t for t in tables], level)
    out = []
    for t, h, o in zip(tables, heads, others, strict=True):
        out.append(pd.concat([h, o]).loc[t.index] if len(t) else t)
    return out


def _holm_text(tables: list[pd.DataFrame], level: float) -> str:
    """The sentence that says how a claim's contrasts were corrected ("" when none has a p-value)."""
    rows = [t for t in tables if len(t) and "holm_m" in t.columns]
    if not rows:
        return ""
    heads = [t.loc[t["headline"], "holm_m"] for t in rows]
    others = [t.loc[~t["headline"], "holm_m"] for t in rows]
    m_h = next((int(h.iloc[0]) for h in heads if len(h)), 0)
    m_o = next((int(o.iloc[0]) for o in others if len(o)), 0)
    text = (
        f"Holm-corrected over the claim's {m_h} headline contrast{'s' if m_h != 1 else ''} (one family, the "
        f"comparisons the verdict counts): a contrast is resolved when its Holm-adjusted paired-t p-value is "
        f"below {1 - level:.2g} (intervals shown are the unadjusted {level:.0%} ones)"
    )
    if m_o:
        text += f"; the {m_o} other variants in the tables are a second, exploratory family, corrected apart"
    return text + "."


def _ratio_hint(t: pd.DataFrame) -> str:
    if not len(t):
        return "More seeds."
    nonhead = t[~t["headline"]]
    if len(nonhead):
        best = nonhead.loc[nonhead["mean"].idxmax()]
        return (
            f"Other settings change the answer: the best non-headline variant, {best['treat']}, is "
            f"{fmt_ci(best['mean'], best['lo'], best['hi'], sign=True)} mAP points vs the baseline "
            f"({best['study']})."
        )
    return "Only the headline setting was tested; other ratios or grids could change the answer."


def _answer(
    key: str,
    verdict: str,
    used: pd.DataFrame,
    df: pd.DataFrame,
    bullets: list[str],
    tables: dict[str, pd.DataFrame],
    changes: list[str],
) -> Answer:
    """A claim's answer from the trials ``used`` (its study, conditions, data and the paper's direction)."""
    return Answer(
        key,
        TITLES[key],
        TEXTS[key],
        True,
        verdict,
        ", ".join(sorted(used["study"].unique())),
        bullets=bullets,
        tables=tables,
        conditions=conditions(df, used),
        changes=changes,
        notes=list(_NOTES),
        data=used,
        paper=paper_direction(used),
    )


def _map_claim(c: pd.DataFrame, df: pd.DataFrame, level: float) -> Answer:
    (t_map,) = _holm_claim([_vs_baseline(c, "mAP", level)], level)
    s = claim_sentences(t_map)
    verdict = (
        f"The claim {claim_word(t_map)}. {join_limited(s)}. The paper reports +1.4 (SpliceMix) and +1.9 "
        f"(SpliceMix-CL) mAP points on MS-COCO with ResNet-101. {_holm_text([t_map], level)}"
    )
    tables = {"by_variant": summarize(c, _cell(c) + ["variant"], "mAP", level), "vs_baseline": t_map}
    return _answer("claims_map", verdict, c, df, s, tables, [_ratio_hint(t_map)] + common_changes(c))


def _lowres_claim(c: pd.DataFrame, df: pd.DataFrame, level: float) -> Answer:
    low = c[c["mAP_low"].notna()]
    if not len(low):
        return cannot(
            "claims",
            TITLES["claims_lowres"],
            TEXTS["claims_lowres"],
            "no trial was evaluated at a lower resolution (data.eval_sizes)",
            df,
        )
    size, full = levels_text(low["low_size"]), levels_text(low["image_size"])
    t_low, t_drop = _holm_claim([_vs_baseline(low, "mAP_low", level), _vs_baseline(low, "drop", level)], level)
    s_low, s_drop = claim_sentences(t_low), claim_sentences(t_drop, "points of drop")
    base_drop = summarize(low[low["arm"] == "baseline"], _cell(low), "drop", level)
    verdict = (
        f"Evaluated at {size} px (trained at {full} px), mAP of the mixed models vs the baseline: the "
        f"claim {claim_word(t_low)}. {join_limited(s_low)}. The baseline loses (mAP points, {full} → {size} "
        f"px): {level_list(base_drop)}; the mixed models' drop minus the baseline's (negative = more "
        f"robust) {claim_word(t_drop, better='neg').replace('holds here', 'is smaller here')}: "
        f"{join_limited(s_drop)}. {_holm_text([t_low, t_drop], level)}"
    )
    tables = {
        "low_by_variant": summarize(low, _cell(low) + ["variant"], "mAP_low", level),
        "low_vs_baseline": t_low,
        "drop_vs_baseline": t_drop,
    }
    change = (
        f"The paper trains at 448 px and tests at 64 px (7x smaller); here the factor is {full}/{size}: a "
        f"larger factor tests the claim harder."
    )
    return _answer("claims_lowres", verdict, low, df, s_low + s_drop, tables, [change] + common_changes(c))


def _cooc_claim(c: pd.DataFrame, df: pd.DataFrame, level: float) -> Answer:
    co = c[c["mAP_rare"].notna() & c["mAP_common"].notna()]
    if not len(co):
        return cannot(
            "claims",
            TITLES["claims_cooc"],
            TEXTS["claims_cooc"],
            "no trial reports mAP on rare / common class-pair images (synthetic data with co-occurring pairs)",
            df,
        )
    gap = summarize(co, _cell(co) + ["variant"], "gap", level)
    t_gap, t_rare = _holm_claim([_vs_baseline(co, "gap", level), _vs_baseline(co, "mAP_rare", level)], level)
    s_rare, s_gap = claim_sentences(t_rare), claim_sentences(t_gap, "points of gap")
    verdict = (
        f"On validation images whose class pairs were rare in training, mAP of the mixed models vs the "
        f"baseline: the claim {claim_word(t_rare)}. {join_limited(s_rare)}. The baseline's rare − common "
        f"mAP gap (negative = co-occurrence bias): {level_list(gap[gap['variant'] == 'baseline'], True)}. "
        f"Change of that gap vs the baseline (positive = less bias): the claim {claim_word(t_gap)}. "
        f"{join_limited(s_gap)}. {_holm_text([t_gap, t_rare], level)}"
    )
    tables = {"gap_by_variant": gap, "gap_vs_baseline": t_gap, "rare_vs_baseline": t_rare}
    changes = [
        "Rare- and common-pair images differ in which classes they hold, so the gap mixes class difficulty "
        "with co-occurrence bias; its change vs the baseline is the cleaner measure.",
        "The bias depends on data.synthetic.cooc_strength (how often pair partners co-occur in training); a "
        "stronger co-occurrence would test the claim harder.",
    ]
    return _answer("claims_cooc", verdict, co, df, s_rare + s_gap, tables, changes + common_changes(c))


def claims(df: pd.DataFrame, level: float = 0.95) -> list[Answer]:
    """The paper's claims checked on every study with baseline and mixing trials:

    * ``claims_map``: SpliceMix / SpliceMix-CL − baseline on mAP (seed-paired);
    * ``claims_lowres``: the same on ``mAP_low`` (the smallest evaluation size) and on the drop
      mAP − mAP_low (negative = more robust than the baseline);
    * ``claims_cooc``: the rare-minus-common-pair gap per variant, its change vs the baseline, and
      the rare-pair mAP gain.

    The headline comparison is the paper's default (ratio 0.25, default grids) when tested, else the
    closest ratio; every tested variant is in the tables. A trial two studies share (the same run
    configuration and seed) is counted once, in the first study (its ``notes`` say how many were
    dropped); the headline contrasts are resolved by Holm's correction over the claim's headline
    contrasts (one family), the other variants' over theirs (a second, exploratory family).
    """
    c, dropped = _claims_data(df)
    if not len(c):
        why = "no study has both baseline trials (method baseline or ratio 0) and SpliceMix trials"
        return [cannot("claims", TITLES[k], TEXTS[k], why, df) for k in TITLES]
    out = [_map_claim(c, df, level), _lowres_claim(c, df, level), _cooc_claim(c, df, level)]
    note = _dedupe_note(dropped)
    for a in out:
        if a.answerable and note:
            a.notes.append(note)
    return out


def _dedupe_note(dropped: pd.DataFrame) -> str:
    """How many trials were counted once although two studies hold them ("" when none)."""
    if not len(dropped):
        return ""
    pairs = "; ".join(
        f"{len(g)} of {study} (kept in {kept})" for (study, kept), g in dropped.groupby(["study", "duplicate_of"])
    )
    return (
        f"each trial counted once: {len(dropped)} duplicate trial{'s' if len(dropped) != 1 else ''} (the same run "
        f"configuration and seed in two studies) dropped: {pairs}"
    )
