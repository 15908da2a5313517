"""What every question shares: the :class:`Answer`, the factors that define a condition, finding
the study that can answer, holding the other factors at one level, the "holds for" text (with the
form of the runs' length and how many trials converged) and what would change any answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from splicemix.grids import DEFAULT_MIXED_RATIO, GridSpec
from splicemix.grids import parse_grid as _parse_grid_text
from splicemix.results import CONVERGENCE_MIN_GAIN, CONVERGENCE_WINDOW, cfg_column

from ..load import COMPLETED, EPOCHS_FORM, NOT_PRETRAINED, completed
from ..prose import budget_text, form_label, level_text, levels_text, method_name
from ..stats import fmt_ci, holm_tables, paired_diff

__all__ = [
    "Answer",
    "SPACES",
    "FACTORS",
    "PAPER_RATIO",
    "SEARCH_STUDIES",
    "controlled",
    "grid_spec",
    "parse_grid",
    "varying",
    "restrict",
    "pick_study",
    "conditions",
    "cannot",
    "common_changes",
    "CONVERGED_TEXT",
    "convergence_counts",
    "not_converged_change",
    "length_text",
    "start_weights",
    "rerun_text",
    "PAPER_GAINS",
    "direction_word",
    "paper_direction",
]

#: the search space that answers each question
SPACES = {
    "q1": "search_spaces/grid_scaling.yaml",
    "q2": "search_spaces/ratio_data.yaml",
    "q2_main": "search_spaces/ratio_converged.yaml (ratio_images.yaml, equal images seen, as its part)",
    "q3": "search_spaces/cl_vit.yaml",
    "q1_drops": "search_spaces/drops.yaml",
    "q3_weight": "search_spaces/cl_weight.yaml",
    "methods": "search_spaces/methods.yaml",
    "tuned": "search_spaces/tuned.yaml (the search), then search_spaces/tuned_confirm.yaml (the confirmation)",
    "claims": "search_spaces/ratio.yaml (ratio 0 is the baseline) or search_spaces/cl_vit.yaml",
}
#: configuration aliases that define a condition, in the order they are restricted (``budget``: the
#: form of the runs' length, equal epochs or a compute budget; ``pretrained``: the starting weights)
FACTORS = [
    "dataset",
    "image_size",
    "budget",
    "epochs",
    "model",
    "pretrained",
    "n_train",
    "imbalance",
    "method",
    "ratio",
    "grid",
    "cl_weight",
]
#: studies whose configurations a search (TPE + ASHA) chose, one seed each: they answer only the tuned question,
#: never a question that compares the levels of a factor (``pick_study``) nor the claims
SEARCH_STUDIES = ("tuned",)
#: the paper's mixed ratio |B'|/|B| (both presets'): the level an answer prefers when a study varies the ratio
PAPER_RATIO = DEFAULT_MIXED_RATIO
_MIX_ONLY = {"method", "ratio", "grid"}  # meaningless for a baseline (no mixing) trial
_CL_ONLY = {"cl_weight"}  # meaningful for splicemix_cl only (weight 0 is recorded as, and held as, SpliceMix)
_WINDOW_TEXT = "quarter" if CONVERGENCE_WINDOW == 0.25 else f"{CONVERGENCE_WINDOW:.0%}"
#: what "converged" means, in the answers' words (the definition: splicemix.results.convergence)
CONVERGED_TEXT = (
    f"best-so-far val mAP gained < {CONVERGENCE_MIN_GAIN:g} points over the last {_WINDOW_TEXT} of the epochs"
)


@dataclass
class Answer:
    """One question's answer. ``verdict`` is the plain-English answer with numbers; ``bullets``
    the per-condition details; ``tables`` the evidence; ``conditions`` what it holds for;
    ``changes`` what would change it. ``answerable`` is False when the data cannot answer;
    ``partial`` when they answer only part of the question. ``key_results`` are the results two
    forms of the runs' length are compared on (``{"best grid": "2x2"}``), besides the signs of the
    resolved contrasts in ``tables``. ``paper`` says whether the answer's trials go the paper's
    direction (:func:`paper_direction`). An answer for one form has ``form`` (its ``budget`` value)
    and ``form_label`` ("at equal epochs (12)"); an answer over several forms has them in
    ``forms`` and says whether they agree in ``agreement`` (:mod:`.forms`)."""

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
    key_results: dict[str, str] = field(default_factory=dict)
    form: str | None = None
    form_label: str = ""
    forms: list[Answer] = field(default_factory=list)
    agreement: str = ""
    paper: str = ""

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
    if f == "epochs":  # a budget, not train.epochs, fixed the length; an arm re-run longer keeps its place
        mask = d["budget"] == EPOCHS_FORM if "budget" in d.columns else pd.Series(True, index=d.index)
        return mask & ~_rerun_mask(d)
    return pd.Series(True, index=d.index)


def _rerun_mask(d: pd.DataFrame) -> pd.Series:
    """The trials of ``d`` that re-ran a shorter run for more epochs (``rerun_of`` and ``rerun_gain`` set by
    ``analysis.load.supersede``); all False for a frame without the column."""
    return d["rerun_of"].notna() if "rerun_of" in d.columns else pd.Series(False, index=d.index)


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
        own = model_lengths(d[mask]) if f == "epochs" and "model" in keep else ""
        if own:
            notes.append(
                f"each model was trained for its own number of epochs ({own}): a model's arms are compared at "
                "equal epochs, and a difference between models compares each model's gains at its own length"
            )
            continue
        want = prefer.get(f)
        pick = want if want is not None and (vals == want).any() else vals.value_counts().idxmax()
        d = d[~mask | (d[f] == pick)]
        notes.append(f"the study also varies {f} ({levels_text(vals)}); this answer holds {f} at {level_text(pick)}")
    return d, notes


def model_lengths(d: pd.DataFrame) -> str:
    """``"smallcnn 64, vit_tiny 24 epochs"`` when the trials of ``d`` train for more than one number of epochs
    but each model for one (a study run in parts, one per model, each at the length its model needs); else ""."""
    if d.empty or d["epochs"].nunique() < 2 or d["model"].nunique() < 2:
        return ""
    per_model = d.groupby("model", sort=True)["epochs"]
    if (per_model.nunique() > 1).any():
        return ""
    return ", ".join(f"{m} {level_text(e)}" for m, e in per_model.first().items()) + " epochs"


def _epochs_text(d: pd.DataFrame) -> str:
    """Each model's length (``"smallcnn 160, vit_tiny 32 epochs"``) when each has one, else ``"32, 160 epochs"``."""
    return model_lengths(d) or f"{levels_text(d['epochs'])} epochs"


