"""``python -m study.confirm SEARCH_FOLDER``: the grid study that confirms a search's best trial on fresh seeds.

A TPE / random search's best trial is optimistic: one seed, picked for doing well. This reads a
finished search study folder (``trials.parquet``, ``study.yaml``, ``provenance.json``; see
:mod:`study.store`), takes its best completed trial (the best ``final_<metric>`` by the study's
``search.metric`` / ``mode``; a trial ASHA stopped never counts, its metric is from a shorter run)
and writes a normal study file that ``python -m study.run`` runs unchanged: a grid over three
whole ``mix`` mappings -- the baseline, the authors' default preset (SpliceMix, default grids, the
preset's ratio) and the tuned arm (the search's fixed ``mix.*`` keys and the trial's searched
values, at full precision) -- on fresh seeds, with the search's base config, its other fixed keys,
metric and resources. The written file is checked with :func:`study.schema.load_study` before it
replaces anything. The analysis (``analysis/questions/tuned.py``) finds it by name
(``<search name>_confirm``, e.g. ``tuned_confirm``) and tells the arms apart by ``cfg.mix.*``::

    python -m study.confirm runs/studies/tuned-20261130-101500 --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from splicemix.config import ConfigError, load_config
from splicemix.results import Status, cfg_column, final, flatten_config

from .folder import META_JSON, STUDY_YAML
from .schema import Param, StudyError, StudySpec, base_config_dict, format_study_error, load_study, materialize
from .store import TRIALS_FILE, join_uri, resolve_storage, run_length

__all__ = ["Search", "read_search", "best_trial", "tuned_arm", "confirm_study", "write_confirm", "main"]

SEARCHES = ("tpe", "random")  #: the search algorithms whose best trial needs confirming
DEFAULT_SEEDS = (1, 2, 3, 4, 5)
BASELINE = {"method": "baseline"}
PRESET = {"method": "splicemix", "grids": "default"}  #: mixed_ratio null = the preset's 0.25
_FLAGS = {"--smoke", "--resume", "--quiet", "--verbose", "--debug", "--dashboard", "--no-ship-code", "--skip-corrupt"}


@dataclass
class Search:
    """A finished search study folder: its spec (study.yaml), provenance.json and trials.parquet rows."""

    folder: str
    spec: StudySpec
    meta: dict[str, Any]
    trials: list[dict[str, Any]]


def read_search(folder: str) -> Search:
    """The search study in ``folder`` (a folder or URI); a StudyError for a folder that is not one."""
    fs, root, _ = resolve_storage(join_uri(folder))
    try:
        trials = pq.read_table(f"{root}/{TRIALS_FILE}", filesystem=fs).to_pylist()
    except (OSError, ValueError) as e:
        raise StudyError(
            f"{folder}: cannot read {TRIALS_FILE} ({' '.join(str(e).split())[:160]}); expected the folder of a "
            "finished study (python -m study.run writes runs/studies/<name>-<date>-<time>)"
        ) from None
    try:
        with fs.open_input_stream(f"{root}/{STUDY_YAML}") as f:
            raw = yaml.safe_load(f.read().decode())
        with fs.open_input_stream(f"{root}/{META_JSON}") as f:
            meta = json.loads(f.read().decode())
    except (OSError, ValueError) as e:
        raise StudyError(f"{folder}: not a study folder ({' '.join(str(e).split())[:160]})") from None
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise StudyError(format_study_error(e, f"{folder}/{STUDY_YAML}")) from None
    return Search(folder, spec, meta if isinstance(meta, dict) else {}, trials)


def best_trial(search: Search) -> dict[str, Any]:
    """The completed trial with the best ``final_<metric>`` (ties: the first); a StudyError when there is none."""
    s, col = search.spec.search, final(search.spec.search.metric)
    done = [t for t in search.trials if t.get("status") == Status.COMPLETED.value and _finite(t.get(col))]
    if not done:
        counts = {
            st: sum(t.get("status") == st for t in search.trials) for st in {t.get("status") for t in search.trials}
        }
        raise StudyError(
            f"{search.folder}: no completed trial with a finite {col} ({len(search.trials)} trials: "
            f"{', '.join(f'{n} {st}' for st, n in sorted(counts.items(), key=str)) or 'none'}); expected a search "
            "with at least one trial that ran to its end"
        )
    return (max if s.mode == "max" else min)(done, key=lambda t: float(t[col]))


def tuned_arm(search: Search, best: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The best trial's ``mix`` mapping: the search's fixed ``mix.*`` keys and its searched values (as the
    search space spells them), checked to reproduce the trial's ``cfg.mix.*`` columns."""
    spec = search.spec
    arm = {k.removeprefix("mix."): v for k, v in spec.fixed.items() if k.startswith("mix.")}
    arm.update({k.removeprefix("mix."): _searched_value(p, best.get(cfg_column(k))) for k, p in spec.space.items()})
    for extra in (False, True):
        diffs = _mix_diffs(arm, search, best, base)
        if not diffs:
            return arm
        if extra:  # the base config's own mix keys: a grid over whole `mix` mappings would drop them
            break
        arm.update({k.removeprefix("mix."): _decoded(best[cfg_column(k)]) for k in diffs})
    raise StudyError(
        f"{search.folder}: the tuned arm would not reproduce trial {best.get('trial_id')}: "
        + ", ".join(f"{k} {diffs[k][0]!r} (the trial had {diffs[k][1]!r})" for k in diffs)
    )


