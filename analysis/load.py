"""Read study directories written by ``python -m study.run`` into tidy pandas frames.

A study directory holds ``trials.parquet`` (one row per trial), ``history.parquet`` (one row per
trial per epoch), ``provenance.json`` and ``study.yaml``. Only Parquet and JSON are read here:
nothing from ``study/`` or Ray is imported; the column names come from :mod:`splicemix.results`.

:func:`load_studies` returns one row per trial with the short aliases the analyses use:

=============  ==================================================================================
``study``      the directory's name; a study run in parts (``ratio_converged-a``, ``ratio_converged-b``,
               ``x-part1``...) is one study, named without the part suffix, when the parts share the
               stem or their ``study.yaml`` names it (:func:`study_names`)
``folder``     the directory's own name (the part a trial comes from)
``method``     ``cfg.mix.method`` (baseline | mixup | cutmix | splicemix | splicemix_cl)
``arm``        ``"baseline"`` when no image is mixed (method baseline or ratio 0), else ``method``
``model``      ``cfg.model.name``
``ratio``      ``cfg.mix.mixed_ratio`` (a baseline trial counts as 0; null is the presets' 0.25,
               ``splicemix.grids.DEFAULT_MIXED_RATIO``); NaN for MixUp / CutMix, which mix the
               batch in place and append no images
``grid``       ``cfg.mix.grids`` as text (``"2x2"``, ``"default"``, ``"1x2+2x2"`` for a list); NaN
               for MixUp / CutMix
``n_train``    ``cfg.data.synthetic.n_train`` (synthetic data; else ``cfg.data.train_limit``)
``imbalance``  ``cfg.data.synthetic.imbalance`` (synthetic data; else NaN)
``seed``       the trial's seed
``cl_weight``  ``cfg.mix.cl_weight``
``mAP``        ``final_mAP`` (%, last epoch)
``mAP_low``    ``final_mAP@S`` for the smallest evaluated size S (``low_size``)
``mAP_rare``   ``final_mAP_rare_pairs``;  ``mAP_common``: ``final_mAP_common_pairs``
``status``     completed | stopped | diverged | error | running
``epochs``     ``cfg.train.epochs`` (else ``epochs_planned``); for a trial with a ``train.budget`` the
               epochs it ran (``epochs_run``, the last one possibly partial): the budget, not
               ``train.epochs``, fixed its length
``budget``     how the trial's length was fixed: ``"epochs"`` (no ``train.budget``: equal epochs, the
               paper's protocol) or the budget as ``"<kind> <amount>"``: ``"images 120000"``
               (training images seen, regular + mixed), ``"steps 1500"``, ``"seconds 300"``
               (integers as such, other amounts ``:g``). Read from the flattened
               ``cfg.train.budget.<kind>`` columns the store writes, or from one ``cfg.train.budget``
               column holding a mapping or its JSON text
``pretrained`` ``cfg.model.pretrained``: ``"none"`` from scratch (null or absent), else the value's
               file name (``"shapes"``, ``"resnet18-shapes.pt"`` for a path)
``converged``  ``final_converged`` as a nullable boolean: the trial's best-so-far val mAP gained less
               than 0.3 points over the last quarter of its epochs (``splicemix.results.convergence``);
               NA when the study predates the column
``rerun_of``   for a trial that re-ran a trial of another part of its study for more epochs or a larger
               budget of the same kind (an arm that had not converged, re-run longer), or that ran
               another seed of such an arm at its longer length: the epochs of the runs the arm
               supersedes; else NaN. The superseded trial gets the status ``superseded``
               (:func:`supersede`); a budget re-run takes the ``budget`` of the runs it supersedes
``rerun_gain`` for such a trial: its mAP minus the mAP of the same seed's run it supersedes (what the
               extra epochs alone added); else NaN
=============  ==================================================================================

Every original column is kept. Metrics are in percent, as the trainer reports them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from splicemix.grids import DEFAULT_MIXED_RATIO
from splicemix.results import (
    COMMON_PAIRS,
    CONVERGED,
    MAP,
    RARE_PAIRS,
    Status,
    cfg_column,
    final,
    low_res_column,
)

__all__ = [
    "StudyLoadError",
    "TRIALS_FILE",
    "HISTORY_FILE",
    "ALIASES",
    "METRICS",
    "COMPLETED",
    "DEFAULT_RATIO",
    "EPOCHS_FORM",
    "BUDGET_KINDS",
    "NOT_PRETRAINED",
    "budget_parts",
    "check_study_dir",
    "load_studies",
    "load_history",
    "study_names",
    "IN_PLACE_METHODS",
    "RUN_IRRELEVANT",
    "run_columns",
    "dedupe",
    "SUPERSEDED",
    "supersede",
    "key_text",
    "STOPPED",
    "low_res_column",
    "load_provenance",
    "tidy_trials",
    "completed",
    "status_counts",
]

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
PROVENANCE_FILE = "provenance.json"
META_KEY = b"splicemix"
#: ``mix.mixed_ratio: null`` means the preset's ratio: :data:`splicemix.grids.DEFAULT_MIXED_RATIO`
DEFAULT_RATIO = DEFAULT_MIXED_RATIO
#: the status of a trial that ran every planned epoch (the only trials the answers use)
COMPLETED = Status.COMPLETED.value
#: the status of a trial the scheduler (ASHA) stopped early
STOPPED = Status.STOPPED.value
#: the status of a completed trial that a longer run in another part of its study supersedes (:func:`supersede`)
SUPERSEDED = "superseded"
#: the ``budget`` of a trial whose length was ``train.epochs`` (no ``train.budget``)
EPOCHS_FORM = "epochs"
#: the kinds of ``train.budget`` (``splicemix.config.BudgetConfig``'s fields), in the order they are looked for
BUDGET_KINDS = ("images", "steps", "seconds")
#: the ``pretrained`` of a trial trained from scratch
NOT_PRETRAINED = "none"

#: methods that mix the batch in place (no appended images: no mixed ratio, no SpliceMix grid)
IN_PLACE_METHODS = ("mixup", "cutmix")
#: ``cfg.*`` keys that do not change what a run trains (paths, workers, device, threads): ignored by :func:`dedupe`
RUN_IRRELEVANT = (
    "data.root",
    "data.workers",
    "data.coco.",
    "data.voc.root",
    "train.device",
    "train.cpu_threads",
)
_PART = re.compile(r"^(?P<stem>.+?)-(?:[a-z]|part\d+)$")

#: the alias columns :func:`tidy_trials` adds
ALIASES = [
    "study",
    "trial_id",
    "status",
    "method",
    "arm",
    "model",
    "ratio",
    "grid",
    "n_train",
    "imbalance",
    "seed",
    "cl_weight",
    "epochs",
    "image_size",
    "dataset",
    "mAP",
    "mAP_low",
    "low_size",
    "mAP_rare",
    "mAP_common",
    "budget",
    "pretrained",
    "converged",
    "rerun_of",
    "rerun_gain",
    "folder",
]
#: metric aliases, in percent
METRICS = ["mAP", "mAP_low", "mAP_rare", "mAP_common"]


class StudyLoadError(ValueError):
    """A study directory that cannot be read: the message names the path and what was expected."""


def check_study_dir(path: str | Path) -> Path:
    """The directory as a :class:`Path` when it holds a readable ``trials.parquet``; else :class:`StudyLoadError`."""
    p = Path(path)
    expected = f"a study directory written by `python -m study.run` holding {TRIALS_FILE}"
    if not p.exists():
        raise StudyLoadError(f"{p}: no such directory (expected {expected})")
    if not p.is_dir():
        raise StudyLoadError(f"{p}: not a directory (expected {expected})")
    f = p / TRIALS_FILE
    if not f.is_file():
        raise StudyLoadError(f"{p}: no {TRIALS_FILE} in it (expected {expected})")
    try:
        pq.read_schema(f)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise StudyLoadError(f"{f}: not a readable Parquet file ({type(e).__name__}: {_first_line(e)})") from None
    return p


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else ""


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except Exception as e:  # noqa: BLE001
        raise StudyLoadError(f"{path}: not a readable Parquet file ({type(e).__name__}: {_first_line(e)})") from None


def _col(raw: pd.DataFrame, name: str, default: Any = np.nan) -> pd.Series:
    if name in raw.columns:
        return raw[name]
    return pd.Series([default] * len(raw), index=raw.index, dtype="object" if isinstance(default, str) else None)


def _grid_text(v: Any) -> Any:
    """``cfg.mix.grids`` (a name, a JSON list or mapping) as short text."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return np.nan
    s = str(v).strip()
    if s[:1] in "[{":
        try:
            obj = json.loads(s)
        except ValueError:
            return s
        if isinstance(obj, list):
            return "+".join(str(x) for x in obj)
        if isinstance(obj, dict):
            return "+".join(f"{k}:{w:g}" if isinstance(w, (int, float)) else f"{k}:{w}" for k, w in obj.items())
    return s


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _cfg(raw: pd.DataFrame, key: str, default: Any = np.nan) -> pd.Series:
    """The config column ``cfg.<key>`` of ``raw`` (``default`` where the study did not record it)."""
    return _col(raw, cfg_column(key), default)


