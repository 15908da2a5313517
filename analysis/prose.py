"""The sentences of the answers: levels, differences with their intervals, and the claims' wording.

Pure text: every function takes numbers or a finished table (the columns of
:func:`analysis.stats.paired_diff` / :func:`analysis.stats.summarize`) and returns a string.
Numbers are written by :func:`analysis.stats.fmt_num` / :func:`analysis.stats.fmt_ci`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .load import EPOCHS_FORM, NOT_PRETRAINED, budget_parts
from .stats import fmt_ci, fmt_num, seeds_to_resolve

__all__ = [
    "METHOD_NAMES",
    "method_name",
    "level_text",
    "levels_text",
    "resolved_word",
    "holm_word",
    "resolution_signs",
    "holm_sentence",
    "diff_text",
    "seed_hint",
    "join_limited",
    "multi_cells",
    "cell_label",
    "level_list",
    "claim_sentences",
    "claim_word",
    "BUDGET_UNITS",
    "count_text",
    "form_label",
    "budget_text",
    "sign_word",
]

#: the paper's spelling of each ``cfg.mix.method``
METHOD_NAMES = {
    "baseline": "baseline",
    "mixup": "MixUp",
    "cutmix": "CutMix",
    "splicemix": "SpliceMix",
    "splicemix_cl": "SpliceMix-CL",
}


def method_name(method: str) -> str:
    """The paper's spelling of a method (``"splicemix_cl"`` -> ``"SpliceMix-CL"``)."""
    return METHOD_NAMES.get(method, method)


def level_text(v: Any) -> str:
    """A factor level as short text (2000.0 -> "2000", 0.25 -> "0.25", NaN -> "n/a")."""
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:g}"
    return str(v)


def levels_text(s: pd.Series) -> str:
    """The distinct levels of ``s``, sorted when they can be, comma-separated (``"n/a"`` when none)."""
    vals = pd.unique(s.dropna())
    try:
        vals = sorted(vals)
    except TypeError:
        pass
    return ", ".join(level_text(v) for v in vals) if len(vals) else "n/a"


def resolved_word(lo: float, hi: float) -> str:
    """Whether the interval [lo, hi] excludes 0, in words."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    if lo > 0:
        return "resolved, > 0"
    if hi < 0:
        return "resolved, < 0"
    return "not resolved: the interval includes 0"


def holm_word(row: pd.Series | dict) -> str:
    """Whether a contrast is resolved after Holm's correction (its ``p_holm`` below 1 - level), in words."""
    p = row.get("p_holm", np.nan)
    if p is None or not np.isfinite(p):
        return resolved_word(row["lo"], row["hi"])
    if row["resolved"]:
        return f"resolved after Holm, {'>' if row['mean'] > 0 else '<'} 0, p_holm {p:.2g}"
    if row.get("resolved_raw", False):
        return f"not resolved after Holm (p_holm {p:.2g}; the unadjusted interval excludes 0)"
    return f"not resolved: the interval includes 0, p_holm {p:.2g}"