def _mix_diffs(arm: dict[str, Any], search: Search, best: dict[str, Any], base: dict[str, Any]) -> dict[str, tuple]:
    cfg = materialize(base, _other_fixed(search.spec), {"mix": arm}, int(best.get("seed") or 0))
    flat = flatten_config(cfg)
    return {
        k: (v, best[cfg_column(k)])
        for k, v in flat.items()
        if k.startswith("mix.") and cfg_column(k) in best and not _same(v, best[cfg_column(k)])
    }


def confirm_study(search: Search, best: dict[str, Any], seeds: list[int], base: str | None, arm: dict) -> dict:
    """The confirmation study as a mapping (what the written YAML holds, in its order)."""
    spec = search.spec
    doc: dict[str, Any] = {
        "name": f"{spec.name}_confirm",
        "description": f"{spec.name}'s best trial {best.get('trial_id')} vs the default preset and the baseline "
        f"on fresh seeds",
    }
    if base is not None:
        doc["base"] = base
    doc["fixed"] = _other_fixed(spec)
    doc["space"] = {"mix": {"grid": [BASELINE, PRESET, arm]}}
    doc["seeds"] = list(seeds)
    doc["search"] = {"algorithm": "grid", "scheduler": "fifo", "metric": spec.search.metric, "mode": spec.search.mode}
    if spec.search.storage is not None:
        doc["search"]["storage"] = spec.search.storage
    doc["resources"] = spec.resources.model_dump(mode="json")
    return doc


def write_confirm(
    folder: str,
    out: str | None = None,
    seeds: list[int] | tuple[int, ...] = DEFAULT_SEEDS,
    force: bool = False,
    command: str = "",
) -> tuple[Search, dict[str, Any], str]:
    """Write the confirmation study of the search in ``folder`` to ``out`` (default
    ``search_spaces/<search name>_confirm.yaml``); returns (the search, its best trial, the file written).

    Refuses (StudyError) a folder without trials.parquet, a study that was not a tpe / random search,
    one without a completed trial, seeds the search used and an existing ``out`` unless ``force``."""
    search = read_search(folder)
    spec = search.spec
    out = out or f"search_spaces/{spec.name}_confirm.yaml"
    out_path = Path(out)
    if out_path.exists() and not force:
        raise StudyError(f"--out {out} already exists; expected a new file, or --force to replace it")
    if spec.search.algorithm not in SEARCHES:
        raise StudyError(
            f"{folder}: search.algorithm is {spec.search.algorithm!r}; expected a {' / '.join(SEARCHES)} search "
            "(a grid study already runs every configuration on its seeds)"
        )
    other = [k for k in spec.space if not k.startswith("mix.")]
    if other:
        raise StudyError(
            f"{folder}: the search varied {other}; expected mix.* keys only (the confirmation's arms are whole "
            "mix mappings)"
        )
    used = sorted(set(spec.seeds) | {int(t["seed"]) for t in search.trials if t.get("seed") is not None})
    if set(seeds) & set(used):
        raise StudyError(
            f"--seeds {','.join(map(str, seeds))}: the search used seeds {used}; expected fresh seeds, "
            "e.g. --seeds 1,2,3,4,5"
        )
    best = best_trial(search)
    base_file = _base_file(search)
    base = base_config_dict(spec.model_copy(update={"base": base_file and str(base_file)}), None)
    arm = tuned_arm(search, best, base)
    doc = confirm_study(search, best, list(seeds), _relative(base_file, out_path), arm)
    _write_checked(out_path, _header(search, best, doc, out, command) + _dump(doc))
    return search, best, out


