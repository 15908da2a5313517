"""Paper figures (seaborn >= 0.13): every trial as a point (one per seed), the mean with its
interval (the same t interval as the tables), labelled axes with units, titles and legends.

Each ``fig_*`` takes the tidy trial frame of :func:`analysis.load.load_studies` (or, where
noted, the :class:`analysis.questions.Answer` already computed) and returns a matplotlib
:class:`~matplotlib.figure.Figure`; it raises :class:`NoData` (a ``ValueError``) when the data
cannot show what the figure is about. :func:`save` writes PNG (dpi 150) and SVG.

Outside a Jupyter kernel the Agg backend is used (no display needed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

if "inline" not in os.environ.get("MPLBACKEND", ""):  # keep Jupyter's inline backend in notebooks
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from splicemix.results import CONVERGENCE_MIN_GAIN  # noqa: E402

from .load import COMPLETED, NOT_PRETRAINED  # noqa: E402
from .prose import METHOD_NAMES  # noqa: E402
from .questions import (  # noqa: E402
    Answer,
    claims,
    methods_table,
    q1_drops,
    q1_grid_scaling,
    q2_main_ratio,
    q2_ratio_by_data,
    q3_cl_vit,
    q3_cl_weight,
    tuned_answer,
)
from .questions.common import PAPER_RATIO, length_text  # noqa: E402
from .questions.tuned import ARMS, SEARCH  # noqa: E402
from .stats import mean_ci, paired_values, plateau_table  # noqa: E402

__all__ = [
    "NoData",
    "set_style",
    "fig_grid_scaling",
    "fig_ratio_by_data",
    "fig_ratio_main",
    "fig_cl_gain",
    "fig_claims",
    "fig_learning_curves",
    "fig_drops",
    "fig_methods",
    "fig_cl_weight",
    "fig_tuned",
    "save",
    "MAP_LABEL",
    "GAIN_LABEL",
]

MAP_LABEL = "mAP (%)"
GAIN_LABEL = "difference (mAP points)"


class NoData(ValueError):
    """The loaded results do not hold what a figure shows."""


def set_style() -> None:
    """The one style of every figure: seaborn's paper context on a white grid; SVG element ids from a
    fixed salt, so the same figure gives the same SVG bytes (regenerated reports diff only where they
    changed)."""
    sns.set_theme(context="paper", style="whitegrid")
    matplotlib.rcParams["svg.hashsalt"] = "splicemix"


def _ci_fn(level: float) -> Callable[[Any], tuple[float, float]]:
    """seaborn ``errorbar`` callable: the same t interval as :func:`analysis.stats.mean_ci`."""

    def f(v: Any) -> tuple[float, float]:
        ci = mean_ci(v, level)
        return (ci.lo, ci.hi) if np.isfinite(ci.lo) else (ci.mean, ci.mean)

    return f


def _lv(v: Any) -> str:
    """A level as a figure label (0.25 -> "0.25", 2000.0 -> "2000")."""
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


@contextlib.contextmanager
def _fixed_jitter() -> Iterator[None]:
    """seaborn jitters strip points with NumPy's global RNG: seed it for the plot (and restore it after),
    so the same data gives the same figure on every run."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)


def _dots_ci(
    ax: plt.Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    order: Sequence | None = None,
    hue_order: Sequence | None = None,
    level: float = 0.95,
    join: bool = False,
    palette: Any = None,
    dodge: bool | None = None,
) -> None:
    """Points per seed (strip) and the mean ± interval (point), dodged consistently by ``hue``
    (``dodge=False`` when ``hue`` only colours the x levels)."""
    n_h = len(hue_order) if (hue and hue_order is not None) else (data[hue].nunique() if hue else 1)
    dodge = (bool(hue) and n_h > 1) if dodge is None else (dodge and bool(hue) and n_h > 1)
    jitter = 0.12 / n_h if dodge else 0.12
    if hue and palette is None:
        palette = sns.color_palette("colorblind", n_h)
    with _fixed_jitter():
        sns.stripplot(
            data=data,
            x=x,
            y=y,
            hue=hue,
            order=order,
            hue_order=hue_order,
            dodge=dodge,
            jitter=jitter,
            size=3.5,
            alpha=0.45,
            palette=palette if hue else None,
            color=None if hue else "0.4",
            legend=False,
            ax=ax,
            zorder=1,
        )
    sns.pointplot(
        data=data,
        x=x,
        y=y,
        hue=hue,
        order=order,
        hue_order=hue_order,
        dodge=(0.8 - 0.8 / n_h) if dodge else False,
        errorbar=_ci_fn(level),
        capsize=0.12,
        markers="D",
        markersize=5,
        linestyles="-" if join else "none",
        linewidth=1.4,
        palette=palette if hue else None,
        color=None if hue else "C0",
        ax=ax,
        zorder=3,
        legend=bool(hue),
    )