def controlled(df: pd.DataFrame) -> pd.DataFrame:
    """The trials of ``df`` outside :data:`SEARCH_STUDIES` (the studies whose factors were set by a grid)."""
    return df[~df["study"].isin(SEARCH_STUDIES)]


def pick_study(df: pd.DataFrame, score: Callable[[pd.DataFrame], tuple | None]) -> tuple[str | None, list[str]]:
    """The study whose completed trials score highest (``score`` returns None when it cannot answer),
    and the other studies that could; a search study (:data:`SEARCH_STUDIES`) is never picked."""
    scored = []
    for name, g in completed(controlled(df)).groupby("study", sort=True):
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


def _forms(d: pd.DataFrame) -> pd.Series:
    """The ``budget`` of every trial of ``d`` ("epochs" when the frame has no such column)."""
    return d["budget"] if "budget" in d.columns else pd.Series(EPOCHS_FORM, index=d.index)


def start_weights(d: pd.DataFrame) -> pd.Series:
    """The ``pretrained`` of every trial of ``d`` ("none" when the frame has no such column)."""
    return d["pretrained"] if "pretrained" in d.columns else pd.Series(NOT_PRETRAINED, index=d.index)


def length_text(d: pd.DataFrame) -> str:
    """How long the trials of ``d`` trained: ``"12 epochs"`` or ``"a budget of 120,000 images seen (3, 4 epochs
    run)"`` (each budget of ``d``, ``; ``-joined)."""
    parts = []
    for form, g in d.groupby(_forms(d), sort=True):
        ep = levels_text(g["epochs"])
        parts.append(f"{ep} epochs" if form == EPOCHS_FORM else f"{budget_text(form)} ({ep} epochs run)")
    return "; ".join(parts) if parts else f"{levels_text(d['epochs'])} epochs"


def _weights_text(d: pd.DataFrame) -> str:
    """``"from scratch"`` or ``"pre-trained: shapes"``."""
    w = start_weights(d)
    return "from scratch" if (w == NOT_PRETRAINED).all() else f"pre-trained: {levels_text(w)}"


