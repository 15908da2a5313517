"""The search-space YAML: a pydantic schema, loading, ``--set`` overrides and ``--smoke``.

A study file names a base training config, the settings every trial shares (``fixed``), the
searched knobs (``space``, each a distribution over one dotted key of
:class:`splicemix.config.TrainConfig`), the seeds, the search algorithm / scheduler and the
resources of one trial. Every problem becomes one :class:`StudyError` naming the file, the key,
the value and what was expected; nothing in the file is evaluated (the training config's safe
YAML loader, :func:`splicemix.config.read_yaml`)::

    spec = load_study("search_spaces/ratio.yaml", overrides=["search.num_samples=4"])

The study shares the training config's machinery: ``--set`` items go through
:func:`splicemix.config.parse_override`, a trial's config is a typed merge
(:func:`splicemix.config.set_dotted`) validated once (:func:`materialize`), and errors are worded
by :func:`splicemix.config.format_validation_error`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from splicemix.config import (
    PATH_KEYS,
    ConfigError,
    TrainConfig,
    data_path_problems,
    fmt_value,
    format_validation_error,
    load_config,
    parse_override,
    read_yaml_mapping,
    set_dotted,
)

__all__ = [
    "StudyError",
    "Param",
    "AshaSection",
    "SearchSection",
    "Resources",
    "StudySpec",
    "PARAM_KINDS",
    "SMOKE_FIXED",
    "load_study",
    "base_config_dict",
    "materialize",
    "forget_validated",
    "check_paths",
    "smoke",
    "format_study_error",
]

PARAM_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


class StudyError(ValueError):
    """A problem with a study file; the message names the file, the key, the value and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Section):
    """One searched knob: exactly one of the distribution keys.

    * ``grid: [a, b, c]``  every value is tried (grid search); a category for tpe / random
    * ``choice: [a, b]``   a category (sampled); enumerated like ``grid`` by the grid algorithm
    * ``uniform: [low, high]``, ``loguniform: [low, high]`` floats; ``randint: [low, high]`` ints, high inclusive
    """

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one(self) -> Param:
        given = [k for k in PARAM_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a parameter takes exactly one of {', '.join(PARAM_KINDS)}, got "
                + (", ".join(given) if given else "none")
            )
        kind = given[0]
        v = getattr(self, kind)
        if kind in ("grid", "choice"):
            if not v:
                raise ValueError(f"{kind} is empty; expected at least one value")
            labels = [json.dumps(x, sort_keys=True) for x in v]
            if len(set(labels)) != len(labels):
                raise ValueError(f"{kind} has repeated values {v}; expected distinct values")
        else:
            lo, hi = v
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"{kind} [{lo}, {hi}]: expected finite low < high")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"loguniform [{lo}, {hi}]: expected 0 < low < high")
        return self

    @property
    def kind(self) -> str:
        """The distribution key given (grid, choice, uniform, loguniform or randint)."""
        return next(k for k in PARAM_KINDS if getattr(self, k) is not None)

    @property
    def values(self) -> list[Any] | None:
        """The finite list of values (grid / choice), else None."""
        return self.grid if self.grid is not None else self.choice

    def smallest(self) -> Any:
        """A representative value (the first of a list, the low end of a range)."""
        if self.values is not None:
            return self.values[0]
        v = getattr(self, self.kind)
        return v[0]


class AshaSection(_Section):
    """``search.asha``: the ASHA scheduler's rungs (epochs are its time unit)."""

    grace_period: int = Field(default=3, ge=1, description="epochs every trial runs before it may be stopped")
    reduction_factor: float = Field(default=3.0, gt=1.0, description="keep the top 1/reduction_factor at each rung")
    brackets: int = Field(default=1, ge=1)


