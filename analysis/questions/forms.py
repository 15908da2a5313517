"""Equal epochs and equal compute as separate forms of an answer.

A trial's length is fixed either by ``train.epochs`` (the paper's protocol: equal epochs) or by a
``train.budget`` of images seen, steps or seconds (equal compute): the ``budget`` alias. Mixed
images add compute, so a comparison at equal epochs is not one at equal compute, and the two are
never pooled (``budget`` is one of the :data:`~.common.FACTORS`). When the studies an answer uses
hold trials in more than one form, :func:`by_form` answers the question once per form, from those
studies' trials of that form, and says whether the forms agree: the same ``key_results`` (the
best level, ...) and no contrast resolved in opposite directions.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..load import EPOCHS_FORM, budget_parts, completed
from ..prose import form_label, level_text, sign_word
from .common import Answer, conditions

__all__ = ["by_form", "agreement", "contrast_signs", "form_slug"]

#: columns of a contrast table that are its numbers, not what it compares
_STATS = {
    "mean",
    "sd",
    "n",
    "lo",
    "hi",
    "treat_mean",
    "control_mean",
    "p",
    "resolved",
    "method",
    "headline",
    "p_holm",
    "resolved_raw",
    "holm_m",
    "paper",
    "direction",
}
_LIMIT = 3  # differences named in the agreement sentence


def form_slug(budget: str) -> str:
    """A ``budget`` value as a file-name part: ``"epochs"``, ``"images_120000"``."""
    return str(budget).replace(" ", "_")


def _as_list(x: Answer | list[Answer]) -> list[Answer]:
    return list(x) if isinstance(x, list) else [x]


def _form_order(budget: str) -> tuple:
    """Equal epochs first, then the budgets by kind and amount."""
    kind, amount = budget_parts(budget)
    try:
        x = float(amount)
    except ValueError:
        x = 0.0
    return (kind != EPOCHS_FORM, kind, x, str(budget))


def _forms_of(df: pd.DataFrame, a: Answer) -> list[str]:
    """The forms among the completed trials of the studies answer ``a`` used (one when it used none)."""
    if not a.answerable or a.data is None or "budget" not in df.columns:
        return []
    c = completed(df[df["study"].isin(a.data["study"].unique())])
    forms = sorted(c["budget"].dropna().unique(), key=_form_order)
    return forms if len(forms) > 1 else []


def _label(a: Answer, trials: pd.DataFrame, form: str) -> str:
    used = a.data if a.answerable and a.data is not None else trials
    return form_label(form, used.loc[used["budget"] == form, "epochs"] if "budget" in used.columns else None)


def by_form(question: Callable[[pd.DataFrame], Answer | list[Answer]], df: pd.DataFrame) -> list[Answer]:
    """``question(df)`` (one answer or a list), with every answer whose studies hold trials in more than
    one form replaced by one answer per form, combined (``forms``, ``agreement``; tables suffixed by
    :func:`form_slug`). A one-form answer is returned as ``question`` gave it, its ``form`` set."""
    out = []
    for a in _as_list(question(df)):
        forms = _forms_of(df, a)
        if not forms:
            if a.answerable and a.data is not None and "budget" in a.data.columns and a.data["budget"].nunique() == 1:
                a.form = str(a.data["budget"].iloc[0])
                a.form_label = _label(a, a.data, a.form)
            out.append(a)
            continue
        studies = a.data["study"].unique() if a.data is not None else []
        per = []
        for form in forms:
            sub = df[df["study"].isin(studies) & (df["budget"] == form)]
            f = next(x for x in _as_list(question(sub)) if x.title == a.title)
            if f.answerable and f.data is not None:
                f.conditions = conditions(df, f.data)  # the trial counts of the whole study
            f.form, f.form_label = form, _label(f, sub, form)
            per.append(f)
        out.append(_combine(a, per))
    return out


def form_heading(f: Answer) -> str:
    """A form's label as the opening of a sentence: "At equal epochs (12)"."""
    return f.form_label[:1].upper() + f.form_label[1:]


