"""The methods table: baseline, MixUp, CutMix, SpliceMix and SpliceMix-CL on the same data and seeds
(mAP, CF1, OF1, each method's seed-paired difference from the baseline) beside the paper's MS-COCO
numbers, with whether each difference goes the paper's direction."""

from __future__ import annotations

import pandas as pd

from splicemix.results import final

from ..load import completed
from ..prose import holm_sentence, method_name
from ..stats import fmt_ci, fmt_num, holm_tables, paired_diff, summarize
from .common import PAPER_RATIO, Answer, cannot, common_changes, conditions, direction_word, pick_study, restrict

__all__ = ["TITLE", "TEXT", "PAPER_TABLE", "METHOD_METRICS", "methods_table"]

TITLE = "Methods: baseline, MixUp, CutMix, SpliceMix and SpliceMix-CL beside the paper"
TEXT = (
    "How do MixUp, CutMix, SpliceMix and SpliceMix-CL compare with the baseline (mAP, CF1, OF1) here, and do "
    "the differences go the paper's way?"
)
#: the metrics of the table (percent): the alias ``mAP`` and the trainer's CF1 / OF1 at threshold 0.5
METHOD_METRICS = ("mAP", "CF1", "OF1")
#: the paper's headline table (MS-COCO 2014, ResNet-101, 448 px): method -> (mAP, CF1, OF1)
PAPER_TABLE = {
    "baseline": (83.0, 77.9, 80.3),
    "mixup": (83.7, 78.4, 80.6),
    "cutmix": (83.5, 78.3, 80.5),
    "splicemix": (84.4, 79.1, 81.3),
    "splicemix_cl": (84.9, 79.7, 81.8),
}
_ORDER = list(PAPER_TABLE)


def _score(g: pd.DataFrame) -> tuple | None:
    """A study with the baseline, MixUp or CutMix, and at least three of the methods."""
    arms = set(g["arm"])
    ok = "baseline" in arms and arms & {"mixup", "cutmix"} and len(arms & set(_ORDER)) >= 3
    return (len(arms & set(_ORDER)),) if ok else None


def _paper(arm: str, metric: str) -> float:
    return PAPER_TABLE.get(arm, (float("nan"),) * 3)[METHOD_METRICS.index(metric)]


