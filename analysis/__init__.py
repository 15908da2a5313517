"""Analysis of SpliceMix study results: tidy loading, small-sample statistics over seeds, the
paper's open questions and claims, paper figures, and the ``answers.md`` report.

    from analysis import load_studies, q2_ratio_by_data
    df = load_studies("analysis/results/ratio_data")
    print(q2_ratio_by_data(df).verdict)

Command line: ``python -m analysis.report STUDY_DIR... --out DIR``. Figures live in
:mod:`analysis.plots` (imported on demand: it needs matplotlib and seaborn). Reads Parquet and
JSON only: nothing from ``study/`` or Ray is imported; result names and grids come from
:mod:`splicemix.results` and :mod:`splicemix.grids`.
"""

from pathlib import Path

from . import extras  # noqa: F401 - first: one clear error when the extras are missing
from .load import (
    ALIASES,
    METRICS,
    StudyLoadError,
    check_study_dir,
    completed,
    dedupe,
    load_history,
    load_provenance,
    load_studies,
    status_counts,
    supersede,
    tidy_trials,
)
from .questions import (
    Answer,
    answer_all,
    claims,
    grid_spec,
    methods_table,
    parse_grid,
    q1_drops,
    q1_grid_scaling,
    q2_main_ratio,
    q2_ratio_by_data,
    q3_cl_vit,
    q3_cl_weight,
    tuned_answer,
    varying,
)
from .stats import (
    CI,
    ArgmaxResult,
    argmax_ci,
    diff_ci,
    holm,
    mean_ci,
    paired_diff,
    paired_values,
    quad_vertex,
    summarize,
)

__all__ = [
    "ALIASES",
    "METRICS",
    "StudyLoadError",
    "check_study_dir",
    "completed",
    "load_history",
    "load_provenance",
    "load_studies",
    "dedupe",
    "status_counts",
    "supersede",
    "tidy_trials",
    "CI",
    "ArgmaxResult",
    "argmax_ci",
    "diff_ci",
    "holm",
    "mean_ci",
    "paired_diff",
    "paired_values",
    "quad_vertex",
    "summarize",
    "Answer",
    "answer_all",
    "claims",
    "grid_spec",
    "parse_grid",
    "q1_grid_scaling",
    "q2_ratio_by_data",
    "q2_main_ratio",
    "q3_cl_vit",
    "q1_drops",
    "q3_cl_weight",
    "methods_table",
    "tuned_answer",
    "varying",
    "repo_root",
]


def repo_root(start: str | None = None) -> Path:
    """The directory holding ``pyproject.toml``, walking up from ``start`` (default: the cwd)."""
    p = Path(start or ".").resolve()
    for d in (p, *p.parents):
        if (d / "pyproject.toml").is_file():
            return d
    raise FileNotFoundError(f"no pyproject.toml above {p}")
