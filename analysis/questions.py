"""The paper's three open questions and its claims, answered from a tidy trial frame.

Every function takes the frame of :func:`analysis.load.load_studies` (any set of studies), finds
the study that can answer it by which configuration columns vary among its completed trials,
and returns an :class:`Answer`: tables, a plain-English verdict with numbers and intervals, the
conditions it holds for, and what would change it. When no loaded study can answer, the verdict
says so and names the search space that would.

Units: mAP in percent; differences in mAP points. Intervals: ``level`` two-sided t intervals
over seeds (seed-paired for differences); the best level and the quadratic peak use a bootstrap
over seeds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from .load import completed
from .stats import (argmax_ci, diff_ci, fmt_ci, fmt_num, mean_ci, paired_diff, paired_values, quad_vertex,
                    seeds_to_resolve, summarize)

__all__ = ["Answer", "q1_grid_scaling", "q2_ratio_by_data", "q3_cl_vit", "claims", "answer_all", "parse_grid",
           "varying", "SPACES", "conditions"]

#: the search space that answers each question
SPACES = {
    "q1": "search_spaces/grid_scaling.yaml",
    "q2": "search_spaces/ratio_data.yaml",
    "q3": "search_spaces/cl_vit.yaml",
    "claims": "search_spaces/ratio.yaml (ratio 0 is the baseline) or search_spaces/cl_vit.yaml",
}
#: configuration aliases that define a condition, in the order they are restricted
FACTORS = ["dataset", "image_size", "epochs", "model", "n_train", "imbalance", "method", "ratio", "grid", "cl_weight"]
_MIX_ONLY = {"method", "ratio", "grid"}  # meaningless for a baseline (no mixing) trial
_CL_ONLY = {"cl_weight"}  # meaningful for splicemix_cl only
_METHOD_NAMES = {"baseline": "baseline", "splicemix": "SpliceMix", "splicemix_cl": "SpliceMix-CL"}
_GRID_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


@dataclass
class Answer:
    """One question's answer. ``verdict`` is the plain-English answer with numbers; ``bullets``
    the per-condition details; ``tables`` the evidence; ``conditions`` what it holds for;
    ``changes`` what would change it. ``answerable`` is False when the data cannot answer;
    ``partial`` when they answer only part of the question."""

    key: str
    title: str
    question: str
    answerable: bool
    verdict: str
    study: Optional[str] = None
    partial: bool = False
    bullets: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: Optional[pd.DataFrame] = None

    def __str__(self) -> str:
        return f"{self.title}: {self.verdict}"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def parse_grid(text: Any) -> Optional[tuple[int, int, int]]:
    """``"2x3-2"`` -> (2, 3, 2); ``"2x2"`` -> (2, 2, 0); anything else (``"default"``, a list) -> None."""
    if not isinstance(text, str):
        return None
    m = _GRID_RE.match(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def _lv(v: Any) -> str:
    """A factor level as short text (2000.0 -> "2000", 0.25 -> "0.25")."""
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:g}"
    return str(v)


def _levels(s: pd.Series) -> str:
    vals = pd.unique(s.dropna())
    try:
        vals = sorted(vals)
    except TypeError:
        pass
    return ", ".join(_lv(v) for v in vals) if len(vals) else "n/a"


def _mname(m: str) -> str:
    return _METHOD_NAMES.get(m, m)


def _factor_mask(d: pd.DataFrame, f: str) -> pd.Series:
    if f in _MIX_ONLY:
        return d["arm"] != "baseline"
    if f in _CL_ONLY:
        return d["method"] == "splicemix_cl"
    return pd.Series(True, index=d.index)


def varying(d: pd.DataFrame) -> set[str]:
    """The :data:`FACTORS` that take more than one value among the completed trials of ``d``
    (mixing settings counted over mixing trials only)."""
    c = completed(d)
    out = set()
    for f in FACTORS:
        if f in c.columns and c.loc[_factor_mask(c, f), f].dropna().nunique() > 1:
            out.add(f)
    return out


def _restrict(d: pd.DataFrame, keep: Iterable[str], prefer: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Hold every varying factor outside ``keep`` at one level (``prefer``'s when tested, else the
    most frequent), so that the kept factors are compared under equal conditions."""
    notes = []
    keep = set(keep)
    for f in FACTORS:
        if f in keep or f not in d.columns:
            continue
        mask = _factor_mask(d, f)
        vals = d.loc[mask, f].dropna()
        if vals.nunique() <= 1:
            continue
        want = prefer.get(f)
        pick = want if want is not None and (vals == want).any() else vals.value_counts().idxmax()
        d = d[~mask | (d[f] == pick)]
        notes.append(f"the study also varies {f} ({_levels(vals)}); this answer holds {f} at {_lv(pick)}")
    return d, notes


def _pick_study(df: pd.DataFrame, score: Callable[[pd.DataFrame], Optional[tuple]]) -> tuple[Optional[str], list[str]]:
    """The study whose completed trials score highest (``score`` returns None when it cannot answer)."""
    c = completed(df)
    scored = []
    for name, g in c.groupby("study", sort=True):
        s = score(g)
        if s is not None:
            scored.append((s, len(g), name))
    if not scored:
        return None, []
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return scored[0][2], [n for _, _, n in scored[1:]]


