"""Q2: the best ratio |B'|/|B| of mixed to regular images per training-set size and class imbalance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..load import EPOCHS_FORM, completed
from ..prose import holm_sentence, level_text, levels_text, unresolved_hints
from ..stats import ArgmaxResult, argmax_ci, fmt_ci, fmt_num, holm_tables, paired_diff, quad_vertex, summarize
from .common import (
    SPACES,
    Answer,
    cannot,
    common_changes,
    conditions,
    convergence_counts,
    length_text,
    paper_direction,
    pick_study,
    restrict,
    varying,
)

__all__ = ["TITLE", "TEXT", "CELL", "q2_ratio_by_data"]

TITLE = "Q2. The best mixed-to-regular ratio per data-set size and class imbalance"
TEXT = "What is the best ratio of mixed to regular images |B'|/|B| for different data-set sizes and class imbalance?"
#: the data cell a best ratio is found for
CELL = ["n_train", "imbalance"]


@dataclass
class _Evidence:
    """Q2's tables."""

    by_ratio: pd.DataFrame
    best: ArgmaxResult
    vertex: pd.DataFrame
    vs_zero: pd.DataFrame


def _score(g: pd.DataFrame) -> tuple | None:
    if "ratio" not in varying(g):  # at least two mixing ratios (baseline vs one ratio is not a ratio study)
        return None
    cells = [c for _, c in g.groupby(CELL, dropna=False) if c["ratio"].nunique() >= 2]
    if not cells:
        return None
    return (len(cells), int(g["n_train"].nunique() > 1) + int(g["imbalance"].nunique() > 1))


def _cell_name(n_train: Any, imb: Any) -> str:
    return f"n_train {level_text(n_train)}, imbalance {level_text(imb)}"


def _ratio_text(r: Any) -> str:
    return f"{level_text(r)} = no mixing" if r == 0 else level_text(r)


def _same(col: pd.Series, v: Any) -> pd.Series:
    return col.isna() if pd.isna(v) else col.eq(v)


def _cell_rows(tab: pd.DataFrame, cell: tuple) -> pd.DataFrame:
    """The rows of ``tab`` for one (n_train, imbalance) cell (NaN matches NaN)."""
    return tab[_same(tab["n_train"], cell[0]) & _same(tab["imbalance"], cell[1])]


def _evidence(d: pd.DataFrame, level: float, n_boot: int, seed: int) -> _Evidence:
    by_ratio = summarize(d, CELL + ["ratio"], "mAP", level)
    best = argmax_ci(d, "ratio", "mAP", by=CELL, level=level, n_boot=n_boot, seed=seed)
    vertex = quad_vertex(d, "ratio", "mAP", by=CELL, level=level, n_boot=n_boot, seed=seed)
    vs = (
        [
            paired_diff(d, CELL, r, 0.0, "mAP", factor="ratio", level=level)
            for r in sorted(d["ratio"].unique())
            if r != 0
        ]
        if (d["ratio"] == 0).any()
        else []
    )
    vs_zero = pd.concat(vs, ignore_index=True).sort_values(CELL + ["treat"]) if vs else pd.DataFrame()
    (vs_zero,) = holm_tables([vs_zero], level)
    return _Evidence(by_ratio, best, vertex, vs_zero)


def _cell_bullet(b: pd.Series, e: _Evidence, level: float) -> str:
    """One cell's best ratio, how sure it is, the quadratic peak and the differences from ratio 0."""
    cell = (b["n_train"], b["imbalance"])
    txt = f"{_cell_name(*cell)}: best ratio {_ratio_text(b['best'])} (mAP {fmt_num(b['best_mean'])}"
    if np.isfinite(b["freq_best"]):
        txt += (
            f"; the argmax in {b['freq_best']:.0%} of seed resamples, {level:.0%} bootstrap interval of the "
            f"best ratio [{level_text(b['lo'])}, {level_text(b['hi'])}]"
        )
    else:
        txt += "; one seed, no bootstrap"
    txt += ")"
    vx = _cell_rows(e.vertex, cell)
    if len(vx) and np.isfinite(vx.iloc[0]["vertex"]):
        v = vx.iloc[0]
        txt += f"; quadratic peak {fmt_ci(v['vertex'], v['lo'], v['hi'], 3)}"
        if v["clipped"]:
            txt += " (clipped to the tested range)"
    if len(e.vs_zero):
        parts = [
            f"{level_text(r['treat'])}: {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)}"
            f"{' (resolved)' if r['resolved'] else ''}"
            for _, r in _cell_rows(e.vs_zero, cell).iterrows()
        ]
        if parts:
            txt += "; vs ratio 0 (seed-paired, mAP points): " + "; ".join(parts)
    return txt


def _shift_text(bests: pd.DataFrame) -> str:
    """Does the best ratio move with n_train (within each imbalance)?"""
    out = []
    for imb, g in bests.groupby("imbalance", dropna=False):
        g = g.sort_values("n_train")
        if len(g) < 2:
            continue
        b = g["best"].astype(float).to_numpy()
        seq = " → ".join(f"{level_text(x)}" for x in b)
        if np.all(b == b[0]):
            word = "does not move"
        elif np.all(np.diff(b) >= 0):
            word = "grows"
        elif np.all(np.diff(b) <= 0):
            word = "shrinks"
        else:
            word = "moves non-monotonically"
        out.append(
            f"at imbalance {level_text(imb)} the best ratio {word} as the training set grows "
            f"({levels_text(g['n_train'])} images: {seq})"
        )
    return ("; ".join(out).capitalize() + ".") if out else ""


