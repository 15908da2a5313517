"""Write the question notebooks (without outputs) from this one source.

    python -m analysis.notebooks.build        # rewrites analysis/notebooks/*.ipynb, outputs cleared
    python -m analysis.notebooks.execute      # then runs them and saves the outputs

Each notebook finds the repository root by walking up from its working directory to the folder
holding ``pyproject.toml``, loads the committed results under ``analysis/results/<study>/`` and
answers its question with the package's functions; a study that is not there yet is reported,
not an error.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """import sys
from pathlib import Path

ROOT = Path.cwd().resolve()  # walk up to the repository root (the folder holding pyproject.toml)
while not (ROOT / "pyproject.toml").is_file():
    if ROOT.parent == ROOT:
        raise FileNotFoundError("no pyproject.toml above the notebook's folder: open it inside the repository")
    ROOT = ROOT.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd
from IPython.display import Markdown, display

from analysis import load_history, load_studies, status_counts
from analysis import plots

pd.set_option("display.precision", 3)
RESULTS = ROOT / "analysis" / "results"
STUDIES = {studies}
present = [RESULTS / s for s in STUDIES if (RESULTS / s / "trials.parquet").is_file()]
missing = [s for s in STUDIES if (RESULTS / s) not in present]
for s in missing:
    print(f"analysis/results/{{s}}/ is not there yet: run `python -m study.run search_spaces/{{s}}.yaml` and copy "
          f"its trials.parquet, history.parquet, provenance.json and study.yaml into analysis/results/{{s}}/.")
if present:
    trials = load_studies(*present)
    history = load_history(*present)
    for s, g in trials.groupby("study"):
        print(f"{{s}}: {{len(g)}} trials, {{status_counts(g)}}")
else:
    trials = history = None
    print("No results to analyse yet: the cells below will say so and draw nothing.")"""

SHOW = '''def show(answer):
    """Print an answer: verdict, details, conditions, what would change it."""
    if answer is None:
        print("No results loaded.")
        return
    display(Markdown(f"**{{answer.title}}**\\n\\n" + ("" if answer.answerable else "**Cannot be answered from the "
                                                        "loaded results.** ") + answer.verdict))
    if answer.bullets:
        display(Markdown("\\n".join(f"- {{b}}" for b in answer.bullets)))
    if answer.conditions:
        display(Markdown("**Holds for:**\\n\\n" + "\\n".join(f"- {{k}}: {{v}}" for k, v in answer.conditions.items())))
    if answer.changes:
        display(Markdown("**What would change it:**\\n\\n" + "\\n".join(f"- {{c}}" for c in answer.changes)))

{compute}
for a in (answer if isinstance(answer, list) else [answer]):
    show(a)'''

TABLES = """tabs = {tables_expr}
if not tabs:
    print("No tables: the loaded results cannot answer this question.")
for name, t in tabs.items():
    display(Markdown(f"**{{name}}**"))
    display(t)"""

FIGURE = """if {cond}:
    fig = plots.{fn}({arg})
else:
    print("No figure: the loaded results cannot answer this question.")"""

CURVES = """if history is not None and len(history):
    fig = plots.fig_learning_curves(history)
