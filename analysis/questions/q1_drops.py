"""Q1, the drop count: how mAP changes with the number D of dropped cells of a grid (``RxC-D`` vs
``RxC``, seed-paired, the same mixed images), and how fixed drops compare with the authors' default
preset's random drops (``grids: default``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import completed
from ..prose import diff_text, holm_sentence, levels_text
from ..stats import argmax_ci, fmt_ci, fmt_num, holm_tables, mean_ci, paired_diff, summarize
from .common import (
    PAPER_RATIO,
    Answer,
    cannot,
    common_changes,
    conditions,
    grid_spec,
    paper_direction,
    pick_study,
    restrict,
)

__all__ = ["TITLE", "TEXT", "q1_drops"]

TITLE = "Q1. Dropped cells: mAP vs the number of dropped cells per grid"
TEXT = (
    "How does mAP change with the number of dropped cells D of a grid (RxC-D vs RxC on the same seed, "
    "the number of mixed images held constant), and how do fixed drops compare with the default preset's "
    "random drops?"
)
DEFAULT = "default"


def _shape(x: object) -> tuple[str, int] | None:
    """(``"RxC"``, D) of a grid text, None for anything else (``"default"``)."""
    s = grid_spec(x)
    return None if s is None else (f"{s.rows}x{s.cols}", s.drop)


def _score(g: pd.DataFrame) -> tuple | None:
    shapes = [_shape(x) for x in g.loc[g["arm"] != "baseline", "grid"].dropna().unique()]
    whole = {s[0] for s in shapes if s and s[1] == 0}
    dropped = [s for s in shapes if s and s[1] > 0 and s[0] in whole]
    return (len(dropped),) if dropped else None


def _slopes(d: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per base grid: the per-seed least-squares slope of mAP on D (mAP points per dropped cell)."""
    rows = []
    for base, g in d[d["base"] != DEFAULT].groupby("base"):
        per_seed = [
            float(np.polyfit(s["drop"].to_numpy(float), s["mAP"].to_numpy(float), 1)[0])
            for _, s in g.groupby("seed")
            if s["drop"].nunique() >= 2
        ]
        rows.append({"base": base, **mean_ci(per_seed, level).as_dict()})
    return pd.DataFrame(rows, columns=["base", "mean", "sd", "n", "lo", "hi"])


def _contrasts(d: pd.DataFrame, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every RxC-D − RxC, every fixed grid − the default preset), seed-paired, Holm-corrected together."""
    fixed = d[d["base"] != DEFAULT].drop_duplicates("grid").sort_values(["base", "drop"])
    vs0 = [
        paired_diff(d, None, r.grid, r.base, "mAP", factor="grid", level=level).assign(base=r.base, drop=r.drop)
        for r in fixed.itertuples()
        if r.drop > 0 and (d["grid"] == r.base).any()
    ]
    vd = [paired_diff(d, None, g, DEFAULT, "mAP", factor="grid", level=level) for g in fixed["grid"]]
    vd = vd if (d["grid"] == DEFAULT).any() else []
    frames = [pd.concat(x, ignore_index=True) if x else pd.DataFrame() for x in (vs0, vd)]
    vs_drop0, vs_default = holm_tables(frames, level)
    return vs_drop0, vs_default


def _base_text(base: str, t: pd.DataFrame, slope: pd.DataFrame) -> str:
    rows = t[t["base"] == base]
    s = slope[slope["base"] == base]
    txt = f"{base}: " + "; ".join(f"D={int(r['drop'])} {diff_text(r)}" for _, r in rows.iterrows())
    if len(s) and s.iloc[0]["n"] >= 2:
        r = s.iloc[0]
        txt += f" (per-seed slope {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)} mAP points per dropped cell)"
    return txt


def _default_text(vs_default: pd.DataFrame) -> str:
    if not len(vs_default):
        return "The default preset (random drops) was not tested in this study."
    better, worse = (
        vs_default[vs_default["resolved"] & (vs_default["mean"] > 0)],
        vs_default[vs_default["resolved"] & (vs_default["mean"] < 0)],
    )
    top = vs_default.loc[vs_default["mean"].idxmax()]
    return (
        f"Against the default preset's random drops (seed-paired): {len(better)} of {len(vs_default)} fixed grids "
        f"are resolved better and {len(worse)} worse; the best, {top['treat']}, {diff_text(top)}."
    )


def q1_drops(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """mAP vs the drop count D per grid (each ``RxC-D`` − ``RxC`` on the same seed, and a per-seed slope
    on D) and each fixed grid vs the default preset; contrasts Holm-corrected together.

    Tables: ``by_grid``, ``vs_drop0``, ``slope``, ``vs_default``, ``best``.
    """
    study, others = pick_study(df, _score)
    if study is None:
        why = "no study trains a grid both whole and with dropped cells (cfg.mix.grids RxC and RxC-D)"
        return cannot("q1_drops", TITLE, TEXT, why, df)
    d = completed(df[df["study"] == study])
    d = d[(d["arm"] != "baseline") & ((d["grid"] == DEFAULT) | d["grid"].map(lambda x: _shape(x) is not None))]
    d, notes = restrict(d.copy(), keep={"grid"}, prefer={"ratio": PAPER_RATIO, "method": "splicemix"})
    shapes = d["grid"].map(_shape)
    d = d.assign(base=shapes.map(lambda s: s[0] if s else DEFAULT), drop=shapes.map(lambda s: s[1] if s else np.nan))
    if others:
        notes.append(f"other studies with dropped cells were not used: {', '.join(others)}")
    vs_drop0, vs_default = _contrasts(d, level)
    slope = _slopes(d, level)
    best = argmax_ci(d, "grid", "mAP", level=level, n_boot=n_boot, seed=seed)
    b = best.table.iloc[0]
    verdict = (
        f"At a constant number of mixed images (ratio {levels_text(d['ratio'])}), each grid with D dropped cells "
        f"minus the same grid whole, seed-paired: "
        + ". ".join(_base_text(base, vs_drop0, slope) for base in sorted(vs_drop0["base"].unique()))
        + f". {_default_text(vs_default)} The best tested grid is {b['best']} (mAP {fmt_num(b['best_mean'])}). "
        + holm_sentence([vs_drop0, vs_default], level)
    ).strip()
    by_grid = summarize(d, ["base", "drop", "grid"], "mAP", level)
    return Answer(
        "q1_drops",
        TITLE,
        TEXT,
        True,
        verdict,
        study,
        partial=not len(vs_default),
        tables={"by_grid": by_grid, "vs_drop0": vs_drop0, "slope": slope, "vs_default": vs_default, "best": best.freq},
        conditions=conditions(df, d),
        changes=common_changes(d),
        notes=notes + best.notes,
        data=d,
        paper=paper_direction(d, level),
        key_results={"best grid": str(b["best"])},
    )