def _ratio(raw: pd.DataFrame, method: pd.Series) -> pd.Series:
    """``mix.mixed_ratio`` as a number: 0 for a baseline trial; null means :data:`DEFAULT_RATIO` unless
    exact counts are given (then, like a non-numeric ratio such as ``"paper"``, it stays NaN)."""
    raw_ratio = _cfg(raw, "mix.mixed_ratio")
    ratio = _num(raw_ratio).where(~(raw_ratio.isna() & _cfg(raw, "mix.counts").isna()), DEFAULT_RATIO)
    ratio = ratio.where(~method.isin(IN_PLACE_METHODS), np.nan)
    return ratio.where(method != "baseline", 0.0)


def _amount_text(v: Any) -> str:
    """A budget amount as text: 120000 -> "120000", 300.5 -> "300.5"."""
    x = float(v)
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _budget_value(v: Any) -> str | None:
    """``"<kind> <amount>"`` of one ``cfg.train.budget`` value (a mapping or its JSON text); None for none."""
    if isinstance(v, str) and v.strip()[:1] == "{":
        try:
            v = json.loads(v)
        except ValueError:
            return v.strip()
    if isinstance(v, dict):
        given = [(k, x) for k, x in v.items() if x is not None]
        return " ".join(f"{k} {_amount_text(x)}" for k, x in given) or None
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v).strip() or None


