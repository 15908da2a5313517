"""Q1: how mAP changes with the number of grid cells, and with the orientation at 4 cells
(1x4 / 2x2 / 4x1), when the number of mixed images is held constant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from splicemix.results import cfg_column

from ..load import completed
from ..prose import diff_text, holm_sentence, levels_text, unresolved_hints
from ..stats import CI, ArgmaxResult, argmax_ci, fmt_ci, fmt_num, holm_tables, mean_ci, paired_diff, summarize
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

__all__ = ["TITLE", "TEXT", "q1_grid_scaling"]

TITLE = "Q1. Grid scaling at a constant number of mixed images"
TEXT = (
    "How does mAP change with the number of grid divisions (1x2, 2x2, 2x3, 3x3) and with the "
    "orientation at 4 cells (1x4 vs 2x2 vs 4x1) when the number of mixed images is held constant?"
)
ORIENTATIONS = ["1x4", "4x1"]  # compared with 2x2


@dataclass
class _Evidence:
    """Q1's tables and the numbers its sentences quote."""

    by_grid: pd.DataFrame
    by_cells: pd.DataFrame
    trend: pd.DataFrame
    slope: CI
    ref: str
    vs_ref: pd.DataFrame
    orient: pd.DataFrame
    transposed: pd.DataFrame
    best: ArgmaxResult


def _whole(x: object) -> bool:
    """An RxC grid that drops no cell (the grids Q1's scaling compares; drops are :mod:`.q1_drops`')."""
    spec = grid_spec(x)
    return spec is not None and spec.drop == 0


def _score(g: pd.DataFrame) -> tuple | None:
    mix = g[g["arm"] != "baseline"]
    grids = {x for x in mix["grid"].dropna().unique() if _whole(x)}
    return (len(grids),) if len(grids) >= 2 else None


def _grid_trials(df: pd.DataFrame, study: str) -> tuple[pd.DataFrame, list[str]]:
    """The study's completed mixing trials with an RxC grid dropping no cell, other factors held, with
    rows / cols / cells."""
    d = completed(df[df["study"] == study])
    d = d[(d["arm"] != "baseline") & d["grid"].map(lambda x: grid_spec(x) is not None)].copy()
    if (~d["grid"].map(_whole)).any():
        d = d[d["grid"].map(_whole)]
        notes_drop = ["grids that drop cells (RxC-D) are left out here: the drops answer compares them"]
    else:
        notes_drop = []
    d, notes = restrict(d, keep={"grid"}, prefer={"ratio": PAPER_RATIO, "method": "splicemix"})
    notes = notes_drop + notes
    specs = d["grid"].map(grid_spec)
    d["rows"] = specs.map(lambda s: s.rows)
    d["cols"] = specs.map(lambda s: s.cols)
    d["cells"] = specs.map(lambda s: s.kept)
    if (specs.map(lambda s: s.drop) > 0).any():
        notes.append("some grids drop cells: 'cells' counts the kept ones (R*C - D)")
    return d, notes


def _slope(per_seed: pd.DataFrame, level: float) -> CI:
    """The per-seed least-squares slope of mAP on cells (seeds are the replicates), with its interval."""
    slopes = []
    for _, g in per_seed.groupby("seed"):
        if g["cells"].nunique() >= 2:
            slopes.append(float(np.polyfit(g["cells"].to_numpy(float), g["mAP"].to_numpy(float), 1)[0]))
    return mean_ci(slopes, level)


def _evidence(d: pd.DataFrame, level: float, n_boot: int, seed: int) -> _Evidence:
    by_grid = summarize(d, "grid", "mAP", level)
    shape = d.groupby("grid")[["rows", "cols", "cells"]].first()
    by_grid = by_grid.join(shape, on="grid").sort_values(["cells", "rows"]).reset_index(drop=True)
    by_grid = by_grid[["grid", "rows", "cols", "cells", "mean", "sd", "n", "lo", "hi"]]
    per_seed = d.groupby(["cells", "seed"], as_index=False)["mAP"].mean()
    slope = _slope(per_seed, level)
    trend = pd.DataFrame([{"slope_per_cell": slope.mean, "sd": slope.sd, "n": slope.n, "lo": slope.lo, "hi": slope.hi}])
    grids = list(by_grid["grid"])
    ref = "2x2" if "2x2" in grids else d["grid"].value_counts().idxmax()
    vs = [paired_diff(d, None, g, ref, "mAP", factor="grid", level=level) for g in grids if g != ref]
    vs_ref = pd.concat(vs, ignore_index=True) if vs else pd.DataFrame()
    vs_ref, transposed = holm_tables([vs_ref, _transposed(d, grids, level)], level)
    orient = vs_ref[vs_ref["treat"].isin(ORIENTATIONS)] if len(vs_ref) and ref == "2x2" else pd.DataFrame()
    return _Evidence(
        by_grid,
        summarize(per_seed, "cells", "mAP", level),
        trend,
        slope,
        ref,
        vs_ref,
        orient,
        transposed,
        argmax_ci(d, "grid", "mAP", level=level, n_boot=n_boot, seed=seed),
    )