def _by_method(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """One row per method and metric: the mean over seeds with its interval, and the paper's number."""
    rows = []
    for m in METHOD_METRICS:
        s = summarize(d, "arm", m, level).assign(metric=m)
        s["paper"] = s["arm"].map(lambda a, m=m: _paper(a, m))
        rows.append(s)
    t = pd.concat(rows, ignore_index=True)
    t["order"] = t["arm"].map(lambda a: _ORDER.index(a) if a in _ORDER else len(_ORDER))
    t = t.sort_values(["metric", "order"]).drop(columns="order")
    t.insert(0, "method", t.pop("arm").map(method_name))
    return t[["method", "metric", "mean", "sd", "n", "lo", "hi", "paper"]]


def _vs_baseline(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """Every method − baseline on every metric, seed-paired, Holm-corrected over the table, with the
    paper's difference and whether the direction agrees."""
    t = [
        paired_diff(d, None, a, "baseline", m, factor="arm", level=level).assign(metric=m)
        for m in METHOD_METRICS
        for a in _ORDER[1:]
        if (d["arm"] == a).any() and d[m].notna().any()
    ]
    if not t:
        return pd.DataFrame()
    (out,) = holm_tables([pd.concat(t, ignore_index=True)], level)
    out["paper"] = [_paper(a, m) - _paper("baseline", m) for a, m in zip(out["treat"], out["metric"], strict=True)]
    out["direction"] = [direction_word(r["mean"], bool(r["resolved"]), r["paper"]) for _, r in out.iterrows()]
    out["treat"] = out["treat"].map(method_name)
    return out


def _verdict(by: pd.DataFrame, vs: pd.DataFrame, level: float) -> str:
    m = by[by["metric"] == "mAP"]
    means = "; ".join(
        f"{r['method']} {fmt_ci(r['mean'], r['lo'], r['hi'])} (paper {r['paper']:.1f})" for _, r in m.iterrows()
    )
    v = vs[vs["metric"] == "mAP"] if len(vs) else vs
    diffs = "; ".join(
        f"{r['treat']} {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)} (paper {r['paper']:+.1f}: {r['direction']})"
        for _, r in v.iterrows()
    )
    agree = int(v["direction"].str.startswith("agrees").sum()) if len(v) else 0
    against = int(v["direction"].str.startswith("disagrees").sum()) if len(v) else 0
    ranking = " < ".join(m.sort_values("mean")["method"])
    return (
        f"mAP per method, mean over seeds: {means}. Difference from the baseline on the same seed (mAP points): "
        f"{diffs}. On mAP {agree} of {len(v)} methods go the paper's direction resolved and {against} resolved "
        f"against it; the ranking here is {ranking} (the paper's: baseline < CutMix < MixUp < SpliceMix < "
        f"SpliceMix-CL). CF1 and OF1 are in the tables. {holm_sentence([vs], level)}"
    ).strip()


def methods_table(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """The methods table: per method mAP, CF1, OF1 (mean and interval over seeds) beside the paper's, and
    each method's seed-paired difference from the baseline (Holm over every method and metric).

    Tables: ``by_method``, ``vs_baseline``. ``n_boot`` and ``seed`` are accepted for a signature like the
    other questions' (no bootstrap here).
    """
    study, others = pick_study(df, _score)
    if study is None:
        why = (
            "no study trains the baseline, MixUp or CutMix, and at least three of baseline, MixUp, CutMix, "
            "SpliceMix, SpliceMix-CL (cfg.mix.method)"
        )
        return cannot("methods", TITLE, TEXT, why, df)
    d = completed(df[df["study"] == study]).copy()
    for m in METHOD_METRICS[1:]:
        d[m] = pd.to_numeric(d.get(final(m), pd.Series(float("nan"), index=d.index)), errors="coerce")
    d, notes = restrict(d, keep={"method", "arm"}, prefer={"ratio": PAPER_RATIO, "grid": "default", "cl_weight": 1.0})
    if others:
        notes.append(f"other studies with several methods were not used: {', '.join(others)}")
    by, vs = _by_method(d, level), _vs_baseline(d, level)
    arms = [method_name(a) for a in _ORDER if (d["arm"] == a).any()]
    return Answer(
        "methods",
        TITLE,
        TEXT,
        True,
        _verdict(by, vs, level),
        study,
        partial=len(arms) < len(_ORDER),
        bullets=[
            f"{r['treat']} − baseline, {r['metric']}: {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)} "
            f"(paper {r['paper']:+.1f}; {r['direction']})"
            for _, r in vs.iterrows()
        ],
        tables={"by_method": by, "vs_baseline": vs},
        conditions=conditions(df, d),
        changes=common_changes(d),
        notes=notes + [f"methods trained: {', '.join(arms)}; the paper's numbers: MS-COCO 2014, ResNet-101, 448 px"],
        data=d,
        paper=_paper_line(vs),
        key_results={"best method (mAP)": str(by[by["metric"] == "mAP"].sort_values("mean")["method"].iloc[-1])},
    )


def _paper_line(vs: pd.DataFrame) -> str:
    v = vs[vs["metric"] == "mAP"] if len(vs) else vs
    if not len(v):
        return ""
    parts = [
        f"{r['treat']} {fmt_num(r['mean'], sign=True)} vs {r['paper']:+.1f}: {r['direction']}" for _, r in v.iterrows()
    ]
    return "The paper's differences from its baseline on mAP vs these (Holm-corrected): " + "; ".join(parts) + "."
