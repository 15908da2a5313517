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
def parts(s):  # a study's folder, or the folders of its parts (s-a, s-b, ...): the loader merges them
    return sorted(p for p in RESULTS.glob(f"{{s}}*") if p.name == s or p.name.startswith(s + "-"))
present = [p for s in STUDIES for p in parts(s) if (p / "trials.parquet").is_file()]
missing = [s for s in STUDIES if not any((p / "trials.parquet").is_file() for p in parts(s))]
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
    for i, cell in enumerate(cells):  # fixed ids (nbformat draws random ones): a rebuild diffs nothing
        cell.id = f"cell-{i:02d}"
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
            "size and the class imbalance? Study: `search_spaces/ratio_data.yaml` (ratios 0 / 0.25 / 0.5 x "
            "500 / 1000 / 2000 images x imbalance 0 / 1 x 3 seeds, at equal steps). The main job's one data set "
            "has its own notebook, q2_main_ratio.",
            ["ratio_data"],
            "from analysis import q2_ratio_by_data\nanswer = q2_ratio_by_data(trials) if trials is not None else None",
            "answer.tables if answer is not None else {}",
            [(ok, "fig_ratio_by_data", "answer")],
            "Per (n_train, imbalance) cell: the best tested ratio with how often it wins when seeds are resampled, a "
            "quadratic fit's peak (clipped to the tested range), and seed-paired differences from ratio 0.",
        ),
        "q2_main_ratio.ipynb": _nb(
            "Q2 on the main job's data set: the best mixed-to-regular ratio at the longest training",
            "Which ratio |B'|/|B| (0 / 0.25 / 0.5 / 1, default grids) gives the best mAP on the main job's one data "
            "set, and by how much does it beat no mixing and the other ratios? Study: "
            "`search_spaces/ratio_converged.yaml` (64 epochs x 5 seeds, run in parts), the converged rerun of "
            "`search_spaces/ratio.yaml`; the study whose trials converged most often is used.",
            ["ratio_converged"],
            "from analysis import q2_main_ratio\nanswer = q2_main_ratio(trials) if trials is not None else None",
            "answer.tables if answer is not None else {}",
            [(ok, "fig_ratio_main", "answer")],
            "Every ratio minus ratio 0 and the best ratio minus every other ratio are seed-paired differences, "
            "Holm-corrected together; the best ratio's share is how often it wins when seeds are resampled.",
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
            ["ratio_converged", "ratio_data", "cl_vit", "methods", "tuned_confirm", "grid_scaling"],
            "from analysis import claims\nanswer = claims(trials) if trials is not None else None",
            "{f'{a.key}: {k}': t for a in answer for k, t in a.tables.items()} if answer else {}",
            [("answer is not None and answer[0].answerable", "fig_claims", "answer")],
            "Each claim is checked on the headline setting (ratio 0.25 with the default grids, or the closest tested "
            "ratio) against the baseline of the same study, seed-paired.",
        ),
        **_new_notebooks(ok),
    }


def _new_notebooks(ok: str) -> dict[str, nbformat.NotebookNode]:
    """The notebooks of the newer answers: the drops, the CL weight, the methods table, the tuned configuration."""
    tables = "answer.tables if answer is not None else {}"
    return {
        "q1_drops.ipynb": _nb(
            "Q1. Dropped cells: mAP vs the number of dropped cells per grid",
            "How does mAP change with the number of dropped cells D of a 2x2 or 2x3 grid (RxC-D vs RxC on the same "
            "seed, the mixed images per batch held constant), and how do fixed drops compare with the default "
            "preset's random drops? Study: `search_spaces/drops.yaml` (11 grids x 3 seeds, ratio 0.25, drop_prob 0).",
            ["drops"],
            "from analysis import q1_drops\nanswer = q1_drops(trials) if trials is not None else None",
            tables,
            [(ok, "fig_drops", "answer")],
            "Each RxC-D minus RxC and each fixed grid minus the default preset are seed-paired differences, "
            "Holm-corrected together; the slope is a per-seed least-squares fit of mAP on D.",
        ),
        "q3_cl_weight.ipynb": _nb(
            "Q3. The best SpliceMix-CL weight per model",
            "Which consistency weight works best on the pretrained CNN and the pretrained ViT, and what does each "
            "weight gain over weight 0 (SpliceMix-CL's path without the consistency loss)? Study: "
            "`search_spaces/cl_weight.yaml` (weights 0 / 0.25 / 0.5 / 1 / 2 x smallcnn, vit_tiny x 3 seeds).",
            ["cl_weight"],
            "from analysis import q3_cl_weight\nanswer = q3_cl_weight(trials) if trials is not None else None",
            tables,
            [(ok, "fig_cl_weight", "answer")],
            "The best weight is the argmax of the seed means with a bootstrap over seeds; the gains over weight 0 "
            "are seed-paired and Holm-corrected together.",
        ),
        "methods.ipynb": _nb(
            "Methods: baseline, MixUp, CutMix, SpliceMix and SpliceMix-CL beside the paper",
            "The five methods on the same data and seeds (mAP, CF1, OF1) beside the paper's MS-COCO table "
            "(baseline 83.0 / 77.9 / 80.3, MixUp 83.7, CutMix 83.5, SpliceMix 84.4, SpliceMix-CL 84.9 mAP). Study: "
            "`search_spaces/methods.yaml` (5 methods x 5 seeds).",
            ["methods"],
            "from analysis import methods_table\nanswer = methods_table(trials) if trials is not None else None",
            tables,
            [(ok, "fig_methods", "answer")],
            "Each method's difference from the baseline is seed-paired, Holm-corrected over every method and "
            "metric, and compared with the paper's difference from its baseline (the same direction or not).",
        ),
        "tuned.ipynb": _nb(
            "The tuned configuration vs the default preset and the baseline",
            "The best configuration a TPE + ASHA search found (`search_spaces/tuned.yaml`), confirmed on fresh "
            "seeds against the baseline and the authors' default preset (`search_spaces/tuned_confirm.yaml`).",
            ["tuned", "tuned_confirm"],
            "from analysis import tuned_answer\nanswer = tuned_answer(trials) if trials is not None else None",
            tables,
            [(ok, "fig_tuned", "answer")],
            "The search's best completed trial is one seed's best of many (optimistic); the confirmation's "
            "seed-paired differences, Holm-corrected over the three, are the estimate.",
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