def _finish(fig: Figure, title: str, footer: str = "") -> Figure:
    fig.suptitle(title, fontsize="large")
    if footer:
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize="small", color="0.35")
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    return fig


def _ci_note(level: float) -> str:
    return f"points: one trial (seed) each; diamonds: mean with {level:.0%} t interval over seeds"


def _answer(x: pd.DataFrame | Answer, fn: Callable[..., Answer], level: float) -> tuple[Answer, pd.DataFrame]:
    """The answer a figure draws (computed with 200 resamples when given trials) and a copy of its trials."""
    a = x if isinstance(x, Answer) else fn(x, level=level, n_boot=200)
    if not a.answerable or a.data is None:
        raise NoData(a.verdict)
    return a, a.data.copy()


def _setting(d: pd.DataFrame) -> str:
    """The subtitle's setting: models (and their pretrained weights), the run length, the seeds."""
    seeds = d["seed"].nunique()
    models = ", ".join(sorted(d["model"].unique()))
    weights = sorted(set(d["pretrained"].dropna()) - {NOT_PRETRAINED}) if "pretrained" in d.columns else []
    if weights:
        models += f" from {', '.join(weights)}"
    return f"{models}, {length_text(d)}, {seeds} seed{'s' if seeds != 1 else ''}"


# --------------------------------------------------------------------------------------------