def _combine(a: Answer, per: list[Answer]) -> Answer:
    """One answer over several forms: each form's answer, and whether they agree."""
    ok = [f for f in per if f.answerable]
    sentence = agreement(per)
    verdict = " ".join(f"{form_heading(f)}: {f.verdict}" for f in per) + " " + sentence
    return Answer(
        a.key,
        a.title,
        a.question,
        bool(ok),
        verdict,
        a.study,
        partial=any(f.partial for f in ok),
        tables={f"{name}_{form_slug(f.form or '')}": t for f in per for name, t in f.tables.items()},
        notes=[n for n in a.notes if n.startswith("other studies")],
        data=pd.concat([f.data for f in ok if f.data is not None], ignore_index=True) if ok else None,
        forms=per,
        agreement=sentence,
    )


def contrast_signs(a: Answer) -> dict[tuple, tuple[str, int]]:
    """Every contrast in ``a.tables`` (a table with ``resolved`` and ``mean`` columns), keyed by its
    table and what it compares: (its label, +1 / -1 when resolved > 0 / < 0, else 0)."""
    out: dict[tuple, tuple[str, int]] = {}
    for name, t in a.tables.items():
        if not len(t) or not {"resolved", "mean"} <= set(t.columns):
            continue
        keys = [c for c in t.columns if c not in _STATS]
        for _, r in t.iterrows():
            vals = tuple(level_text(r[k]) for k in keys)
            sign = (1 if r["mean"] > 0 else -1) if bool(r["resolved"]) else 0
            out[(name, *vals)] = (_contrast_label(name, dict(zip(keys, vals, strict=True))), sign)
    return out


def _contrast_label(table: str, keys: dict[str, str]) -> str:
    """``"1x4 − 2x2 (vs_ref)"``, ``"SpliceMix-CL − baseline [model smallcnn] (vs_baseline)"``."""
    head = f"{keys.pop('treat')} − {keys.pop('control')}" if {"treat", "control"} <= set(keys) else ""
    rest = ", ".join(f"{k} {v}" for k, v in keys.items())
    body = f"{head} [{rest}]" if head and rest else (head or rest)
    return f"{body} ({table})"


def _limited(items: list[str]) -> str:
    more = len(items) - _LIMIT
    return "; ".join(items[:_LIMIT]) + (f"; and {more} more" if more > 0 else "")


def agreement(per: list[Answer]) -> str:
    """One sentence: do the forms' answers agree (the same ``key_results``, no contrast resolved in
    opposite directions), or where they differ."""
    ok = [f for f in per if f.answerable]
    if len(ok) < 2:
        only = f"only {ok[0].form_label} can" if ok else "no form can"
        return f"The forms cannot be compared: {only} the loaded results answer this."
    same, differ = [], []
    for k in [k for k in ok[0].key_results if all(k in f.key_results for f in ok)]:
        vals = [f.key_results[k] for f in ok]
        if len(set(vals)) == 1:
            same.append(f"the same {k} ({vals[0]})")
        else:
            differ.append(f"{k}: " + " vs ".join(f"{v} {f.form_label}" for v, f in zip(vals, ok, strict=True)))
    signs = [contrast_signs(f) for f in ok]
    common = [k for k in signs[0] if all(k in s for s in signs[1:])]
    every = some = 0
    for k in common:
        ss = [s[k][1] for s in signs]
        resolved = {x for x in ss if x}
        if len(resolved) > 1:
            words = " vs ".join(f"{sign_word(x)} {f.form_label}" for x, f in zip(ss, ok, strict=True))
            differ.append(f"{signs[0][k][0]}: {words}")
        elif resolved and all(ss):
            every += 1
        elif resolved:
            some += 1
    if differ:
        return f"The forms differ: {_limited(differ)}."
    agreed = f"{', '.join(same)}; " if same else ""
    counts = (
        f"of {len(common)} contrasts compared, {every} are resolved the same way in every form and {some} "
        f"in some forms only"
    )
    return f"The forms agree: {agreed}no contrast is resolved in opposite directions ({counts})."
