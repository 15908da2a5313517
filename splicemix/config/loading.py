"""Loading a training config: safe YAML, ``key=value`` overrides, one wording for every error.

:func:`load_config` turns every problem into one :class:`ConfigError` whose message names the
file, the dotted key, the bad value and what was expected::

    cfg = load_config("configs/default.yaml", ["train.epochs=3", "mix.grids=[2x2, 1x2]"])

Files and values given with ``--set`` are parsed with a safe YAML loader (:func:`safe_yaml`:
``yaml.SafeLoader`` with YAML 1.2 numbers, so ``3`` is an int, ``0.5`` and ``1e-3`` floats,
``0x3`` text; ``[1, 2]`` a list, ``null`` None; a key given twice is an error); nothing is
ever evaluated as Python. The pieces are public because the study runner (``study.schema``)
uses the same ones: :func:`parse_override` (the one ``key=value`` parser), :func:`set_dotted`
(a typed dotted set on a nested dict) and :func:`format_validation_error` (the one wording of
a pydantic error, for any root model).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .schema import TrainConfig

__all__ = [
    "ConfigError",
    "safe_yaml",
    "read_yaml",
    "read_yaml_mapping",
    "dump_yaml",
    "parse_override",
    "set_dotted",
    "apply_overrides",
    "format_validation_error",
    "did_you_mean",
    "fmt_value",
    "load_config",
    "config_to_yaml",
]


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key, the value and what was expected."""


# --------------------------------------------------------------------------- YAML
_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects, no tags beyond the standard ones) with two changes:

    * numbers as in YAML 1.2: integers are decimal only (``0x3``, ``0o7``, ``1:30`` stay text,
      so a grid spec like ``0x3`` is reported as the grid it looks like, not as the number 3),
      and ``1e-3`` is a float (YAML 1.1 reads it as text);
    * a key given twice in one mapping is an error (YAML 1.1 silently keeps the last one).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"key '{key_node.value}' is given twice",
                        key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # decimal only, leading zeros allowed ("007" is 7)
        text = str(self.construct_scalar(node)).replace("_", "")
        try:
            return int(text, 10)
        except ValueError as e:  # e.g. more digits than Python converts
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {text[:20]!r}... as an integer ({e})", node.start_mark
            ) from None


_SafeLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_SafeLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
                   |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
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


