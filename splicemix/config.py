"""Training configuration: pydantic models, YAML loading and ``--set key=value`` overrides.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored
setting. :func:`load_config` turns every problem into one :class:`ConfigError` whose
message names the file, the dotted key, the bad value and what was expected::

    cfg = load_config("configs/default.yaml", ["train.epochs=3", "mix.grids=[2x2, 1x2]"])

Files and values given with ``--set`` are parsed with a safe YAML loader (:func:`safe_yaml`:
``yaml.SafeLoader`` with YAML 1.2 numbers, so ``3`` is an int, ``0.5`` and ``1e-3`` floats,
``0x3`` text; ``[1, 2]`` a list, ``null`` None; a key given twice is an error); nothing is
ever evaluated as Python.
The built-in defaults (``TrainConfig()``) are the main job of ``configs/default.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from .data.synthetic import SyntheticConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "SyntheticKnobs",
    "CocoPaths",
    "VocPaths",
    "ModelConfig",
    "MixConfig",
    "OptimConfig",
    "TrainSection",
    "TrainConfig",
    "load_config",
    "read_yaml",
    "safe_yaml",
    "dump_yaml",
    "apply_overrides",
    "check_data_paths",
    "data_path_problems",
    "did_you_mean",
    "config_to_yaml",
]

MODEL_NAMES = ("smallcnn", "resnet18", "resnet50", "resnet101", "vit_tiny", "vit_b_16")


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key, the value and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class _KnobsBase(_Section):
    @model_validator(mode="after")
    def _check(self) -> "_KnobsBase":
        try:
            SyntheticConfig(**self.model_dump())
        except (ValueError, TypeError) as e:
            raise ValueError(f"data.{e}") from None  # "data.synthetic: knob=... is invalid; expected ..."
        return self


# The synthetic knobs are SyntheticConfig's own fields, types and defaults (one source of truth).
_KNOB_TYPES = typing.get_type_hints(SyntheticConfig)
SyntheticKnobs = create_model(
    "SyntheticKnobs",
    __base__=_KnobsBase,
    __doc__="The knobs of :class:`splicemix.data.synthetic.SyntheticConfig` (same names and defaults).",
    **{f.name: (_KNOB_TYPES[f.name], f.default) for f in dataclasses.fields(SyntheticConfig)},
)


class CocoPaths(_Section):
    train_images: Optional[str] = None
    train_annotations: Optional[str] = None
    val_images: Optional[str] = None
    val_annotations: Optional[str] = None


class VocPaths(_Section):
    root: Optional[str] = Field(None, description="directory holding VOCdevkit (or VOCdevkit itself)")
    year: str = "2007"
    train_set: str = "trainval"
    val_set: str = "test"

    @field_validator("year", mode="before")
    @classmethod
    def _year_text(cls, v: Any) -> Any:
        # `year: 2007` unquoted is an int in YAML; the folder is VOC2007 either way
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class DataConfig(_Section):
    dataset: Literal["synthetic", "coco", "voc"] = "synthetic"
    root: str = Field("data/synthetic", description="synthetic: where the data set is generated / cached")
    synthetic: SyntheticKnobs = Field(default_factory=SyntheticKnobs)
    coco: CocoPaths = Field(default_factory=CocoPaths)
    voc: VocPaths = Field(default_factory=VocPaths)
    image_size: int = Field(64, ge=8, description="training / evaluation resolution, px")
    eval_sizes: list[int] = Field(default_factory=list, description="extra (lower) evaluation resolutions")
    # None: plain resize (the synthetic objects reach the borders; a crop would cut them out while
    # their labels stay). [0.5, 1.0] is the paper's multi-scale crop for MS-COCO / VOC.
    crop_scale: Optional[tuple[float, float]] = None
    hflip: bool = True
    missing_label_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    workers: int = Field(0, ge=0)
    train_limit: Optional[int] = Field(None, ge=1)
    val_limit: Optional[int] = Field(None, ge=1)
    skip_corrupt: bool = Field(
        False, description="skip images that cannot be decoded (counted and logged) instead of stopping with an error"
    )

    @field_validator("eval_sizes")
    @classmethod
    def _eval_sizes_positive(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s < 1]
        if bad:
            raise ValueError(f"evaluation sizes must be positive integers, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"evaluation sizes must be distinct, got {v}")
        return v

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, v: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if v is None:  # plain resize, no crop
            return v
        if not (0 < v[0] <= v[1] <= 1):
            raise ValueError(f"expected 0 < min <= max <= 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _paths(self) -> "DataConfig":
        if self.dataset == "coco":
            missing = [k for k, v in self.coco.model_dump().items() if not v]
            if missing:
                raise ValueError(
                    "data.dataset is 'coco' but "
                    + ", ".join(f"data.coco.{k}" for k in missing)
                    + " not set; expected paths to the image folders and instances_*.json files"
                )
        if self.dataset == "voc" and not self.voc.root:
            raise ValueError("data.dataset is 'voc' but data.voc.root is not set; expected the folder holding VOCdevkit")
        return self


# --------------------------------------------------------------------------- model
class ModelConfig(_Section):
    name: Literal["smallcnn", "resnet18", "resnet50", "resnet101", "vit_tiny", "vit_b_16"] = "smallcnn"
    pretrained: Optional[str] = Field(None, description="path to a local weights file, or null")
    pool: Literal["max", "avg"] = Field("max", description="global pooling of the feature map: max (paper) or avg")


# --------------------------------------------------------------------------- mix
class MixConfig(_Section):
    method: Literal["baseline", "splicemix", "splicemix_cl"] = "splicemix"
    grids: Any = Field("default", description="'default' | 'minimal' | ['2x2', ...] | {'2x2': weight}")
    mixed_ratio: Any = Field(
        None, description="|B'|/|B| as a float, 'paper' for floor(|B|/(R*C-D)), null = preset's (0.25)"
    )
    counts: Optional[list[int]] = Field(None, description="exact mixed images per grid per batch (split mode)")
    drop_prob: Optional[float] = Field(None, ge=0.0, le=1.0, description="null = the preset's value")
    max_drop: Optional[int] = Field(None, ge=1, description="cap on the random drop count, null = R*C-1")
    asymmetric: bool = True
    prob: float = Field(1.0, ge=0.0, le=1.0)
    grid_sampling: Literal["batch", "split"] = "batch"
    antialias: bool = False
    cl_weight: float = Field(1.0, ge=0.0)
    cl_detach: bool = True

    @field_validator("grids")
    @classmethod
    def _grids(cls, v: Any) -> Any:
        if isinstance(v, str) and v in ("default", "minimal"):
            return v
        if isinstance(v, (str, list, dict)):
            if isinstance(v, dict):
                v = {str(k): w for k, w in v.items()}
            from .grids import parse_grids

            parse_grids(v)  # raises ValueError with the grid's message
            return v
        raise ValueError(
            f"expected 'default', 'minimal', a grid string like '2x2', a list of them or a mapping grid->weight, got {v!r}"
        )

    @field_validator("mixed_ratio")
    @classmethod
    def _ratio(cls, v: Any) -> Any:
        if v is None or v == "paper":
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"expected a number >= 0 (mixed images per regular image), 'paper' or null, got {v!r}")
        return float(v)

    def mixer_kwargs(self) -> dict:
        """Keyword arguments for :class:`splicemix.SpliceMix` (without ``generator``)."""
        return dict(
            grids=self.grids,
            mixed_ratio=self.mixed_ratio,
            counts=self.counts,
            drop_prob=self.drop_prob,
            max_drop=self.max_drop,
            asymmetric=self.asymmetric,
            prob=self.prob,
            grid_sampling=self.grid_sampling,
            antialias=self.antialias,
        )

    @model_validator(mode="after")
    def _construct(self) -> "MixConfig":
        try:
            from .mixing import SpliceMix
        except ImportError:  # pragma: no cover - the mixer module is part of the package
            return self
        try:
            SpliceMix(**self.mixer_kwargs())
        except (ValueError, TypeError) as e:
            raise ValueError(f"SpliceMix rejects mix settings: {e}") from None
        return self


# --------------------------------------------------------------------------- optim
class OptimConfig(_Section):
    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(3e-3, gt=0.0, description="head learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    backbone_lr_factor: float = Field(1.0, ge=0.0, description="backbone lr = lr * factor (paper: 0.1)")
    warmup_epochs: float = Field(1.0, ge=0.0)
    schedule: Literal["step", "cosine", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    grad_clip: Optional[float] = Field(None, gt=0.0, description="max gradient norm, null = off")

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or v != sorted(set(v)):
            raise ValueError(f"expected strictly increasing epochs >= 1, got {v}")
        return v


# --------------------------------------------------------------------------- train
class TrainSection(_Section):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=2, description="per process (per DDP worker)")
    seed: int = 0
    amp: Union[bool, Literal["auto"]] = "auto"
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: Union[bool, Literal["auto"]] = "auto"
    channels_last: bool = False
    cpu_threads: Optional[int] = Field(None, ge=1, description="torch intra-op CPU threads, null = torch's default")
    out_dir: str = "runs/default"
    resume: bool = False
    progress: bool = True
    eval_every: int = Field(1, ge=1)


class TrainConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _cross(self) -> "TrainConfig":
        big = [s for s in self.data.eval_sizes if s > self.data.image_size]
        if big:
            raise ValueError(
                f"data.eval_sizes {big} exceed data.image_size {self.data.image_size}; "
                "expected lower resolutions than the training one"
            )
        late = [m for m in self.optim.milestones if m >= self.train.epochs]
        if self.optim.schedule == "step" and late:
            raise ValueError(
                f"optim.milestones {late} are not below train.epochs {self.train.epochs}; they would never apply"
            )
        if self.mix.method != "baseline":
            from .mixing import SpliceMix

            specs = SpliceMix(**self.mix.mixer_kwargs()).specs
            too_big = [str(g) for g in specs if g.cells > self.train.batch_size]
            if too_big:
                raise ValueError(
                    f"mix.grids {too_big} need more distinct source images per mixed image than "
                    f"train.batch_size {self.train.batch_size} provides; expected a batch of at least "
                    f"{max(g.cells for g in specs)} images or smaller grids"
                )
        return self


# --------------------------------------------------------------------------- loading
def _fmt_value(v: Any, limit: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


_UNION_TAGS = ("str", "int", "float", "bool", "none", "list", "dict", "tuple")


def _clean_loc(loc: Sequence[Any]) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
            continue
        p = str(p)
        if "[" in p or "(" in p or p in _UNION_TAGS or p.startswith("function-"):
            continue  # a pydantic union / validator tag, not a key
        parts.append(("." if parts else "") + p)
    return "".join(parts)


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    model: Any = TrainConfig
    for p in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}).keys())


def did_you_mean(key: str, allowed: Sequence[str]) -> str:
    """``"; did you mean 'optim.lr'?"`` for the allowed name closest to the last part of ``key``, or ``""``."""
    head, _, last = str(key).rpartition(".")
    close = difflib.get_close_matches(last, [str(a) for a in allowed], n=1, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean '{head + '.' if head else ''}{close[0]}'?"


def _clean_msg(msg: str) -> str:
    """A pydantic error message without its "Value error, " prefix, "Input should be" -> "expected"."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if msg.startswith("Input should be "):
        msg = "expected " + msg[len("Input should be "):]
    return msg