def budget_parts(budget: Any) -> tuple[str, str]:
    """A ``budget`` alias value split into (kind, amount): ``"steps 1500"`` -> ``("steps", "1500")``,
    ``"epochs"`` -> ``("epochs", "")``."""
    kind, _, amount = str(budget).partition(" ")
    return kind, amount


def _budget(raw: pd.DataFrame) -> pd.Series:
    """The ``budget`` alias: ``"epochs"``, or ``"images 120000"`` / ``"steps 1500"`` / ``"seconds 300"``."""
    out = _cfg(raw, "train.budget", None).map(_budget_value).astype(object)
    for kind in BUDGET_KINDS:
        amount = _num(_cfg(raw, f"train.budget.{kind}"))
        out = out.where(out.notna() | amount.isna(), amount.map(lambda x, k=kind: f"{k} {_amount_text(x)}"))
    return out.fillna(EPOCHS_FORM).astype(object)


def _pretrained(raw: pd.DataFrame) -> pd.Series:
    """The ``pretrained`` alias: ``"none"`` from scratch, else the weights' name (a path's file name)."""
    v = _cfg(raw, "model.pretrained", None)
    return v.map(lambda x: NOT_PRETRAINED if pd.isna(x) or not str(x).strip() else Path(str(x)).name).astype(object)