# --------------------------------------------------------------------------- key=value overrides
def fmt_value(v: Any, limit: int = 80) -> str:
    """``repr(v)``, cut to ``limit`` characters (with ``...``): a value as error messages show it."""
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _key_parts(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise ConfigError(f"malformed key {key!r}; expected a dotted key like optim.lr")
    return [p.strip() for p in parts]


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", 0.001)``: the one ``key=value`` parser (``--set``).

    The key may start with ``--``; the value is safe YAML (:func:`safe_yaml`), or the text
    itself when it is not YAML. Only the first ``=`` splits (``train.out_dir=runs/a=b``).
    Raises :class:`ConfigError` without ``=`` or with a malformed key (``train..epochs``).
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
    key, text = item.split("=", 1)
    try:
        parts = _key_parts(key.strip().removeprefix("--"))
    except ConfigError as e:
        raise ConfigError(f"--set {item!r}: {e}") from None
    try:
        value = safe_yaml(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        value = text  # not YAML: keep the text as a string
    return ".".join(parts), value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for ``key = "a.b.c"``, making missing (or null) sections.

    Raises :class:`ConfigError` when a parent is a value, not a section (``'train.epochs' is 3,
    not a section; cannot set 'train.epochs.x'``), or when the key is malformed.
    """
    parts = _key_parts(key)
    node = raw
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(
                f"'{'.'.join(parts[: i + 1])}' is {fmt_value(nxt)}, not a section; cannot set '{'.'.join(parts)}'"
            )
        node = nxt
    node[parts[-1]] = value


def apply_overrides(
    raw: dict[str, Any], overrides: Sequence[str], source: str = "<defaults>"
) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply ``a.b=c`` overrides to a nested dict (in place); returns it and {dotted key: item}."""
    origins: dict[str, str] = {}
    for item in overrides:
        key, value = parse_override(item)
        try:
            set_dotted(raw, key, value)
        except ConfigError as e:
            raise ConfigError(f"{source} (from --set {item}): {e}") from None
        origins[key] = item
    return raw, origins


# --------------------------------------------------------------------------- error wording
_UNION_TAGS = ("str", "int", "float", "bool", "none", "list", "dict", "tuple")


def _clean_loc(loc: Sequence[Any]) -> str:
    """A pydantic error location as a dotted key (``data.eval_sizes[1]``), without union / validator tags."""
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


def _clean_msg(msg: str) -> str:
    """A pydantic error message without its "Value error, " prefix, "Input should be" -> "expected"."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg.startswith("Input should be "):
        msg = "expected " + msg[len("Input should be ") :]
    return msg


def _allowed_keys(root: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys allowed next to the last one of ``loc`` (the fields of its model); a ``dict[str, Model]``
    field (a study's ``space``) is entered through its keys."""
    model: Any = root
    for p in loc[:-1]:
        if typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
            continue
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def did_you_mean(key: str, allowed: Sequence[str]) -> str:
    """``"; did you mean 'optim.lr'?"`` for the allowed name closest to the last part of ``key``, or ``""``."""
    head, _, last = str(key).rpartition(".")
    close = difflib.get_close_matches(last, [str(a) for a in allowed], n=1, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean '{head + '.' if head else ''}{close[0]}'?"


def _where(source: str, key: str, origins: dict[str, str]) -> str:
    """``"cfg.yaml (from --set optim.lr=x): "``: the source, and the ``--set`` item the key came from."""
    origin = None
    if key:
        origin = next((o for k, o in origins.items() if key == k or key.startswith(k + ".")), None)
        if origin is None:
            origin = next((o for k, o in origins.items() if k.startswith(key + ".")), None)
    where = source + (f" (from --set {origin})" if origin else "")
    return where + ": " if where else ""


def _clause(e: Any, key: str, root: type[BaseModel]) -> tuple[str, str]:
    """One pydantic error as (head, detail): details of one head (a union's members) are joined by "or"."""
    msg, given = _clean_msg(e["msg"]), e.get("input")
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(root, e["loc"])
        hint = did_you_mean(key, allowed)
        known = f"expected one of: {', '.join(allowed)}" if allowed else "not allowed here"
        detail = f"{hint.removeprefix('; ')} {known}" if hint else known
        return f"unknown key '{key}' (value {fmt_value(given)})", detail
    if e["type"] == "missing":
        return f"{key} is missing", "required"
    if isinstance(given, dict) and e["type"] in ("value_error", "assertion_error"):
        return (msg if not key or key in msg else f"{key}: {msg}"), ""  # a section's check: its message names keys
    return f"{key or '<top level>'} = {fmt_value(given)}", msg


def format_validation_error(
    err: ValidationError,
    source: str,
    origins: dict[str, str] | None = None,
    root: type[BaseModel] = TrainConfig,
) -> str:
    """A pydantic ``ValidationError`` of ``root`` (TrainConfig, a study's StudySpec) as one line:
    ``"<source>: <key> = <value>: <what was expected>"`` clauses joined by ``"; "``.

    ``origins`` ({dotted key: ``--set`` item}, from :func:`apply_overrides`) adds
    ``(from --set ...)`` to the clauses of overridden keys; an unknown key lists the keys allowed
    there (the fields of ``root`` at that place) with a "did you mean"; an empty ``source``
    leaves the clauses without a prefix.
    """
    clauses: dict[str, list[str]] = {}
    for e in err.errors(include_url=False):
        key = _clean_loc(e["loc"])
        head, detail = _clause(e, key, root)
        details = clauses.setdefault(_where(source, key, origins or {}) + head, [])
        if detail and detail not in details:
            details.append(detail)
    return "; ".join(head + (": " + " or ".join(details) if details else "") for head, details in clauses.items())


# --------------------------------------------------------------------------- load
def read_yaml_mapping(path: str | Path, expected: str) -> dict[str, Any]:
    """:func:`read_yaml` of a file that must hold a mapping at its top level (an empty file is ``{}``);
    ``expected`` describes that mapping in the error (``"a mapping of sections (data, model, ...)"``)."""
    raw = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected {expected} at the top level, got {type(raw).__name__} {fmt_value(raw)}")
    return raw


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
            where = " (it is a directory)" if p.is_dir() else ""
            raise FileNotFoundError(f"config file {str(p)!r} not found{where}")
        raw = read_yaml_mapping(p, "a mapping of sections (data, model, mix, optim, train)")
    raw, origins = apply_overrides(raw, list(overrides), source)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, origins)) from None


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved configuration as YAML (what the trainer writes to ``out_dir/config.yaml``)."""
    return dump_yaml(cfg.model_dump(mode="json"))