def _transposed(d: pd.DataFrame, grids: list[str], level: float) -> pd.DataFrame:
    """Orientation at the same cells: every tested CxR − RxC (R < C: ``4x1 − 1x4``, ``3x2 − 2x3``), seed-paired."""
    specs = {g: grid_spec(g) for g in grids}
    pairs = [
        (t, g)
        for g, s in specs.items()
        for t, u in specs.items()
        if s is not None and u is not None and s.rows < s.cols and (u.rows, u.cols) == (s.cols, s.rows)
    ]
    out = [paired_diff(d, None, t, g, "mAP", factor="grid", level=level) for t, g in pairs]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _trend_text(slope: CI) -> str:
    per_cell = f"{fmt_ci(slope.mean, slope.lo, slope.hi, sign=True)} mAP points per extra cell"
    if slope.n >= 2 and slope.resolved:
        return (
            f"mAP {'falls' if slope.mean < 0 else 'rises'} with the number of cells: {per_cell} "
            f"(per-seed linear trend, {slope.n} seeds; resolved)"
        )
    if slope.n >= 2:
        return (
            f"the data do not resolve a trend with the number of cells: {per_cell} "
            f"(per-seed linear trend, {slope.n} seeds; the interval includes 0)"
        )
    return (
        f"with {slope.n} seed(s) the trend with the number of cells has no interval "
        f"(slope {fmt_num(slope.mean, sign=True)})"
    )


def _verdict(e: _Evidence, d: pd.DataFrame, n_boot: int, level: float) -> str:
    bs = levels_text(d.get(cfg_column("train.batch_size"), pd.Series(dtype=float)))
    cells_txt = "; ".join(f"{int(r.cells)} cells {fmt_ci(r.mean, r.lo, r.hi)}" for r in e.by_cells.itertuples())
    b = e.best.table.iloc[0]
    best_txt = f"The best grid is {b['best']} (mAP {fmt_num(b['best_mean'])}"
    best_txt += (
        f"; the argmax in {b['freq_best']:.0%} of {n_boot} seed resamples)"
        if np.isfinite(b["freq_best"])
        else "; one seed, no bootstrap)"
    )
    if len(e.orient):
        orient_txt = (
            "Orientation at 4 cells, seed-paired vs 2x2: "
            + "; ".join(f"{r['treat']} {diff_text(r)}" for _, r in e.orient.iterrows())
            + "."
        )
    else:
        orient_txt = "Orientation (1x4 vs 2x2 vs 4x1) was not tested in this study."
    if len(e.transposed):
        orient_txt += (
            " Transposed grids, seed-paired: "
            + "; ".join(f"{r['treat']} − {r['control']} {diff_text(r)}" for _, r in e.transposed.iterrows())
            + "."
        )
    return (
        f"At a constant number of mixed images (ratio {levels_text(d['ratio'])} of the batch of {bs}), "
        f"{_trend_text(e.slope)}. Mean mAP by number of cells: {cells_txt}. {best_txt}. {orient_txt} "
        + holm_sentence([e.vs_ref, e.transposed], level)
    ).rstrip()


def _changes(e: _Evidence, d: pd.DataFrame, level: float) -> list[str]:
    changes = unresolved_hints(e.vs_ref, lambda r: f"{r['treat']} vs {e.ref}", level)
    if len(e.orient) == 0:
        changes.append("Adding 1x4 and 4x1 grids (as grid_scaling.yaml does) would answer the orientation part.")
    changes.append(
        f"The number of mixed images is fixed at ratio {levels_text(d['ratio'])}; at another ratio the "
        f"cost of smaller cells may weigh differently."
    )
    return changes + common_changes(d)


def q1_grid_scaling(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """mAP vs the number of grid cells and vs orientation (1x4 / 2x2 / 4x1), mixed images held constant.

    Tables: ``by_grid`` (mean and interval per grid), ``by_cells`` (per seed, grids with the same
    number of cells averaged), ``vs_ref`` (seed-paired difference of every grid from the reference
    grid, 2x2 when tested), ``trend`` (per-seed least-squares slope of mAP on cells), ``best``.
    """
    study, others = pick_study(df, _score)
    if study is None:
        return cannot("q1", TITLE, TEXT, "no study varies the grid (cfg.mix.grids) among its mixing trials", df)
    d, notes = _grid_trials(df, study)
    if others:
        notes.append(f"other studies that vary the grid were not used: {', '.join(others)}")
    e = _evidence(d, level, n_boot, seed)
    bullets = [f"{r['treat']} − {e.ref}: {diff_text(r)}" for _, r in e.vs_ref.iterrows()] if len(e.vs_ref) else []
    return Answer(
        "q1",
        TITLE,
        TEXT,
        True,
        _verdict(e, d, n_boot, level),
        study,
        partial=len(e.orient) == 0,
        bullets=bullets,
        tables={
            "by_grid": e.by_grid,
            "by_cells": e.by_cells,
            "trend": e.trend,
            "vs_ref": e.vs_ref,
            "transposed": e.transposed,
            "best": e.best.freq,
        },
        conditions=conditions(df, d),
        changes=_changes(e, d, level),
        notes=notes + e.best.notes,
        data=d,
        paper=paper_direction(d, level),
        key_results={
            "best grid": str(e.best.table.iloc[0]["best"]),
            "trend with the number of cells": _trend_word(e.slope),
        },
    )


def _trend_word(slope: CI) -> str:
    """The trend with the number of cells in one word: falls / rises / unresolved."""
    if slope.n >= 2 and slope.resolved:
        return "falls" if slope.mean < 0 else "rises"
    return "unresolved"