def _converged(raw: pd.DataFrame) -> pd.Series:
    """``final_converged`` as a nullable boolean (NA where unknown or not recorded)."""
    v = _col(raw, final(CONVERGED), None)
    return v.map(lambda x: pd.NA if x is None or pd.isna(x) else bool(x)).astype("boolean")


def _add_data(df: pd.DataFrame, raw: pd.DataFrame) -> None:
    """``dataset``, and the data cell: ``n_train`` and ``imbalance`` (synthetic) or the train limit."""
    dataset = _cfg(raw, "data.dataset", "synthetic").fillna("synthetic").astype(str)
    df["dataset"] = dataset
    synth = dataset == "synthetic"
    df["n_train"] = _num(_cfg(raw, "data.synthetic.n_train")).where(synth, _num(_cfg(raw, "data.train_limit")))
    df["imbalance"] = _num(_cfg(raw, "data.synthetic.imbalance")).where(synth, np.nan)


def _add_metrics(df: pd.DataFrame, raw: pd.DataFrame) -> None:
    """The last epoch's metric aliases of :data:`METRICS` (and ``low_size``), in percent as stored."""
    df["mAP"] = _num(_col(raw, final(MAP)))
    low_col, low_size = low_res_column(raw.columns)
    df["mAP_low"] = _num(raw[low_col]) if low_col else np.nan
    df["low_size"] = float(low_size) if low_size else np.nan
    df["mAP_rare"] = _num(_col(raw, final(RARE_PAIRS)))
    df["mAP_common"] = _num(_col(raw, final(COMMON_PAIRS)))


def tidy_trials(raw: pd.DataFrame, study: str, folder: str | None = None) -> pd.DataFrame:
    """Add the alias columns of :data:`ALIASES` to a raw ``trials.parquet`` frame of one study
    (``folder``: the directory it was read from, default ``study``)."""
    df = raw.copy()
    df["study"] = study
    df["folder"] = folder or study
    if "trial_id" not in df.columns:
        df["trial_id"] = [f"{study}-{i}" for i in range(len(df))]
    df["status"] = _col(raw, "status", COMPLETED).fillna(COMPLETED).astype(str)
    df["method"] = _cfg(raw, "mix.method", "splicemix").fillna("splicemix").astype(str)
    df["model"] = _cfg(raw, "model.name", "unknown").fillna("unknown").astype(str)
    df["ratio"] = _ratio(raw, df["method"])
    df["arm"] = np.where((df["method"] == "baseline") | (df["ratio"] == 0), "baseline", df["method"])
    df["grid"] = _cfg(raw, "mix.grids").map(_grid_text).astype(object).where(~df["method"].isin(IN_PLACE_METHODS))
    _add_data(df, raw)
    seed = _col(raw, "seed")
    df["seed"] = _num(seed if not seed.isna().all() else _cfg(raw, "train.seed")).astype("Int64")
    df["cl_weight"] = _num(_cfg(raw, "mix.cl_weight"))
    df["budget"] = _budget(raw)
    epochs = _num(_cfg(raw, "train.epochs")).fillna(_num(_col(raw, "epochs_planned")))
    df["epochs"] = epochs.where(df["budget"] == EPOCHS_FORM, _num(_col(raw, "epochs_run")))
    df["image_size"] = _num(_cfg(raw, "data.image_size"))
    df["pretrained"] = _pretrained(raw)
    df["converged"] = _converged(raw)
    _add_metrics(df, raw)
    return df