def conditions(all_trials: pd.DataFrame, used: pd.DataFrame) -> dict[str, str]:
    """What an answer holds for, read from the data: study, data set, model, training, seeds, trials."""
    study = _levels(used["study"]) if len(used) else "n/a"
    whole = all_trials[all_trials["study"].isin(used["study"].unique())]
    out = {"study": study}
    ds = _levels(used["dataset"])
    if ds == "synthetic":
        n_val = _levels(used.get("cfg.data.synthetic.n_val", pd.Series(dtype=float)))
        k = _levels(used.get("cfg.data.synthetic.num_classes", pd.Series(dtype=float)))
        out["data"] = (f"synthetic shapes, {_levels(used['n_train'])} training / {n_val} validation images, "
                       f"{k} classes, imbalance {_levels(used['imbalance'])}, {_levels(used['image_size'])} px")
    else:
        out["data"] = f"{ds}, {_levels(used['image_size'])} px"
    pre = used.get("cfg.model.pretrained", pd.Series(dtype=object))
    out["model"] = _levels(used["model"]) + (" (from scratch)" if pre.isna().all() else " (pre-trained)")
    opt = _levels(used.get("cfg.optim.name", pd.Series(dtype=object)))
    lr = _levels(used.get("cfg.optim.lr", pd.Series(dtype=float)))
    bs = _levels(used.get("cfg.train.batch_size", pd.Series(dtype=float)))
    out["training"] = f"{_levels(used['epochs'])} epochs, batch {bs}, {opt} lr {lr}"
    mix = used[used["arm"] != "baseline"]
    if len(mix):
        out["mixing"] = (f"{', '.join(_mname(m) for m in sorted(mix['method'].unique()))}; ratio {_levels(mix['ratio'])};"
                         f" grids {_levels(mix['grid'])}")
    seeds = sorted(int(s) for s in used["seed"].dropna().unique())
    out["seeds"] = f"{len(seeds)} ({', '.join(map(str, seeds))})"
    counts = whole["status"].value_counts()
    other = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "completed")
    out["trials"] = (f"{len(used)} completed trials used; the study has {int(counts.get('completed', 0))} completed of "
                     f"{len(whole)}" + (f" ({other})" if other else ""))
    return out