class SearchSection(_Section):
    """``search``: the search algorithm, the scheduler, the number of samples and the metric."""

    algorithm: Literal["tpe", "random", "grid"] = Field(
        default="tpe", description="Optuna TPE, Optuna random, or an exhaustive grid"
    )
    scheduler: Literal["asha", "fifo"] = Field(
        default="asha", description="ASHA early stopping, or FIFO (every trial runs to the end)"
    )
    num_samples: int | None = Field(
        default=None,
        ge=1,
        description="tpe / random: configurations to try (each once per seed; default 8); grid: repeats of the grid "
        "(default 1)",
    )
    metric: str = Field(default="mAP", description="reported metric to optimise (last epoch)")
    mode: Literal["max", "min"] = "max"
    seed: int = Field(default=0, description="seed of the search algorithm")
    asha: AshaSection = Field(default_factory=AshaSection)
    time_budget_s: float | None = Field(
        default=None, gt=0, description="stop starting new trials after this many seconds"
    )
    storage: str | None = Field(
        default=None,
        min_length=1,
        description="SQLAlchemy URL of the Optuna storage that records every trial (postgresql://user@host/db); "
        "null = optuna.db, a SQLite file in the study folder",
    )

    @property
    def samples(self) -> int:
        """num_samples as Tune gets it."""
        if self.num_samples is not None:
            return self.num_samples
        return 1 if self.algorithm == "grid" else 8


class Resources(_Section):
    """``resources``: the workers, CPUs and GPUs of one trial, concurrency and retries."""

    num_workers: int = Field(default=1, ge=1, description="data-parallel workers per trial (Ray Train DDP when > 1)")
    cpus_per_worker: int = Field(default=1, ge=1, description="CPUs (and torch threads) per worker")
    use_gpu: bool | Literal["auto"] = Field(
        default="auto", description="one GPU per worker; auto = when the cluster has GPUs"
    )
    backend: Literal["auto", "direct", "train"] = Field(
        default="auto",
        description="direct: run the loop inside the Tune trial (1 worker); train: a Ray Train TorchTrainer; "
        "auto: direct for 1 worker",
    )
    max_concurrent: int | None = Field(
        default=None,
        ge=1,
        description="trials at once; null = physical cores / CPUs per trial on a local Ray, unlimited on a cluster",
    )
    max_failures: int = Field(default=1, ge=0, description="retries of a failed trial from its last checkpoint")
    checkpoint_every: int = Field(
        default=1, ge=1, description="report a checkpoint every N epochs (and after the last)"
    )