# --------------------------------------------------------------------------- helpers
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _same(a: Any, b: Any) -> bool:
    """Whether a config value and a trials.parquet cell are the same (numbers as floats, None = NaN)."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def _flat(v: Any) -> Any:
    """A value as its cfg.* column holds it (lists and mappings as JSON text)."""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _decoded(cell: Any) -> Any:
    """A trials.parquet cell as a YAML value (JSON text of a list or mapping decoded; NaN = None)."""
    if _missing(cell):
        return None
    if isinstance(cell, str) and cell[:1] in "[{":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


def _searched_value(p: Param, cell: Any) -> Any:
    """The search space's value that gave the trial's column ``cell`` (a choice as listed; a float in full)."""
    if p.values is not None:
        return next((c for c in p.values if _same(_flat(c), cell)), _decoded(cell))
    if _missing(cell):
        return None
    return int(cell) if p.kind == "randint" else float(cell)


def _other_fixed(spec: StudySpec) -> dict[str, Any]:
    """The search's fixed keys that are not ``mix.*`` (those are part of the tuned arm)."""
    return {k: v for k, v in spec.fixed.items() if not k.startswith("mix.")}


def _space_file(meta: dict[str, Any]) -> str | None:
    """The study file of the ``python -m study.run`` command in provenance.json (its first positional)."""
    cmd = [str(c) for c in meta.get("command") or []]
    if "study.run" not in cmd:
        return None
    args = iter(cmd[cmd.index("study.run") + 1 :])
    for a in args:
        if not a.startswith("-"):
            return a
        if a not in _FLAGS and "=" not in a:
            next(args, None)  # the option's value
    return None


def _base_file(search: Search) -> Path | None:
    """The search's base config file: ``base`` relative to the study file it ran (from provenance.json), in
    this checkout (the working directory) when its copy is the config the search ran, else in the search's."""
    base = search.spec.base
    if base is None:
        return None
    p = Path(base).expanduser()
    space = _space_file(search.meta)
    workdir = (search.meta.get("trainable") or {}).get("workdir")
    dirs = [Path(w) / Path(space or ".").parent for w in (os.getcwd(), workdir) if w]
    found = [p] if p.is_absolute() else [d / p for d in dirs]
    files = [f for f in found if f.is_file()]
    ran = (search.meta.get("trainable") or {}).get("base")
    same = [f for f in files if not isinstance(ran, dict) or load_config(f).model_dump(mode="json") == ran]
    if same:
        return same[0].resolve()
    if files:
        print(f"study.confirm: note: {files[0]} has changed since the search ran (provenance.json)", file=sys.stderr)
        return files[0].resolve()
    raise StudyError(
        f"{search.folder}: base {base!r} (relative to the study file {space or '?'}) not found at "
        f"{', '.join(map(str, found))}; expected the search's base training config"
    )


def _relative(base_file: Path | None, out: Path) -> str | None:
    """``base_file`` relative to the folder of ``out`` (absolute when no relative path exists)."""
    if base_file is None:
        return None
    try:
        return os.path.relpath(base_file, out.resolve().parent)
    except ValueError:
        return str(base_file)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1000)


