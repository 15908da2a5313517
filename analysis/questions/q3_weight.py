"""Q3, the weight: the best SpliceMix-CL consistency weight per model, each weight's gain over weight 0
(SpliceMix-CL's path with no consistency loss, i.e. SpliceMix) on the same seed, and, per weight, the ViT's
gain minus the CNN's (Q3 on a ViT vs a CNN, at every weight)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..load import completed
from ..prose import diff_text, holm_sentence, level_text
from ..stats import ArgmaxResult, argmax_ci, diff_ci, fmt_num, holm_tables, paired_diff, paired_values, summarize
from .common import (
    PAPER_GAINS,
    PAPER_RATIO,
    Answer,
    cannot,
    common_changes,
    conditions,
    direction_word,
    length_text,
    pick_study,
    restrict,
)
from .q3 import is_vit

__all__ = ["TITLE", "TEXT", "PAPER_WEIGHT", "q3_cl_weight"]

TITLE = "Q3. The best SpliceMix-CL weight per model"
TEXT = (
    "Which consistency weight of SpliceMix-CL works best on a CNN and on a ViT, how much does each weight "
    "gain over weight 0 (the same training path without the consistency loss), and does the consistency loss "
    "help the ViT more or less than the CNN?"
)
#: the paper's consistency weight
PAPER_WEIGHT = 1.0


def _on_cl_path(df: pd.DataFrame) -> pd.Series:
    """SpliceMix-CL's trials at every weight: the runner records weight 0 as plain SpliceMix (study.schema
    drops the consistency forward it would multiply by 0), so those are SpliceMix trials at ``cl_weight`` 0.
    Only this answer counts them as a weight: to every other question (``common.restrict``) they are SpliceMix
    trials, to which the weight means nothing, so holding the weight at 1 keeps them as the SpliceMix arm."""
    return (df["method"] == "splicemix_cl") | ((df["method"] == "splicemix") & (df["cl_weight"] == 0))


def _score(g: pd.DataFrame) -> tuple | None:
    cl = g[_on_cl_path(g)]
    n = cl.groupby("model")["cl_weight"].nunique()
    n = n[n >= 2]
    return (len(n), int(n.max())) if len(n) else None


def _vs_zero(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """Every weight − weight 0 per model, seed-paired (unadjusted: Holm is applied with the ViT − CNN gaps)."""
    if not (d["cl_weight"] == 0).any():
        return pd.DataFrame()
    t = [
        paired_diff(d, "model", w, 0.0, "mAP", factor="cl_weight", level=level)
        for w in sorted(d["cl_weight"].unique())
        if w != 0
    ]
    return pd.concat(t, ignore_index=True).sort_values(["model", "treat"], ignore_index=True) if t else pd.DataFrame()


#: columns of the ``vit_vs_cnn`` table: ``treat`` the ViT, ``control`` the CNN, ``treat_mean`` / ``control_mean``
#: their mean gains over weight 0 (on the seeds used), ``mean`` the difference of the gains
_GAP = ["weight", "treat", "control", "mean", "sd", "n", "lo", "hi", "treat_mean", "control_mean", "method", "p"]


def _gap(g: pd.DataFrame, vit: str, cnn: str, level: float) -> dict | None:
    """One weight's ViT gain − CNN gain (``g``: that weight's per-seed gains): the mean of the per-seed
    (vit_w − vit_0) − (cnn_w − cnn_0) where the models share two or more seeds, else Welch's t on the gains."""
    a, b = (g[g["model"] == m].set_index("seed")["gain"] for m in (vit, cnn))
    if not (len(a) and len(b)):
        return None
    if len(a.index.intersection(b.index)) >= 2:
        r = paired_diff(g, None, vit, cnn, "gain", factor="model", level=level).iloc[0]
        return {**r.to_dict(), "method": "paired by seed"}
    ci = diff_ci(a.to_numpy(), b.to_numpy(), level)
    p = float(sps.ttest_ind(a, b, equal_var=False).pvalue) if min(len(a), len(b)) >= 2 else np.nan
    row = {"treat": vit, "control": cnn, **ci.as_dict(), "treat_mean": a.mean(), "control_mean": b.mean()}
    return {**row, "method": "Welch (seeds not shared)", "p": p, "resolved": ci.resolved}


