"""``python -m analysis.report STUDY_DIR... --out DIR``: answer the paper's open questions from study results.

Loads every study directory (``trials.parquet``, ``history.parquet``, ``provenance.json``), runs
every analysis of :mod:`analysis.questions`, and writes into ``--out``:

* ``answers.md``: per open question the answer in numbers with intervals, the conditions it
  holds for (the form of the runs' length, and how many trials converged when the study records
  it) and what would change it (or, plainly, that the loaded results cannot answer it); the
  paper's claims; the provenance of every study. When a study holds trials at equal epochs and at
  a compute budget (``train.budget``), its answer is given once per form, labelled ("at equal
  epochs (12)", "at equal images seen (120,000)"), with a sentence saying whether they agree. Also
  the drops, the best CL weight, the methods table beside the paper's and the tuned configuration;
  each answer's contrasts Holm-corrected within it, a line on whether it goes the paper's direction,
  each trial counted once where answers pool studies (the claims), and per study the convergence
  evidence (``converged: k of n trials``, each arm's plateau, its learning curves);
* ``figures/*.png`` (dpi 150) and ``figures/*.svg`` (``<figure>_<form>`` per form;
  ``learning_curves_<study>`` per study);
* ``summary.csv`` (mean, sd, n and interval of every metric per condition) and ``tables/*.csv``
  (every table behind the answers; ``<question>_<table>_<form>.csv`` per form; ``convergence.csv``).

``figures/`` and ``tables/`` belong to the report: a ``.png``, ``.svg`` or ``.csv`` there that this run
did not write (an earlier report's, for a study no longer loaded) is removed, and the log says so.

Bad input (a missing directory, no ``trials.parquet``, an unreadable Parquet file) is one line on
stderr naming the path and what was expected, exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from splicemix.results import CONVERGENCE_MIN_GAIN, convergence

from .load import (
    COMPLETED,
    EPOCHS_FORM,
    METRICS,
    StudyLoadError,
    check_study_dir,
    completed,
    dedupe,
    load_history,
    load_provenance,
    load_studies,
    study_names,
)
from .prose import level_text
from .questions import FACTORS, Answer, answer_all, varying
from .questions.common import CONVERGED_TEXT
from .questions.forms import form_heading, form_slug
from .stats import plateau_table, summarize

__all__ = ["main", "build_parser", "write_report", "render_answers", "md_table", "summary_table", "convergence_table"]

PROG = "python -m analysis.report"
#: the open questions' answers, in the order of answers.md
OPEN_QUESTIONS = ("q1", "q1_drops", "q2", "q2_main", "q3", "q3_weight")
FIGURES = {
    "q1": ("q1_grid_scaling", "fig_grid_scaling"),
    "q2": ("q2_ratio_by_data", "fig_ratio_by_data"),
    "q2_main": ("q2_main_ratio", "fig_ratio_main"),
    "q3": ("q3_cl_gain", "fig_cl_gain"),
    "q1_drops": ("q1_drops", "fig_drops"),
    "q3_weight": ("q3_cl_weight", "fig_cl_weight"),
    "methods": ("methods", "fig_methods"),
    "tuned": ("tuned", "fig_tuned"),
    "claims_map": ("claims", "fig_claims"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m analysis.report``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Answer the SpliceMix paper's open questions (grid scaling and orientation, dropped cells, best "
            "mixed ratio per data set, SpliceMix-CL on a ViT and its best weight), compare the methods with "
            "the paper's table, report a tuned configuration, and check the paper's claims from the results "
            "of `python -m study.run`. Contrasts are Holm-corrected within each answer; a trial two studies "
            "share is counted once; folders <study>-a, <study>-b (parts) are one study. "
            "Each analysis finds the study it needs among the given directories by which configuration "
            "keys vary; a question no study can answer is reported as such, with the search space "
            "that would answer it. Trials trained for a number of epochs (train.epochs) and trials "
            "trained to a compute budget (train.budget: images, steps or seconds) are never pooled: a "
            "study holding both is answered once per form, with whether the forms agree. Trials "
            "differing only in their starting weights (model.pretrained) are never pooled either; "
            "where the study records it, each answer says how many of its trials converged."
        ),
        epilog=(
            "Writes OUT/answers.md, OUT/figures/*.png|svg, OUT/summary.csv and OUT/tables/*.csv. "
            "Only completed trials enter the answers; the others are counted. Example: "
            f"{PROG} analysis/results/grid_scaling analysis/results/ratio_data analysis/results/cl_vit "
            "--out analysis/report"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "studies",
        nargs="+",
        metavar="STUDY_DIR",
        help="a study directory written by `python -m study.run` (holds trials.parquet)",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", default=argparse.SUPPRESS, help="output directory (created if missing)"
    )
    p.add_argument("--level", type=float, default=0.95, help="confidence level of every interval, in (0, 1)")
    p.add_argument(
        "--n-boot",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples (over seeds) for the best level and the quadratic peak",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the bootstrap")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# --------------------------------------------------------------------------------------------
# markdown helpers
# --------------------------------------------------------------------------------------------


def _cell(v: Any, col: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if col == "p":
            return f"{v:.3g}"
        if float(v).is_integer() and col not in ("mean", "lo", "hi", "sd", "best_mean"):
            return f"{int(v)}"
        return f"{v:.3f}" if 0 < abs(v) < 1 else f"{v:.2f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A pipe table (GitHub markdown) of ``df``; floats to 2-3 decimals, NaN blank."""
    if df is None or not len(df):
        return "_(no rows)_\n"
    cols = [c for c in (columns or df.columns) if c in df.columns]
    head = "| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |\n"
    body = "".join("| " + " | ".join(_cell(r[c], c) for c in cols) + " |\n" for _, r in df.iterrows())
    return head + body