def _compared_at(d: pd.DataFrame) -> str:
    """The form of the runs' length an answer holds for: ``"equal epochs (12)"``, ``"equal steps (1,500)"``;
    at equal epochs with several mixed ratios, that the arms that mix more also train on more images."""
    forms = _forms(d)
    longer = _longer_mask(d)
    base = ~longer
    own = model_lengths(d[base]) if (forms == EPOCHS_FORM).all() else ""
    out = (
        f"equal epochs within each model ({own})"
        if own
        else "; ".join(
            form_label(f, d.loc[(forms == f) & base, "epochs"]).removeprefix("at ") for f in sorted(forms.unique())
        )
    )
    if longer.any():
        r = d[longer]
        out += f", except the arms re-run longer ({_epochs_text(r)})"
    if (forms == EPOCHS_FORM).all() and "ratio" in d.columns and d["ratio"].nunique() > 1:
        out += " (mixed images add compute: at a higher ratio a run trains on more images; not equal compute)"
    return out


def _longer_mask(d: pd.DataFrame) -> pd.Series:
    """The re-run trials of ``d`` (``_rerun_mask``) that trained longer than the shortest arm of their study and
    model: the arms a later part ran longer than the rest, even when they outnumber the rest (all False when every
    arm was re-run to one length per model)."""
    rerun = _rerun_mask(d)
    if not rerun.any():
        return rerun
    shortest = d.groupby(["study", "model"])["epochs"].transform("min")
    return rerun & (d["epochs"] > shortest)


def convergence_counts(d: pd.DataFrame) -> tuple[int, int] | None:
    """(trials of ``d`` that converged, trials whose convergence is known), or None when none is
    known (a study that predates the ``final_converged`` column)."""
    if "converged" not in d.columns:
        return None
    known = d["converged"].dropna()
    return (int(known.astype(bool).sum()), len(known)) if len(known) else None


def not_converged_change(d: pd.DataFrame) -> str | None:
    """What would change an answer when some of its trials had not converged (None when all had or
    it is not known)."""
    counts = convergence_counts(d)
    if counts is None or counts[0] == counts[1]:
        return None
    k, n = counts
    return (
        f"{n - k} of {n} trials had not converged (their best-so-far val mAP still gained {CONVERGENCE_MIN_GAIN:g} "
        f"points or more over the last {_WINDOW_TEXT} of the epochs): "
        f"longer training (more epochs or a larger budget) can change the size and even the sign of these effects."
    )


def conditions(all_trials: pd.DataFrame, used: pd.DataFrame) -> dict[str, str]:
    """What an answer holds for, read from the data: study, data set, model (and its starting weights),
    training, the form of the runs' length, seeds, trials, and how many trials converged (when recorded)."""
    out = {"study": levels_text(used["study"]) if len(used) else "n/a", "data": _data_text(used)}
    out["model"] = f"{levels_text(used['model'])} ({_weights_text(used)})"
    opt, lr = levels_text(_column(used, "optim.name")), levels_text(_column(used, "optim.lr"))
    bs = levels_text(_column(used, "train.batch_size"))
    out["training"] = f"{length_text(used)}, batch {bs}, {opt} lr {lr}"
    out["compared at"] = _compared_at(used)
    mix = used[used["arm"] != "baseline"]
    if len(mix):
        methods = ", ".join(method_name(m) for m in sorted(mix["method"].unique()))
        out["mixing"] = f"{methods}; ratio {levels_text(mix['ratio'])}; grids {levels_text(mix['grid'])}"
    out["seeds"] = _seeds_text(used)
    out["trials"] = _trials_text(all_trials, used)
    counts = convergence_counts(used)
    if counts is not None:
        out["convergence"] = f"{counts[0]} of {counts[1]} trials converged ({CONVERGED_TEXT})"
    rerun = rerun_text(used)
    if rerun:
        out["re-run longer"] = rerun
    return out


def _seeds_text(d: pd.DataFrame) -> str:
    """``"3 (0, 1, 2)"``, and ``"; 3 to 5 per condition"`` when the conditions (the study and the factors it
    varies, but not the length: a budget's epochs follow the data set) have different numbers of seeds."""
    seeds = sorted(int(s) for s in d["seed"].dropna().unique())
    text = f"{len(seeds)} ({', '.join(map(str, seeds))})"
    keys = ["study", *sorted(varying(d) - {"epochs", "budget"})]
    per = d.groupby(keys, dropna=False)["seed"].nunique()
    if len(per) and per.min() != per.max():
        text += f"; {per.min()} to {per.max()} per condition"
    return text


