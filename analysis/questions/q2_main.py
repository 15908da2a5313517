"""Q2 on the main job's data set: the best mixed-to-regular ratio (``ratio.yaml``'s question), from the
study that trained it longest toward convergence.

Q2 proper (:mod:`.q2`) asks how the best ratio moves with the training-set size and the imbalance,
and picks the study with the most data cells. The main job asks it on one data set: ratio 0 / 0.25 /
0.5 / 1 at the paper's default grids. This answer takes the studies that vary the ratio on exactly
one data cell and test ratio 0, and picks the one that tests the most ratios, then the one whose
trials converged most often (then the one with the most seeds, then the longest runs), so a
converged rerun of the main job (``ratio_converged.yaml``, its equal-images companion
``ratio_images.yaml`` run as a part of it) answers rather than the 16-epoch ``ratio.yaml``, and no
study of fewer ratios (the tuned preset's confirmation) does. Its contrasts: every ratio against no
mixing, and every other ratio against the best one, seed-paired, Holm-corrected over both tables
together.
"""

from __future__ import annotations

import pandas as pd

from ..load import completed
from ..prose import holm_sentence, level_text, levels_text, resolution_signs, unresolved_hints
from ..stats import argmax_ci, fmt_ci, fmt_num, holm_tables, paired_diff, summarize
from .common import (
    SPACES,
    Answer,
    cannot,
    common_changes,
    conditions,
    convergence_counts,
    paper_direction,
    pick_study,
    restrict,
    varying,
)

__all__ = ["TITLE", "TEXT", "q2_main_ratio"]

TITLE = "Q2 on the main job's data set. The best mixed-to-regular ratio at the longest training"
TEXT = (
    "On the main job's one data set, which ratio |B'|/|B| of mixed to regular images gives the best mAP, "
    "and by how much does it beat no mixing and the other ratios?"
)


def _score(g: pd.DataFrame) -> tuple | None:
    """Studies that vary the ratio (two mixing ratios at least) on one data cell, with ratio 0: the
    number of ratios tested, then the share of trials that converged, then the number of seeds, then the
    longest run (a study of fewer ratios, such as the tuned preset's confirmation of ratio 0, the default
    0.25 and the tuned ratio, never answers in place of the four ratios)."""
    if "ratio" not in varying(g) or g["n_train"].nunique(dropna=False) > 1 or g["imbalance"].nunique(dropna=False) > 1:
        return None
    if not (g["ratio"] == 0).any():
        return None
    counts = convergence_counts(g)
    share = counts[0] / counts[1] if counts else 0.0
    return (g["ratio"].nunique(), share, g["seed"].nunique(), float(g["epochs"].max()))


def _contrasts(d: pd.DataFrame, best: float, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every mixing ratio − ratio 0, and the best ratio − every other ratio (seed-paired), one Holm family."""
    ratios = sorted(d["ratio"].unique())
    vs_zero = [paired_diff(d, None, r, 0.0, "mAP", factor="ratio", level=level) for r in ratios if r != 0]
    vs_best = [paired_diff(d, None, best, r, "mAP", factor="ratio", level=level) for r in ratios if r not in (0, best)]
    tables = [pd.concat(t, ignore_index=True) if t else pd.DataFrame() for t in (vs_zero, vs_best)]
    zero, other = holm_tables(tables, level)
    return zero, other


def _diff_list(tab: pd.DataFrame, name: str) -> str:
    """``"0.25: +0.73 [+0.39, +1.07] (resolved)"`` per row, ``name`` naming the row's level."""
    return "; ".join(
        f"{level_text(r[name])}: {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)}"
        f"{' (resolved)' if r['resolved'] else ' (not resolved)'}"
        for _, r in tab.iterrows()
    )


def _verdict(best: pd.Series, by_ratio: pd.DataFrame, zero: pd.DataFrame, other: pd.DataFrame) -> str:
    b = best["best"]
    mean = by_ratio.loc[by_ratio["ratio"] == b].iloc[0]
    out = f"The best tested ratio is {level_text(b)} (mAP {fmt_ci(mean['mean'], mean['lo'], mean['hi'])}"
    out += (
        f"; the argmax in {best['freq_best']:.0%} of seed resamples)."
        if pd.notna(best["freq_best"])
        else "; one seed, no bootstrap)."
    )
    out += f" Against no mixing (ratio 0), seed-paired, mAP points: {_diff_list(zero, 'treat')}."
    if len(other):
        out += f" Ratio {level_text(b)} against each other ratio: {_diff_list(other, 'control')}."
    pos, neg = (int(x.sum()) for x in resolution_signs(zero))
    loses = f"loses at {neg}" if neg else "loses at none"
    return out + f" Mixing beats no mixing (resolved) at {pos} of {len(zero)} ratios and {loses}."


def q2_main_ratio(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Answer:
    """The best ratio on the main job's one data set, from the study that converged most often.

    Tables: ``by_ratio`` (mean and interval per ratio), ``best`` (the argmax with its bootstrap
    frequency), ``best_freq``, ``vs_zero`` (each ratio − 0) and ``vs_best`` (the best − each other ratio).
    """
    study, others = pick_study(df, _score)
    if study is None:
        why = "no study varies the mixed ratio on one data set with ratio 0 (no mixing) among its levels"
        return cannot("q2_main", TITLE, TEXT, why, df)
    d = completed(df[df["study"] == study]).copy()
    d, notes = restrict(d, keep={"ratio"}, prefer={"method": "splicemix", "grid": "default"})
    if others:
        notes.append(
            f"other one-data-set ratio studies not used (they converged less often or ran fewer seeds): "
            f"{', '.join(others)}"
        )
    by_ratio = summarize(d, "ratio", "mAP", level)
    best = argmax_ci(d, "ratio", "mAP", level=level, n_boot=n_boot, seed=seed)
    zero, other = _contrasts(d, best.table.iloc[0]["best"], level)
    verdict = f"{_verdict(best.table.iloc[0], by_ratio, zero, other)} {holm_sentence([zero, other], level)}"
    hints = unresolved_hints(
        pd.concat([zero, other]), lambda r: f"ratio {level_text(r['treat'])} vs {level_text(r['control'])}", level
    )
    return Answer(
        "q2_main",
        TITLE,
        TEXT,
        True,
        verdict.strip(),
        study,
        bullets=[
            f"ratio {level_text(r['ratio'])}: mAP {fmt_ci(r['mean'], r['lo'], r['hi'])} "
            f"({int(r['n'])} seeds, sd {fmt_num(r['sd'])})"
            for _, r in by_ratio.iterrows()
        ],
        tables={"by_ratio": by_ratio, "best": best.table, "best_freq": best.freq, "vs_zero": zero, "vs_best": other},
        conditions=conditions(df, d),
        changes=hints
        + [f"Only the ratios {levels_text(d['ratio'])} were tested; {SPACES['q2']} varies the data set too."]
        + common_changes(d),
        notes=notes + best.notes,
        data=d,
        paper=paper_direction(d, level),
        key_results={"best ratio": level_text(best.table.iloc[0]["best"])},
    )
