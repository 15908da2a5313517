"""Small-sample statistics over seeds: means with intervals, seed-paired differences, the best
level of a factor with its bootstrap uncertainty, and the vertex of a quadratic fit.

Seeds are the unit of replication: a trial is one seed of one configuration. Every interval is
two-sided at ``level``; ``method="t"`` is Student's t (``scipy.stats.t``), ``"bootstrap"`` the
percentile bootstrap of the mean. With one value there is no interval: ``lo``/``hi`` are NaN
and ``note`` says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from splicemix.results import CONVERGENCE_MIN_GAIN, CONVERGENCE_WINDOW

__all__ = [
    "CI",
    "mean_ci",
    "summarize",
    "paired_values",
    "paired_diff",
    "diff_ci",
    "argmax_ci",
    "ArgmaxResult",
    "quad_vertex",
    "seeds_to_resolve",
    "holm",
    "holm_tables",
    "plateau_table",
    "fmt_ci",
    "fmt_num",
]

Method = Literal["t", "bootstrap"]


@dataclass(frozen=True)
class CI:
    """A mean with a two-sided interval. ``lo``/``hi`` are NaN when there is no interval (see ``note``)."""

    mean: float
    lo: float
    hi: float
    sd: float
    n: int
    level: float = 0.95
    method: str = "t"
    note: str = ""

    @property
    def resolved(self) -> bool:
        """True when the interval exists and excludes 0."""
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi) and (self.lo > 0 or self.hi < 0))

    def as_dict(self) -> dict[str, Any]:
        """``mean``, ``sd``, ``n``, ``lo``, ``hi`` (the columns of :func:`summarize`)."""
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "lo": self.lo, "hi": self.hi}

    def __str__(self) -> str:
        return fmt_ci(self.mean, self.lo, self.hi)


def fmt_num(x: float, digits: int = 2, sign: bool = False) -> str:
    """A number for text: ``nan`` as ``n/a``, ``-0.00`` as ``0.00``."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if round(float(x), digits) == 0:
        x = 0.0
        sign = False
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2, sign: bool = False) -> str:
    """``"45.29 [44.10, 46.48]"``, or ``"45.29 (no interval: n=1)"`` when the interval is missing."""
    m = fmt_num(mean, digits, sign)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m} (no interval)"
    return f"{m} [{fmt_num(lo, digits, sign)}, {fmt_num(hi, digits, sign)}]"