def rerun_text(d: pd.DataFrame) -> str:
    """Which trials of ``d`` re-ran a shorter run for more epochs (``analysis.load.supersede``): ``"5 trials
    (arm splicemix, ratio 1) at 80 epochs, superseding their 64-epoch runs"``, or ``"every arm (18 trials) at
    smallcnn 48, vit_tiny 24 epochs, …"``, with what the extra epochs gained; "" when none did."""
    rerun = _rerun_mask(d)
    r = d[rerun]
    if r.empty:
        return ""
    every = bool(rerun.all())
    if every:
        what = f"every arm ({len(r)} trials) at {_epochs_text(r)}"
    else:
        what = f"{len(r)} trial{'s' if len(r) != 1 else ''} ({_arm_keys_text(r)})"
        what += f" at {levels_text(r['epochs'])} epochs"
    out = (
        f"{what}, superseding their {levels_text(r['rerun_of'])}-epoch runs in another part of the study: "
        f"{'every arm is compared at its' if every else 'these arms are compared at their'} own, longer length"
    )
    gain = _gain_text(r)
    if gain:
        verb = _gain_verb(r)
        out += f"; the longer runs {verb} {gain} over their own seeds' shorter runs"
        change = "gain" if verb == "gained" else "change"
        out += "" if every else f", a {change} the other arms did not get (it is part of these arms' contrasts)"
    return out


def _arm_keys_text(r: pd.DataFrame) -> str:
    """The settings that name the arms of ``r``, each over the trials it means something for (``_factor_mask``):
    ``"arm splicemix, model smallcnn, ratio 1, grid default"``; a CutMix arm has no ratio, a SpliceMix arm no
    CL weight."""
    parts = []
    for f in ("arm", "model", "ratio", "grid", "cl_weight"):
        if f in r.columns:
            values = r.loc[_factor_mask(r, f), f].dropna()
            parts += [f"{f} {levels_text(values)}"] if len(values) else []
    return ", ".join(parts)


def _gain_verb(r: pd.DataFrame) -> str:
    """``"gained"`` when no model's re-runs lost mAP on average from their extra epochs, else ``"changed by"``."""
    means = [g["rerun_gain"].mean() for _, g in _gain_groups(r)]
    return "gained" if all(m >= 0 for m in means if pd.notna(m)) else "changed by"


