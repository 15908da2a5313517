"""Q3: is the gain of SpliceMix-CL over SpliceMix (and of SpliceMix over the baseline) as large on a
Vision Transformer as on a CNN?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..load import NOT_PRETRAINED, completed
from ..prose import diff_text, holm_sentence, holm_word, levels_text, unresolved_hints
from ..stats import diff_ci, fmt_ci, holm_tables, mean_ci, paired_diff, paired_values, summarize
from .common import (
    PAPER_RATIO,
    SPACES,
    Answer,
    cannot,
    common_changes,
    conditions,
    convergence_counts,
    paper_direction,
    pick_study,
    restrict,
    start_weights,
)

__all__ = ["TITLE", "TEXT", "is_vit", "q3_cl_vit"]

TITLE = "Q3. Does SpliceMix-CL help a Vision Transformer as it helps a CNN?"
TEXT = (
    "Is the gain of SpliceMix-CL over SpliceMix (and of SpliceMix over the baseline) as large on a "
    "Vision Transformer as on a CNN?"
)
_INTERACTION = ["vit", "cnn", "mean", "sd", "n", "lo", "hi", "method", "p", "resolved"]


@dataclass
class _Evidence:
    """Q3's tables and the models they compare."""

    by_method: pd.DataFrame
    cl_gain: pd.DataFrame
    mix_gain: pd.DataFrame
    interaction: pd.DataFrame
    vits: list[str]
    cnns: list[str]


def is_vit(model: str) -> bool:
    """Whether a model name is a Vision Transformer's (it contains "vit")."""
    return "vit" in str(model).lower()


def _score(g: pd.DataFrame) -> tuple | None:
    models = [m for m, x in g.groupby("model") if {"splicemix", "splicemix_cl"} <= set(x["method"])]
    if not models:
        return None
    return (len({is_vit(m) for m in models}), len(models))


def _interaction(d: pd.DataFrame, vits: list[str], cnns: list[str], level: float) -> pd.DataFrame:
    """The ViT's CL gain minus the CNN's, per (ViT, CNN) pair: paired by seed when they share two seeds."""
    rows = []
    pv = paired_values(d, "model", "splicemix_cl", "splicemix", "mAP", factor="arm")
    for v in vits:
        for c in cnns:
            a = pv[pv["model"] == v].set_index("seed")["diff"]
            b = pv[pv["model"] == c].set_index("seed")["diff"]
            common = a.index.intersection(b.index)
            if len(common) >= 2:
                x = (a[common] - b[common]).to_numpy()
                ci, how, p = mean_ci(x, level), "paired by seed", _p_one(x)
            else:
                ci, how = diff_ci(a.to_numpy(), b.to_numpy(), level), "Welch (seeds not shared)"
                p = _p_welch(a.to_numpy(), b.to_numpy())
            rows.append(
                {
                    "vit": v,
                    "cnn": c,
                    "mean": ci.mean,
                    "sd": ci.sd,
                    "n": ci.n,
                    "lo": ci.lo,
                    "hi": ci.hi,
                    "method": how,
                    "p": p,
                    "resolved": ci.resolved,
                }
            )
    return pd.DataFrame(rows, columns=_INTERACTION)


def _p_one(x: np.ndarray) -> float:
    """Two-sided one-sample t-test p-value of mean 0 (NaN below 2 values; 0 or 1 without spread)."""
    if len(x) < 2:
        return float("nan")
    if np.std(x) == 0:
        return 1.0 if np.mean(x) == 0 else 0.0
    return float(sps.ttest_1samp(x, 0.0).pvalue)