def load_studies(*dirs: str | Path) -> pd.DataFrame:
    """One row per trial of every study in ``dirs`` (all statuses; see :func:`completed`).

    Raises :class:`StudyLoadError` (a ``ValueError``) naming the path for a missing directory,
    one without ``trials.parquet`` or an unreadable file.
    """
    if not dirs:
        raise StudyLoadError("no study directory given (expected at least one directory holding trials.parquet)")
    paths = [check_study_dir(d) for d in dirs]
    names = study_names(paths)
    frames = [
        tidy_trials(_read_parquet(p / TRIALS_FILE), name, p.resolve().name)
        for p, name in zip(paths, names, strict=True)
    ]
    out = pd.concat(frames, ignore_index=True, sort=False)
    recorded: dict[str, set[str]] = {}
    for f, name in zip(frames, names, strict=True):
        recorded.setdefault(name, set()).update(c for c in f.columns if c.startswith("cfg."))
    out.attrs["recorded"] = {k: sorted(v) for k, v in recorded.items()}
    out = supersede(out)
    lead = [c for c in ALIASES if c in out.columns]
    return out[lead + [c for c in out.columns if c not in lead]]


def _yaml_name(p: Path) -> str | None:
    """``name:`` of the directory's ``study.yaml`` (read as text: the first top-level ``name:`` line)."""
    y = p / "study.yaml"
    if not y.is_file():
        return None
    m = re.search(r"^name:\s*['\"]?([^'\"\s#]+)", y.read_text(errors="replace"), flags=re.MULTILINE)
    return m.group(1) if m else None


def _stem(p: Path, names: list[str]) -> str:
    """The directory's name without a part suffix (``-a``, ``-b``, ``-part2``) when it is a part: another
    loaded directory shares the stem, or its ``study.yaml`` is named by the stem."""
    m = _PART.match(p.name)
    if not m:
        return p.name
    stem = m.group("stem")
    shared = sum(1 for n in names if (mm := _PART.match(n)) and mm.group("stem") == stem) > 1
    return stem if shared or _yaml_name(p) == stem else p.name


def study_names(dirs: Iterable[str | Path]) -> list[str]:
    """The ``study`` label of each directory: its name, the parts of one study (``x-a``, ``x-b``,
    ``x-part1``: the same stem, or a ``study.yaml`` named by the stem) under one name, qualified by
    the parent directory when two different directories would get the same label."""
    paths = [Path(d).resolve() for d in dirs]
    raw = [p.name for p in paths]
    names = [_stem(p, raw) for p in paths]
    clash = {n for n in names if sum(1 for m, p in zip(names, paths, strict=True) if m == n and p.name == n) > 1}
    if clash:
        names = [f"{p.parent.name}/{n}" if n in clash else n for p, n in zip(paths, names, strict=True)]
    return names


def load_history(*dirs: str | Path) -> pd.DataFrame:
    """One row per trial per epoch, with the trial aliases of :func:`load_studies` joined on.

    ``mAP_low`` is ``mAP@S`` for the smallest evaluated size. A study without ``history.parquet``
    contributes no rows.
    """
    trials = load_studies(*dirs)
    frames = []
    paths = [check_study_dir(d) for d in dirs]
    for p, name in zip(paths, study_names(paths), strict=True):
        f = p / HISTORY_FILE
        if not f.is_file():
            continue
        h = _read_parquet(f)
        h["study"] = name
        low_col, _ = low_res_column(h.columns, prefix="")
        h["mAP_low"] = _num(h[low_col]) if low_col else np.nan
        # the trial's factors (the aliases up to "epochs", its budget and weights), but not its seed:
        # history rows carry their own (and their own per-epoch "converged")
        keep = [c for c in ALIASES[: ALIASES.index("epochs") + 1] if c != "seed"] + ["budget", "pretrained"]
        h = h.drop(columns=[c for c in keep if c in h.columns and c not in ("study", "trial_id")])
        h = h.merge(trials[keep], on=["study", "trial_id"], how="left")
        gone = trials.loc[(trials["study"] == name) & (trials["status"] == SUPERSEDED), "trial_id"]
        if "status" in h.columns:
            h.loc[h["trial_id"].isin(gone), "status"] = SUPERSEDED
        frames.append(h)
    if not frames:
        return pd.DataFrame(columns=["study", "trial_id", "epoch", "mAP"])
    return pd.concat(frames, ignore_index=True, sort=False)