def _gain_groups(r: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The re-runs of ``r`` per study and model where they span several (one group, key ``()``, otherwise)."""
    by = [c for c in ("study", "model") if c in r.columns and r[c].nunique() > 1]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in r.groupby(by, sort=True)] if by else [((), r)]


def _gain_text(r: pd.DataFrame) -> str:
    """The re-runs' mean ``rerun_gain`` with its range (``"+0.36 mAP on average (+0.25 to +0.46)"``), per study
    and model when they span several (``"cl_vit smallcnn +10.92 mAP on average (…)"``); "" when no re-run has one."""
    parts = []
    for key, g in _gain_groups(r):
        gain = g["rerun_gain"].dropna()
        if len(gain):
            avg = f"{gain.mean():+.2f} mAP on average ({gain.min():+.2f} to {gain.max():+.2f})"
            avg = avg if len(gain) > 1 else f"{gain.iloc[0]:+.2f} mAP (one trial)"
            parts.append(" ".join([*map(str, key), avg]))
    return ", ".join(parts)


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
    """What would change any answer: the small setting compared with the paper's, and how long the
    trials trained: "longer training" when their convergence is not recorded, else the number that
    had not converged (nothing when all had), and what the arms re-run longer gained from length alone."""
    size = levels_text(d["image_size"])
    unknown = convergence_counts(d) is None
    out = [
        f"The setting is small: {length_text(d)}, {size}-px {levels_text(d['dataset'])} images, "
        f"{levels_text(d['model'])} {_weights_text(d)}; the paper trains a pre-trained ResNet-101 at 448 px on "
        f"MS-COCO/VOC. {'Longer training, larger images' if unknown else 'Larger images'} or real data can "
        f"change the size and even the sign of these effects."
    ]
    change = not_converged_change(d)
    out += [change] if change else []
    r = d[_longer_mask(d)]
    if len(r) and r["rerun_gain"].notna().any():
        per_model = model_lengths(r)
        keys = ("study",) if per_model else ("study", "model")
        which = " ".join([*(levels_text(r[c]) for c in keys if d[c].nunique() > 1), "arm"])
        at = f"at its model's longer length ({per_model})" if per_model else f"at {levels_text(r['epochs'])} epochs"
        out.append(
            f"The arms re-run longer {_gain_verb(r)} {_gain_text(r)} from their extra epochs alone; running "
            f"every {which} {at} would compare them all at equal length."
        )
    return out


#: the paper's gains on MS-COCO (ResNet-101, 448 px), mAP points: (treatment, control) -> gain
PAPER_GAINS = {("splicemix", "baseline"): 1.4, ("splicemix_cl", "splicemix"): 0.5}
_PAPER_TEXT = "SpliceMix +1.4 mAP over the baseline and SpliceMix-CL +0.5 over SpliceMix on MS-COCO"
_PAIR_CELL = ["study", "model", "n_train", "imbalance", "budget", "pretrained", "epochs"]


def direction_word(mean: float, resolved: bool, paper: float) -> str:
    """How a difference compares with the paper's direction: agrees / disagrees, resolved or not."""
    same = (mean > 0) == (paper > 0) and mean != 0
    if resolved:
        return "agrees (resolved, the paper's direction)" if same else "disagrees (resolved, the opposite direction)"
    return "not resolved (the paper's direction)" if same else "not resolved (the opposite direction)"


def _headline(d: pd.DataFrame) -> pd.DataFrame:
    """The trials at the paper's setting where tested: mixed ratio 0.25 and the default grids (baselines kept)."""
    mix = d["arm"] != "baseline"
    for col, want in (("ratio", PAPER_RATIO), ("grid", "default")):
        if col in d.columns and (d.loc[mix, col] == want).any():
            d = d[~mix | (d[col] == want)]
            mix = d["arm"] != "baseline"
    return d


def _paired_length(d: pd.DataFrame) -> pd.Series:
    """The length a trial is paired at: its epochs; a re-run's the epochs of the runs it superseded (it stands in
    their arm's place); 0 under a budget (the ``budget`` cell is the length: at equal images, a ratio's epochs
    are its own)."""
    e = d["rerun_of"].fillna(d["epochs"]) if "rerun_of" in d.columns else d["epochs"]
    return e.where(_forms(d) == EPOCHS_FORM, 0)


def paper_direction(d: pd.DataFrame, level: float = 0.95) -> str:
    """Whether the trials ``d`` go the paper's direction: SpliceMix − baseline and SpliceMix-CL − SpliceMix,
    seed-paired within a cell (study, model, data, length, weights), at the paper's setting where tested."""
    if not len(d) or "arm" not in d.columns:
        return ""
    h = _headline(d)
    h = h.assign(epochs=_paired_length(h))
    keys = [k for k in _PAIR_CELL if k in h.columns and h[k].notna().all()]
    pairs = list(PAPER_GAINS.items())
    tables = holm_tables([paired_diff(h, keys, t, c, "mAP", factor="arm", level=level) for (t, c), _ in pairs], level)
    parts = []
    for ((treat, control), gain), t in zip(pairs, tables, strict=True):
        if not len(t):
            continue
        words = [direction_word(r["mean"], bool(r["resolved"]), gain) for _, r in t.iterrows()]
        what = f"{method_name(treat)} − {method_name(control)}"
        if len(t) == 1:
            r = t.iloc[0]
            parts.append(f"{what} {fmt_ci(r['mean'], r['lo'], r['hi'], sign=True)} (paper {gain:+g}): {words[0]}")
        else:
            agree = sum(w.startswith("agrees") for w in words)
            against = sum(w.startswith("disagrees") for w in words)
            parts.append(
                f"{what} over {len(t)} cells, mean differences {t['mean'].min():+.2f} to {t['mean'].max():+.2f} "
                f"(paper {gain:+g}): agrees (resolved) in {agree}, disagrees (resolved) in {against}, "
                f"unresolved in {len(t) - agree - against}"
            )
    if not parts:
        return (
            f"This answer's trials hold no seed-paired baseline / SpliceMix / SpliceMix-CL comparison, so they do "
            f"not test the paper's direction ({_PAPER_TEXT})."
        )
    m = int(next(t["holm_m"].iloc[0] for t in tables if len(t)))
    family = "this contrast" if m == 1 else f"these {m} contrasts"
    return (
        f"The paper: {_PAPER_TEXT}. Here ({length_text(d)}, {_weights_text(d)}; resolved after Holm over {family}): "
        + "; ".join(parts)
        + "."
    )
