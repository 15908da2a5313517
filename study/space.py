"""From a :class:`~study.schema.StudySpec` to Ray Tune objects: param space, searcher, scheduler.

Values that Optuna cannot hold as categories (lists such as ``mix.grids: [2x2, 1x2]``, or
mappings) travel through Tune as JSON labels and are decoded in the trial
(:func:`decode_params`), so the searcher and the results table see a readable string.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .schema import Param, StudySpec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import BaseStorage
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

__all__ = [
    "param_space",
    "distributions",
    "build_searcher",
    "build_scheduler",
    "decode_params",
    "SEED_KEY",
    "INDEX_KEY",
]

SEED_KEY = "train.seed"
INDEX_KEY = "__trial_index__"  # set by Tune's Repeater: which of the seeds this repeat is


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def encoded(p: Param) -> bool:
    """Whether this parameter's categories travel as JSON labels."""
    return p.values is not None and not all(_primitive(v) for v in p.values)


def _categories(p: Param) -> list[Any]:
    vals = p.values or []
    return [json.dumps(v) for v in vals] if encoded(p) else list(vals)


def param_space(spec: StudySpec) -> dict[str, Any]:
    """Tune's param_space: one entry per searched key (grid_search for the grid algorithm)."""
    from ray import tune

    space: dict[str, Any] = {}
    grid = spec.search.algorithm == "grid"
    for key, p in spec.space.items():
        if p.values is not None:
            cats = _categories(p)
            space[key] = tune.grid_search(cats) if grid else tune.choice(cats)
        elif p.kind == "uniform":
            space[key] = tune.uniform(*p.uniform)  # type: ignore[misc]
        elif p.kind == "loguniform":
            space[key] = tune.loguniform(*p.loguniform)  # type: ignore[misc]
        else:
            lo, hi = p.randint  # type: ignore[misc]
            space[key] = tune.randint(lo, hi + 1)  # Tune's upper bound is exclusive
    if grid and len(spec.seeds) > 1:
        space[SEED_KEY] = tune.grid_search(list(spec.seeds))
    return space


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every key of :func:`param_space` (a grid's values are categories)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for key, p in spec.space.items():
        if p.values is not None:
            out[key] = CategoricalDistribution(_categories(p))
        elif p.kind == "randint":
            out[key] = IntDistribution(*p.randint)  # type: ignore[misc]
        else:
            out[key] = FloatDistribution(*getattr(p, p.kind), log=p.kind == "loguniform")
    if spec.search.algorithm == "grid" and len(spec.seeds) > 1:
        out[SEED_KEY] = CategoricalDistribution(list(spec.seeds))
    return out


def decode_params(spec: StudySpec, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A Tune trial config -> (training overrides {dotted key: value}, seed)."""
    params: dict[str, Any] = {}
    for key, p in spec.space.items():
        if key not in config:
            raise KeyError(f"trial config has no value for searched key {key!r}")
        v = config[key]
        if encoded(p) and isinstance(v, str):
            v = json.loads(v)
        elif p.kind == "randint":
            v = int(v)
        elif isinstance(v, float) and p.values is not None and all(_is_int(x) for x in p.values):
            v = int(v)
        params[key] = v
    if SEED_KEY in config:
        seed = int(config[SEED_KEY])
    elif INDEX_KEY in config:
        seed = spec.seeds[int(config[INDEX_KEY]) % len(spec.seeds)]
    else:
        seed = spec.seeds[0]
    return params, seed


def build_searcher(
    spec: StudySpec, storage: BaseStorage | None = None, study_name: str | None = None
) -> Searcher | None:
    """None for the grid (Tune's BasicVariantGenerator); Optuna TPE / random otherwise, recording
    into the Optuna ``storage`` as ``study_name`` (in memory without one).

    With several seeds, Tune's ``Repeater`` runs every suggested configuration once per seed
    and hands the searcher their mean (one Optuna trial per configuration).
    """
    s = spec.search
    if s.algorithm == "grid":
        return None
    import optuna
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if s.algorithm == "tpe":
        n_startup = max(2, min(10, s.samples // 3))
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=n_startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
    searcher: Searcher = OptunaSearch(
        sampler=sampler, metric=s.metric, mode=s.mode, storage=storage, study_name=study_name
    )
    if len(spec.seeds) > 1:
        searcher = Repeater(searcher, repeat=len(spec.seeds), set_index=True)
    return searcher


def build_scheduler(spec: StudySpec, epochs: int) -> TrialScheduler:
    """ASHA over epochs (``training_iteration``: one report per epoch), or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.search
    if s.scheduler == "fifo":
        return FIFOScheduler()
    grace = min(s.asha.grace_period, epochs)
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max(epochs, 1),
        grace_period=max(grace, 1),
        reduction_factor=s.asha.reduction_factor,
        brackets=s.asha.brackets,
    )