def load_provenance(path: str | Path) -> dict[str, Any]:
    """What produced a study: ``provenance.json`` or, failing that, the Parquet schema metadata.

    Returns the stored dict plus ``study`` (the directory name) and ``source`` (the file read);
    an empty provenance has only those two keys.
    """
    p = check_study_dir(path)
    out: dict[str, Any] = {}
    src = None
    j = p / PROVENANCE_FILE
    if j.is_file():
        try:
            out = json.loads(j.read_text())
            src = str(j)
        except (OSError, ValueError):
            out = {}
    if not out:
        md = pq.read_schema(p / TRIALS_FILE).metadata or {}
        try:
            out = json.loads(md.get(META_KEY, b"{}"))
            src = str(p / TRIALS_FILE) if out else None
        except ValueError:
            out = {}
    y = p / "study.yaml"
    if "study_yaml" not in out and y.is_file():
        out["study_yaml"] = y.read_text()
    out["study"] = p.resolve().name
    out["source"] = src
    return out


def run_columns(df: pd.DataFrame, studies: Iterable[str] | None = None) -> list[str]:
    """The ``cfg.*`` columns of ``df`` that define a training run: all but :data:`RUN_IRRELEVANT`, and, for
    a frame of :func:`load_studies`, only those whose column the ``trials.parquet`` of every study of
    ``studies`` (default: all of ``df``'s) has (a key added to the config later is not a difference;
    ``df.attrs["recorded"]``)."""
    cols = [c for c in df.columns if c.startswith("cfg.") and not c[len("cfg.") :].startswith(RUN_IRRELEVANT)]
    recorded = df.attrs.get("recorded") or {}
    sets = [recorded.get(s) for s in (studies if studies is not None else pd.unique(df["study"]))]
    if sets and all(r is not None for r in sets):
        cols = [c for c in cols if all(c in r for r in sets)]
    return sorted(cols)


def key_text(v: Any) -> str:
    """A configuration value as comparable text: numbers as floats (``2000`` == ``2000.0``), missing as ``""``."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v)


def _run_keys(d: pd.DataFrame, cols: list[str], seed: bool = True) -> pd.Series:
    """One text per row: its values of ``cols`` and (``seed``) its seed."""
    if not len(d):
        return pd.Series(dtype=object)
    return d[cols + (["seed"] if seed else [])].apply(lambda s: s.map(key_text)).agg("\x1f".join, axis=1)


def dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each trial once across studies: a row whose run equals a row of an earlier study (in the frame's
    order) is dropped, so the first study's copy is kept; repeats within one study are all kept. Two rows
    are the same run when they have the same seed and the same values of every :func:`run_columns` both
    studies record. Returns (kept, dropped); ``dropped`` has ``duplicate_of`` (the study kept)."""
    owner = pd.Series(df["study"].to_numpy(dtype=object), index=df.index)
    studies = list(pd.unique(df["study"]))
    for i, a in enumerate(studies):
        for b in studies[i + 1 :]:
            cols = run_columns(df, [a, b])
            keys_a = set(_run_keys(df[(df["study"] == a) & (owner == a)], cols))
            rows_b = df[(df["study"] == b) & (owner == b)]
            if len(rows_b) and keys_a:
                owner[rows_b.index[_run_keys(rows_b, cols).isin(keys_a).to_numpy()]] = a
    dup = owner != df["study"]
    return df[~dup], df[dup].assign(duplicate_of=owner[dup])