def _vit_vs_cnn(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per weight > 0 and (ViT, CNN) pair: the ViT's seed-paired gain over weight 0 minus the CNN's."""
    if not (d["cl_weight"] == 0).any():
        return pd.DataFrame(columns=[*_GAP, "resolved"])
    gains = [
        paired_values(d, "model", w, 0.0, "mAP", factor="cl_weight").assign(weight=w)
        for w in sorted(d["cl_weight"].unique())
        if w != 0
    ]
    if not gains:
        return pd.DataFrame(columns=[*_GAP, "resolved"])
    g = pd.concat(gains, ignore_index=True).rename(columns={"diff": "gain"}).drop(columns=["treat", "control"])
    models = sorted(g["model"].unique())
    pairs = [(v, c) for v in models if is_vit(v) for c in models if not is_vit(c)]
    rows = [{"weight": w, **r} for v, c in pairs for w, gw in g.groupby("weight") if (r := _gap(gw, v, c, level))]
    return pd.DataFrame(rows, columns=[*_GAP, "resolved"])


def _helps(r: pd.Series) -> str:
    """What the ViT − CNN difference of CL gains says, by its (Holm-corrected) resolution."""
    if not (np.isfinite(r["lo"]) and np.isfinite(r["hi"])):
        return "CL's gains on the two cannot be compared"
    if not r["resolved"]:
        return "CL's gains on the ViT and on the CNN are not resolved apart"
    return f"CL helps the ViT {'more' if r['mean'] > 0 else 'less'} than the CNN"


def _gap_sentence(gap: pd.DataFrame, best: ArgmaxResult) -> str:
    """Whether CL helps the ViT more or less than the CNN (or not resolvably either), at each model's best weight."""
    if not len(gap):
        return ""
    vit, cnn = gap["treat"].iloc[0], gap["control"].iloc[0]
    bw = best.table.set_index("model")["best"]
    weights = list(dict.fromkeys(bw[m] for m in (vit, cnn) if m in bw and bw[m] != 0))
    rows = gap[(gap["treat"] == vit) & (gap["control"] == cnn) & gap["weight"].isin(weights)]
    if not len(rows):
        return f"ViT vs CNN: weight 0 is best on both {vit} and {cnn}, so CL helps neither at its best weight."
    parts = [
        f"at weight {level_text(r['weight'])} ({' and '.join(m for m in (vit, cnn) if bw.get(m) == r['weight'])}'s "
        f"best) {_helps(r)}: gain on {vit} − gain on {cnn} {diff_text(r)}, {r['method']}"
        for _, r in rows.iterrows()
    ]
    return "ViT vs CNN: " + "; ".join(parts) + "."


def _model_line(model: str, best: ArgmaxResult, vs0: pd.DataFrame, level: float) -> str:
    b = best.table[best.table["model"] == model].iloc[0]
    txt = f"{model}: best weight {level_text(b['best'])} (mAP {fmt_num(b['best_mean'])}"
    if np.isfinite(b["freq_best"]):
        txt += (
            f"; the argmax in {b['freq_best']:.0%} of seed resamples, {level:.0%} bootstrap interval "
            f"[{level_text(b['lo'])}, {level_text(b['hi'])}]"
        )
    txt += ")"
    r = vs0[(vs0["model"] == model) & (vs0["treat"] == b["best"])] if len(vs0) else vs0
    if len(r):
        txt += f"; weight {level_text(b['best'])} − weight 0: {diff_text(r.iloc[0])}"
    return txt


def _paper_line(vs0: pd.DataFrame, d: pd.DataFrame) -> str:
    """The paper's direction: SpliceMix-CL (weight 1) +0.5 over SpliceMix; here weight 1 − weight 0 per model."""
    gain = PAPER_GAINS[("splicemix_cl", "splicemix")]
    head = f"The paper: SpliceMix-CL at weight {PAPER_WEIGHT:g} {gain:+g} mAP over SpliceMix on MS-COCO."
    w1 = vs0[vs0["treat"] == PAPER_WEIGHT] if len(vs0) else vs0
    if not len(w1):
        return head + f" Weight {PAPER_WEIGHT:g} vs weight 0 was not tested here."
    parts = [
        f"{r['model']} {fmt_num(r['mean'], sign=True)}: {direction_word(r['mean'], bool(r['resolved']), gain)}"
        for _, r in w1.iterrows()
    ]
    return head + f" Here ({length_text(d)}; weight 1 − weight 0, Holm-corrected): " + "; ".join(parts) + "."


def q3_cl_weight(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """The best ``mix.cl_weight`` of SpliceMix-CL per model (argmax with a bootstrap over seeds), every
    weight's seed-paired gain over weight 0 and, per weight, the ViT's gain minus the CNN's (per seed
    (vit_w − vit_0) − (cnn_w − cnn_0)), Holm-corrected together within the answer.

    Tables: ``by_weight``, ``best``, ``best_freq``, ``vs_zero``, ``vit_vs_cnn``.
    """
    study, others = pick_study(df, _score)
    if study is None:
        why = "no study trains SpliceMix-CL at two or more consistency weights on one model (cfg.mix.cl_weight)"
        return cannot("q3_weight", TITLE, TEXT, why, df)
    d = completed(df[(df["study"] == study) & _on_cl_path(df)]).copy()
    # the method follows the weight (weight 0 is recorded as SpliceMix): not a factor to hold
    d, notes = restrict(d, keep={"model", "cl_weight", "method"}, prefer={"ratio": PAPER_RATIO, "grid": "default"})
    if others:
        notes.append(f"other studies that vary the CL weight were not used: {', '.join(others)}")
    best = argmax_ci(d, "cl_weight", "mAP", by="model", level=level, n_boot=n_boot, seed=seed)
    vs0, gap = holm_tables([_vs_zero(d, level), _vit_vs_cnn(d, level)], level)
    models = list(best.table["model"])
    both = any(is_vit(m) for m in models) and not all(is_vit(m) for m in models)
    verdict = "Best consistency weight per model: " + ". ".join(_model_line(m, best, vs0, level) for m in models)
    if not len(vs0):
        notes.append("weight 0 was not tested: no gain over the same path without the consistency loss")
    elif not both:
        notes.append("only one kind of model (ViT or CNN) trained at several weights: no ViT − CNN comparison")
    verdict = " ".join(x for x in (f"{verdict}.", _gap_sentence(gap, best), holm_sentence([vs0, gap], level)) if x)
    bullets = [f"{r['model']}, weight {level_text(r['treat'])} − 0: {diff_text(r)}" for _, r in vs0.iterrows()]
    bullets += [
        f"weight {level_text(r['weight'])}: gain on {r['treat']} − gain on {r['control']} {diff_text(r)}, {r['method']}"
        for _, r in gap.iterrows()
    ]
    return Answer(
        "q3_weight",
        TITLE,
        TEXT,
        True,
        verdict,
        study,
        partial=not both,
        bullets=bullets,
        tables={
            "by_weight": summarize(d, ["model", "cl_weight"], "mAP", level),
            "best": best.table,
            "best_freq": best.freq,
            "vs_zero": vs0,
            "vit_vs_cnn": gap,
        },
        conditions=conditions(df, d),
        changes=common_changes(d),
        notes=notes + best.notes,
        data=d,
        paper=_paper_line(vs0, d),
        key_results={f"best weight on {r['model']}": level_text(r["best"]) for _, r in best.table.iterrows()},
    )
