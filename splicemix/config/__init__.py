"""Training configuration: the pydantic schema, YAML loading, ``--set key=value`` overrides.

* :mod:`.schema`: :class:`TrainConfig` and its sections (``data``, ``model``, ``mix``, ``optim``,
  ``train``); every section forbids unknown keys, so a typo is an error rather than a silently
  ignored setting. ``MixConfig``'s fields are :class:`splicemix.SpliceMix`'s keyword arguments.
* :mod:`.loading`: :func:`load_config` (file + overrides -> TrainConfig, or one
  :class:`ConfigError` naming the file, the dotted key, the bad value and what was expected), the
  safe YAML loader (nothing is ever evaluated as Python), the one ``key=value`` parser
  (:func:`parse_override`), :func:`set_dotted` and the one error formatter
  (:func:`format_validation_error`), which the study runner uses too.
* :mod:`.paths`: whether a config's data / weights paths exist on this machine.

::

    cfg = load_config("configs/default.yaml", ["train.epochs=3", "mix.grids=[2x2, 1x2]"])

The built-in defaults (``TrainConfig()``) are the main job of ``configs/default.yaml``.
"""

from .loading import (
    ConfigError,
    apply_overrides,
    config_to_yaml,
    did_you_mean,
    dump_yaml,
    fmt_value,
    format_validation_error,
    load_config,
    parse_override,
    read_yaml,
    read_yaml_mapping,
    safe_yaml,
    set_dotted,
)
from .paths import PATH_KEYS, check_data_paths, data_path_problems
from .schema import (
    METHODS,
    MIXER_ARGS,
    MODEL_NAMES,
    PAIR_MIXERS,
    BudgetConfig,
    CocoPaths,
    DataConfig,
    Method,
    MixConfig,
    ModelConfig,
    ModelName,
    OptimConfig,
    SyntheticKnobs,
    TrainConfig,
    TrainSection,
    VocPaths,
)

__all__ = [
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "SyntheticKnobs",
    "CocoPaths",
    "VocPaths",
    "ModelConfig",
    "ModelName",
    "MODEL_NAMES",
    "MixConfig",
    "MIXER_ARGS",
    "Method",
    "METHODS",
    "PAIR_MIXERS",
    "OptimConfig",
    "TrainSection",
    "TrainConfig",
    "load_config",
    "read_yaml",
    "read_yaml_mapping",
    "safe_yaml",
    "dump_yaml",
    "parse_override",
    "set_dotted",
    "apply_overrides",
    "format_validation_error",
    "did_you_mean",
    "fmt_value",
    "PATH_KEYS",
    "check_data_paths",
    "data_path_problems",
    "config_to_yaml",
]
