"""The paper's three open questions and its claims, answered from a tidy trial frame.

Every function takes the frame of :func:`analysis.load.load_studies` (any set of studies), finds
the study that can answer it by which configuration columns vary among its completed trials,
and returns an :class:`Answer`: tables, a plain-English verdict with numbers and intervals, the
conditions it holds for, and what would change it. When no loaded study can answer, the verdict
says so and names the search space that would.

One module per question: :mod:`.q1` (grid scaling and orientation), :mod:`.q1_drops` (the drop count),
:mod:`.q2` (ratio by data set), :mod:`.q2_main` (the ratio on the main job's data set),
:mod:`.q3` (SpliceMix-CL on a ViT vs a CNN), :mod:`.q3_weight` (the best CL weight), :mod:`.methods`
(the methods table beside the paper's), :mod:`.tuned` (the tuned configuration), :mod:`.claims` (the
paper's claims); :mod:`.common` holds what they share, :mod:`.forms` the answer once per form of the
runs' length (equal epochs, or a budget of images, steps or seconds: equal compute) with whether the
forms agree, and :mod:`analysis.prose` the sentences. :func:`answer_all` (what the report uses) answers every
question per form; the question functions themselves hold a study's budget at one level.

Units: mAP in percent; differences in mAP points. Intervals: ``level`` two-sided t intervals
over seeds (seed-paired for differences); the best level and the quadratic peak use a bootstrap
over seeds. An answer with several contrasts resolves them with Holm's correction within the
answer (:func:`analysis.stats.holm_tables`).
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from .claims import claims
from .common import FACTORS, SPACES, Answer, conditions, grid_spec, parse_grid, varying
from .forms import agreement, by_form
from .methods import methods_table
from .q1 import q1_grid_scaling
from .q1_drops import q1_drops
from .q2 import q2_ratio_by_data
from .q2_main import q2_main_ratio
from .q3 import q3_cl_vit
from .q3_weight import q3_cl_weight
from .tuned import tuned_answer

__all__ = [
    "Answer",
    "q1_grid_scaling",
    "q2_ratio_by_data",
    "q2_main_ratio",
    "q3_cl_vit",
    "q1_drops",
    "q3_cl_weight",
    "methods_table",
    "tuned_answer",
    "claims",
    "answer_all",
    "by_form",
    "agreement",
    "grid_spec",
    "parse_grid",
    "varying",
    "SPACES",
    "FACTORS",
    "conditions",
]


def answer_all(df: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> list[Answer]:
    """Q1 (grids, then drops), Q2 (by data set, then on the main job's data set), Q3 (ViT vs CNN, then
    the CL weight), the methods table, the tuned configuration and the claims, in that order, each once
    per form of the runs' length its study holds (:func:`by_form`)."""
    kw = {"level": level, "n_boot": n_boot, "seed": seed}
    questions = [
        q1_grid_scaling,
        q1_drops,
        q2_ratio_by_data,
        q2_main_ratio,
        q3_cl_vit,
        q3_cl_weight,
        methods_table,
        tuned_answer,
    ]
    out = [a for q in questions for a in by_form(partial(q, **kw), df)]
    return out + by_form(partial(claims, level=level), df)