def _format_validation_error(err: ValidationError, source: str, origins: dict[str, str]) -> str:
    # group by key: a union field (amp: bool | 'auto') reports one error per member
    grouped: dict[tuple[str, str], dict] = {}
    for e in err.errors(include_url=False):
        key = _clean_loc(e["loc"])
        msg = _clean_msg(e["msg"])
        where = source
        origin = None
        if key:
            origin = next((o for k, o in origins.items() if key == k or key.startswith(k + ".")), None)
            if origin is None:
                origin = next((o for k, o in origins.items() if k.startswith(key + ".")), None)
        if origin:
            where += f" (from --set {origin})"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"])
            text = f"{where}: unknown key '{key}' (value {_fmt_value(e['input'])})"
            hint = did_you_mean(key, allowed)
            if allowed:
                text += (hint + " " if hint else "; ") + f"expected one of: {', '.join(allowed)}"
            grouped[(text, "")] = {"text": text, "msgs": []}
        elif isinstance(e.get("input"), dict) and e["type"] in ("value_error", "assertion_error"):
            text = f"{where}: {msg}"  # a cross-field check: its message names the keys
            grouped[(text, "")] = {"text": text, "msgs": []}
        else:
            head = f"{where}: {key or '<top level>'} = {_fmt_value(e.get('input'))}"
            g = grouped.setdefault((head, key), {"text": head, "msgs": []})
            if msg not in g["msgs"]:
                g["msgs"].append(msg)
    lines = []
    for g in grouped.values():
        lines.append(g["text"] + (": " + " or ".join(g["msgs"]) if g["msgs"] else ""))
    return "; ".join(lines)


