"""What every question shares: the :class:`Answer`, the factors that define a condition, finding
the study that can answer, holding the other factors at one level, and the "holds for" text."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from splicemix.grids import DEFAULT_MIXED_RATIO, GridSpec
from splicemix.grids import parse_grid as _parse_grid_text
from splicemix.results import cfg_column

from ..load import COMPLETED, completed
from ..prose import level_text, levels_text, method_name

__all__ = [
    "Answer",
    "SPACES",
    "FACTORS",
    "PAPER_RATIO",
    "grid_spec",
    "parse_grid",
    "varying",
    "restrict",
    "pick_study",
    "conditions",
    "cannot",
    "common_changes",
]

#: the search space that answers each question
SPACES = {
    "q1": "search_spaces/grid_scaling.yaml",
    "q2": "search_spaces/ratio_data.yaml",
    "q3": "search_spaces/cl_vit.yaml",
    "claims": "search_spaces/ratio.yaml (ratio 0 is the baseline) or search_spaces/cl_vit.yaml",
}
#: configuration aliases that define a condition, in the order they are restricted
FACTORS = ["dataset", "image_size", "epochs", "model", "n_train", "imbalance", "method", "ratio", "grid", "cl_weight"]
#: the paper's mixed ratio |B'|/|B| (both presets'): the level an answer prefers when a study varies the ratio
PAPER_RATIO = DEFAULT_MIXED_RATIO
_MIX_ONLY = {"method", "ratio", "grid"}  # meaningless for a baseline (no mixing) trial
_CL_ONLY = {"cl_weight"}  # meaningful for splicemix_cl only


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
    study: str | None = None
    partial: bool = False
    bullets: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame | None = None

    def __str__(self) -> str:
        return f"{self.title}: {self.verdict}"


def grid_spec(text: Any) -> GridSpec | None:
    """The :class:`~splicemix.grids.GridSpec` of a tidy ``grid`` value (``"2x3-2"``), or None for
    anything :func:`splicemix.grids.parse_grid` rejects (``"default"``, ``"1x2+2x2"``, NaN)."""
    if not isinstance(text, str):
        return None
    try:
        return _parse_grid_text(text)
    except ValueError:
        return None


def parse_grid(text: Any) -> tuple[int, int, int] | None:
    """``"2x3-2"`` -> (2, 3, 2); ``"2x2"`` -> (2, 2, 0); anything else (``"default"``, a list) -> None.

    :func:`grid_spec` as a tuple (rows, cols, dropped cells), the form ``analysis.parse_grid`` always returned."""
    spec = grid_spec(text)
    return None if spec is None else (spec.rows, spec.cols, spec.drop)


def _factor_mask(d: pd.DataFrame, f: str) -> pd.Series:
    """The trials for which factor ``f`` means something (mixing settings: mixing trials only)."""
    if f in _MIX_ONLY:
        return d["arm"] != "baseline"
    if f in _CL_ONLY:
        return d["method"] == "splicemix_cl"
    return pd.Series(True, index=d.index)


def varying(d: pd.DataFrame) -> set[str]:
    """The :data:`FACTORS` that take more than one value among the completed trials of ``d``
    (mixing settings counted over mixing trials only)."""
    c = completed(d)
    return {f for f in FACTORS if f in c.columns and c.loc[_factor_mask(c, f), f].dropna().nunique() > 1}


def restrict(d: pd.DataFrame, keep: Iterable[str], prefer: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Hold every varying factor outside ``keep`` at one level (``prefer``'s when tested, else the
    most frequent), so that the kept factors are compared under equal conditions. Returns the
    restricted trials and one note per factor held."""
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
        notes.append(f"the study also varies {f} ({levels_text(vals)}); this answer holds {f} at {level_text(pick)}")
    return d, notes


