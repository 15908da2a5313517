"""Q3, the weight: the best SpliceMix-CL consistency weight per model, and each weight's gain over
weight 0 (SpliceMix-CL's path with no consistency loss, i.e. SpliceMix) on the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import completed
from ..prose import diff_text, holm_sentence, level_text
from ..stats import ArgmaxResult, argmax_ci, fmt_num, holm_tables, paired_diff, summarize
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

__all__ = ["TITLE", "TEXT", "PAPER_WEIGHT", "q3_cl_weight"]

TITLE = "Q3. The best SpliceMix-CL weight per model"
TEXT = (
    "Which consistency weight of SpliceMix-CL works best on a CNN and on a ViT, and how much does each weight "
    "gain over weight 0 (the same training path without the consistency loss)?"
)
#: the paper's consistency weight
PAPER_WEIGHT = 1.0


def _score(g: pd.DataFrame) -> tuple | None:
    cl = g[g["method"] == "splicemix_cl"]
    n = cl.groupby("model")["cl_weight"].nunique()
    n = n[n >= 2]
    return (len(n), int(n.max())) if len(n) else None


def _vs_zero(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """Every weight − weight 0 per model, seed-paired, Holm-corrected over the table."""
    if not (d["cl_weight"] == 0).any():
        return pd.DataFrame()
    t = [
        paired_diff(d, "model", w, 0.0, "mAP", factor="cl_weight", level=level)
        for w in sorted(d["cl_weight"].unique())
        if w != 0
    ]
    (out,) = holm_tables([pd.concat(t, ignore_index=True).sort_values(["model", "treat"])], level)
    return out


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
    """The best ``mix.cl_weight`` of SpliceMix-CL per model (argmax with a bootstrap over seeds) and every
    weight's seed-paired gain over weight 0, Holm-corrected within the answer.

    Tables: ``by_weight``, ``best``, ``best_freq``, ``vs_zero``.
    """
    study, others = pick_study(df, _score)
    if study is None:
        why = "no study trains SpliceMix-CL at two or more consistency weights on one model (cfg.mix.cl_weight)"
        return cannot("q3_weight", TITLE, TEXT, why, df)
    d = completed(df[(df["study"] == study) & (df["method"] == "splicemix_cl")]).copy()
    d, notes = restrict(d, keep={"model", "cl_weight"}, prefer={"ratio": PAPER_RATIO, "grid": "default"})
    if others:
        notes.append(f"other studies that vary the CL weight were not used: {', '.join(others)}")
    best = argmax_ci(d, "cl_weight", "mAP", by="model", level=level, n_boot=n_boot, seed=seed)
    vs0 = _vs_zero(d, level)
    models = list(best.table["model"])
    verdict = "Best consistency weight per model: " + ". ".join(_model_line(m, best, vs0, level) for m in models)
    if not len(vs0):
        notes.append("weight 0 was not tested: no gain over the same path without the consistency loss")
    verdict = f"{verdict}. {holm_sentence([vs0], level)}".strip()
    return Answer(
        "q3_weight",
        TITLE,
        TEXT,
        True,
        verdict,
        study,
        partial=len(models) < 2,
        bullets=[f"{r['model']}, weight {level_text(r['treat'])} − 0: {diff_text(r)}" for _, r in vs0.iterrows()],
        tables={
            "by_weight": summarize(d, ["model", "cl_weight"], "mAP", level),
            "best": best.table,
            "best_freq": best.freq,
            "vs_zero": vs0,
        },
        conditions=conditions(df, d),
        changes=common_changes(d),
        notes=notes + best.notes,
        data=d,
        paper=_paper_line(vs0, d),
        key_results={f"best weight on {r['model']}": level_text(r["best"]) for _, r in best.table.iterrows()},
    )