def _parse_override(item: str) -> tuple[list[str], Any, str]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key.startswith("--"):
        key = key[2:]
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise ConfigError(f"--set {item!r}: malformed key {key!r}; expected a dotted key like optim.lr")
    try:
        value = safe_yaml(raw)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        value = raw  # not YAML: keep the text as a string
    return [p.strip() for p in parts], value, key


def apply_overrides(raw: dict, overrides: Sequence[str], source: str = "<defaults>") -> tuple[dict, dict[str, str]]:
    """Apply ``a.b=c`` overrides to a nested dict (in place); returns it and {dotted key: item}."""
    origins: dict[str, str] = {}
    for item in overrides:
        parts, value, key = _parse_override(item)
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(
                    f"{source} (from --set {item}): '{'.'.join(parts[:i + 1])}' is {_fmt_value(nxt)}, "
                    f"not a section; cannot set '{key}'"
                )
            node = nxt
        node[parts[-1]] = value
        origins[key] = item
    return raw, origins


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects, no tags beyond the standard ones) with two changes:

    * numbers as in YAML 1.2: integers are decimal only (``0x3``, ``0o7``, ``1:30`` stay text,
      so a grid spec like ``0x3`` is reported as the grid it looks like, not as the number 3),
      and ``1e-3`` is a float (YAML 1.1 reads it as text);
    * a key given twice in one mapping is an error (YAML 1.1 silently keeps the last one).
    """

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML's hook
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"key '{key_node.value}' is given twice", key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):  # decimal only, leading zeros allowed ("007" is 7)
        text = str(self.construct_scalar(node)).replace("_", "")
        try:
            return int(text, 10)
        except ValueError as e:  # e.g. more digits than Python converts
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {text[:20]!r}... as an integer ({e})",
                                                    node.start_mark) from None


_SafeLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_SafeLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
                   |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+.0123456789"),
)
_SafeLoader.add_constructor(_INT_TAG, _SafeLoader.construct_yaml_int)


class _SafeDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes exactly the text :class:`_SafeLoader` would read as
    something else (``'1e-3'`` stays text), so dumped values load back unchanged."""