def _resolve_text(vs_zero: pd.DataFrame) -> str:
    if not len(vs_zero):
        return "Ratio 0 was not tested, so no comparison with no mixing."
    res = vs_zero[vs_zero["resolved"]]
    n_pos, n_neg = int((res["mean"] > 0).sum()), int((res["mean"] < 0).sum())
    return (
        f"Seed-paired differences from ratio 0 (no mixing): {len(res)} of {len(vs_zero)} resolved "
        f"({n_pos} better, {n_neg} worse than no mixing)"
        + ("; the other intervals include 0." if len(res) < len(vs_zero) else ".")
    )


def _head(bests: pd.DataFrame, ratios: str, partial: bool) -> str:
    """The verdict's first sentences: the best ratio per cell, or at the one cell tested."""
    if partial:
        return (
            f"This study varies only the ratio ({ratios}), at one data set ({_cell_name(*bests.iloc[0][CELL])}): "
            f"there the best ratio is {_ratio_text(bests.iloc[0]['best'])}. It cannot say how the best ratio "
            f"depends on data-set size or imbalance; {SPACES['q2']} would."
        )
    best_list = "; ".join(
        f"{_cell_name(r['n_train'], r['imbalance'])} → {level_text(r['best'])}" for _, r in bests.iterrows()
    )
    return f"Best tested ratio ({ratios}) per cell: {best_list}. {_shift_text(bests)}"


def _changes(e: _Evidence, d: pd.DataFrame, level: float) -> list[str]:
    changes = unresolved_hints(
        e.vs_zero, lambda r: f"{_cell_name(r['n_train'], r['imbalance'])}, ratio {level_text(r['treat'])} vs 0", level
    )
    changes = changes[:4] + (["(and similarly for the other unresolved comparisons)"] if len(changes) > 4 else [])
    bests = e.best.table
    low_freq = bests[bests["freq_best"] < 0.8]
    if len(low_freq):
        changes.append(
            f"In {len(low_freq)} of {len(bests)} cells the best ratio wins fewer than 80% of the seed "
            f"resamples: more seeds could move it to a neighbouring ratio."
        )
    if d["n_train"].nunique() > 1:  # the length's effect on comparing sizes (one size: nothing to compare)
        changes.append(_length_change(d))
    changes.append(
        f"Only the ratios {levels_text(d['ratio'])} were tested; the best value between them is read from "
        f"the quadratic peak, which is an interpolation."
    )
    return changes + common_changes(d)


def _length_change(d: pd.DataFrame) -> str:
    """What the fixed length does to the comparison of data-set sizes, and (unless every trial converged)
    what training to convergence could do."""
    if "budget" not in d.columns or (d["budget"] == EPOCHS_FORM).all():
        head = "The epoch count is fixed, so a smaller data set also gets fewer optimisation steps"
    else:
        head = f"The compute is fixed ({length_text(d)}), so a smaller data set is seen for more epochs"
    counts = convergence_counts(d)
    if counts is not None and counts[0] == counts[1]:  # every trial converged: training longer is no remedy
        return head + "."
    return head + "; with training run to convergence, mixing (an augmentation) could pay off at higher ratios."


def q2_ratio_by_data(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """Best ratio per (n_train, imbalance) cell: mean and interval per ratio, the argmax with its
    bootstrap frequency and interval, the quadratic peak, and seed-paired differences from ratio 0.

    Tables: ``by_ratio``, ``best``, ``best_freq``, ``vertex``, ``vs_zero``.
    """
    study, others = pick_study(df, _score)
    if study is None:
        return cannot(
            "q2",
            TITLE,
            TEXT,
            "no study varies the mixed ratio (cfg.mix.mixed_ratio) over at least two mixing ratios",
            df,
        )
    d = completed(df[df["study"] == study]).copy()
    d, notes = restrict(d, keep={"ratio", "n_train", "imbalance"}, prefer={"method": "splicemix", "grid": "default"})
    if others:
        notes.append(f"other studies that vary the ratio were not used: {', '.join(others)}")
    e = _evidence(d, level, n_boot, seed)
    if not (d["ratio"] == 0).any():
        notes.append("ratio 0 (no mixing) was not tested: no comparison with no mixing")
    partial = not ({"n_train", "imbalance"} & varying(d))
    verdict = f"{_head(e.best.table, levels_text(d['ratio']), partial)} {_resolve_text(e.vs_zero)}"
    verdict = f"{verdict} {holm_sentence([e.vs_zero], level)}".rstrip()
    return Answer(
        "q2",
        TITLE,
        TEXT,
        True,
        verdict,
        study,
        partial=partial,
        bullets=[_cell_bullet(b, e, level) for _, b in e.best.table.iterrows()],
        tables={
            "by_ratio": e.by_ratio,
            "best": e.best.table,
            "best_freq": e.best.freq,
            "vertex": e.vertex,
            "vs_zero": e.vs_zero,
        },
        conditions=conditions(df, d),
        changes=_changes(e, d, level),
        notes=notes + e.best.notes,
        data=d,
        paper=paper_direction(d, level),
        key_results={
            f"best ratio at {_cell_name(r['n_train'], r['imbalance'])}": level_text(r["best"])
            for _, r in e.best.table.iterrows()
        },
    )