def _resolved_word(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    if lo > 0:
        return "resolved, > 0"
    if hi < 0:
        return "resolved, < 0"
    return "not resolved: the interval includes 0"


def _diff_text(row: pd.Series | dict, digits: int = 2) -> str:
    """``+1.23 [0.40, 2.06] mAP points (3 seeds; resolved, > 0)``."""
    n = int(row["n"])
    return (f"{fmt_ci(row['mean'], row['lo'], row['hi'], digits, sign=True)} mAP points "
            f"({n} seed{'s' if n != 1 else ''}; {_resolved_word(row['lo'], row['hi'])})")


def _cannot(key: str, title: str, question: str, why: str, df: pd.DataFrame) -> Answer:
    studies = ", ".join(sorted(df["study"].unique())) if len(df) else "none"
    verdict = (f"The loaded results cannot answer this: {why} (studies loaded: {studies}). "
               f"{SPACES[key]} would: `python -m study.run {SPACES[key].split(' ')[0]}`.")
    return Answer(key, title, question, False, verdict,
                  changes=[f"Run {SPACES[key]} and pass its directory to the report."])


def _seed_hint(mean: float, sd: float, level: float) -> str:
    n = seeds_to_resolve(mean, sd, level)
    if not np.isfinite(n):
        return ""
    return f"about {int(n)} seeds would resolve a difference of {fmt_num(abs(mean))} points at this spread"


def _common_changes(d: pd.DataFrame) -> list[str]:
    ep = _levels(d["epochs"])
    size = _levels(d["image_size"])
    return [f"The setting is small: {ep} epochs, {size}-px {_levels(d['dataset'])} images, {_levels(d['model'])} "
            f"from scratch; the paper trains a pre-trained ResNet-101 at 448 px on MS-COCO/VOC. Longer training, "
            f"larger images or real data can change the size and even the sign of these effects."]


# --------------------------------------------------------------------------------------------
# Q1: grid scaling at a constant number of mixed images
# --------------------------------------------------------------------------------------------

Q1_TITLE = "Q1. Grid scaling at a constant number of mixed images"
Q1_TEXT = ("How does mAP change with the number of grid divisions (1x2, 2x2, 2x3, 3x3) and with the "
           "orientation at 4 cells (1x4 vs 2x2 vs 4x1) when the number of mixed images is held constant?")


def _q1_score(g: pd.DataFrame) -> Optional[tuple]:
    mix = g[g["arm"] != "baseline"]
    grids = {x for x in mix["grid"].dropna().unique() if parse_grid(x)}
    return (len(grids),) if len(grids) >= 2 else None


def q1_grid_scaling(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """mAP vs the number of grid cells and vs orientation (1x4 / 2x2 / 4x1), mixed images held constant.

    Tables: ``by_grid`` (mean and interval per grid), ``by_cells`` (per seed, grids with the same
    number of cells averaged), ``vs_ref`` (seed-paired difference of every grid from the reference
    grid, 2x2 when tested), ``trend`` (per-seed least-squares slope of mAP on cells), ``best``.
    """
    study, others = _pick_study(df, _q1_score)
    if study is None:
        return _cannot("q1", Q1_TITLE, Q1_TEXT, "no study varies the grid (cfg.mix.grids) among its mixing trials", df)
    d = completed(df[df["study"] == study])
    d = d[(d["arm"] != "baseline") & d["grid"].map(lambda x: parse_grid(x) is not None)].copy()
    d, notes = _restrict(d, keep={"grid"}, prefer={"ratio": 0.25, "method": "splicemix"})
    parsed = d["grid"].map(parse_grid)
    d["rows"] = parsed.map(lambda t: t[0])
    d["cols"] = parsed.map(lambda t: t[1])
    d["cells"] = parsed.map(lambda t: t[0] * t[1] - t[2])
    if (parsed.map(lambda t: t[2]) > 0).any():
        notes.append("some grids drop cells: 'cells' counts the kept ones (R*C - D)")
    if others:
        notes.append(f"other studies that vary the grid were not used: {', '.join(others)}")

    by_grid = summarize(d, "grid", "mAP", level)
    shape = d.groupby("grid")[["rows", "cols", "cells"]].first()
    by_grid = by_grid.join(shape, on="grid").sort_values(["cells", "rows"]).reset_index(drop=True)
    by_grid = by_grid[["grid", "rows", "cols", "cells", "mean", "sd", "n", "lo", "hi"]]
    per_seed = d.groupby(["cells", "seed"], as_index=False)["mAP"].mean()
    by_cells = summarize(per_seed, "cells", "mAP", level)

    # per-seed slope of mAP on cells: seeds are the replicates
    slopes = []
    for _, g in per_seed.groupby("seed"):
        if g["cells"].nunique() >= 2:
            slopes.append(float(np.polyfit(g["cells"].to_numpy(float), g["mAP"].to_numpy(float), 1)[0]))
    slope = mean_ci(slopes, level)
    trend = pd.DataFrame([{"slope_per_cell": slope.mean, "sd": slope.sd, "n": slope.n, "lo": slope.lo,
                           "hi": slope.hi}])

    grids = list(by_grid["grid"])
    ref = "2x2" if "2x2" in grids else d["grid"].value_counts().idxmax()
    vs = [paired_diff(d, None, g, ref, "mAP", factor="grid", level=level) for g in grids if g != ref]
    vs_ref = pd.concat(vs, ignore_index=True) if vs else pd.DataFrame()
    best = argmax_ci(d, "grid", "mAP", level=level, n_boot=n_boot, seed=seed)

    ratio = _levels(d["ratio"])
    bs = _levels(d.get("cfg.train.batch_size", pd.Series(dtype=float)))
    cells_txt = "; ".join(f"{int(r.cells)} cells {fmt_ci(r.mean, r.lo, r.hi)}" for r in by_cells.itertuples())
    if slope.n >= 2 and slope.resolved:
        trend_txt = (f"mAP {'falls' if slope.mean < 0 else 'rises'} with the number of cells: "
                     f"{fmt_ci(slope.mean, slope.lo, slope.hi, sign=True)} mAP points per extra cell "
                     f"(per-seed linear trend, {slope.n} seeds; resolved)")
    elif slope.n >= 2:
        trend_txt = (f"the data do not resolve a trend with the number of cells: "
                     f"{fmt_ci(slope.mean, slope.lo, slope.hi, sign=True)} mAP points per extra cell "
                     f"(per-seed linear trend, {slope.n} seeds; the interval includes 0)")
    else:
        trend_txt = f"with {slope.n} seed(s) the trend with the number of cells has no interval (slope {fmt_num(slope.mean, sign=True)})"
    b = best.table.iloc[0]
    best_txt = f"The best grid is {b['best']} (mAP {fmt_num(b['best_mean'])}"
    best_txt += (f"; the argmax in {b['freq_best']:.0%} of {n_boot} seed resamples)" if np.isfinite(b["freq_best"])
                 else "; one seed, no bootstrap)")
    orient = vs_ref[vs_ref["treat"].isin(["1x4", "4x1"])] if len(vs_ref) and ref == "2x2" else pd.DataFrame()
    if len(orient):
        orient_txt = "Orientation at 4 cells, seed-paired vs 2x2: " + "; ".join(
            f"{r['treat']} {_diff_text(r)}" for _, r in orient.iterrows()) + "."
    else:
        orient_txt = "Orientation (1x4 vs 2x2 vs 4x1) was not tested in this study."
    verdict = (f"At a constant number of mixed images (ratio {ratio} of the batch of {bs}), {trend_txt}. "
               f"Mean mAP by number of cells: {cells_txt}. {best_txt}. {orient_txt}")
    bullets = [f"{r['treat']} − {ref}: {_diff_text(r)}" for _, r in vs_ref.iterrows()] if len(vs_ref) else []

    changes = []
    for _, r in vs_ref.iterrows():
        if not r["resolved"] and r["n"] >= 2:
            h = _seed_hint(r["mean"], r["sd"], level)
            if h:
                changes.append(f"{r['treat']} vs {ref}: {h}.")
    if len(orient) == 0:
        changes.append("Adding 1x4 and 4x1 grids (as grid_scaling.yaml does) would answer the orientation part.")
    changes.append(f"The number of mixed images is fixed at ratio {ratio}; at another ratio the cost of smaller "
                   f"cells may weigh differently.")
    changes += _common_changes(d)
    return Answer("q1", Q1_TITLE, Q1_TEXT, True, verdict, study, partial=len(orient) == 0, bullets=bullets,
                  tables={"by_grid": by_grid, "by_cells": by_cells, "trend": trend, "vs_ref": vs_ref,
                          "best": best.freq},
                  conditions=conditions(df, d), changes=changes, notes=notes + best.notes, data=d)


# --------------------------------------------------------------------------------------------
# Q2: the best mixed-to-regular ratio per data-set size and imbalance
# --------------------------------------------------------------------------------------------

Q2_TITLE = "Q2. The best mixed-to-regular ratio per data-set size and class imbalance"
Q2_TEXT = "What is the best ratio of mixed to regular images |B'|/|B| for different data-set sizes and class imbalance?"
_CELL = ["n_train", "imbalance"]


def _q2_score(g: pd.DataFrame) -> Optional[tuple]:
    if "ratio" not in varying(g):  # at least two mixing ratios (baseline vs one ratio is not a ratio study)
        return None
    cells = [c for _, c in g.groupby(_CELL, dropna=False) if c["ratio"].nunique() >= 2]
    if not cells:
        return None
    return (len(cells), int(g["n_train"].nunique() > 1) + int(g["imbalance"].nunique() > 1))


def _cell_name(n_train: Any, imb: Any) -> str:
    return f"n_train {_lv(n_train)}, imbalance {_lv(imb)}"


def q2_ratio_by_data(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """Best ratio per (n_train, imbalance) cell: mean and interval per ratio, the argmax with its
    bootstrap frequency and interval, the quadratic peak, and seed-paired differences from ratio 0.

    Tables: ``by_ratio``, ``best``, ``best_freq``, ``vertex``, ``vs_zero``.
    """
    study, others = _pick_study(df, _q2_score)
    if study is None:
        return _cannot("q2", Q2_TITLE, Q2_TEXT, "no study varies the mixed ratio (cfg.mix.mixed_ratio) over at least "
                       "two mixing ratios", df)
    d = completed(df[df["study"] == study]).copy()
    d, notes = _restrict(d, keep={"ratio", "n_train", "imbalance"}, prefer={"method": "splicemix", "grid": "default"})
    if others:
        notes.append(f"other studies that vary the ratio were not used: {', '.join(others)}")
    by_ratio = summarize(d, _CELL + ["ratio"], "mAP", level)
    best = argmax_ci(d, "ratio", "mAP", by=_CELL, level=level, n_boot=n_boot, seed=seed)
    vertex = quad_vertex(d, "ratio", "mAP", by=_CELL, level=level, n_boot=n_boot, seed=seed)
    has_zero = (d["ratio"] == 0).any()
    vs = [paired_diff(d, _CELL, r, 0.0, "mAP", factor="ratio", level=level)
          for r in sorted(d["ratio"].unique()) if r != 0] if has_zero else []
    vs_zero = pd.concat(vs, ignore_index=True).sort_values(_CELL + ["treat"]) if vs else pd.DataFrame()
    if not has_zero:
        notes.append("ratio 0 (no mixing) was not tested: no comparison with no mixing")

    bullets = []
    for _, b in best.table.iterrows():
        cell = (b["n_train"], b["imbalance"])
        vx = _cell_rows(vertex, cell)
        txt = f"{_cell_name(*cell)}: best ratio {_ratio_txt(b['best'])} (mAP {fmt_num(b['best_mean'])}"
        if np.isfinite(b["freq_best"]):
            txt += (f"; the argmax in {b['freq_best']:.0%} of seed resamples, {level:.0%} bootstrap interval of the "
                    f"best ratio [{_lv(b['lo'])}, {_lv(b['hi'])}]")
        else:
            txt += "; one seed, no bootstrap"
        txt += ")"
        if len(vx) and np.isfinite(vx.iloc[0]["vertex"]):
            v = vx.iloc[0]
            txt += f"; quadratic peak {fmt_ci(v['vertex'], v['lo'], v['hi'], 3)}"
            if v["clipped"]:
                txt += " (clipped to the tested range)"
        if len(vs_zero):
            cz = _cell_rows(vs_zero, cell)
            parts = [f"{_lv(r['treat'])}: {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)}"
                     f"{' (resolved)' if r['resolved'] else ''}" for _, r in cz.iterrows()]
            if parts:
                txt += "; vs ratio 0 (seed-paired, mAP points): " + "; ".join(parts)
        bullets.append(txt)

    n_cells = len(best.table)
    bests = best.table
    if len(vs_zero):
        res = vs_zero[vs_zero["resolved"]]
        n_pos, n_neg = int((res["mean"] > 0).sum()), int((res["mean"] < 0).sum())
        resolve_txt = (f"Seed-paired differences from ratio 0 (no mixing): {len(res)} of {len(vs_zero)} resolved "
                       f"({n_pos} better, {n_neg} worse than no mixing)"
                       + ("; the other intervals include 0." if len(res) < len(vs_zero) else "."))
    else:
        resolve_txt = "Ratio 0 was not tested, so no comparison with no mixing."
    best_list = "; ".join(f"{_cell_name(r['n_train'], r['imbalance'])} → {_lv(r['best'])}" for _, r in bests.iterrows())
    ratios = _levels(d["ratio"])
    partial = not ({"n_train", "imbalance"} & varying(d))
    if partial:
        head = (f"This study varies only the ratio ({ratios}), at one data set ({_cell_name(*bests.iloc[0][_CELL])}): "
                f"there the best ratio is {_ratio_txt(bests.iloc[0]['best'])}. It cannot say how the best ratio depends on "
                f"data-set size or imbalance; {SPACES['q2']} would.")
    else:
        shift = _shift_text(bests)
        head = f"Best tested ratio ({ratios}) per cell: {best_list}. {shift}"
    verdict = f"{head} {resolve_txt}"

    changes = []
    if len(vs_zero):
        for _, r in vs_zero.iterrows():
            if not r["resolved"] and r["n"] >= 2:
                h = _seed_hint(r["mean"], r["sd"], level)
                if h:
                    changes.append(f"{_cell_name(r['n_train'], r['imbalance'])}, ratio {_lv(r['treat'])} vs 0: {h}.")
    changes = changes[:4] + (["(and similarly for the other unresolved comparisons)"] if len(changes) > 4 else [])
    low_freq = bests[bests["freq_best"] < 0.8]
    if len(low_freq):
        changes.append(f"In {len(low_freq)} of {n_cells} cells the best ratio wins fewer than 80% of the seed "
                       f"resamples: more seeds could move it to a neighbouring ratio.")
    changes.append("The epoch count is fixed, so a smaller data set also gets fewer optimisation steps; with "
                   "training run to convergence, mixing (an augmentation) could pay off at higher ratios.")
    changes.append(f"Only the ratios {ratios} were tested; the best value between them is read from the quadratic "
                   f"peak, which is an interpolation.")
    changes += _common_changes(d)
    return Answer("q2", Q2_TITLE, Q2_TEXT, True, verdict, study, partial=partial, bullets=bullets,
                  tables={"by_ratio": by_ratio, "best": best.table, "best_freq": best.freq, "vertex": vertex,
                          "vs_zero": vs_zero},
                  conditions=conditions(df, d), changes=changes, notes=notes + best.notes, data=d)


def _ratio_txt(r: Any) -> str:
    return f"{_lv(r)} = no mixing" if r == 0 else _lv(r)


def _same(col: pd.Series, v: Any) -> pd.Series:
    return col.isna() if pd.isna(v) else col.eq(v)


def _cell_rows(tab: pd.DataFrame, cell: tuple) -> pd.DataFrame:
    """The rows of ``tab`` for one (n_train, imbalance) cell (NaN matches NaN)."""
    return tab[_same(tab["n_train"], cell[0]) & _same(tab["imbalance"], cell[1])]


def _shift_text(bests: pd.DataFrame) -> str:
    """Does the best ratio move with n_train (within each imbalance)?"""
    out = []
    for imb, g in bests.groupby("imbalance", dropna=False):
        g = g.sort_values("n_train")
        if len(g) < 2:
            continue
        b = g["best"].astype(float).to_numpy()
        seq = " → ".join(f"{_lv(x)}" for x in b)
        if np.all(b == b[0]):
            word = "does not move"
        elif np.all(np.diff(b) >= 0):
            word = "grows"
        elif np.all(np.diff(b) <= 0):
            word = "shrinks"
        else:
            word = "moves non-monotonically"
        out.append(f"at imbalance {_lv(imb)} the best ratio {word} as the training set grows "
                   f"({_levels(g['n_train'])} images: {seq})")
    return ("; ".join(out).capitalize() + ".") if out else ""


# --------------------------------------------------------------------------------------------
# Q3: SpliceMix-CL on a ViT vs a CNN
# --------------------------------------------------------------------------------------------

Q3_TITLE = "Q3. Does SpliceMix-CL help a Vision Transformer as it helps a CNN?"
Q3_TEXT = ("Is the gain of SpliceMix-CL over SpliceMix (and of SpliceMix over the baseline) as large on a "
           "Vision Transformer as on a CNN?")


def _is_vit(model: str) -> bool:
    return "vit" in str(model).lower()


def _q3_score(g: pd.DataFrame) -> Optional[tuple]:
    models = [m for m, x in g.groupby("model") if {"splicemix", "splicemix_cl"} <= set(x["method"])]
    if not models:
        return None
    kinds = {_is_vit(m) for m in models}
    return (len(kinds), len(models))


def q3_cl_vit(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """Seed-paired SpliceMix-CL − SpliceMix and SpliceMix − baseline per model, and the difference of
    CL gains between a ViT and a CNN (the interaction), each with an interval.

    Tables: ``by_method`` (mean per model and arm), ``cl_gain``, ``mix_gain``, ``interaction``.
    """
    study, others = _pick_study(df, _q3_score)
    if study is None:
        return _cannot("q3", Q3_TITLE, Q3_TEXT,
                       "no study trains both SpliceMix and SpliceMix-CL on the same model (cfg.mix.method, "
                       "cfg.model.name)", df)
    d = completed(df[df["study"] == study]).copy()
    d, notes = _restrict(d, keep={"model", "method"}, prefer={"ratio": 0.25, "grid": "default", "cl_weight": 1.0})
    if others:
        notes.append(f"other studies with SpliceMix-CL were not used: {', '.join(others)}")
    by_method = summarize(d, ["model", "arm"], "mAP", level)
    cl_gain = paired_diff(d, "model", "splicemix_cl", "splicemix", "mAP", factor="arm", level=level)
    mix_gain = paired_diff(d, "model", "splicemix", "baseline", "mAP", factor="arm", level=level)
    models = list(cl_gain["model"])
    vits = [m for m in models if _is_vit(m)]
    cnns = [m for m in models if not _is_vit(m)]

    rows = []
    pv = paired_values(d, "model", "splicemix_cl", "splicemix", "mAP", factor="arm")
    for v in vits:
        for c in cnns:
            a = pv[pv["model"] == v].set_index("seed")["diff"]
            b = pv[pv["model"] == c].set_index("seed")["diff"]
            common = a.index.intersection(b.index)
            if len(common) >= 2:
                ci = mean_ci((a[common] - b[common]).to_numpy(), level)
                how = "paired by seed"
            else:
                ci = diff_ci(a.to_numpy(), b.to_numpy(), level)
                how = "Welch (seeds not shared)"
            rows.append({"vit": v, "cnn": c, "mean": ci.mean, "sd": ci.sd, "n": ci.n, "lo": ci.lo, "hi": ci.hi,
                         "method": how, "resolved": ci.resolved})
    interaction = pd.DataFrame(rows, columns=["vit", "cnn", "mean", "sd", "n", "lo", "hi", "method", "resolved"])

    def gain_line(tab: pd.DataFrame, what: str) -> str:
        if not len(tab):
            return f"{what}: not measurable (no seed-paired trials)."
        return f"{what}: " + "; ".join(f"{r['model']} {_diff_text(r)}" for _, r in tab.iterrows()) + "."

    bullets = [gain_line(cl_gain, "SpliceMix-CL − SpliceMix"), gain_line(mix_gain, "SpliceMix − baseline")]
    partial = not (vits and cnns)
    if partial:
        have = "ViT" if vits else "CNN"
        missing = "CNN" if vits else "ViT"
        head = (f"Only {have} models ({', '.join(models)}) were trained with both SpliceMix and SpliceMix-CL, so "
                f"the comparison with a {missing} cannot be made; {SPACES['q3']} would. ")
        verdict = head + bullets[0]
    else:
        it = interaction.iloc[0]
        v, c = it["vit"], it["cnn"]
        gv = cl_gain[cl_gain["model"] == v].iloc[0]
        gc = cl_gain[cl_gain["model"] == c].iloc[0]

        def effect(r: pd.Series) -> str:
            if not (np.isfinite(r["lo"]) and np.isfinite(r["hi"])):
                return "has no interval"
            return "helps" if r["lo"] > 0 else ("hurts" if r["hi"] < 0 else "has no resolved effect on")

        ev, ec = effect(gv), effect(gc)
        verdict = (f"SpliceMix-CL {ev} the ViT ({v}: {_diff_text(gv)}) and {ec} the CNN ({c}: {_diff_text(gc)}), "
                   f"CL − SpliceMix paired by seed. ")
        itxt = fmt_ci(it["mean"], it["lo"], it["hi"], sign=True)
        if it["resolved"]:
            verdict += (f"The CL gain is {'larger' if it['mean'] > 0 else 'smaller'} on the ViT than on the CNN: "
                        f"difference of gains ({v} − {c}) {itxt} mAP points ({it['method']}; resolved).")
        elif np.isfinite(it["lo"]):
            verdict += (f"The data do not resolve whether the CL gain differs between them: difference of gains "
                        f"({v} − {c}) {itxt} mAP points ({it['method']}; the interval includes 0).")
        else:
            verdict += f"The difference of gains ({v} − {c}) is {itxt} mAP points, with no interval."
        verdict += " " + bullets[1]
    changes = []
    for _, r in cl_gain.iterrows():
        if not r["resolved"] and r["n"] >= 2:
            h = _seed_hint(r["mean"], r["sd"], level)
            if h:
                changes.append(f"CL gain on {r['model']}: {h}.")
    if len(interaction) and not interaction.iloc[0]["resolved"] and interaction.iloc[0]["n"] >= 2:
        h = _seed_hint(interaction.iloc[0]["mean"], interaction.iloc[0]["sd"], level)
        if h:
            changes.append(f"The ViT − CNN difference of CL gains: {h}.")
    cw = _levels(d.loc[d["method"] == "splicemix_cl", "cl_weight"])
    changes.append(f"The consistency weight is {cw}; the best weight may differ between architectures "
                   f"(search it with --set \"space.mix.cl_weight={{grid: [0.5, 1.0, 2.0]}}\").")
    changes.append("A ViT trained from scratch on a few thousand images is far from converged and data-hungry; "
                   "pre-trained ViTs, larger images (more tokens per grid cell) or longer training may change "
                   "the gain.")
    changes += _common_changes(d)
    return Answer("q3", Q3_TITLE, Q3_TEXT, True, verdict, study, partial=partial, bullets=bullets,
                  tables={"by_method": by_method, "cl_gain": cl_gain, "mix_gain": mix_gain, "interaction": interaction},
                  conditions=conditions(df, d), changes=changes, notes=notes, data=d)


# --------------------------------------------------------------------------------------------
# the paper's claims
# --------------------------------------------------------------------------------------------

C_TITLE = {"claims_map": "Claim: SpliceMix and SpliceMix-CL improve mAP over the baseline",
           "claims_lowres": "Claim: robustness to low-resolution evaluation",
           "claims_cooc": "Claim: less co-occurrence bias"}
C_TEXT = {"claims_map": "Does SpliceMix (and SpliceMix-CL) raise mAP over training without mixing?",
          "claims_lowres": "Does SpliceMix keep more of its mAP when evaluated at a lower resolution than it was trained at?",
          "claims_cooc": ("Does SpliceMix do better on images whose class pairs were rare in training, i.e. rely less "
                          "on co-occurrence?")}
_C_CELL = ["study", "model", "n_train", "imbalance"]


def _variant(r: pd.Series) -> str:
    if r["arm"] == "baseline":
        return "baseline"
    return f"{_mname(r['method'])} (ratio {_lv(r['ratio'])}, grids {r['grid']})"


def _claims_data(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials of the studies that have both baseline and mixing trials, with ``variant``,
    ``headline`` (the paper's default setting, or the closest tested) and ``gap`` columns."""
    c = completed(df).copy()
    keep = [s for s, g in c.groupby("study") if (g["arm"] == "baseline").any() and (g["arm"] != "baseline").any()]
    c = c[c["study"].isin(keep)].copy()
    if not len(c):
        return c
    c["variant"] = c.apply(_variant, axis=1)
    c["gap"] = c["mAP_rare"] - c["mAP_common"]
    c["drop"] = c["mAP"] - c["mAP_low"]
    # the paper's default setting (ratio 0.25, default grids) per study and method, or the closest ratio
    c["headline"] = c["arm"] == "baseline"
    for (_, _), g in c[c["arm"] != "baseline"].groupby(["study", "method"]):
        cand = g[g["grid"] == "default"] if (g["grid"] == "default").any() else g
        dist = np.abs(cand["ratio"].to_numpy(float) - 0.25)
        if np.isfinite(dist).any():
            r = cand["ratio"].iloc[int(np.nanargmin(dist))]
            c.loc[cand.index[cand["ratio"] == r], "headline"] = True
        else:  # no numeric ratio (e.g. "paper"): every variant of the method is a headline
            c.loc[cand.index, "headline"] = True
    return c


def _vs_baseline(c: pd.DataFrame, value: str, level: float) -> pd.DataFrame:
    out = []
    for v in sorted(c.loc[c["variant"] != "baseline", "variant"].unique()):
        t = paired_diff(c, _C_CELL, v, "baseline", value, factor="variant", level=level)
        if len(t):
            out.append(t)
    if not out:
        return pd.DataFrame()
    t = pd.concat(out, ignore_index=True)
    head = set(c.loc[c["headline"], "variant"])
    t["headline"] = t["treat"].isin(head)
    return t


def _cell_label(r: pd.Series | dict, multi: bool) -> str:
    """``study: model`` (plus the data cell when the study has several)."""
    lab = f"{r['study']}: {r['model']}"
    if multi and pd.notna(r["n_train"]):
        lab += f", n_train {_lv(r['n_train'])}, imbalance {_lv(r['imbalance'])}"
    return lab


def _multi_cells(tab: pd.DataFrame) -> set[str]:
    """The studies with more than one (n_train, imbalance) data cell in ``tab``."""
    if not len(tab):
        return set()
    n = tab.groupby("study")[["n_train", "imbalance"]].apply(lambda g: len(g.drop_duplicates()))
    return set(n[n > 1].index)


def _claim_sentences(tab: pd.DataFrame, unit: str = "mAP points") -> list[str]:
    """One line per headline comparison, or one summary line per (study, variant) with many data cells."""
    out = []
    if not len(tab):
        return out
    multi = _multi_cells(tab)
    h = tab[tab["headline"]]
    for (study, treat), g in h.groupby(["study", "treat"], sort=False):
        if len(g) <= 2:
            for _, r in g.iterrows():
                out.append(f"{treat} − baseline [{_cell_label(r, study in multi)}]: "
                           + _diff_text(r).replace("mAP points", unit))
        else:
            pos, neg = int((g["lo"] > 0).sum()), int((g["hi"] < 0).sum())
            out.append(f"{treat} − baseline [{study}, {len(g)} data/model cells]: mean differences from "
                       f"{fmt_num(g['mean'].min(), sign=True)} to {fmt_num(g['mean'].max(), sign=True)} {unit}; "
                       f"resolved > 0 in {pos}, < 0 in {neg}, unresolved in {len(g) - pos - neg}")
    return out


def _claim_word(tab: pd.DataFrame, better: str = "pos") -> str:
    """The claim's status over the headline comparisons; ``better`` says which sign supports it."""
    h = tab[tab["headline"]] if len(tab) else tab
    if not len(h):
        return "cannot be judged (no seed-paired comparison)"
    pos, neg = int((h["lo"] > 0).sum()), int((h["hi"] < 0).sum())
    sup, con = (pos, neg) if better == "pos" else (neg, pos)
    n = len(h)
    every = "the one headline comparison" if n == 1 else f"all {n} headline comparisons"
    if sup == n:
        return f"holds here (resolved in {every})"
    if con == n:
        return f"does not hold here (resolved the other way in {every})"
    if sup and con:
        return f"is mixed: supported in {sup}, contradicted in {con}, unresolved in {n - sup - con} of {n} comparisons"
    if sup:
        return f"is supported in {sup} of {n} headline comparisons; the others are unresolved"
    if con:
        return f"is contradicted in {con} of {n} headline comparisons; the others are unresolved"
    return ("is not resolved by these data (the interval includes 0)" if n == 1
            else f"is not resolved by these data (none of the {n} intervals excludes 0)")


def _join(lines: list[str], limit: int = 4) -> str:
    if len(lines) <= limit:
        return "; ".join(lines)
    return "; ".join(lines[:limit]) + f"; and {len(lines) - limit} more (listed below)"


def _level_list(tab: pd.DataFrame, signed: bool = False, limit: int = 4) -> str:
    """``study: model 45.1 [44.0, 46.2]; ...`` for a summarize() table, or its range when long."""
    if len(tab) > limit:
        return (f"{fmt_num(tab['mean'].min(), sign=signed)} to {fmt_num(tab['mean'].max(), sign=signed)} "
                f"over {len(tab)} data/model cells")
    multi = _multi_cells(tab)
    return "; ".join(f"{_cell_label(r, r['study'] in multi)} {fmt_ci(r['mean'], r['lo'], r['hi'], sign=signed)}"
                     for _, r in tab.iterrows())


def claims(df: pd.DataFrame, level: float = 0.95) -> list[Answer]:
    """The paper's claims checked on every study with baseline and mixing trials:

    * ``claims_map``: SpliceMix / SpliceMix-CL − baseline on mAP (seed-paired);
    * ``claims_lowres``: the same on ``mAP_low`` (the smallest evaluation size) and on the drop
      mAP − mAP_low (negative = more robust than the baseline);
    * ``claims_cooc``: the rare-minus-common-pair gap per variant, its change vs the baseline, and
      the rare-pair mAP gain.

    The headline comparison is the paper's default (ratio 0.25, default grids) when tested, else the
    closest ratio; every tested variant is in the tables.
    """
    c = _claims_data(df)
    if not len(c):
        why = "no study has both baseline trials (method baseline or ratio 0) and mixing trials"
        return [_cannot("claims", C_TITLE[k], C_TEXT[k], why, df) for k in C_TITLE]
    notes = ["headline = the paper's default setting (ratio 0.25, default grids) when tested, else the closest "
             "tested ratio; every variant is in the tables"]
    common = _common_changes(c)
    out = []

    # mAP
    t_map = _vs_baseline(c, "mAP", level)
    s = _claim_sentences(t_map)
    verdict = (f"The claim {_claim_word(t_map)}. {_join(s)}. The paper reports +1.4 (SpliceMix) and +1.9 "
               f"(SpliceMix-CL) mAP points on MS-COCO with ResNet-101.")
    out.append(Answer("claims_map", C_TITLE["claims_map"], C_TEXT["claims_map"], True, verdict,
                      ", ".join(sorted(c["study"].unique())), bullets=s,
                      tables={"by_variant": summarize(c, _C_CELL + ["variant"], "mAP", level), "vs_baseline": t_map},
                      conditions=conditions(df, c), changes=[_ratio_hint(t_map)] + common, notes=notes, data=c))

    # low resolution
    low = c[c["mAP_low"].notna()]
    if not len(low):
        out.append(_cannot("claims", C_TITLE["claims_lowres"], C_TEXT["claims_lowres"],
                           "no trial was evaluated at a lower resolution (data.eval_sizes)", df))
    else:
        size, full = _levels(low["low_size"]), _levels(low["image_size"])
        t_low = _vs_baseline(low, "mAP_low", level)
        t_drop = _vs_baseline(low, "drop", level)
        s_low = _claim_sentences(t_low)
        s_drop = _claim_sentences(t_drop, "points of drop")
        base_drop = summarize(low[low["arm"] == "baseline"], _C_CELL, "drop", level)
        verdict = (f"Evaluated at {size} px (trained at {full} px), mAP of the mixed models vs the baseline: the "
                   f"claim {_claim_word(t_low)}. {_join(s_low)}. The baseline loses (mAP points, {full} → {size} px): "
                   f"{_level_list(base_drop)}; the mixed models' drop minus the baseline's (negative = more "
                   f"robust) {_claim_word(t_drop, better='neg').replace('holds here', 'is smaller here')}: "
                   f"{_join(s_drop)}.")
        out.append(Answer("claims_lowres", C_TITLE["claims_lowres"], C_TEXT["claims_lowres"], True, verdict,
                          ", ".join(sorted(low["study"].unique())), bullets=s_low + s_drop,
                          tables={"low_by_variant": summarize(low, _C_CELL + ["variant"], "mAP_low", level),
                                  "low_vs_baseline": t_low, "drop_vs_baseline": t_drop},
                          conditions=conditions(df, low),
                          changes=[f"The paper trains at 448 px and tests at 64 px (7x smaller); here the factor is "
                                   f"{full}/{size}: a larger factor tests the claim harder."] + common,
                          notes=notes, data=low))

    # co-occurrence
    co = c[c["mAP_rare"].notna() & c["mAP_common"].notna()]
    if not len(co):
        out.append(_cannot("claims", C_TITLE["claims_cooc"], C_TEXT["claims_cooc"],
                           "no trial reports mAP on rare / common class-pair images (synthetic data with co-occurring "
                           "pairs)", df))
    else:
        gap = summarize(co, _C_CELL + ["variant"], "gap", level)
        t_gap = _vs_baseline(co, "gap", level)
        t_rare = _vs_baseline(co, "mAP_rare", level)
        s_rare = _claim_sentences(t_rare)
        s_gap = _claim_sentences(t_gap, "points of gap")
        verdict = (f"On validation images whose class pairs were rare in training, mAP of the mixed models vs the "
                   f"baseline: the claim {_claim_word(t_rare)}. {_join(s_rare)}. The baseline's rare − common "
                   f"mAP gap (negative = co-occurrence bias): {_level_list(gap[gap['variant'] == 'baseline'], True)}. "
                   f"Change of that gap vs the baseline (positive = less bias): the claim {_claim_word(t_gap)}. "
                   f"{_join(s_gap)}.")
        out.append(Answer("claims_cooc", C_TITLE["claims_cooc"], C_TEXT["claims_cooc"], True, verdict,
                          ", ".join(sorted(co["study"].unique())), bullets=s_rare + s_gap,
                          tables={"gap_by_variant": gap, "gap_vs_baseline": t_gap, "rare_vs_baseline": t_rare},
                          conditions=conditions(df, co),
                          changes=["Rare- and common-pair images differ in which classes they hold, so the gap mixes "
                                   "class difficulty with co-occurrence bias; its change vs the baseline is the "
                                   "cleaner measure.",
                                   "The bias depends on data.synthetic.cooc_strength (how often pair partners "
                                   "co-occur in training); a stronger co-occurrence would test the claim harder."]
                          + common, notes=notes, data=co))
    return out


def _ratio_hint(t: pd.DataFrame) -> str:
    if not len(t):
        return "More seeds."
    nonhead = t[~t["headline"]]
    if len(nonhead):
        best = nonhead.loc[nonhead["mean"].idxmax()]
        return (f"Other settings change the answer: the best non-headline variant, {best['treat']}, is "
                f"{fmt_ci(best['mean'], best['lo'], best['hi'], sign=True)} mAP points vs the baseline "
                f"({best['study']}).")
    return "Only the headline setting was tested; other ratios or grids could change the answer."


def answer_all(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> list[Answer]:
    """Q1, Q2, Q3 and the claims, in that order."""
    return [q1_grid_scaling(df, level, n_boot, seed), q2_ratio_by_data(df, level, n_boot, seed),
            q3_cl_vit(df, level, n_boot, seed), *claims(df, level)]