_SafeDumper.yaml_implicit_resolvers = _SafeLoader.yaml_implicit_resolvers


def dump_yaml(value: Any, flow: bool = False) -> str:
    """Plain data as YAML text that :func:`safe_yaml` reads back unchanged."""
    return yaml.dump(value, Dumper=_SafeDumper, sort_keys=False, default_flow_style=flow, allow_unicode=True)


def safe_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader above (plain data only: nothing is evaluated).
    Raises ``yaml.YAMLError`` (with ``problem_mark``) on bad input."""
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """Safe YAML (:func:`safe_yaml`) of a file; a syntax, encoding or read problem is one
    ConfigError naming the file (and the line and column of a YAML error)."""
    source = str(path)
    try:
        return safe_yaml(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}:{at}: not valid YAML ({problem})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not a UTF-8 text file ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read it ({e.strerror or e})") from None
    except (ValueError, TypeError, RecursionError) as e:  # e.g. a date such as 2021-02-30, nesting too deep
        raise ConfigError(f"{source}: not valid YAML ({type(e).__name__}: {str(e)[:200]})") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (:func:`safe_yaml`), apply ``--set`` overrides, validate.

    ``path=None`` starts from the built-in defaults. Raises :class:`FileNotFoundError` for a
    missing file and :class:`ConfigError` for anything wrong inside it.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    source = "<defaults>"
    raw: Any = {}
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise FileNotFoundError(f"config file {str(p)!r} not found" + (" (it is a directory)" if p.is_dir() else ""))
        raw = read_yaml(p)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: expected a mapping of sections (data, model, mix, optim, train) at the top level, "
                f"got {type(raw).__name__} {_fmt_value(raw)}"
            )
    raw, origins = apply_overrides(raw, list(overrides), source)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source, origins)) from None


_PATH_KEYS: dict[str, tuple[str, str]] = {  # dotted key -> (kind, what is expected there)
    "data.coco.train_images": ("dir", "the folder of the COCO training images (e.g. train2014)"),
    "data.coco.train_annotations": ("file", "a COCO instances_*.json file"),
    "data.coco.val_images": ("dir", "the folder of the COCO validation images (e.g. val2014)"),
    "data.coco.val_annotations": ("file", "a COCO instances_*.json file"),
    "data.voc.root": ("dir", "the folder holding VOCdevkit (or VOCdevkit / VOC2007 itself)"),
    "model.pretrained": ("file", "a local weights file (nothing is downloaded)"),
}


def data_path_problems(cfg: TrainConfig, base_dir: str | None = None, weights: bool = True) -> list[str]:
    """Every data / weights path of ``cfg`` that its data set needs but that is missing or
    unreadable, as ``"key = 'path' problem; expected ..."`` texts (``weights``: also
    ``model.pretrained``). Relative paths are taken relative to ``base_dir`` (default: the
    working directory)."""
    values = {
        "data.coco.train_images": cfg.data.coco.train_images,
        "data.coco.train_annotations": cfg.data.coco.train_annotations,
        "data.coco.val_images": cfg.data.coco.val_images,
        "data.coco.val_annotations": cfg.data.coco.val_annotations,
        "data.voc.root": cfg.data.voc.root,
        "model.pretrained": cfg.model.pretrained,
    }
    wanted = [k for k in values if (weights and k == "model.pretrained")
              or (cfg.data.dataset == "coco" and k.startswith("data.coco."))
              or (cfg.data.dataset == "voc" and k == "data.voc.root")]
    problems = []
    for key in wanted:
        given = values[key]
        if not given:
            continue  # a required path that is not set is the schema's error
        kind, expected = _PATH_KEYS[key]
        path = os.path.join(base_dir or os.getcwd(), os.path.expanduser(given))
        shown = repr(given) + ("" if os.path.abspath(path) == given else f" ({os.path.abspath(path)})")
        if not os.path.exists(path):
            problem = "does not exist"
        elif kind == "dir" and not os.path.isdir(path):
            problem = "is not a folder"
        elif kind == "file" and not os.path.isfile(path):
            problem = "is not a file"
        elif not os.access(path, os.R_OK | (os.X_OK if kind == "dir" else 0)):
            problem = "cannot be read (permission denied)"
        else:
            continue
        problems.append(f"{key} = {shown} {problem}; expected {expected}")
    return problems


def check_data_paths(cfg: TrainConfig, source: str = "", base_dir: str | None = None, weights: bool = True) -> None:
    """Raise one :class:`ConfigError` naming the first missing / unreadable data path of ``cfg``
    (see :func:`data_path_problems`), before any data is read."""
    problems = data_path_problems(cfg, base_dir, weights)
    if problems:
        more = f" (and {len(problems) - 1} more: {', '.join(p.split(' = ')[0] for p in problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(f"{source + ': ' if source else ''}{problems[0]}{more}")


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved configuration as YAML (what the trainer writes to ``out_dir/config.yaml``)."""
    return dump_yaml(cfg.model_dump(mode="json"))