def _clean(values: Any) -> np.ndarray:
    a = np.asarray(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"), dtype=float).ravel()
    return a[np.isfinite(a)]


def mean_ci(values: Any, level: float = 0.95, method: Method = "t", n_boot: int = 4000, seed: int | None = 0) -> CI:
    """Mean, interval, standard deviation (ddof=1) and count of ``values`` (NaNs dropped).

    ``method="t"``: mean ± t_{(1+level)/2, n-1} · sd/√n. ``"bootstrap"``: percentile interval of
    ``n_boot`` resampled means (generator seeded with ``seed``). n=1: no interval; n=0: all NaN.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    a = _clean(values)
    n = int(a.size)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, math.nan, 0, level, method, "no values")
    m = float(a.mean())
    if n == 1:
        return CI(m, math.nan, math.nan, math.nan, 1, level, method, "n=1: one seed, no interval")
    sd = float(a.std(ddof=1))
    if sd == 0:
        return CI(m, m, m, 0.0, n, level, method, "all values equal")
    if method == "t":
        half = float(sps.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        return CI(m, m - half, m + half, sd, n, level, method)
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return CI(m, float(lo), float(hi), sd, n, level, method)


def _by_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def summarize(
    df: pd.DataFrame,
    by: str | Sequence[str] | None,
    value: str,
    level: float = 0.95,
    method: Method = "t",
    n_boot: int = 4000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """One row per group of ``by``: ``mean``, ``sd``, ``n``, ``lo``, ``hi`` of ``value``."""
    keys = _by_list(by)
    rows = []
    groups = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for k, g in groups:
        k = k if isinstance(k, tuple) else (k,)
        ci = mean_ci(g[value], level, method, n_boot, seed)
        rows.append({**dict(zip(keys, k, strict=True)), **ci.as_dict()})
    return pd.DataFrame(rows, columns=keys + ["mean", "sd", "n", "lo", "hi"])


def paired_values(
    df: pd.DataFrame,
    by: str | Sequence[str] | None,
    treat: Any,
    control: Any,
    value: str,
    pair_on: str = "seed",
    factor: str = "method",
) -> pd.DataFrame:
    """The seed-paired differences behind :func:`paired_diff`: one row per (``by``, ``pair_on``) with
    ``treat``, ``control`` and ``diff`` = treat - control. Repeated trials of a cell are averaged;
    a seed missing on either side is left out."""
    keys = _by_list(by)
    sub = df[df[factor].isin([treat, control]) & df[value].notna()]
    cell = sub.groupby(keys + [pair_on, factor], dropna=False)[value].mean().reset_index()
    wide = cell.pivot_table(index=keys + [pair_on], columns=factor, values=value, dropna=False)
    cols = keys + [pair_on, "treat", "control", "diff"]
    if treat not in wide.columns or control not in wide.columns:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"treat": wide[treat], "control": wide[control]}).dropna().reset_index()
    out["diff"] = out["treat"] - out["control"]
    return out[cols]


def paired_diff(
    df: pd.DataFrame,
    by: str | Sequence[str] | None,
    treat: Any,
    control: Any,
    value: str,
    pair_on: str = "seed",
    factor: str = "method",
    level: float = 0.95,
    method: Method = "t",
    n_boot: int = 4000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Seed-paired difference ``treat - control`` of ``value`` per group of ``by``.

    ``treat`` and ``control`` are levels of the column ``factor``; a pair is the same ``pair_on``
    (seed) and the same ``by`` values (the other conditions). Returns one row per group with
    ``mean``, ``sd``, ``n`` (pairs), ``lo``, ``hi``, ``treat_mean``, ``control_mean``, ``p``
    (two-sided paired t test; NaN below 2 pairs) and ``resolved`` (the interval excludes 0).
    """
    keys = _by_list(by)
    pv = paired_values(df, keys, treat, control, value, pair_on, factor)
    cols = keys + ["treat", "control", "mean", "sd", "n", "lo", "hi", "treat_mean", "control_mean", "p", "resolved"]
    rows = []
    groups = pv.groupby(keys, dropna=False, sort=True) if keys else ([((), pv)] if len(pv) else [])
    for k, g in groups:
        k = k if isinstance(k, tuple) else (k,)
        ci = mean_ci(g["diff"], level, method, n_boot, seed)
        p = math.nan
        if ci.n >= 2:
            p = (
                1.0
                if ci.sd == 0 and ci.mean == 0
                else (0.0 if ci.sd == 0 else float(sps.ttest_1samp(g["diff"], 0.0).pvalue))
            )
        rows.append(
            {
                **dict(zip(keys, k, strict=True)),
                "treat": treat,
                "control": control,
                **ci.as_dict(),
                "treat_mean": float(g["treat"].mean()),
                "control_mean": float(g["control"].mean()),
                "p": p,
                "resolved": ci.resolved,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def diff_ci(a: Any, b: Any, level: float = 0.95, paired: bool = False) -> CI:
    """Interval of mean(a) - mean(b): paired (same length, element-wise) or Welch's unequal-variance t."""
    if paired:
        a, b = np.asarray(a, float), np.asarray(b, float)
        return mean_ci(a - b, level)
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return CI(math.nan, math.nan, math.nan, math.nan, 0, level, "welch", "a side has no values")
    d = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return CI(
            d,
            math.nan,
            math.nan,
            math.nan,
            int(min(x.size, y.size)),
            level,
            "welch",
            "a side has one value: no interval",
        )
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return CI(d, d, d, 0.0, int(min(x.size, y.size)), level, "welch", "no spread")
    dof = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(sps.t.ppf((1 + level) / 2, dof)) * se
    return CI(d, d - half, d + half, se * math.sqrt(min(x.size, y.size)), int(min(x.size, y.size)), level, "welch")


def seeds_to_resolve(mean: float, sd: float, level: float = 0.95) -> float:
    """Roughly how many seeds make a t interval of a (paired) difference of this size and spread
    exclude 0: the smallest n with t_{n-1} · sd/√n < |mean| (NaN when it cannot be said)."""
    if not (np.isfinite(mean) and np.isfinite(sd)) or mean == 0:
        return math.nan
    if sd == 0:
        return 2.0
    for n in range(2, 10_001):
        if float(sps.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n) < abs(mean):
            return float(n)
    return math.inf


# --------------------------------------------------------------------------------------------
# multiple comparisons: Holm's step-down procedure
# --------------------------------------------------------------------------------------------


def holm(pvalues: Any) -> np.ndarray:
    """Holm-adjusted p-values (step-down; NaN stays NaN and is not counted): the i-th smallest of m
    p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)). A contrast is resolved at level
    ``level`` when its adjusted p-value is below 1 - ``level``, which controls the family-wise error."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.where(np.isfinite(p))[0]
    m = ok.size
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def holm_tables(tables: Sequence[pd.DataFrame], level: float = 0.95) -> list[pd.DataFrame]:
    """Holm over every contrast (row with a ``p``) of ``tables`` together, one family: copies with
    ``p_holm``, ``resolved_raw`` (the unadjusted interval excludes 0), ``resolved`` (the adjusted p
    is below 1 - ``level``) and ``holm_m`` (the family's size). Tables without ``p`` come back as given."""
    with_p = [t for t in tables if len(t) and "p" in t.columns]
    ps = np.concatenate([t["p"].to_numpy(float) for t in with_p]) if with_p else np.array([])
    adj = holm(ps)
    m = int(np.isfinite(ps).sum())
    out, i = [], 0
    for t in tables:
        if not (len(t) and "p" in t.columns):
            out.append(t)
            continue
        t = t.copy()
        t["p_holm"] = adj[i : i + len(t)]
        i += len(t)
        t["resolved_raw"] = t["resolved"].astype(bool)
        t["resolved"] = (t["p_holm"] < 1 - level).fillna(False).astype(bool)
        t["holm_m"] = m
        out.append(t)
    return out


# --------------------------------------------------------------------------------------------
# the best level of a factor, with a bootstrap over seeds
# --------------------------------------------------------------------------------------------


@dataclass
class ArgmaxResult:
    """:func:`argmax_ci` output: ``table`` (one row per cell) and ``freq`` (how often each level won)."""

    table: pd.DataFrame
    freq: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _cell_matrix(g: pd.DataFrame, factor: str, value: str, pair_on: str) -> pd.DataFrame:
    """seeds x levels matrix of ``value`` (repeated trials averaged; NaN where a seed lacks a level)."""
    return g.groupby([pair_on, factor], dropna=False)[value].mean().unstack(factor).sort_index(axis=1)


def _boot_means(mat: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, levels) bootstrap means: seeds resampled with replacement, the same draw for every
    level (paired); a level missing a drawn seed averages the drawn seeds it has."""
    x = mat.to_numpy(float)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    draws = x[idx]  # (n_boot, n_seeds, levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": handled below
        means = np.nanmean(draws, axis=1)
    # a level none of whose seeds was drawn: fall back to its own resample
    for j in np.where(np.isnan(means).any(axis=0))[0]:
        col = x[:, j][np.isfinite(x[:, j])]
        bad = np.isnan(means[:, j])
        if col.size:
            means[bad, j] = col[rng.integers(0, col.size, size=(int(bad.sum()), col.size))].mean(axis=1)
    return means


def _numeric_levels(levels: Sequence[Any]) -> np.ndarray | None:
    try:
        a = np.asarray(levels, dtype=float)
    except (TypeError, ValueError):
        return None
    return a if np.isfinite(a).all() else None


def _argmax_cell(
    mat: pd.DataFrame, n_boot: int, rng: np.random.Generator, level: float, maximize: bool
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One cell of :func:`argmax_ci` from its seeds x levels matrix: (the table row without the cell
    keys, the share of resamples each level won, the observed level means)."""
    levels = list(mat.columns)
    obs = mat.mean(axis=0).to_numpy(float)
    sgn = 1.0 if maximize else -1.0
    order = np.argsort(-sgn * obs)
    n_seeds = int(mat.shape[0])
    note = ""
    lo = hi = math.nan
    if n_seeds < 2:
        note = "one seed: no bootstrap"
        wins = np.full(len(levels), np.nan)
    else:
        means = _boot_means(mat, n_boot, rng)
        arg = np.argmax(sgn * means, axis=1)
        wins = np.bincount(arg, minlength=len(levels)) / n_boot
        num = _numeric_levels(levels)
        if num is not None:
            q = np.quantile(num[arg], [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
            lo, hi = float(q[0]), float(q[1])
        if n_seeds <= 3:
            note = f"only {n_seeds} seeds: the bootstrap has few distinct resamples, frequencies are coarse"
    if len(levels) == 1:
        note = (note + "; " if note else "") + "one level only"
    row = {
        "best": levels[int(order[0])],
        "best_mean": float(obs[order[0]]),
        "runner_up": levels[int(order[1])] if len(levels) > 1 else None,
        "freq_best": float(wins[int(order[0])]),
        "lo": lo,
        "hi": hi,
        "n_seeds": n_seeds,
        "n_levels": len(levels),
        "note": note,
    }
    return row, wins, obs


def _notes_text(notes: dict[str, list[str]], n_cells: int) -> list[str]:
    """``note (cell)`` / ``note (all N cells)`` / ``note (k cells: ...)`` per distinct note."""
    return [
        f"{n} ({c[0]})"
        if len(c) == 1
        else f"{n} (all {len(c)} cells)"
        if len(c) == n_cells
        else f"{n} ({len(c)} cells: {'; '.join(c)})"
        for n, c in notes.items()
    ]


def argmax_ci(
    df: pd.DataFrame,
    factor: str,
    value: str,
    by: str | Sequence[str] | None = None,
    pair_on: str = "seed",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int | None = 0,
    maximize: bool = True,
) -> ArgmaxResult:
    """The best level of ``factor`` per cell of ``by`` and how sure we are of it.

    Within each cell, seeds are resampled with replacement (``n_boot`` times, the same draw for
    every level, so seed effects stay paired); each resample's argmax of the level means is
    recorded. ``table``: ``best`` (argmax of the observed means), ``best_mean``, ``runner_up``,
    ``freq_best`` (share of resamples in which ``best`` wins), ``lo``/``hi`` (for a numeric
    factor, the ``level`` percentile interval of the argmax level, always tested levels),
    ``n_seeds``, ``n_levels``, ``note``. ``freq``: the share of resamples won by every level.
    With one seed there is nothing to resample: ``freq_best``/``lo``/``hi`` are NaN.
    """
    keys = _by_list(by)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    frows: list[dict] = []
    notes: dict[str, list[str]] = {}
    groups = df[df[value].notna()].groupby(keys, dropna=False, sort=True) if keys else [((), df[df[value].notna()])]
    for k, g in groups:
        cell = dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True))
        mat = _cell_matrix(g, factor, value, pair_on)
        if not len(mat.columns):
            continue
        row, wins, obs = _argmax_cell(mat, n_boot, rng, level, maximize)
        rows.append({**cell, **row})
        frows += [
            {**cell, factor: lv, "mean": float(m), "freq": float(w)}
            for lv, w, m in zip(mat.columns, wins, obs, strict=True)
        ]
        if row["note"]:
            notes.setdefault(row["note"], []).append(
                ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in cell.items()) or "all"
            )
    table = pd.DataFrame(
        rows, columns=keys + ["best", "best_mean", "runner_up", "freq_best", "lo", "hi", "n_seeds", "n_levels", "note"]
    )
    return ArgmaxResult(
        table, pd.DataFrame(frows, columns=keys + [factor, "mean", "freq"]), _notes_text(notes, len(rows))
    )


# --------------------------------------------------------------------------------------------
# quadratic fit: where is the peak?
# --------------------------------------------------------------------------------------------


def _vertex(x: np.ndarray, y: np.ndarray, lo_x: float, hi_x: float) -> tuple[float, float, bool, np.ndarray]:
    """(clipped vertex, raw vertex, clipped?, coefficients a, b, c) of the least-squares parabola.

    A concave fit (a < 0) peaks at -b/2a, clipped to [lo_x, hi_x]; a flat or convex fit has no
    interior peak: the better end of the range is returned, flagged as clipped."""
    coef = np.polyfit(x, y, 2)
    a, b, _ = coef
    if a < 0:
        raw = -b / (2 * a)
        v = float(np.clip(raw, lo_x, hi_x))
        return v, float(raw), bool(raw < lo_x or raw > hi_x), coef
    ends = np.array([lo_x, hi_x])
    v = float(ends[np.argmax(np.polyval(coef, ends))])
    return v, math.nan, True, coef


def _boot_vertex(
    xs: np.ndarray, ys: np.ndarray, seeds: np.ndarray, lo_x: float, hi_x: float, n_boot: int, rng: np.random.Generator
) -> tuple[list[float], int]:
    """Vertices of ``n_boot`` refits on seeds resampled with replacement (resamples with fewer than 3
    distinct x skipped), and how many were clipped. No resample with fewer than 2 seeds."""
    useeds = pd.unique(seeds)
    boots: list[float] = []
    nclip = 0
    if useeds.size < 2:
        return boots, nclip
    by_seed = {s: np.where(seeds == s)[0] for s in useeds}
    for _ in range(n_boot):
        draw = rng.choice(useeds, size=useeds.size, replace=True)
        idx = np.concatenate([by_seed[s] for s in draw])
        if np.unique(xs[idx]).size < 3:
            continue
        bv, _, bc, _ = _vertex(xs[idx], ys[idx], lo_x, hi_x)
        boots.append(bv)
        nclip += int(bc)
    return boots, nclip


_NO_FIT = {
    "vertex": math.nan,
    "raw": math.nan,
    "clipped": False,
    "lo": math.nan,
    "hi": math.nan,
    "share_clipped": math.nan,
    "a": math.nan,
    "b": math.nan,
    "c": math.nan,
    "note": "fewer than 3 tested values: no quadratic fit",
}


def _vertex_cell(
    g: pd.DataFrame, x: str, value: str, pair_on: str, level: float, n_boot: int, rng: np.random.Generator
) -> dict[str, Any]:
    """One cell of :func:`quad_vertex` (without the cell keys)."""
    xs, ys = g[x].to_numpy(float), g[value].to_numpy(float)
    lo_x, hi_x = float(xs.min()), float(xs.max())
    row: dict[str, Any] = {"x_min": lo_x, "x_max": hi_x, "n": len(g)}
    if np.unique(xs).size < 3:
        return {**row, **_NO_FIT}
    v, raw, clipped, (a, b, c) = _vertex(xs, ys, lo_x, hi_x)
    note = ""
    if clipped:
        note = (
            "no interior maximum (convex or flat fit): the better end of the range"
            if not np.isfinite(raw)
            else f"fitted peak {raw:.3g} lies outside the tested range: clipped"
        )
    boots, nclip = _boot_vertex(xs, ys, g[pair_on].to_numpy(), lo_x, hi_x, n_boot, rng)
    if boots:
        blo, bhi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        share = nclip / len(boots)
    else:
        blo = bhi = share = math.nan
        note = (note + "; " if note else "") + "one seed: no bootstrap interval"
    return {
        **row,
        "vertex": v,
        "raw": raw,
        "clipped": clipped,
        "lo": float(blo),
        "hi": float(bhi),
        "share_clipped": share,
        "a": float(a),
        "b": float(b),
        "c": float(c),
        "note": note,
    }


def quad_vertex(
    df: pd.DataFrame,
    x: str,
    value: str,
    by: str | Sequence[str] | None = None,
    pair_on: str = "seed",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Fit ``value = a x² + b x + c`` to the trials of each cell of ``by`` and locate the peak.

    The vertex is clipped to the tested range of ``x`` (``clipped`` says when; a convex or flat
    fit has no interior peak and is reported at the better end, ``raw`` NaN). Its interval: seeds
    resampled within the cell (``n_boot`` times), refitted, the clipped vertices' percentile
    interval; ``share_clipped`` is how often a resample hit an end. Needs 3 distinct ``x`` values.
    Columns: ``vertex``, ``raw``, ``clipped``, ``lo``, ``hi``, ``share_clipped``, ``a``, ``b``,
    ``c``, ``x_min``, ``x_max``, ``n``, ``note``.
    """
    keys = _by_list(by)
    rng = np.random.default_rng(seed)
    cols = keys + [
        "vertex",
        "raw",
        "clipped",
        "lo",
        "hi",
        "share_clipped",
        "a",
        "b",
        "c",
        "x_min",
        "x_max",
        "n",
        "note",
    ]
    data = df[df[value].notna() & df[x].notna()]
    groups = data.groupby(keys, dropna=False, sort=True) if keys else [((), data)]
    rows = [
        {
            **dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)),
            **_vertex_cell(g, x, value, pair_on, level, n_boot, rng),
        }
        for k, g in groups
    ]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# learning curves: where does the mean curve plateau?
# --------------------------------------------------------------------------------------------


def plateau_table(
    history: pd.DataFrame, by: str | Sequence[str] | None, value: str = "mAP", min_gain: float = CONVERGENCE_MIN_GAIN
) -> pd.DataFrame:
    """Per group of ``by``: the mean curve of ``value`` over trials (per epoch) and where it plateaus.

    ``plateau_epoch`` is the first epoch whose best-so-far mean is within ``min_gain`` points of the
    final best; ``last_epoch`` the last epoch; ``window_start`` the epoch after which the trainer's
    convergence window (the last :data:`~splicemix.results.CONVERGENCE_WINDOW` of the epochs) begins;
    ``window_gain`` the best-so-far mean's rise over that window (the trainer's rule, on the mean curve);
    ``best`` the final best of the mean curve."""
    keys = _by_list(by)
    cols = keys + ["plateau_epoch", "best", "last_epoch", "window_start", "window_gain"]
    rows = []
    groups = history.groupby(keys, dropna=False, sort=True) if keys else [((), history)]
    for k, g in groups:
        curve = g.groupby("epoch")[value].mean().dropna().sort_index()
        if not len(curve):
            continue
        so_far = curve.cummax()
        best = float(so_far.iloc[-1])
        last = int(curve.index.max())
        start = last - max(1, math.ceil(CONVERGENCE_WINDOW * last))
        before = so_far[so_far.index <= start]
        rows.append(
            {
                **dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)),
                "plateau_epoch": int(so_far.index[np.argmax(so_far.to_numpy() >= best - min_gain)]),
                "best": best,
                "last_epoch": last,
                "window_start": start,
                "window_gain": best - float(before.iloc[-1]) if len(before) else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=cols)