else:
    print("No learning curves: no history loaded.")"""


def _nb(
    title: str,
    intro: str,
    studies: list[str],
    compute: str,
    tables_expr: str,
    figures: list[tuple[str, str, str]],
    reading: str,
) -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            f"# {title}\n\n{intro}\n\n"
            "Results are read from the committed study directories under `analysis/results/` "
            f"({', '.join(f'`{s}/`' for s in studies)}); re-run every notebook with "
            "`python -m analysis.notebooks.execute` (or `--check` to test them without writing). "
            "mAP is in percent, differences in mAP points; intervals are 95% t intervals over seeds "
            "(seed-paired for differences), the best level uses a bootstrap over seeds."
        ),
        new_markdown_cell(
            "## Load the results\n\nThe notebook finds the repository root from its own folder and "
            "loads what is there; a study that has not been run yet is reported, not an error."
        ),
        new_code_cell(SETUP.format(studies=repr(studies))),
        new_markdown_cell(f"## The answer\n\n{reading}"),
        new_code_cell(SHOW.format(compute=compute)),
        new_markdown_cell(
            "## Tables\n\n`mean`, `sd`, `n`, `lo`, `hi`: mean over seeds, its standard deviation, "
            "the number of seeds (or seed pairs) and the interval."
        ),
        new_code_cell(TABLES.format(tables_expr=tables_expr)),
        new_markdown_cell("## Figures\n\nEvery point is one trial (one seed); diamonds are means with their interval."),
    ]
    for cond, fn, arg in figures:
        cells.append(new_code_cell(FIGURE.format(cond=cond, fn=fn, arg=arg)))
    cells += [
        new_markdown_cell(
            "## Learning curves\n\nValidation mAP per epoch; a curve still rising at the last "
            "epoch means the comparison is between models that are not yet converged."
        ),
        new_code_cell(CURVES),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def notebooks() -> dict[str, nbformat.NotebookNode]:
    """name -> notebook."""
    ok = "answer is not None and answer.answerable"
    return {
        "q1_grid_scaling.ipynb": _nb(
            "Q1. Grid scaling at a constant number of mixed images",
            "How does mAP change with the number of grid divisions (1x2, 2x2, 2x3, 3x3) and with the orientation "
            "(1x4 vs 2x2 vs 4x1) when the number of mixed images per batch is held constant? Study: "
            "`search_spaces/grid_scaling.yaml` (7 grids x 3 seeds, ratio 0.25, no dropped cells, no "
            "transposition).",
            ["grid_scaling"],
            "from analysis import q1_grid_scaling\nanswer = q1_grid_scaling(trials) if trials is not None else None",
            "answer.tables if answer is not None else {}",
            [(ok, "fig_grid_scaling", "answer")],
            "The trend is a per-seed least-squares slope of mAP on the number of cells (seeds are the replicates); "
            "orientation is read from seed-paired differences from 2x2.",
        ),
        "q2_ratio_by_data.ipynb": _nb(
            "Q2. The best mixed-to-regular ratio per data-set size and class imbalance",
            "Which ratio |B'|/|B| of mixed to regular images works best, and does it depend on the training-set "
            "size and the class imbalance? Study: `search_spaces/ratio_data.yaml` (ratios 0 / 0.125 / 0.25 / 0.5 x "
            "500 / 1000 / 2000 images x imbalance 0 / 1 x 2 seeds); `ratio/` (the main job, one data set) is used "
            "when it is the only one there.",
            ["ratio_data", "ratio"],
            "from analysis import q2_ratio_by_data\nanswer = q2_ratio_by_data(trials) if trials is not None else None",
            "answer.tables if answer is not None else {}",
            [(ok, "fig_ratio_by_data", "answer")],
            "Per (n_train, imbalance) cell: the best tested ratio with how often it wins when seeds are resampled, a "
            "quadratic fit's peak (clipped to the tested range), and seed-paired differences from ratio 0.",
        ),
        "q3_cl_vit.ipynb": _nb(
            "Q3. Does SpliceMix-CL help a Vision Transformer as it helps a CNN?",
            "The consistency loss of SpliceMix-CL splits a mixed image's feature map by the grid; a ViT's token map "
            "is split the same way. Study: `search_spaces/cl_vit.yaml` (smallcnn and vit_tiny x baseline / "
            "SpliceMix / SpliceMix-CL x 3 seeds).",
            ["cl_vit"],
            "from analysis import q3_cl_vit\nanswer = q3_cl_vit(trials) if trials is not None else None",
            "answer.tables if answer is not None else {}",
            [(ok, "fig_cl_gain", "answer")],
            "The CL gain is SpliceMix-CL − SpliceMix on the same seed; the interaction is the ViT's gain minus the "
            "CNN's, paired by seed.",
        ),
        "claims.ipynb": _nb(
            "The paper's claims: SpliceMix vs the baseline",
            "The paper reports SpliceMix +1.4 and SpliceMix-CL +1.9 mAP points over the baseline on MS-COCO "
            "(ResNet-101, 448 px), robustness to low-resolution evaluation and less co-occurrence bias. Every "
            "committed study with baseline trials (method baseline, or ratio 0) and mixing trials is used.",
            ["ratio", "ratio_data", "cl_vit", "grid_scaling"],
            "from analysis import claims\nanswer = claims(trials) if trials is not None else None",
            "{f'{a.key}: {k}': t for a in answer for k, t in a.tables.items()} if answer else {}",
            [("answer is not None and answer[0].answerable", "fig_claims", "answer")],
            "Each claim is checked on the headline setting (ratio 0.25 with the default grids, or the closest tested "
            "ratio) against the baseline of the same study, seed-paired.",
        ),
    }


def main() -> None:
    """Write every notebook of :func:`notebooks` (validated, outputs cleared) next to this file."""
    for name, nb in notebooks().items():
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