def resolution_signs(tab: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(resolved > 0, resolved < 0) per row: by ``resolved`` (Holm-corrected where the table has ``p_holm``)
    and the sign of ``mean`` when the table has them, else by the interval ``lo`` / ``hi``."""
    if {"resolved", "mean"} <= set(tab.columns):
        res = tab["resolved"].astype(bool)
        return res & (tab["mean"] > 0), res & (tab["mean"] < 0)
    return tab["lo"] > 0, tab["hi"] < 0


def holm_sentence(tables: list[pd.DataFrame], level: float) -> str:
    """``"Holm-corrected within the question over N contrasts (...)."`` ("" when no table has ``p_holm``)."""
    ms = [int(t["holm_m"].iloc[0]) for t in tables if len(t) and "holm_m" in t.columns]
    if not ms:
        return ""
    m = ms[0]
    return (
        f"Holm-corrected within the question over {m} contrast{'s' if m != 1 else ''}: a contrast is resolved "
        f"when its Holm-adjusted paired-t p-value is below {1 - level:.2g} (intervals shown are the unadjusted "
        f"{level:.0%} ones)."
    )


def diff_text(row: pd.Series | dict, digits: int = 2) -> str:
    """A seed-paired difference: ``+1.23 [0.40, 2.06] mAP points (3 seeds; resolved, > 0)`` (the
    resolution after Holm when the row has ``p_holm``)."""
    n = int(row["n"])
    return (
        f"{fmt_ci(row['mean'], row['lo'], row['hi'], digits, sign=True)} mAP points "
        f"({n} seed{'s' if n != 1 else ''}; {holm_word(row)})"
    )


def seed_hint(mean: float, sd: float, level: float) -> str:
    """How many seeds would resolve a difference of ``mean`` at spread ``sd`` ("" when it cannot be said)."""
    n = seeds_to_resolve(mean, sd, level)
    if not np.isfinite(n):
        return ""
    return f"about {int(n)} seeds would resolve a difference of {fmt_num(abs(mean))} points at this spread"


def unresolved_hints(diffs: pd.DataFrame, label: Callable[[pd.Series], str], level: float) -> list[str]:
    """``"<label>: about N seeds would resolve ..."`` for every unresolved difference (with at least
    two seeds) of a table with ``resolved``, ``n``, ``mean`` and ``sd`` columns."""
    out = []
    for _, r in diffs.iterrows():
        if not r["resolved"] and r["n"] >= 2:
            h = seed_hint(r["mean"], r["sd"], level)
            if h:
                out.append(f"{label(r)}: {h}.")
    return out


def join_limited(lines: list[str], limit: int = 4) -> str:
    """The first ``limit`` lines joined by "; ", then how many more are listed below."""
    if len(lines) <= limit:
        return "; ".join(lines)
    return "; ".join(lines[:limit]) + f"; and {len(lines) - limit} more (listed below)"


def multi_cells(tab: pd.DataFrame) -> set[str]:
    """The studies with more than one (n_train, imbalance) data cell in ``tab``."""
    if not len(tab):
        return set()
    n = tab.groupby("study")[["n_train", "imbalance"]].apply(lambda g: len(g.drop_duplicates()))
    return set(n[n > 1].index)


def cell_label(r: pd.Series | dict, multi: bool) -> str:
    """``study: model`` (plus its starting weights and budget when the row has them, and the data cell
    when the study has several)."""
    lab = f"{r['study']}: {r['model']}"
    if r.get("pretrained", NOT_PRETRAINED) != NOT_PRETRAINED:
        lab += f" ({r['pretrained']})"
    if r.get("budget", EPOCHS_FORM) != EPOCHS_FORM:
        lab += f", {r['budget']}"
    if multi and pd.notna(r["n_train"]):
        lab += f", n_train {level_text(r['n_train'])}, imbalance {level_text(r['imbalance'])}"
    return lab


def level_list(tab: pd.DataFrame, signed: bool = False, limit: int = 4) -> str:
    """``study: model 45.1 [44.0, 46.2]; ...`` for a summarize() table, or its range when long."""
    if len(tab) > limit:
        return (
            f"{fmt_num(tab['mean'].min(), sign=signed)} to {fmt_num(tab['mean'].max(), sign=signed)} "
            f"over {len(tab)} data/model cells"
        )
    multi = multi_cells(tab)
    return "; ".join(
        f"{cell_label(r, r['study'] in multi)} {fmt_ci(r['mean'], r['lo'], r['hi'], sign=signed)}"
        for _, r in tab.iterrows()
    )


def claim_sentences(tab: pd.DataFrame, unit: str = "mAP points") -> list[str]:
    """One line per headline comparison vs the baseline, or one summary line per (study, variant)
    with many data cells."""
    out: list[str] = []
    if not len(tab):
        return out
    multi = multi_cells(tab)
    for (study, treat), g in tab[tab["headline"]].groupby(["study", "treat"], sort=False):
        if len(g) <= 2:
            out += [
                f"{treat} − baseline [{cell_label(r, study in multi)}]: " + diff_text(r).replace("mAP points", unit)
                for _, r in g.iterrows()
            ]
        else:
            p_s, n_s = resolution_signs(g)
            pos, neg = int(p_s.sum()), int(n_s.sum())
            out.append(
                f"{treat} − baseline [{study}, {len(g)} data/model cells]: mean differences from "
                f"{fmt_num(g['mean'].min(), sign=True)} to {fmt_num(g['mean'].max(), sign=True)} {unit}; "
                f"resolved > 0 in {pos}, < 0 in {neg}, unresolved in {len(g) - pos - neg}"
            )
    return out


def claim_word(tab: pd.DataFrame, better: str = "pos") -> str:
    """A claim's status over the headline comparisons of ``tab``; ``better`` says which sign supports it."""
    h = tab[tab["headline"]] if len(tab) else tab
    if not len(h):
        return "cannot be judged (no seed-paired comparison)"
    p_s, n_s = resolution_signs(h)
    pos, neg = int(p_s.sum()), int(n_s.sum())
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
    if "p_holm" in h.columns:
        return f"is not resolved by these data (none of the {n} headline contrasts is resolved after Holm)"
    return (
        "is not resolved by these data (the interval includes 0)"
        if n == 1
        else f"is not resolved by these data (none of the {n} intervals excludes 0)"
    )


#: what each form of a run's length holds equal, in the answers' words (the ``budget`` alias's kinds)
BUDGET_UNITS = {EPOCHS_FORM: "epochs", "images": "images seen", "steps": "steps", "seconds": "training seconds"}


def count_text(v: Any) -> str:
    """A count with thousands separators: 120000 -> "120,000", 300.5 -> "300.5" (text as given when not a number)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{int(x):,}" if x.is_integer() else f"{x:,g}"


def form_label(budget: str, epochs: pd.Series | None = None) -> str:
    """The label of a form of a run's length (a ``budget`` value): ``"at equal epochs (12)"`` (with the
    ``epochs`` levels), ``"at equal images seen (120,000)"``, ``"at equal steps (1,500)"``,
    ``"at equal training seconds (300)"``."""
    kind, amount = budget_parts(budget)
    amt = (levels_text(epochs) if epochs is not None else "n/a") if kind == EPOCHS_FORM else count_text(amount)
    return f"at equal {BUDGET_UNITS.get(kind, kind)}" + (f" ({amt})" if amt and amt != "n/a" else "")


def budget_text(budget: str) -> str:
    """A budget (a ``budget`` value other than ``"epochs"``) in words: ``"a budget of 120,000 images seen"``."""
    kind, amount = budget_parts(budget)
    return f"a budget of {count_text(amount)} {BUDGET_UNITS.get(kind, kind)}"


def sign_word(sign: int) -> str:
    """A contrast's direction: 1 -> "resolved > 0", -1 -> "resolved < 0", 0 -> "unresolved"."""
    return {1: "resolved > 0", -1: "resolved < 0"}.get(sign, "unresolved")