def _header(search: Search, best: dict[str, Any], doc: dict[str, Any], out: str, command: str) -> str:
    s, spec = search.spec.search, search.spec
    n_done = sum(t.get("status") == Status.COMPLETED.value for t in search.trials)
    n_stop = sum(t.get("status") == Status.STOPPED.value for t in search.trials)
    arm = doc["space"]["mix"]["grid"][2]
    moved = [k for k in spec.fixed if k.startswith("mix.")]
    extra = [f"mix.{k}" for k in arm if f"mix.{k}" not in spec.space and f"mix.{k}" not in spec.fixed]
    lines = [
        f"{doc['name']}: confirms the best trial of the {s.algorithm} search {spec.name} on fresh seeds against",
        "the baseline and the authors' default preset (SpliceMix, default grids, ratio 0.25): the search's best",
        "trial is optimistic (one seed, picked for doing well). Arms: baseline, default preset, tuned.",
        f"Written by: {command or 'python -m study.confirm ' + search.folder}",
        f"Search folder: {search.folder} ({len(search.trials)} trials, {n_done} completed, {n_stop} stopped)",
        f"Best trial: {best.get('trial_id')} (seed {best.get('seed')}): {final(s.metric)} "
        f"{float(best[final(s.metric)]):.4f} after {run_length(best)}",
        *(f"  {k} = {_flat(arm[k.removeprefix('mix.')])}" for k in spec.space),
        "The tuned arm is that trial's searched values (full precision), the search's fixed mix keys "
        f"({', '.join(moved) or 'none'})",
        *(
            [f"and the base config's {', '.join(extra)} (a grid over whole mix mappings replaces the base's)"]
            * bool(extra)
        ),
        "(no mix.* key stays in fixed); the base config, the other fixed keys, metric and resources are the search's.",
        f"{len(doc['space']['mix']['grid'])} arms x {len(doc['seeds'])} seeds = "
        f"{len(doc['space']['mix']['grid']) * len(doc['seeds'])} trials, grid / FIFO:",
        f"  python -m study.run {out} --name {doc['name']}-a   # analysis reads folder <name>-a as study <name>",
        f"  python -m study.run {out} --smoke",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _write_checked(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` once :func:`load_study` accepts it (a temporary file in the same folder first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    try:
        load_study(tmp)
    except (StudyError, ConfigError, ValidationError) as e:
        tmp.unlink()
        raise StudyError(f"the confirmation study is not valid: {e}") from None
    os.replace(tmp, out)


# --------------------------------------------------------------------------- CLI
_EPILOG = """\
examples:
  python -m study.confirm runs/studies/tuned-20261130-101500
  python -m study.confirm runs/studies/tuned-20261130-101500 --seeds 10,11,12 --out /tmp/confirm.yaml --force
  python -m study.run search_spaces/tuned_confirm.yaml              # then run it

The best trial is the completed trial (ASHA-stopped ones never count) with the best final_<metric>
(the search's search.metric and mode). The written study: name <search name>_confirm, the search's
base (relative to --out's folder), fixed keys, metric and resources, and a grid over three whole mix
mappings -- {method: baseline}, {method: splicemix, grids: default} and the tuned one (the trial's
searched values, full precision, and the search's fixed mix.* keys, which leave fixed) -- on --seeds.
Bad input (a folder without trials.parquet, a grid study, no completed trial, --seeds the search
used, an existing --out without --force) is one error line, exit status 2, and nothing is written.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.confirm",
        description="Write the grid study that confirms a TPE / random search's best trial on fresh seeds against "
        "the baseline and the authors' default preset.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="the finished search's study folder (runs/studies/<name>-<date>-<time>)")
    p.add_argument(
        "--seeds",
        default=",".join(map(str, DEFAULT_SEEDS)),
        help="comma-separated fresh train.seed values, none of them the search's (default: 1,2,3,4,5)",
    )
    p.add_argument(
        "--out", default=None, help="the study file to write (default: search_spaces/<search name>_confirm.yaml)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (bad input is otherwise one line)")
    return p


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise StudyError(f"--seeds {text!r}: expected comma-separated integers, e.g. 1,2,3,4,5") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyError(f"--seeds {text!r}: expected at least one seed, all distinct")
    return seeds


def main(argv: list[str] | None = None) -> int:
    """The command line: exit status 0 (written) or 2 (bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        command = shlex.join(["python", "-m", "study.confirm", *argv])
        search, best, out = write_confirm(args.folder, args.out, _seeds(args.seeds), args.force, command)
    except (StudyError, ConfigError) as e:
        if args.debug:
            raise
        print(f"study.confirm: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    metric = final(search.spec.search.metric)
    print(
        f"best trial: {best.get('trial_id')} (seed {best.get('seed')}), {metric} {float(best[metric]):.4f} after "
        f"{best.get('epochs_run')} epochs"
    )
    print(f"wrote {out}; run it with: python -m study.run {out} --name {search.spec.name}_confirm-a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