def _first_sentence(text: str, limit: int = 260) -> str:
    i = text.find(". ")
    s = text if i < 0 else text[: i + 1]
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def summary_table(trials: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean, sd, n and interval of every metric per condition (study and the factors it varies), long format."""
    c = completed(trials)
    if not len(c):
        return pd.DataFrame(columns=["study", "metric", "mean", "sd", "n", "lo", "hi"])
    if "budget" in c.columns:  # under a budget the epochs run are an outcome, not a condition
        c = c.assign(epochs=c["epochs"].where(c["budget"] == EPOCHS_FORM))
    by = (
        ["study"]
        + [
            f
            for f in FACTORS
            if f in c.columns and c[f].notna().any() and c.groupby("study")[f].nunique(dropna=True).max() > 1
        ]
        + ["arm"]
    )
    by = list(dict.fromkeys(by))
    frames = [summarize(c, by, m, level).assign(metric=m) for m in METRICS if c[m].notna().any()]
    out = pd.concat(frames, ignore_index=True)
    return out[by + ["metric", "mean", "sd", "n", "lo", "hi"]]


def planned_trials(study_yaml: str | None) -> int | None:
    """Trials a grid-search study file plans (grid sizes x seeds x num_samples), or None when unknown."""
    if not study_yaml:
        return None
    try:
        spec = yaml.safe_load(study_yaml) or {}
    except yaml.YAMLError:
        return None
    if not isinstance(spec, dict):
        return None
    search = spec.get("search") or {}
    space = spec.get("space") or {}
    if search.get("algorithm", "tpe") != "grid" or not isinstance(space, dict):
        return None
    n = 1
    for dist in space.values():
        grid = dist.get("grid") if isinstance(dist, dict) else None
        if not isinstance(grid, list):
            return None
        n *= len(grid)
    seeds = spec.get("seeds") or [0]
    return n * len(seeds) * int(search.get("num_samples") or 1)


def _machine_text(machine: Any) -> str:
    """``node, platform, N CPUs (AVX512)`` from provenance's ``machine`` (a dict; anything else as text): the
    CPU capability is the instruction set torch's CPU kernels used, recorded since 2026-12-01."""
    if not isinstance(machine, dict):
        return str(machine)
    cpus = f"{machine.get('cpu_count')} CPUs" if machine.get("cpu_count") else None
    if cpus and machine.get("cpu_capability"):
        cpus += f" ({machine['cpu_capability']})"
    return ", ".join(str(x) for x in (machine.get("node"), machine.get("platform"), cpus) if x)


def _elapsed_s(history: pd.DataFrame | None, trial_ids: pd.Series) -> float:
    """Seconds from the first of these trials' start to their last report (``trial_started_at`` and
    ``reported_at``, Unix times the trials write with each epoch): the part's wall time, whatever
    ran in parallel; NaN without those columns."""
    if history is None or not {"trial_started_at", "reported_at"} <= set(history.columns):
        return float("nan")
    h = history[history["trial_id"].isin(trial_ids)]
    start = pd.to_numeric(h["trial_started_at"], errors="coerce").min()
    end = pd.to_numeric(h["reported_at"], errors="coerce").max()
    return float(end - start) if np.isfinite(start) and np.isfinite(end) else float("nan")


def _provenance_rows(dirs: Sequence[Path], trials: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per study directory: command, commit, machine, trial counts, its wall time (first trial
    started to last trial reported) and its trial time (the trials' wall times summed: with trials run in
    parallel, more than the wall time)."""
    rows = []
    for d, study in zip(dirs, study_names(dirs), strict=True):
        p = load_provenance(d)
        folder = Path(d).resolve().name
        t = trials[(trials["study"] == study) & (trials["folder"] == folder)] if "folder" in trials else trials
        label = study if folder == study else f"{study} ({folder})"
        counts = t["status"].value_counts()
        other = ", ".join(f"{n} {s}" for s, n in counts.items() if s != COMPLETED) or "0"
        cmd = p.get("command")
        trial_time = (
            _hms(float(pd.to_numeric(t["wall_time_s"], errors="coerce").sum())) if "wall_time_s" in t else "n/a"
        )
        h = None if history is None or "study" not in history else history[history["study"] == study]
        wall = _hms(_elapsed_s(h, t["trial_id"])) if "trial_id" in t else "n/a"
        rows.append(
            {
                "study": label,
                "path": str(d),
                "command": shlex.join(cmd) if isinstance(cmd, list) else (cmd or ""),
                "commit": p.get("git_commit") or "",
                "machine": _machine_text(p.get("machine") or {}),
                "date": p.get("created") or "",
                "completed": int(counts.get(COMPLETED, 0)),
                "not completed": other,
                "trials": len(t),
                "planned": planned_trials(p.get("study_yaml")) or "",
                "wall time": wall,
                "trial time": trial_time,
                "versions": ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items()),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# answers.md
# --------------------------------------------------------------------------------------------


def _answer_body(a: Answer, fig: str | None, key: str, suffix: str = "") -> list[str]:
    """One answer's verdict, details, conditions, figure, changes, notes and tables (``suffix``: its
    form's part of the table names, labelled by ``a.form_label``)."""
    label = f" {a.form_label}" if suffix else ""
    if not a.answerable:
        return [f"**Answer{label}: cannot be answered from the loaded results.** {a.verdict}\n"]
    tag = " (partial)" if a.partial else ""
    out = [f"**Answer{label}{tag}.** {a.verdict}\n"]
    if a.bullets:
        out.append("Details:\n\n" + "".join(f"- {b}\n" for b in a.bullets))
    if a.paper:
        out.append(f"**Versus the paper.** {a.paper}\n")
    if a.conditions:
        out.append("**Holds for.**\n\n" + "".join(f"- {k}: {v}\n" for k, v in a.conditions.items()))
    if fig:
        out.append(f"![{a.title}{label}]({fig}.png)\n\n([SVG]({fig}.svg))\n")
    if a.changes:
        out.append("**What would change it.**\n\n" + "".join(f"- {c}\n" for c in a.changes))
    if a.notes:
        out.append("Notes: " + "; ".join(a.notes) + ".\n")
    if a.tables:
        out.append("<details><summary>Tables</summary>\n")
        for name, t in a.tables.items():
            out.append(f"**{name}** (`tables/{key}_{name}{'_' + suffix if suffix else ''}.csv`)\n\n{md_table(t)}")
        out.append("</details>\n")
    return out


def _answer_md(a: Answer, level: float, figures: dict[str, str], heading: str = "##") -> str:
    """An answer's section: its body, or one body per form of the runs' length and whether they agree."""
    out = [f"{heading} {a.title}\n", f"*{a.question}*\n"]
    if not a.forms:
        return "\n".join(out + _answer_body(a, figures.get(a.key), a.key))
    for f in a.forms:
        slug = form_slug(f.form or "")
        out += _answer_body(f, figures.get(f"{a.key}_{slug}"), a.key, slug)
    out.append(f"**Equal epochs or equal compute: do the forms agree?** {a.agreement}\n")
    if a.notes:
        out.append("Notes: " + "; ".join(a.notes) + ".\n")
    return "\n".join(out)


def _generated_line(trials: pd.DataFrame, prov: pd.DataFrame, command: str) -> str:
    """Which command made the report, when, from which studies, how many trials (and incomplete studies)."""
    counts = trials["status"].value_counts()
    n_done = int(counts.get(COMPLETED, 0))
    other = ", ".join(f"{n} {s}" for s, n in counts.items() if s != COMPLETED)
    studies = ", ".join(f"`{s}`" for s in pd.unique(trials["study"]))
    n_studies = trials["study"].nunique()
    incomplete = "".join(
        f" **Study `{r['study']}` is incomplete: {r['trials']} of {r['planned']} planned trials recorded.**"
        for _, r in prov.iterrows()
        if isinstance(r["planned"], int) and r["trials"] < r["planned"]
    )
    return (
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')} from {n_studies} "
        f"stud{'y' if n_studies == 1 else 'ies'} ({studies}): {n_done} completed trials of {len(trials)}"
        + (f" ({other}; left out of every answer)" if other else "")
        + "."
        + incomplete
        + "\n"
    )


def _at_a_glance(answers: Sequence[Answer]) -> str:
    """One table row per answer: its title, study and first sentence (an answer in several forms: each
    form's, labelled, then whether the forms agree)."""
    return md_table(
        pd.DataFrame(
            [
                {
                    "question": a.title,
                    "study": a.study or "—",
                    "answer": (
                        "cannot be answered from the loaded results"
                        if not a.answerable
                        else ("(partial) " if a.partial else "") + _glance_text(a)
                    ),
                }
                for a in answers
            ]
        )
    )


def _glance_text(a: Answer) -> str:
    if not a.forms:
        return _first_sentence(a.verdict)
    each = [f"{form_heading(f)}: {_first_sentence(f.verdict, 200)}" for f in a.forms]
    return " ".join([*each, _first_sentence(a.agreement)])


def _provenance_md(prov: pd.DataFrame) -> list[str]:
    return [
        "# Provenance\n",
        "One row per study directory. *wall time*: from its first trial's start to its last trial's last "
        "report (Ray's start and the driver's wrap-up not counted); *trial time*: its trials' own wall times "
        "summed, more than the wall time when trials ran in parallel.\n",
        md_table(
            prov,
            [
                "study",
                "command",
                "commit",
                "machine",
                "date",
                "completed",
                "not completed",
                "trials",
                "planned",
                "wall time",
                "trial time",
            ],
        ),
        "\n"
        + "".join(f"- `{r['study']}`: `{r['path']}`; {r['versions'] or 'versions n/a'}\n" for _, r in prov.iterrows()),
    ]


def _conventions(answers: Sequence[Answer], trials: pd.DataFrame, level: float, n_boot: int, seed: int) -> str:
    """The conventions paragraph of ``answers.md``: units, intervals, Holm, the paper, duplicates, forms."""
    return (
        f"Conventions: mAP in percent, differences in mAP points. Every interval is a {level:.0%} two-sided "
        f"Student-t interval over seeds (seed-paired for differences: same seed, same other conditions). "
        f"The best level of a factor and the peak of a quadratic fit use a bootstrap over seeds ({n_boot} "
        f"resamples, seed {seed}). Where an answer reports several contrasts (seed-paired differences), they "
        f"are Holm-corrected within the answer: *resolved* means the contrast's Holm-adjusted paired-t "
        f"p-value is below {1 - level:.2g} (the intervals shown stay the unadjusted ones; with one contrast, "
        f"resolved means the interval excludes 0). Each answer names the study it comes from, the regime it "
        f"holds for, and whether it goes the paper's direction; an open question no loaded study can answer "
        f"says so. {_dedupe_line(trials)}"
        + (
            " Trials trained for a number of epochs and trials trained to a compute budget (images seen, "
            "steps or seconds; mixed images add compute, so equal epochs are not equal compute) are never "
            "pooled: an answer whose study holds both is given once per form, labelled, with whether the "
            "forms agree."
            if any(a.forms for a in answers)
            else ""
        )
        + "\n"
    )


def render_answers(
    answers: Sequence[Answer],
    trials: pd.DataFrame,
    prov: pd.DataFrame,
    figures: dict[str, str],
    level: float,
    n_boot: int,
    seed: int,
    command: str,
    history: pd.DataFrame | None = None,
) -> str:
    """The text of ``answers.md`` (``history``: the per-epoch rows behind the convergence section)."""
    parts = [
        "# SpliceMix: answers to the paper's open questions\n",
        _generated_line(trials, prov, command),
        _conventions(answers, trials, level, n_boot, seed),
        "## At a glance\n",
        _at_a_glance(answers),
        "# The open questions\n",
    ]
    parts += [_answer_md(a, level, figures) for a in answers if a.key in OPEN_QUESTIONS]
    parts.append("# The methods table and the tuned configuration\n")
    parts += [_answer_md(a, level, figures) for a in answers if a.key in ("methods", "tuned")]
    parts.append("# The paper's claims\n")
    parts.append(
        "The paper (MS-COCO 2014, ResNet-101, 448 px) reports SpliceMix +1.4 and SpliceMix-CL +1.9 mAP "
        "points over the baseline, robustness to low-resolution evaluation and less co-occurrence bias. "
        "Here they are checked on every loaded study that has baseline trials (method baseline, or "
        "ratio 0 = no mixing) and mixing trials.\n"
    )
    top = [k for k in figures if k == "claims_map" or k.startswith("claims_map_")]
    for k in top:
        form = k.removeprefix("claims_map").removeprefix("_").replace("_", " ")
        parts.append(f"![The paper's claims{f' ({form})' if form else ''}]({figures[k]}.png)\n")
    claim_figures = {k: v for k, v in figures.items() if k not in top}
    parts += [_answer_md(a, level, claim_figures, "##") for a in answers if a.key.startswith("claims")]
    parts += _convergence_md(trials, history, figures)
    parts += _provenance_md(prov)
    parts.append(
        "\n# Files\n\n- `summary.csv`: mean, sd, n and interval of mAP, mAP_low, mAP_rare, mAP_common per "
        "condition\n- `tables/<question>_<table>.csv`: every table above; `tables/convergence.csv`: the "
        "convergence per study and arm\n- `figures/*.png` (dpi 150), `figures/*.svg`\n"
    )
    return "\n".join(parts)


def _slug(study: str) -> str:
    """A study label as a file-name part (``a/b`` -> ``a_b``)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in study)


def _dedupe_line(trials: pd.DataFrame) -> str:
    """How many completed trials two studies share (each counted once where answers pool studies)."""
    _, dropped = dedupe(completed(trials))
    if not len(dropped):
        return "No two loaded studies share a trial (the same run configuration and seed)."
    pairs = "; ".join(f"{len(g)} of `{s}` also in `{k}`" for (s, k), g in dropped.groupby(["study", "duplicate_of"]))
    return (
        f"Each trial is counted once where an answer pools studies (the claims): {len(dropped)} duplicate "
        f"trial{'s' if len(dropped) != 1 else ''} (the same run configuration and seed in two studies) dropped, "
        f"the first study's copy kept: {pairs}."
    )


#: the factors a condition of the convergence table may be split by (those its study varies; ``arm`` always)
_CURVE_FACTORS = ("arm", "model", "pretrained", "n_train", "imbalance", "ratio", "grid", "cl_weight")


def _condition_text(r: pd.Series, factors: list[str]) -> str:
    return ", ".join(f"{f} {level_text(r[f])}" if f != "arm" else str(r[f]) for f in factors)


def convergence_table(trials: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """Per study and condition (its arm and the factors the study varies): completed trials, how many
    converged (the trainer's rule; NA when not recorded), and where the mean learning curve plateaus
    (:func:`analysis.stats.plateau_table`)."""
    cols = ["study", "condition", "trials", "converged", "source", "plateau_epoch", "best", "last_epoch", "window_gain"]
    frames = []
    for study, g in completed(trials).groupby("study", sort=False):
        factors = [f for f in _CURVE_FACTORS if f == "arm" or f in varying(g)]
        conv, source = g["converged"].astype("Float64"), "trials"
        if conv.isna().all() and history is not None and len(history):  # a study that predates the column
            conv = g["trial_id"].map(_history_converged(history[history["study"] == study])).astype("Float64")
            source = "history"
        k = g.assign(k=conv).groupby(factors, dropna=False)
        t = k.agg(trials=("trial_id", "size"), converged=("k", lambda x: x.sum() if x.notna().any() else pd.NA))
        t = t.reset_index()
        if history is not None and len(history) and set(factors) <= set(history.columns):
            h = history[(history["study"] == study) & history["trial_id"].isin(g["trial_id"])]
            t = t.merge(plateau_table(h, factors), on=factors, how="left")
        t["condition"] = t.apply(lambda r, f=factors: _condition_text(r, f), axis=1)
        frames.append(t.assign(study=study, source=source))
    return pd.concat(frames, ignore_index=True).reindex(columns=cols) if frames else pd.DataFrame(columns=cols)


def _history_converged(h: pd.DataFrame) -> dict[str, bool]:
    """trial_id -> converged by the trainer's rule (:func:`splicemix.results.convergence`) on its history rows."""
    return {
        t: convergence(g[["epoch", "mAP"]].to_dict("records")).converged
        for t, g in h.groupby("trial_id")
        if g["mAP"].notna().any()
    }


def _plateau_text(g: pd.DataFrame) -> str:
    """Where a study's mean curves plateau: each condition (up to four), else the range and the latest."""
    p = g[g["plateau_epoch"].notna()]
    if not len(p):
        return ""
    if len(p) <= 4:
        return "; ".join(
            f"{r['condition']} at epoch {int(r['plateau_epoch'])} of {int(r['last_epoch'])}" for _, r in p.iterrows()
        )
    late = p.loc[p["plateau_epoch"].idxmax()]
    lo, hi = int(p["plateau_epoch"].min()), int(p["plateau_epoch"].max())
    return (
        f"{f'epochs {lo} to {hi}' if lo < hi else f'epoch {lo}'} over {len(p)} conditions "
        f"(the latest: {late['condition']}, epoch {int(late['plateau_epoch'])} of {int(late['last_epoch'])})"
    )


def _convergence_md(trials: pd.DataFrame, history: pd.DataFrame | None, figures: dict[str, str]) -> list[str]:
    """The convergence evidence: per study, how many trials converged, the plateau per arm and the curves."""
    t = convergence_table(trials, history)
    out = [
        "# Convergence\n",
        f"Per study: how many completed trials converged by the trainer's rule ({CONVERGED_TEXT}), and the "
        "learning curves (validation mAP per epoch, mean over seeds per condition) with each curve's plateau marked "
        f"(a star: the first epoch whose best-so-far mean mAP is within {CONVERGENCE_MIN_GAIN:g} points of the "
        "final best) and the convergence window shaded. A curve still rising at the last epoch means the "
        "answers describe a model that is not yet converged.\n",
    ]
    for study, g in t.groupby("study", sort=False):
        known = g["converged"].dropna()
        line = (
            f"converged: {int(known.sum())} of {int(g.loc[known.index, 'trials'].sum())} trials"
            + (
                " (by the trainer's rule on the per-epoch mAP: the study predates final_converged)"
                if (g["source"] == "history").any()
                else ""
            )
            if len(known)
            else f"converged: not known ({int(g['trials'].sum())} completed trials, no per-epoch mAP)"
        )
        plateaus = _plateau_text(g)
        out.append(f"- `{study}`: {line}" + (f"; mean curve plateaus: {plateaus}" if plateaus else "") + "\n")
    for study in t["study"].unique():
        key = f"learning_curves_{_slug(study)}"
        if key in figures:
            out.append(f"![Learning curves of {study}]({figures[key]}.png)\n")
    out.append("Table: `tables/convergence.csv`.\n")
    return out


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def _figure_targets(answers: Sequence[Answer], key: str, name: str) -> list[tuple[str, str, Any]]:
    """(figure key, file name, what the figure function takes) of the answer ``key``: one, or one per
    form of the runs' length (``<key>_<form>``, ``<name>_<form>``)."""
    a = next((x for x in answers if x.key == key), None)
    if a is None or not a.answerable:
        return []
    if not a.forms:
        return [(key, name, [x for x in answers if x.key.startswith("claims")] if key == "claims_map" else a)]
    out = []
    for f in a.forms:
        if f.answerable:
            slug = form_slug(f.form or "")
            out.append((f"{key}_{slug}", f"{name}_{slug}", [f] if key == "claims_map" else f))
    return out


def _make_figures(
    answers: Sequence[Answer], history: pd.DataFrame, figdir: Path, level: float, log: Callable[[str], None]
) -> dict[str, str]:
    """Draw and save the figure of every answered question (and the learning curves); ``{key: path stem}``."""
    import matplotlib.pyplot as plt

    from . import plots  # matplotlib is imported only when figures are made

    makers: list[tuple[str, str, Callable[[], Any]]] = []
    for key, (name, fn) in FIGURES.items():
        for fkey, fname, arg in _figure_targets(answers, key, name):
            makers.append((fkey, fname, partial(getattr(plots, fn), arg, level=level)))
    if len(history):
        makers.append(("learning_curves", "learning_curves", partial(plots.fig_learning_curves, history, level)))
        for s in sorted(history["study"].unique()):
            name = f"learning_curves_{_slug(s)}"
            makers.append((name, name, partial(plots.fig_learning_curves, history[history["study"] == s], level)))
    figures: dict[str, str] = {}
    for key, name, make in makers:
        try:
            fig = make()
        except plots.NoData as e:
            log(f"figure {name}: skipped ({e})")
            continue
        plots.save(fig, figdir, name)
        plt.close(fig)
        figures[key] = f"figures/{name}"
        log(f"wrote {figdir / name}.png and .svg")
    return figures


def _write_tables(answers: Sequence[Answer], tabdir: Path) -> list[Path]:
    """Every answer's tables as ``tabdir/<key>_<table>.csv``; the paths written."""
    tabdir.mkdir(parents=True, exist_ok=True)
    written = []
    for a in answers:
        for tname, t in a.tables.items():
            p = tabdir / f"{a.key}_{tname}.csv"
            t.to_csv(p, index=False)
            written.append(p)
    return written


def _prune(folder: Path, keep: set[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Remove the files of ``folder`` with one of ``suffixes`` that this run did not write (``keep``): a
    figure or table an earlier report wrote for a study or question no longer loaded. The paths removed."""
    stale = [p for p in sorted(folder.glob("*")) if p.suffix in suffixes and p.is_file() and p not in keep]
    for p in stale:
        p.unlink()
    return stale


def _no_log(msg: str) -> None:
    """The default ``log`` of :func:`write_report`: silent."""


def write_report(
    dirs: Sequence[str | Path],
    out: str | Path,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    log: Callable[[str], None] = _no_log,
    command: str = PROG,
) -> dict[str, Any]:
    """Load ``dirs``, answer every question, write ``answers.md``, figures and CSV tables into ``out``.

    Returns ``{"answers": [...], "answers_md": path, "figures": {...}, "tables": [...]}``.
    Raises :class:`analysis.load.StudyLoadError` for bad input.
    """
    paths = [check_study_dir(d) for d in dirs]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyLoadError(f"{out}: exists and is not a directory (expected an output directory for --out)")
    log(f"loading {len(paths)} stud{'y' if len(paths) == 1 else 'ies'}")
    trials = load_studies(*paths)
    history = load_history(*paths)
    prov = _provenance_rows(paths, trials, history)
    counts = trials["status"].value_counts()
    log(f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}), {len(history)} epoch rows")

    answers = answer_all(trials, level, n_boot, seed)
    for a in answers:
        log(
            f"{a.key}: "
            + (
                f"answered from {a.study}"
                + (f" ({len(a.forms)} forms)" if a.forms else "")
                + (" (partial)" if a.partial else "")
                if a.answerable
                else "cannot be answered from the loaded results"
            )
        )
    figures = _make_figures(answers, history, out / "figures", level, log)
    tabdir = out / "tables"
    written = _write_tables(answers, tabdir)
    summary_table(trials, level).to_csv(out / "summary.csv", index=False)
    prov.to_csv(tabdir / "provenance.csv", index=False)
    md = out / "answers.md"
    md.write_text(render_answers(answers, trials, prov, figures, level, n_boot, seed, command, history))
    convergence_table(trials, history).to_csv(tabdir / "convergence.csv", index=False)
    log(f"wrote {md}, {out / 'summary.csv'} and {len(written) + 1} tables under {tabdir}")
    kept_figs = {out / f"{stem}{ext}" for stem in figures.values() for ext in (".png", ".svg")}
    kept_tabs = {*written, tabdir / "provenance.csv", tabdir / "convergence.csv"}
    stale = _prune(out / "figures", kept_figs, (".png", ".svg")) + _prune(tabdir, kept_tabs, (".csv",))
    if stale:
        log(f"removed {len(stale)} stale file(s) an earlier report wrote: {', '.join(p.name for p in stale)}")
    return {"answers": answers, "answers_md": md, "figures": figures, "tables": written}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.level < 1:
        parser.error(f"--level must be in (0, 1), got {args.level}")
    if args.n_boot < 1:
        parser.error(f"--n-boot must be a positive integer, got {args.n_boot}")

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[analysis.report] {msg}", file=sys.stderr, flush=True)

    command = " ".join([PROG] + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])])
    try:
        write_report(args.studies, args.out, args.level, args.n_boot, args.seed, log, command)
    except StudyLoadError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"{PROG}: error: {getattr(e, 'filename', None) or args.out}: {e.strerror or e} "
            f"(expected a writable output directory)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