class StudySpec(_Section):
    """A study file: the base config, the fixed and searched training keys, the seeds, search and resources."""

    name: str = Field(min_length=1, description="study name; results go to <storage>/<name>-<time> by default")
    description: str = ""
    base: str | None = Field(
        default=None,
        description="training config YAML the trials start from (relative to this file); null = built-in defaults",
    )
    fixed: dict[str, Any] = Field(default_factory=dict, description="dotted training keys every trial shares")
    space: dict[str, Param] = Field(default_factory=dict, description="dotted training key -> distribution")
    seeds: list[int] = Field(
        default_factory=lambda: [0], description="train.seed values; every configuration runs once per seed"
    )
    search: SearchSection = Field(default_factory=SearchSection)
    resources: Resources = Field(default_factory=Resources)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        bad = [c for c in v if not (c.isalnum() or c in "-_.")]
        if bad:
            raise ValueError(f"expected letters, digits, '-', '_' or '.', got {v!r}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("expected at least one seed, e.g. [0]")
        if len(set(v)) != len(v):
            raise ValueError(f"expected distinct seeds, got {v}")
        return v

    @model_validator(mode="after")
    def _cross(self) -> StudySpec:
        if not self.space:
            # legitimate only as "the fixed configuration once per seed", with the seeds given
            if "seeds" not in self.model_fields_set:
                raise ValueError(
                    "space is empty and no seeds are given, so there is nothing to search; expected at least one "
                    "searched key, e.g. space: {mix.mixed_ratio: {grid: [0.25, 0.5]}}, or seeds: [0, 1, 2] to run "
                    "the fixed configuration once per seed"
                )
            if self.search.algorithm != "grid":
                if "algorithm" in self.search.model_fields_set:
                    raise ValueError(
                        f"space is empty: search.algorithm {self.search.algorithm!r} has nothing to search; expected "
                        "algorithm 'grid' (the fixed configuration once per seed) or a searched key"
                    )
                self.search.algorithm = "grid"
            if self.search.scheduler == "asha" and "scheduler" not in self.search.model_fields_set:
                self.search.scheduler = "fifo"  # runs of one configuration: nothing to stop early
        for key in self.space:
            if key == "train.seed":
                raise ValueError("space.train.seed: give seeds with the top-level 'seeds: [0, 1, ...]' list instead")
            if key in self.fixed:
                raise ValueError(f"{key} is both in fixed and in space; expected it in one of them")
        if self.search.algorithm == "grid":
            cont = [k for k, p in self.space.items() if p.values is None]
            if cont:
                raise ValueError(
                    f"search.algorithm is 'grid' but space keys {cont} are continuous ranges; "
                    "expected grid: [...] or choice: [...] for every key (or algorithm tpe / random)"
                )
        elif len(self.seeds) > 1 and self.search.scheduler == "asha":
            raise ValueError(
                f"seeds {self.seeds} with search.algorithm {self.search.algorithm!r} average every configuration over "
                "its seeds (Tune's Repeater), which early stopping would cut short; expected search.scheduler 'fifo', "
                "a single seed, or algorithm 'grid'"
            )
        if self.resources.backend == "direct" and self.resources.num_workers > 1:
            raise ValueError(
                "resources.backend 'direct' runs one worker but resources.num_workers is "
                f"{self.resources.num_workers}; expected backend 'train' (or 'auto') for data-parallel trials"
            )
        return self

    # -- helpers --------------------------------------------------------------------------
    def grid_size(self) -> int:
        """Number of trials of a grid study (seeds included)."""
        n = len(self.seeds) * self.search.samples
        for p in self.space.values():
            n *= len(p.values or [None])
        return n

    def planned_trials(self) -> int:
        """Number of trials the study runs (seeds included)."""
        if self.search.algorithm == "grid":
            return self.grid_size()
        return self.search.samples * len(self.seeds)

    def use_train_backend(self) -> bool:
        """Whether a trial runs as a Ray Train TorchTrainer (else directly in the Tune trial)."""
        r = self.resources
        return r.backend == "train" or (r.backend == "auto" and r.num_workers > 1)


# --------------------------------------------------------------------------- loading
def format_study_error(err: ValidationError, source: str) -> str:
    """A :class:`StudySpec` ValidationError as one line (the training config's wording, with the study's keys)."""
    return format_validation_error(err, source, root=StudySpec)


def base_config_dict(spec: StudySpec, source: Path | None) -> dict[str, Any]:
    """The base training config (from ``spec.base``, relative to the study file) as a dict."""
    if spec.base is None:
        return TrainConfig().model_dump(mode="json")
    p = Path(spec.base).expanduser()
    if not p.is_absolute() and source is not None:
        p = source.parent / p
    try:
        return load_config(p).model_dump(mode="json")
    except FileNotFoundError as e:
        raise StudyError(f"{source}: base = {spec.base!r}: {e}; expected a training config YAML") from None
    except ConfigError as e:
        raise StudyError(f"{source}: base = {spec.base!r} is not a valid training config: {e}") from None


_VALIDATED: OrderedDict[str, TrainConfig] = OrderedDict()  # materialize's configs, by what they were made from
_VALIDATED_MAX = 1024


def materialize(base: dict[str, Any], fixed: dict[str, Any], params: dict[str, Any], seed: int) -> TrainConfig:
    """The TrainConfig of one trial: base + fixed + sampled params + seed, validated once.

    A typed merge: each dotted key is set on a copy of ``base`` (:func:`splicemix.config.set_dotted`;
    a :class:`~splicemix.config.ConfigError` when a parent is not a section), then one
    ``TrainConfig.model_validate`` (a pydantic ``ValidationError``). A configuration this process
    validated before (the same base, fixed keys and params) is not validated again: the seed is
    the only difference between the trials of a configuration, and nothing checks it but its type,
    so it is set on a copy. The driver therefore validates each distinct configuration once, when
    the study is loaded, and a trial process its trial's config once.
    Two conventions make the searched knobs independent: ``mix.cl_weight: 0`` under
    ``mix.method: splicemix_cl`` trains plain SpliceMix (no second pass), and
    ``mix.mixed_ratio: 0`` is kept as it is (SpliceMix appending no mixed image = the baseline
    trained through the mixing code path).
    """
    key = json.dumps([base, fixed, params], sort_keys=True, default=repr)
    known = _VALIDATED.get(key)
    if known is None:
        known = _merge_and_validate(base, fixed, params, seed)
        _VALIDATED[key] = known
        while len(_VALIDATED) > _VALIDATED_MAX:
            _VALIDATED.popitem(last=False)
    else:
        _VALIDATED.move_to_end(key)
    train = known.train.model_copy(update={"seed": int(seed)})
    return known.model_copy(deep=True, update={"train": train})


def forget_validated() -> None:
    """Empty :func:`materialize`'s memory of validated configurations (tests count validations with it)."""
    _VALIDATED.clear()


def _merge_and_validate(base: dict[str, Any], fixed: dict[str, Any], params: dict[str, Any], seed: int) -> TrainConfig:
    raw = copy.deepcopy(base)
    for key, value in copy.deepcopy({**fixed, **params}).items():
        set_dotted(raw, key, value)
    set_dotted(raw, "train.seed", int(seed))
    mix = raw.get("mix", {})
    if mix.get("method") == "splicemix_cl" and mix.get("cl_weight") in (0, 0.0):
        mix["method"] = "splicemix"
    return TrainConfig.model_validate(raw)


_MAX_COMBOS = 256  # up to this many probe combinations are checked exhaustively (else one key at a time)


def _probes(spec: StudySpec) -> dict[str, list[Any]]:
    """Every enumerable value of each searched key (both ends of a range)."""
    out: dict[str, list[Any]] = {}
    for key, p in spec.space.items():
        out[key] = list(p.values) if p.values is not None else list(getattr(p, p.kind))
    return out


def _combos(spec: StudySpec) -> list[dict[str, Any]]:
    """The searched-value combinations to validate: all of them when there are at most
    _MAX_COMBOS, else each value with the other keys at their first value."""
    probes = _probes(spec)
    if not probes:
        return [{}]
    if math.prod(len(v) for v in probes.values()) <= _MAX_COMBOS:
        return [dict(zip(probes, combo, strict=True)) for combo in itertools.product(*probes.values())]
    first = {k: v[0] for k, v in probes.items()}
    return [{**first, key: v} for key, vals in probes.items() for v in vals]


def _train_error_text(e: Exception) -> str:
    return format_validation_error(e, "") if isinstance(e, ValidationError) else str(e)


class _TrialCheck:
    """The trial configs of one study (fixed + searched values, first seed), each distinct one
    validated once: ``error(params)`` is None or what is wrong with it."""

    def __init__(self, spec: StudySpec, base: dict[str, Any]) -> None:
        self.spec, self.base = spec, base
        self.probes = _probes(spec)
        self.errors: dict[str, str | None] = {}

    def error(self, params: dict[str, Any]) -> str | None:
        params = {k: params[k] for k in self.spec.space if k in params}  # in the trials' key order
        label = repr(params)
        if label not in self.errors:
            try:
                materialize(self.base, self.spec.fixed, params, self.spec.seeds[0])
                self.errors[label] = None
            except (ConfigError, ValidationError) as e:
                self.errors[label] = _train_error_text(e)
        return self.errors[label]

    def fails_everywhere(self, key: str, value: Any) -> bool:
        """Whether ``key: value`` is invalid with the other searched keys at every one of their
        probe values (so it is this value's fault, not a combination's)."""
        others = {k: v for k, v in self.probes.items() if k != key}
        if math.prod(len(v) for v in others.values()) > _MAX_COMBOS:
            others = {k: v[:1] for k, v in others.items()}
        return all(
            self.error({**dict(zip(others, combo, strict=True)), key: value}) is not None
            for combo in itertools.product(*others.values())
        )


def _check_trials(spec: StudySpec, base: dict[str, Any], source: str) -> None:
    """Validate the fixed keys and every searched value (both ends of a range), in every
    combination (up to _MAX_COMBOS), against TrainConfig; the error names the culprit key."""
    check = _TrialCheck(spec, base)
    text = check.error({})
    if text is not None:
        raise StudyError(f"{source}: fixed: {text}")
    if all(check.error(params) is None for params in _combos(spec)):
        return  # (a value is blamed below only when every combination holding it fails)
    for key, values in check.probes.items():  # a bad value on its own: blame its key
        for value in values:
            text = check.error({key: value})
            if text is not None and (len(spec.space) == 1 or check.fails_everywhere(key, value)):
                raise StudyError(
                    f"{source}: space.{key} value {fmt_value(value)} gives an invalid training config: {text}"
                )
    for params in _combos(spec):  # values that are fine alone but not together (a grid vs a searched batch size)
        text = check.error(params)
        if text is not None:
            shown = ", ".join(f"space.{k} = {fmt_value(v)}" for k, v in params.items())
            raise StudyError(f"{source}: the searched values {shown} together give an invalid training config: {text}")


def _touches_paths(key: str) -> bool:
    """Whether a searched key can change what :func:`splicemix.config.data_path_problems` reports."""
    watched = [*PATH_KEYS, "data.dataset"]
    return any(w == key or w.startswith(key + ".") or key.startswith(w + ".") for w in watched)


def check_paths(spec: StudySpec, base: dict[str, Any], source: str, base_dir: str | None = None) -> list[str]:
    """The data / weights paths of the study's trials (``fixed`` and every searched value)
    that are missing or unreadable on this machine: ``"key = 'path' problem; expected ..."``.

    The problems depend only on the path keys, so one valid trial config per distinct set of
    searched path values is checked."""
    found: list[str] = []
    seen: set[str] = set()
    for params in _combos(spec):
        label = repr([(k, v) for k, v in params.items() if _touches_paths(k)])
        if label in seen:
            continue
        try:
            cfg = materialize(base, spec.fixed, params, spec.seeds[0])
        except (ConfigError, ValidationError):
            continue  # reported by _check_trials
        seen.add(label)
        for problem in data_path_problems(cfg, base_dir):
            if problem not in found:
                found.append(problem)
    return found


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[StudySpec, dict[str, Any], str]:
    """Read and validate a study YAML; return (spec, base config dict, the YAML text as run).

    ``overrides`` are ``key=value`` strings on the study file itself (``search.num_samples=4``,
    ``fixed.train.epochs=3``, ``resources.num_workers=2``); a key that is not a study key is
    taken as a training key and added to ``fixed`` (``--set optim.lr=0.01``).
    """
    p = Path(path)
    source = str(p)
    raw = _read_study(p)
    for item in overrides:
        _apply_study_override(raw, item, source)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise StudyError(format_study_error(e, source)) from None
    base = base_config_dict(spec, p)
    _check_trials(spec, base, source)
    return spec, base, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def _read_study(p: Path) -> dict[str, Any]:
    """The study file as a mapping, or a StudyError naming the file."""
    source = str(p)
    if not p.is_file():
        raise StudyError(
            f"study file {source!r} not found"
            + (" (it is a directory)" if p.is_dir() else "")
            + "; expected a YAML search space such as search_spaces/ratio.yaml"
        )
    try:
        raw = read_yaml_mapping(p, "a mapping (name, base, fixed, space, seeds, search, resources)")
    except ConfigError as e:
        raise StudyError(str(e)) from None
    for key in ("fixed", "space"):
        if isinstance(raw.get(key), dict):
            bad = [k for k in raw[key] if not isinstance(k, str)]
            if bad:
                raise StudyError(
                    f"{source}: {key} has non-text keys {bad}; expected dotted training keys like optim.lr"
                )
    return raw


_STUDY_KEYS = ("name", "description", "base", "fixed", "space", "seeds", "search", "resources")


def _apply_study_override(raw: dict[str, Any], item: str, source: str) -> None:
    """One ``--set`` on the study file (in place): ``space.<key>`` sets a searched key, another
    study key (``search.num_samples``) is set as it is, and ``fixed.<key>`` or any other key is a
    training key fixed for every trial (and no longer searched)."""
    try:
        key, value = parse_override(item)
    except ConfigError as e:
        raise StudyError(str(e)) from None
    head, _, sub = key.partition(".")
    if head == "space" and sub:
        _section(raw, "space", item, source)[sub] = value
    elif head in _STUDY_KEYS and not (head == "fixed" and sub):
        try:
            set_dotted(raw, key, value)
        except ConfigError as e:
            raise StudyError(f"{source} (from --set {item}): {e}") from None
    else:
        training_key = sub if head == "fixed" else key
        _section(raw, "fixed", item, source)[training_key] = value
        if isinstance(raw.get("space"), dict):
            raw["space"].pop(training_key, None)


def _section(raw: dict[str, Any], head: str, item: str, source: str) -> dict[str, Any]:
    section = raw.setdefault(head, {})
    if not isinstance(section, dict):
        raise StudyError(f"{source} (from --set {item}): '{head}' is not a mapping")
    return section


# --------------------------------------------------------------------------- smoke
SMOKE_FIXED: dict[str, Any] = {  # the training keys --smoke fixes for every trial (tiny synthetic data, 1 epoch)
    "data.dataset": "synthetic",
    "data.synthetic.n_train": 128,
    "data.synthetic.n_val": 64,
    "data.synthetic.image_size": 32,
    "data.image_size": 32,
    "data.eval_sizes": [16],
    "data.crop_scale": None,
    "data.workers": 0,
    "data.train_limit": None,
    "data.val_limit": None,
    "model.pretrained": None,
    "optim.milestones": [],
    "train.epochs": 1,
    "train.budget": None,  # a study's budget (steps, images, seconds) would outlast the one epoch
    "optim.warmup_steps": None,
    "train.batch_size": 32,
    "train.eval_every": 1,
}


def smoke(spec: StudySpec, base: dict) -> StudySpec:
    """A 2-trial, 1-epoch, tiny-data version of ``spec`` (same searched keys and backend).

    The data set becomes the embedded synthetic one at 32 px (so coco.yaml runs without
    MS-COCO); a searched key that is a smoke setting (data-set sizes, epochs, image size) is
    fixed at its smoke value; a ViT keeps its patch size dividing 32.
    """
    s = spec.model_copy(deep=True)
    dropped = ("data.coco", "data.voc", "train.budget.")
    s.fixed = {**{k: v for k, v in s.fixed.items() if not k.startswith(dropped)}, **SMOKE_FIXED}
    space: dict[str, Param] = {}
    for key, p in s.space.items():
        if key not in SMOKE_FIXED:  # a searched smoke setting (data-set size, epochs, ...) is fixed
            space[key] = p
    if not space and spec.space:  # every searched key was a smoke setting: keep the first so the searcher has work
        key, p = next(iter(spec.space.items()))
        space[key] = p
        s.fixed.pop(key, None)
    s.space = space
    s.seeds = s.seeds[:1]
    s.resources.num_workers = min(s.resources.num_workers, 2)
    s.resources.cpus_per_worker = 1
    s.resources.use_gpu = "auto"
    s.resources.max_concurrent = None
    s.resources.max_failures = 0
    s.search.time_budget_s = None
    if s.search.algorithm == "grid":
        # the first two grid points: two values of the first multi-valued key, the rest at their first value
        multi = [k for k, p in space.items() if len(p.values or []) > 1]
        for k, p in space.items():
            vals = p.values or []
            keep = vals[:2] if multi and k == multi[0] else vals[:1]
            space[k] = Param(grid=keep)
        s.search.num_samples = 1
    else:
        s.search.num_samples = 2
    s.search.asha.grace_period = 1
    return s