def fig_grid_scaling(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q1: mAP per grid (ordered by number of cells) and each grid's seed-paired difference from 2x2."""
    set_style()
    a, d = _answer(data, q1_grid_scaling, level)
    order = list(a.tables["by_grid"]["grid"])
    d["cells"] = d["cells"].astype(int).astype(str) + " cells"
    cell_order = [f"{c} cells" for c in sorted(a.tables["by_grid"]["cells"].unique())]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _dots_ci(axes[0], d, "grid", "mAP", hue="cells", order=order, hue_order=cell_order, level=level, dodge=False)
    axes[0].set(xlabel="grid (rows x columns)", ylabel=MAP_LABEL, title="mAP per grid")
    axes[0].legend(title="cells per mixed image", loc="best", fontsize="small")
    ref = a.tables["vs_ref"]["control"].iloc[0] if len(a.tables["vs_ref"]) else None
    if ref is not None:
        diffs = pd.concat(
            [paired_values(d, None, g, ref, "mAP", factor="grid").assign(grid=g) for g in order if g != ref],
            ignore_index=True,
        )
        _dots_ci(axes[1], diffs, "grid", "diff", order=[g for g in order if g != ref], level=level)
        axes[1].axhline(0, color="0.2", lw=1, ls="--")
        axes[1].set(
            xlabel="grid (rows x columns)",
            ylabel=f"mAP − mAP({ref}) (points)",
            title=f"seed-paired difference from {ref}",
        )
    else:
        axes[1].set_axis_off()
    ratio = ", ".join(_lv(r) for r in sorted(d["ratio"].unique()))
    return _finish(
        fig, f"Grid scaling at a constant number of mixed images (ratio {ratio}; {_setting(d)})", _ci_note(level)
    )


def fig_ratio_by_data(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q2: mAP vs mixed ratio, one panel per class imbalance, one colour per training-set size."""
    set_style()
    a, d = _answer(data, q2_ratio_by_data, level)
    d["n_train_lab"] = d["n_train"].map(lambda v: f"{v:g}" if pd.notna(v) else "n/a")
    hue_order = [f"{v:g}" for v in sorted(d["n_train"].dropna().unique())] or ["n/a"]
    imbs = sorted(d["imbalance"].dropna().unique()) or [np.nan]
    order = sorted(d["ratio"].unique())
    fig, axes = plt.subplots(1, len(imbs), figsize=(4.6 * len(imbs) + 0.6, 4), squeeze=False, sharey=False)
    best = a.tables["best"]
    for ax, imb in zip(axes[0], imbs, strict=True):
        sub = d[d["imbalance"] == imb] if pd.notna(imb) else d
        _dots_ci(ax, sub, "ratio", "mAP", hue="n_train_lab", order=order, hue_order=hue_order, level=level, join=True)
        ax.set_xticks(range(len(order)), [_lv(r) for r in order])
        ax.set(
            xlabel="mixed-to-regular ratio |B'|/|B| (0 = no mixing)",
            ylabel=MAP_LABEL,
            title=f"class imbalance {_lv(imb)}" if pd.notna(imb) else "",
        )
        ax.legend(title="training images", fontsize="small", loc="best")
        bb = best[best["imbalance"] == imb] if pd.notna(imb) else best
        txt = "\n".join(
            f"n={_lv(r['n_train'])}: best {_lv(r['best'])}"
            + (f" ({r['freq_best']:.0%})" if np.isfinite(r["freq_best"]) else "")
            for _, r in bb.iterrows()
        )
        ax.text(0.02, 0.02, txt, transform=ax.transAxes, fontsize="x-small", va="bottom", color="0.25")
    return _finish(
        fig,
        f"mAP vs mixed ratio by training-set size and imbalance ({_setting(d)})",
        _ci_note(level) + "; best ratio: share of seed resamples in which it wins",
    )


def fig_ratio_main(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q2 on the main job's data set: mAP per mixed ratio, and each ratio's seed-paired difference from ratio 0."""
    set_style()
    a, d = _answer(data, q2_main_ratio, level)
    order = sorted(d["ratio"].unique())
    labels = [_lv(r) for r in order]
    d["ratio_lab"] = d["ratio"].map(_lv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _dots_ci(axes[0], d, "ratio_lab", "mAP", order=labels, level=level, join=True)
    best = a.tables["best"].iloc[0]
    share = f" (wins {best['freq_best']:.0%} of seed resamples)" if np.isfinite(best["freq_best"]) else ""
    axes[0].set(
        xlabel="mixed-to-regular ratio |B'|/|B| (0 = no mixing)",
        ylabel=MAP_LABEL,
        title=f"best {_lv(best['best'])}{share}",
    )
    diffs = pd.concat(
        [paired_values(d, None, r, 0.0, "mAP", factor="ratio").assign(ratio_lab=_lv(r)) for r in order if r != 0],
        ignore_index=True,
    )
    if len(diffs):
        _dots_ci(axes[1], diffs, "ratio_lab", "diff", order=labels[1:], level=level)
    axes[1].axhline(0, color="0.2", lw=1, ls="--")
    axes[1].set(
        xlabel="mixed-to-regular ratio |B'|/|B|",
        ylabel="mAP(ratio) − mAP(0) (points)",
        title="seed-paired vs no mixing",
    )
    return _finish(fig, f"mAP vs the mixed ratio on the main job's data set ({_setting(d)})", _ci_note(level))


def fig_cl_gain(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q3: mAP per model and method, and the seed-paired gains (CL − SpliceMix, SpliceMix − baseline)."""
    set_style()
    a, d = _answer(data, q3_cl_vit, level)
    d["method_lab"] = d["arm"].map(lambda m: METHOD_NAMES.get(m, m))
    models = sorted(d["model"].unique())
    arms = [m for m in ["baseline", "SpliceMix", "SpliceMix-CL"] if m in set(d["method_lab"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _dots_ci(axes[0], d, "model", "mAP", hue="method_lab", order=models, hue_order=arms, level=level)
    axes[0].set(xlabel="model", ylabel=MAP_LABEL, title="mAP per model and method")
    axes[0].legend(title="method", fontsize="small")
    comps = [
        ("splicemix_cl", "splicemix", "SpliceMix-CL − SpliceMix"),
        ("splicemix", "baseline", "SpliceMix − baseline"),
    ]
    gains = pd.concat(
        [paired_values(d, "model", t, c, "mAP", factor="arm").assign(comparison=lab) for t, c, lab in comps],
        ignore_index=True,
    )
    if len(gains):
        hue_order = [lab for _, _, lab in comps if lab in set(gains["comparison"])]
        _dots_ci(
            axes[1],
            gains,
            "model",
            "diff",
            hue="comparison",
            order=models,
            hue_order=hue_order,
            level=level,
            palette=sns.color_palette("colorblind", 4)[2 : 2 + len(hue_order)],
        )
        axes[1].legend(title="seed-paired gain", fontsize="small")
    axes[1].axhline(0, color="0.2", lw=1, ls="--")
    axes[1].set(xlabel="model", ylabel=GAIN_LABEL, title="gain per model (same seed)")
    return _finish(fig, f"SpliceMix-CL on a ViT vs a CNN ({_setting(d)})", _ci_note(level))


def fig_claims(data: pd.DataFrame | Sequence[Answer], level: float = 0.95) -> Figure:
    """The paper's claims: baseline vs SpliceMix vs SpliceMix-CL (headline setting) on mAP, low-resolution
    mAP and mAP on rare class-pair images, one x position per study / model / data cell."""
    set_style()
    ans = list(data) if not isinstance(data, pd.DataFrame) else claims(data, level)
    a = next((x for x in ans if x.key == "claims_map"), None)
    if a is None or not a.answerable or a.data is None:
        raise NoData(ans[0].verdict if ans else "no claims data")
    d = a.data[a.data["headline"]].copy()
    d["method_lab"] = d["arm"].map(lambda m: METHOD_NAMES.get(m, m))
    multi = d.groupby("study")[["n_train", "imbalance"]].apply(lambda g: len(g.drop_duplicates())) > 1

    def lab(r: pd.Series) -> str:
        s = f"{r['study']}\n{r['model']}"
        if multi.get(r["study"], False):
            s += f"\nn={_lv(r['n_train'])}, imb={_lv(r['imbalance'])}"
        return s

    d["condition"] = d.apply(lab, axis=1)
    order = list(d.sort_values(["study", "model", "n_train", "imbalance"])["condition"].drop_duplicates())
    arms = [m for m in ["baseline", "SpliceMix", "SpliceMix-CL"] if m in set(d["method_lab"])]
    size = d["low_size"].dropna()
    full = _lv(float(d["image_size"].dropna().iloc[0])) if d["image_size"].notna().any() else ""
    panels = [
        ("mAP", f"{MAP_LABEL}, {full} px", "mAP (training resolution)"),
        ("mAP_low", f"{MAP_LABEL} at {_lv(float(size.iloc[0])) if len(size) else '?'} px", "low-resolution evaluation"),
        ("mAP_rare", f"{MAP_LABEL}, rare-pair images", "images whose class pairs were rare in training"),
    ]
    panels = [p for p in panels if d[p[0]].notna().any()]
    w = max(6.0, 1.1 * len(order) + 2.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(w, 2.9 * len(panels) + 0.8), squeeze=False, sharex=True)
    for i, (ax, (col, ylab, title)) in enumerate(zip(axes[:, 0], panels, strict=True)):
        _dots_ci(ax, d, "condition", col, hue="method_lab", order=order, hue_order=arms, level=level)
        ax.set(xlabel="", ylabel=ylab, title=title)
        ax.tick_params(axis="x", labelsize="small")
        if i == 0:
            ax.legend(title="method", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.get_legend().remove()
    return _finish(
        fig,
        "The paper's claims: SpliceMix vs the baseline (headline setting per study)",
        _ci_note(level) + f"; headline: ratio {PAPER_RATIO:g} with default grids, or the closest tested ratio",
    )


def fig_drops(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q1 drops: mAP vs the number of dropped cells per grid (the default preset as a band), and each
    RxC-D's seed-paired difference from RxC."""
    set_style()
    a, d = _answer(data, q1_drops, level)
    fixed = d[d["base"] != "default"].assign(D=lambda x: x["drop"].astype(int).astype(str))
    order = [str(v) for v in sorted(fixed["drop"].astype(int).unique())]
    bases = sorted(fixed["base"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _dots_ci(axes[0], fixed, "D", "mAP", hue="base", order=order, hue_order=bases, level=level, join=True)
    preset = d[d["base"] == "default"]["mAP"]
    if len(preset):
        ci = mean_ci(preset, level)
        lo, hi = (ci.lo, ci.hi) if np.isfinite(ci.lo) else (ci.mean, ci.mean)
        axes[0].axhspan(lo, hi, color="0.5", alpha=0.2, label="default preset (random drops)")
        axes[0].axhline(ci.mean, color="0.3", lw=1, ls=":")
    axes[0].set(xlabel="dropped cells D", ylabel=MAP_LABEL, title="mAP per grid and drop count")
    axes[0].legend(title="grid", fontsize="small")
    diffs = pd.concat(
        [
            paired_values(d, None, g, b, "mAP", factor="grid").assign(base=b, D=str(int(dd)))
            for g, b, dd in fixed[fixed["drop"] > 0][["grid", "base", "drop"]].drop_duplicates().itertuples(index=False)
        ],
        ignore_index=True,
    )
    if len(diffs):
        _dots_ci(axes[1], diffs, "D", "diff", hue="base", order=order[1:], hue_order=bases, level=level)
        axes[1].legend(title="grid", fontsize="small")
    axes[1].axhline(0, color="0.2", lw=1, ls="--")
    axes[1].set(xlabel="dropped cells D", ylabel="mAP(RxC-D) − mAP(RxC) (points)", title="seed-paired vs no drop")
    return _finish(fig, f"Dropped cells at a constant number of mixed images ({_setting(d)})", _ci_note(level))


def fig_methods(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """The methods table: mAP per method, and each method's seed-paired difference from the baseline with
    the paper's difference (MS-COCO) marked."""
    set_style()
    a, d = _answer(data, methods_table, level)
    d["method_lab"] = d["arm"].map(lambda m: METHOD_NAMES.get(m, m))
    order = [METHOD_NAMES[m] for m in METHOD_NAMES if m in set(d["arm"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _dots_ci(axes[0], d, "method_lab", "mAP", order=order, level=level)
    axes[0].set(xlabel="method", ylabel=MAP_LABEL, title="mAP per method")
    vs = a.tables["vs_baseline"]
    vs = vs[vs["metric"] == "mAP"] if len(vs) else vs
    mixed = [m for m in order if m != "baseline"]
    diffs = pd.concat(
        [
            paired_values(d, None, arm, "baseline", "mAP", factor="arm").assign(method=METHOD_NAMES.get(arm, arm))
            for arm in d["arm"].unique()
            if arm != "baseline"
        ],
        ignore_index=True,
    )
    if len(diffs):
        _dots_ci(axes[1], diffs, "method", "diff", order=mixed, level=level)
        paper = vs.set_index("treat")["paper"] if len(vs) else pd.Series(dtype=float)
        axes[1].scatter(
            range(len(mixed)),
            [paper.get(m, np.nan) for m in mixed],
            marker="x",
            s=60,
            color="C3",
            zorder=4,
            label="the paper (MS-COCO)",
        )
        axes[1].legend(fontsize="small")
    axes[1].axhline(0, color="0.2", lw=1, ls="--")
    axes[1].set(xlabel="method", ylabel=GAIN_LABEL, title="difference from the baseline (same seed)")
    return _finish(fig, f"Methods beside the paper ({_setting(d)})", _ci_note(level) + "; crosses: the paper's")


def _mark_best(ax: plt.Axes, best: pd.Series, labels: list[str]) -> None:
    """A star on the best level's mean (``best``: a row of :func:`analysis.stats.argmax_ci`'s table)."""
    freq = f", the argmax in {best['freq_best']:.0%} of seed resamples" if np.isfinite(best["freq_best"]) else ""
    star = ax.plot(
        labels.index(_lv(best["best"])),
        best["best_mean"],
        marker="*",
        markersize=15,
        color="gold",
        markeredgecolor="0.1",
        linestyle="none",
        zorder=6,
        label=f"best weight {_lv(best['best'])}{freq}",
    )
    ax.legend(handles=star, fontsize="x-small", loc="lower center")


def _weight_gains(ax: plt.Axes, a: Answer, d: pd.DataFrame, models: list[str], colours: list, level: float) -> None:
    """Each weight's seed-paired gain over weight 0 per model, the ViT − CNN difference of gains as text."""
    weights = [w for w in sorted(d["cl_weight"].unique()) if w != 0]
    gains = pd.concat(
        [paired_values(d, "model", w, 0.0, "mAP", factor="cl_weight").assign(w=_lv(w)) for w in weights],
        ignore_index=True,
    )
    order = [_lv(w) for w in weights]
    _dots_ci(
        ax, gains, "w", "diff", hue="model", order=order, hue_order=models, level=level, palette=colours, join=True
    )
    ax.axhline(0, color="0.2", lw=1, ls="--")
    ax.set(xlabel="consistency weight", ylabel=GAIN_LABEL, title="gain over weight 0 (same seed)")
    ax.legend(title="model", fontsize="x-small", loc="best")
    gap = a.tables.get("vit_vs_cnn", pd.DataFrame())
    txt = "\n".join(
        f"w {_lv(r['weight'])}: {r['treat']} − {r['control']} {r['mean']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"
        + (" *" if r["resolved"] else "")
        for _, r in gap.iterrows()
    )
    if txt:
        ax.text(0.02, 0.02, "ViT gain − CNN gain:\n" + txt, transform=ax.transAxes, fontsize="xx-small", color="0.25")


def fig_cl_weight(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """Q3 weight: mAP vs the SpliceMix-CL consistency weight, one panel per model (mean and interval over
    seeds, the best weight starred), and every weight's seed-paired gain over weight 0 per model with the
    ViT − CNN difference of gains (* resolved after Holm)."""
    set_style()
    a, d = _answer(data, q3_cl_weight, level)
    models = sorted(d["model"].unique())
    colours = sns.color_palette("colorblind", len(models))
    labels = [_lv(w) for w in sorted(d["cl_weight"].unique())]
    d["w"] = d["cl_weight"].map(_lv)
    gains = bool(len(a.tables["vs_zero"]))
    fig, axes = plt.subplots(1, len(models) + gains, figsize=(4.4 * (len(models) + gains) + 0.4, 4), squeeze=False)
    best = a.tables["best"].set_index("model")
    for ax, m, colour in zip(axes[0], models, colours, strict=False):
        _dots_ci(
            ax, d[d["model"] == m], "w", "mAP", hue="model", order=labels, level=level, palette=[colour], join=True
        )
        ax.set(xlabel="consistency weight (0 = no consistency loss)", ylabel=MAP_LABEL, title=m)
        _mark_best(ax, best.loc[m], labels)
    if gains:
        _weight_gains(axes[0, -1], a, d, models, colours, level)
    return _finish(
        fig,
        f"SpliceMix-CL: the consistency weight per model ({_setting(d)})",
        _ci_note(level) + "; star: the best weight; *: the difference of gains resolved after Holm",
    )


def _search_panel(ax: plt.Axes, t: pd.DataFrame) -> None:
    """The search's trials: mAP at the last epoch each reached vs the epochs it ran, the stopped ones marked."""
    t = t.assign(x=t["epochs_run"] + np.random.default_rng(0).uniform(-0.15, 0.15, len(t)))
    markers = {"completed": "o", "stopped": "X"}
    sns.scatterplot(data=t, x="x", y="mAP", hue="status", style="status", markers=markers, ax=ax, s=40, alpha=0.8)
    top = t[t["status"] == "completed"].nlargest(1, "mAP")
    if len(top):
        ax.plot(top["x"], top["mAP"], marker="*", markersize=16, color="gold", markeredgecolor="0.1", ls="none")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    stopped = int((t["status"] == "stopped").sum())
    ax.set(
        xlabel="epochs run",
        ylabel=f"{MAP_LABEL} at the last epoch reached",
        title=f"the search ({SEARCH}): {len(t)} trials, {stopped} stopped early",
    )
    ax.legend(title="trial (star: best completed)", fontsize="x-small", title_fontsize="x-small")


def fig_tuned(data: pd.DataFrame | Answer, level: float = 0.95) -> Figure:
    """The tuned configuration: the confirmation's three arms (tuned, default preset, baseline) per seed
    with their mean and interval, and the search's trials (mAP at the last epoch each reached vs the epochs
    it ran, the ones ASHA stopped marked)."""
    set_style()
    a, d = _answer(data, tuned_answer, level)
    c = d[d["tuned_arm"].notna()] if "tuned_arm" in d.columns else d.iloc[:0]
    search = a.tables.get("search_trials", pd.DataFrame())
    n = bool(len(c)) + bool(len(search))
    if not n:
        raise NoData("neither a confirmation arm nor a search trial with a final mAP")
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4), squeeze=False)
    if len(c):
        ax = axes[0, 0]
        order = [x for x in ARMS if x in set(c["tuned_arm"])]
        _dots_ci(ax, c, "tuned_arm", "mAP", order=order, level=level)
        vs = a.tables.get("vs", pd.DataFrame())
        txt = "\n".join(
            f"{r['treat']} − {r['control']}: {r['mean']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"
            for _, r in vs.iterrows()
        )
        ax.text(0.98, 0.98, txt, transform=ax.transAxes, fontsize="x-small", va="top", ha="right", color="0.25")
        ax.set(xlabel="arm", ylabel=MAP_LABEL, title=f"confirmation: {c['seed'].nunique()} seeds")
    if len(search):
        _search_panel(axes[0, -1], search)
    setting = _setting(c) if len(c) else _setting(d)
    return _finish(fig, f"The tuned configuration ({setting})", _ci_note(level) + "; star: the search's best")


def _primary(t: pd.DataFrame) -> tuple[str, str | None]:
    """(hue, style) for a study's learning curves: the factors it varies."""
    from .questions import varying

    v = varying(t)
    for f in ("grid", "ratio", "arm", "model", "n_train", "imbalance", "cl_weight"):
        if f in v or (f == "arm" and t["arm"].nunique() > 1):
            style = "model" if f == "arm" and "model" in v else ("n_train" if f == "ratio" and "n_train" in v else None)
            return f, style
    return "study", None


def _mark_plateaus(ax: plt.Axes, sub: pd.DataFrame, lines: list[str], order: list[str], metric: str) -> None:
    """Each line's plateau (a star on its mean curve; ``lines``: the hue and, if any, the style column) and
    the trainer's convergence window (shaded)."""
    table = plateau_table(sub, lines, metric)
    colours = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    for _, r in table.iterrows():
        mask = np.logical_and.reduce([sub[c] == r[c] for c in lines])
        curve = sub[mask].groupby("epoch")[metric].mean()
        y = curve.get(r["plateau_epoch"], np.nan)
        ax.plot(
            r["plateau_epoch"],
            y,
            marker="*",
            markersize=11,
            color=colours.get(r[lines[0]], "0.3"),
            markeredgecolor="0.1",
            zorder=5,
            linestyle="none",
        )
    if len(table):
        ax.axvspan(table["window_start"].min(), table["last_epoch"].max(), color="0.5", alpha=0.12, zorder=0)


def fig_learning_curves(history: pd.DataFrame, level: float = 0.95, metric: str = "mAP") -> Figure:
    """mAP (or ``metric``) per epoch, one panel per study: the mean over seeds (and over the study's
    other conditions) with its interval as a band, coloured by the factor the study varies; a star marks
    where each mean curve plateaus (its best-so-far within 0.3 points of its final best:
    :func:`analysis.stats.plateau_table`) and the shaded span is the trainer's convergence window (the
    last quarter of the epochs)."""
    set_style()
    if history is None or not len(history) or metric not in history.columns:
        raise NoData(f"no per-epoch {metric} in the loaded history")
    h = history[history["status"] == COMPLETED] if "status" in history.columns else history
    studies = sorted(h["study"].unique())
    if not studies:
        raise NoData("no completed trial in the loaded history")
    n = len(studies)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 3.8 * nrow), squeeze=False)
    for ax, s in zip(axes.ravel(), studies, strict=False):
        _study_curves(ax, h[h["study"] == s].copy(), s, level, metric)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return _finish(
        fig,
        f"Learning curves (validation {metric} per epoch)",
        f"lines: mean over seeds (and the study's other conditions); bands: {level:.0%} t interval; "
        f"stars: plateau (best-so-far within {CONVERGENCE_MIN_GAIN:g} of the final best); "
        "shaded: the last quarter of the epochs",
    )


def _study_curves(ax: plt.Axes, sub: pd.DataFrame, study: str, level: float, metric: str) -> None:
    """One study's panel of :func:`fig_learning_curves`."""
    hue, style = _primary(sub.drop_duplicates("trial_id"))
    if hue == "arm":
        sub["arm"] = sub["arm"].map(lambda m: METHOD_NAMES.get(m, m))
    sub[hue] = sub[hue].map(_lv)
    if style:
        sub[style] = sub[style].map(_lv)
    order = list(pd.unique(sub[hue]))
    sns.lineplot(
        data=sub,
        x="epoch",
        y=metric,
        hue=hue,
        hue_order=order,
        style=style,
        errorbar=_ci_fn(level),
        palette=sns.color_palette("colorblind", len(order)),
        ax=ax,
        marker="o",
        markersize=3,
    )
    _mark_plateaus(ax, sub, [hue] + ([style] if style else []), order, metric)
    ax.set(xlabel="epoch", ylabel=MAP_LABEL if metric.startswith("mAP") else metric, title=study)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize="x-small", title_fontsize="x-small")


def save(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``out_dir/name.png`` (dpi 150) and ``out_dir/name.svg`` (no date in its metadata); returns the
    two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    return paths
