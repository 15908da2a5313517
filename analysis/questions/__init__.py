"""The paper's three open questions and its claims, answered from a tidy trial frame.

Every function takes the frame of :func:`analysis.load.load_studies` (any set of studies), finds
the study that can answer it by which configuration columns vary among its completed trials,
and returns an :class:`Answer`: tables, a plain-English verdict with numbers and intervals, the
conditions it holds for, and what would change it. When no loaded study can answer, the verdict
says so and names the search space that would.

One module per question: :mod:`.q1` (grid scaling), :mod:`.q2` (ratio by data set), :mod:`.q3`
(SpliceMix-CL on a ViT vs a CNN), :mod:`.claims` (the paper's claims); :mod:`.common` holds what
they share, :mod:`.forms` the answer once per form of the runs' length (equal epochs, or a budget
of images, steps or seconds: equal compute) with whether the forms agree, and
:mod:`analysis.prose` the sentences. :func:`answer_all` (what the report uses) answers every
question per form; the question functions themselves hold a study's budget at one level.

Units: mAP in percent; differences in mAP points. Intervals: ``level`` two-sided t intervals
over seeds (seed-paired for differences); the best level and the quadratic peak use a bootstrap
over seeds.
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from .claims import claims
from .common import FACTORS, SPACES, Answer, conditions, grid_spec, parse_grid, varying
from .forms import agreement, by_form
from .q1 import q1_grid_scaling
from .q2 import q2_ratio_by_data
from .q3 import q3_cl_vit

__all__ = [
    "Answer",
    "q1_grid_scaling",
    "q2_ratio_by_data",
    "q3_cl_vit",
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
    """Q1, Q2, Q3 and the claims, in that order, each once per form of the runs' length its study
    holds (:func:`by_form`)."""
    return [
        *by_form(partial(q1_grid_scaling, level=level, n_boot=n_boot, seed=seed), df),
        *by_form(partial(q2_ratio_by_data, level=level, n_boot=n_boot, seed=seed), df),
        *by_form(partial(q3_cl_vit, level=level, n_boot=n_boot, seed=seed), df),
        *by_form(partial(claims, level=level), df),
    ]