def supersede(df: pd.DataFrame) -> pd.DataFrame:
    """An arm re-run longer replaces its shorter runs: within a study run in parts, a completed trial
    with the same seed and the same values of every :func:`run_columns` but its length (``cfg.train.epochs``,
    or the amount of a ``train.budget`` of the same kind) as a completed trial of another part that ran longer
    gets the status :data:`SUPERSEDED` (so no answer uses it), and the longest run gets ``rerun_of`` = the
    epochs it supersedes and ``rerun_gain`` = its mAP minus that run's (what the extra length alone added). The
    arm's length is then the longest: its trials of other seeds at that length count as re-runs too
    (``rerun_gain`` NaN: no shorter run of theirs), and its shorter trials of seeds never re-run are
    superseded. A budget re-run keeps the ``budget`` of the shortest run it supersedes (``"steps 2976"``: the
    form it is compared in, though an arm re-run twice supersedes a re-run too; its own budget stays in its
    ``cfg.train.budget.*`` column). Returns a copy."""
    out = df.copy()
    out["rerun_of"] = out["rerun_gain"] = np.nan
    epochs_col = cfg_column("train.epochs")
    if epochs_col not in out.columns:
        return out
    live = out[out["status"] == COMPLETED]
    length_cols = {epochs_col, cfg_column("train.budget"), *(cfg_column(f"train.budget.{k}") for k in BUDGET_KINDS)}
    kinds = live["budget"].map(lambda b: budget_parts(b)[0])
    own = _length(live)  # each trial's own length (a re-run's ``budget`` is changed to its form's below)
    for (study, _), g in live.groupby([live["study"], kinds]):
        if g["folder"].nunique() < 2:
            continue
        cols = [c for c in run_columns(out, [study]) if c not in length_cols]
        for _, runs in g.groupby(_run_keys(g, cols)):
            length = own[runs.index]
            if runs["folder"].nunique() < 2 or length.nunique() < 2:
                continue
            longest = length.idxmax()
            shorter = runs[length < length[longest]]
            out.loc[shorter.index, "status"] = SUPERSEDED
            previous = own[shorter.index].idxmax()
            out.at[longest, "rerun_of"] = float(shorter.at[previous, "epochs"])
            out.at[longest, "rerun_gain"] = runs.at[longest, "mAP"] - shorter.at[previous, "mAP"]
            out.at[longest, "budget"] = shorter.at[own[shorter.index].idxmin(), "budget"]  # the form of the first run
        _supersede_arms(out, own[g.index], [c for c in cols if c != cfg_column("train.seed")])
    return out


def _length(d: pd.DataFrame) -> pd.Series:
    """How long each trial of ``d`` was set to train: its epochs, or its budget's amount (one kind per frame)."""
    amount = d["budget"].map(lambda b: pd.to_numeric(budget_parts(b)[1], errors="coerce"))
    return d["epochs"].where(d["budget"] == EPOCHS_FORM, amount).astype(float)


def _supersede_arms(out: pd.DataFrame, own: pd.Series, cols: list[str]) -> None:
    """Within one study's trials of one length kind (``own``: their own lengths), an arm (same ``cols``, any
    seed) with a trial re-run longer takes that length for all its seeds: :func:`supersede`'s second step, in
    place."""
    live = out.loc[own.index]
    live = live[live["status"] == COMPLETED]
    for _, arm in live.groupby(_run_keys(live, cols, seed=False)):
        rerun = arm[arm["rerun_of"].notna()]
        if rerun.empty:
            continue
        length = own[arm.index].max()
        joined = arm.index[arm["rerun_of"].isna() & (own[arm.index] == length)]
        out.loc[joined, ["rerun_of", "budget"]] = [rerun["rerun_of"].max(), rerun["budget"].iloc[0]]
        out.loc[arm.index[own[arm.index] < length], "status"] = SUPERSEDED


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """The trials with status ``completed`` and a finite ``mAP`` (the ones every answer uses)."""
    return df[(df["status"] == COMPLETED) & df["mAP"].notna()]


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    """``{status: number of trials}`` (``completed`` first)."""
    vc = df["status"].value_counts()
    order = [COMPLETED] + sorted(s for s in vc.index if s != COMPLETED)
    return {s: int(vc.get(s, 0)) for s in order if s in vc.index or s == COMPLETED}