def pick_study(df: pd.DataFrame, score: Callable[[pd.DataFrame], tuple | None]) -> tuple[str | None, list[str]]:
    """The study whose completed trials score highest (``score`` returns None when it cannot answer),
    and the other studies that could."""
    scored = []
    for name, g in completed(df).groupby("study", sort=True):
        s = score(g)
        if s is not None:
            scored.append((s, len(g), name))
    if not scored:
        return None, []
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return scored[0][2], [n for _, _, n in scored[1:]]


def _column(used: pd.DataFrame, key: str) -> pd.Series:
    """The config column ``cfg.<key>`` of ``used`` (empty when the study did not record it)."""
    return used.get(cfg_column(key), pd.Series(dtype=object))


def _data_text(used: pd.DataFrame) -> str:
    ds = levels_text(used["dataset"])
    if ds != "synthetic":
        return f"{ds}, {levels_text(used['image_size'])} px"
    n_val = levels_text(_column(used, "data.synthetic.n_val"))
    k = levels_text(_column(used, "data.synthetic.num_classes"))
    return (
        f"synthetic shapes, {levels_text(used['n_train'])} training / {n_val} validation images, "
        f"{k} classes, imbalance {levels_text(used['imbalance'])}, {levels_text(used['image_size'])} px"
    )


def _trials_text(all_trials: pd.DataFrame, used: pd.DataFrame) -> str:
    whole = all_trials[all_trials["study"].isin(used["study"].unique())]
    counts = whole["status"].value_counts()
    other = ", ".join(f"{n} {s}" for s, n in counts.items() if s != COMPLETED)
    return (
        f"{len(used)} completed trials used; the study has {int(counts.get(COMPLETED, 0))} completed of "
        f"{len(whole)}" + (f" ({other})" if other else "")
    )


def conditions(all_trials: pd.DataFrame, used: pd.DataFrame) -> dict[str, str]:
    """What an answer holds for, read from the data: study, data set, model, training, seeds, trials."""
    out = {"study": levels_text(used["study"]) if len(used) else "n/a", "data": _data_text(used)}
    pretrained = _column(used, "model.pretrained")
    out["model"] = levels_text(used["model"]) + (" (from scratch)" if pretrained.isna().all() else " (pre-trained)")
    opt, lr = levels_text(_column(used, "optim.name")), levels_text(_column(used, "optim.lr"))
    bs = levels_text(_column(used, "train.batch_size"))
    out["training"] = f"{levels_text(used['epochs'])} epochs, batch {bs}, {opt} lr {lr}"
    mix = used[used["arm"] != "baseline"]
    if len(mix):
        methods = ", ".join(method_name(m) for m in sorted(mix["method"].unique()))
        out["mixing"] = f"{methods}; ratio {levels_text(mix['ratio'])}; grids {levels_text(mix['grid'])}"
    seeds = sorted(int(s) for s in used["seed"].dropna().unique())
    out["seeds"] = f"{len(seeds)} ({', '.join(map(str, seeds))})"
    out["trials"] = _trials_text(all_trials, used)
    return out


def cannot(key: str, title: str, question: str, why: str, df: pd.DataFrame) -> Answer:
    """The answer when no loaded study can answer: why, and the search space that would."""
    studies = ", ".join(sorted(df["study"].unique())) if len(df) else "none"
    verdict = (
        f"The loaded results cannot answer this: {why} (studies loaded: {studies}). "
        f"{SPACES[key]} would: `python -m study.run {SPACES[key].split(' ')[0]}`."
    )
    return Answer(
        key, title, question, False, verdict, changes=[f"Run {SPACES[key]} and pass its directory to the report."]
    )


def common_changes(d: pd.DataFrame) -> list[str]:
    """What would change any answer: the small setting compared with the paper's."""
    ep = levels_text(d["epochs"])
    size = levels_text(d["image_size"])
    return [
        f"The setting is small: {ep} epochs, {size}-px {levels_text(d['dataset'])} images, "
        f"{levels_text(d['model'])} from scratch; the paper trains a pre-trained ResNet-101 at 448 px on "
        f"MS-COCO/VOC. Longer training, larger images or real data can change the size and even the sign of "
        f"these effects."
    ]