def _p_welch(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's two-sided p-value (NaN when a side has fewer than 2 values)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def _evidence(d: pd.DataFrame, level: float) -> _Evidence:
    """The gains per model and their ViT − CNN difference, Holm-corrected together (one family)."""
    cl_gain = paired_diff(d, "model", "splicemix_cl", "splicemix", "mAP", factor="arm", level=level)
    mix_gain = paired_diff(d, "model", "splicemix", "baseline", "mAP", factor="arm", level=level)
    models = list(cl_gain["model"])
    vits = [m for m in models if is_vit(m)]
    cnns = [m for m in models if not is_vit(m)]
    cl_gain, mix_gain, inter = holm_tables([cl_gain, mix_gain, _interaction(d, vits, cnns, level)], level)
    return _Evidence(summarize(d, ["model", "arm"], "mAP", level), cl_gain, mix_gain, inter, vits, cnns)


def _gain_line(tab: pd.DataFrame, what: str) -> str:
    if not len(tab):
        return f"{what}: not measurable (no seed-paired trials)."
    return f"{what}: " + "; ".join(f"{r['model']} {diff_text(r)}" for _, r in tab.iterrows()) + "."


def _effect(r: pd.Series) -> str:
    """What CL does to a model, by its gain's (Holm-corrected) resolution: helps / hurts / has no resolved effect on."""
    if not (np.isfinite(r["lo"]) and np.isfinite(r["hi"])):
        return "has no interval"
    if not r["resolved"]:
        return "has no resolved effect on"
    return "helps" if r["mean"] > 0 else "hurts"


def _compared_verdict(e: _Evidence, mix_line: str) -> str:
    """The verdict when a ViT and a CNN were both trained: each model's CL gain, then their difference."""
    it = e.interaction.iloc[0]
    v, c = it["vit"], it["cnn"]
    gv = e.cl_gain[e.cl_gain["model"] == v].iloc[0]
    gc = e.cl_gain[e.cl_gain["model"] == c].iloc[0]
    verdict = (
        f"SpliceMix-CL {_effect(gv)} the ViT ({v}: {diff_text(gv)}) and {_effect(gc)} the CNN "
        f"({c}: {diff_text(gc)}), CL − SpliceMix paired by seed. "
    )
    itxt = fmt_ci(it["mean"], it["lo"], it["hi"], sign=True)
    if it["resolved"]:
        verdict += (
            f"The CL gain is {'larger' if it['mean'] > 0 else 'smaller'} on the ViT than on the CNN: "
            f"difference of gains ({v} − {c}) {itxt} mAP points ({it['method']}; {holm_word(it)})."
        )
    elif np.isfinite(it["lo"]):
        verdict += (
            f"The data do not resolve whether the CL gain differs between them: difference of gains "
            f"({v} − {c}) {itxt} mAP points ({it['method']}; {holm_word(it)})."
        )
    else:
        verdict += f"The difference of gains ({v} − {c}) is {itxt} mAP points, with no interval."
    return verdict + " " + mix_line


def _one_kind_verdict(e: _Evidence, cl_line: str) -> str:
    """The verdict when only ViTs or only CNNs were trained with both methods."""
    have, missing = ("ViT", "CNN") if e.vits else ("CNN", "ViT")
    models = ", ".join(e.vits + e.cnns)
    return (
        f"Only {have} models ({models}) were trained with both SpliceMix and SpliceMix-CL, so "
        f"the comparison with a {missing} cannot be made; {SPACES['q3']} would. "
    ) + cl_line


def _changes(e: _Evidence, d: pd.DataFrame, level: float) -> list[str]:
    changes = unresolved_hints(e.cl_gain, lambda r: f"CL gain on {r['model']}", level)
    changes += unresolved_hints(e.interaction.head(1), lambda r: "The ViT − CNN difference of CL gains", level)
    cw = levels_text(d.loc[d["method"] == "splicemix_cl", "cl_weight"])
    changes.append(
        f"The consistency weight is {cw}; the best weight may differ between architectures "
        f"({SPACES['q3_weight']} searches it on both models)."
    )
    changes.append(_vit_change(d))
    return changes + common_changes(d)


def _vit_change(d: pd.DataFrame) -> str:
    """What a ViT's appetite for data may do to the gain: its starting weights, and how many ViT trials
    converged, when recorded."""
    vit = d[d["model"].map(is_vit)]
    weights = sorted(set(start_weights(vit)) - {NOT_PRETRAINED})
    start = (
        f"a ViT fine-tuned from weights pretrained on a few thousand images ({', '.join(weights)})"
        if weights
        else "a ViT trained from scratch on a few thousand images"
    )
    counts = convergence_counts(vit)
    done = "" if counts is None else f" ({counts[0]} of {counts[1]} ViT trials converged)"
    longer = " or longer training" if counts is None or counts[0] < counts[1] else ""
    better = "pretraining on a large data set (as ViTs usually get)" if weights else "pretrained ViTs"
    return (
        f"This is {start}, data-hungry{done}; {better}, larger images (more tokens per grid cell){longer} "
        "may change the gain."
    )


def q3_cl_vit(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """Seed-paired SpliceMix-CL − SpliceMix and SpliceMix − baseline per model, and the difference of
    CL gains between a ViT and a CNN (the interaction), each with an interval.

    Tables: ``by_method`` (mean per model and arm), ``cl_gain``, ``mix_gain``, ``interaction``.
    ``n_boot`` and ``seed`` are accepted for a signature like the other questions' (no bootstrap here).
    """
    study, others = pick_study(df, _score)
    if study is None:
        return cannot(
            "q3",
            TITLE,
            TEXT,
            "no study trains both SpliceMix and SpliceMix-CL on the same model (cfg.mix.method, cfg.model.name)",
            df,
        )
    d = completed(df[df["study"] == study]).copy()
    d, notes = restrict(d, keep={"model", "method"}, prefer={"ratio": PAPER_RATIO, "grid": "default", "cl_weight": 1.0})
    if others:
        notes.append(f"other studies with SpliceMix-CL were not used: {', '.join(others)}")
    e = _evidence(d, level)
    bullets = [_gain_line(e.cl_gain, "SpliceMix-CL − SpliceMix"), _gain_line(e.mix_gain, "SpliceMix − baseline")]
    partial = not (e.vits and e.cnns)
    verdict = _one_kind_verdict(e, bullets[0]) if partial else _compared_verdict(e, bullets[1])
    verdict = f"{verdict} {holm_sentence([e.cl_gain, e.mix_gain, e.interaction], level)}".rstrip()
    return Answer(
        "q3",
        TITLE,
        TEXT,
        True,
        verdict,
        study,
        partial=partial,
        bullets=bullets,
        tables={"by_method": e.by_method, "cl_gain": e.cl_gain, "mix_gain": e.mix_gain, "interaction": e.interaction},
        conditions=conditions(df, d),
        changes=_changes(e, d, level),
        notes=notes,
        data=d,
        paper=paper_direction(d, level),
    )
