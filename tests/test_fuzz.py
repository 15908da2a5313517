"""Fuzzing the input parsers with hypothesis: whatever the text, the result is a valid object or
the project's clean error (a ValueError subclass with a message), never another exception.

* the grid-spec parser (``splicemix.grids.parse_grid``): arbitrary text and near-misses of
  ``"{r}x{c}-{d}"`` (odd separators, whitespace, signs, non-ASCII digits, huge numbers);
* the study schema (``study.schema.load_study``): random documents built from the real keys
  plus junk with random value types, and random text / bytes as the file;
* the training config (``splicemix.config.load_config``): random text / bytes and documents.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from splicemix.config import ConfigError, MixConfig, TrainConfig, dump_yaml, load_config
from splicemix.grids import MAX_SIDE, GridSpec, parse_grid
from splicemix.results import flatten_config
from study.schema import PARAM_KINDS, StudyError, StudySpec, load_study

REPO = Path(__file__).resolve().parents[1]
BASE = str(REPO / "configs" / "default.yaml")
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


# =========================================================================== grid specs
def check_grid(text) -> None:
    try:
        g = parse_grid(text)
    except ValueError as e:  # the clean error: a message that says what was expected
        assert str(e).strip()
        return
    assert isinstance(g, GridSpec)
    assert 1 <= g.rows <= MAX_SIDE and 1 <= g.cols <= MAX_SIDE
    assert 0 <= g.drop < g.rows * g.cols
    assert str(g) == f"{g.rows}x{g.cols}" + (f"-{g.drop}" if g.drop else "")
    assert parse_grid(str(g)) == g  # round trip


@FUZZ
@given(st.text(max_size=30))
@example("2x3-2")
@example(" 1X2 ")
@example("9" * 5000 + "x2")
@example("2x2-")
@example("x")
def test_parse_grid_arbitrary_text(text):
    check_grid(text)


NUMBERS = st.one_of(
    st.integers(-3, 40),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["", " ", "03", "+2", "-0", "1.5", "1e1", "\u0663", "\u0968", "\uff19", "\u00b2", "\u2155", "0x2"]),
)


@FUZZ
@given(
    r=NUMBERS,
    c=NUMBERS,
    d=st.one_of(st.none(), NUMBERS),
    sep=st.sampled_from(["x", "X", "\u00d7", "*", "y", "\u0445", "by", " x ", "", "xx"]),
    dash=st.sampled_from(["-", "\u2013", "\u2212", "--", " - ", "+"]),
    w1=st.text(alphabet=" \t\n\u00a0\u2003", max_size=2),
    w2=st.text(alphabet=" \t\u00a0", max_size=2),
)
def test_parse_grid_near_misses(r, c, d, sep, dash, w1, w2):
    text = f"{w1}{r}{w2}{sep}{w2}{c}" + ("" if d is None else f"{dash}{d}") + w1
    check_grid(text)
    if isinstance(r, int) and isinstance(c, int) and d is None and sep in ("x", "X") and w1.isascii() and w2.isascii():
        try:
            g = parse_grid(text)
        except ValueError:
            assert not (1 <= r <= MAX_SIDE and 1 <= c <= MAX_SIDE)
        else:
            assert (g.rows, g.cols, g.drop) == (r, c, 0)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=12),
        st.lists(st.text(max_size=8), max_size=3),
        st.dictionaries(st.text(max_size=6), st.one_of(st.floats(), st.text(max_size=3)), max_size=3),
        st.integers(),
        st.none(),
        st.floats(),
    )
)
def test_mix_grids_setting(value):
    """The grids key of the training config: valid, or pydantic's ValidationError (which the
    config loader words as one line)."""
    try:
        MixConfig(grids=value)
    except ValidationError as e:
        assert e.errors()


# =========================================================================== study files
TRAIN_KEYS = sorted(flatten_config(TrainConfig()))
SEARCH_KEYS = ["algorithm", "scheduler", "num_samples", "metric", "mode", "seed", "asha", "time_budget_s"]
RESOURCE_KEYS = [
    "num_workers",
    "cpus_per_worker",
    "use_gpu",
    "backend",
    "max_concurrent",
    "max_failures",
    "checkpoint_every",
]
JUNK = st.one_of(st.text(max_size=8), st.integers(-5, 5))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(
        [
            "2x2",
            "2x3-2",
            "0x3",
            "2x2-4",
            "default",
            "minimal",
            "grid",
            "tpe",
            "random",
            "asha",
            "fifo",
            "auto",
            "1e-3",
            "0x10",
            "coco",
            "voc",
            "synthetic",
            "paper",
            "",
            "~",
            "-1",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=5), ch, max_size=3), max_leaves=8
)
PARAM = st.one_of(
    st.dictionaries(st.sampled_from([*PARAM_KINDS, "gird"]), VALUES, max_size=2),
    st.fixed_dictionaries({"grid": st.lists(SCALARS, max_size=4)}),
    st.fixed_dictionaries({"uniform": st.lists(st.floats(), min_size=2, max_size=2)}),
    VALUES,
)
SECTION_KEY = st.one_of(st.sampled_from(TRAIN_KEYS), JUNK)
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.just("fuzz"), SCALARS),
        "description": SCALARS,
        "base": st.one_of(st.just(BASE), st.none(), SCALARS),
        "fixed": st.one_of(st.dictionaries(SECTION_KEY, VALUES, max_size=4), VALUES),
        "space": st.one_of(st.dictionaries(SECTION_KEY, PARAM, max_size=3), VALUES),
        "seeds": st.one_of(st.lists(st.integers(-3, 5), max_size=3), VALUES),
        "search": st.one_of(st.dictionaries(st.one_of(st.sampled_from(SEARCH_KEYS), JUNK), VALUES, max_size=3), VALUES),
        "resources": st.one_of(
            st.dictionaries(st.one_of(st.sampled_from(RESOURCE_KEYS), JUNK), VALUES, max_size=3), VALUES
        ),
        "serch": VALUES,
    },
)


def check_study(path: Path) -> None:
    try:
        spec, base, text = load_study(path)
    except StudyError as e:  # what the CLI prints as its one error line
        assert str(e).strip()
        return
    assert isinstance(spec, StudySpec) and isinstance(base, dict) and text
    assert spec.planned_trials() >= 1


@FUZZ
@given(doc=DOCUMENTS)
@example(doc={"name": "fuzz", "base": BASE, "space": {"optim.lr": {"grid": [0.1]}}})
@example(doc={"name": "fuzz", "base": "a\x00b", "space": {"optim.lr": {"grid": [0.1]}}})
@example(doc={"name": "fuzz", "space": {}, "seeds": [0, 1]})
@example(
    doc={
        "name": "fuzz",
        "base": BASE,
        "fixed": {"data.synthetic.n_train": 10**30},
        "space": {"optim.lr": {"grid": [0.1]}},
    }
)
def test_study_documents(tmp_path, doc):
    p = tmp_path / "fuzz.yaml"
    p.write_text(dump_yaml(doc), encoding="utf-8")
    check_study(p)


@FUZZ
@given(text=st.text(max_size=200))
@example(text="name: x\nspace: {a: [1,\n")
@example(text="a: 2021-02-30\n")
@example(text="[" * 2000)
@example(text="seeds: 1" + "0" * 5000)
@example(text="!!python/object/apply:os.system ['true']")
def test_study_random_text(tmp_path, text):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    check_study(p)


@FUZZ
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe\x00")
def test_study_random_bytes(tmp_path, data):
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(data)
    check_study(p)


# =========================================================================== training configs
def check_config(path: Path) -> None:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(e).strip()
        return
    assert isinstance(cfg, TrainConfig)


CONFIG_DOCUMENTS = st.one_of(
    st.dictionaries(
        st.sampled_from(["data", "model", "mix", "optim", "train", "trian"]),
        st.dictionaries(
            st.one_of(st.sampled_from(sorted({k.split(".")[1] for k in TRAIN_KEYS})), JUNK), VALUES, max_size=4
        ),
        max_size=3,
    ),
    VALUES,
)


@FUZZ
@given(doc=CONFIG_DOCUMENTS)
def test_config_documents(tmp_path, doc):
    p = tmp_path / "cfg.yaml"
    p.write_text(dump_yaml(doc), encoding="utf-8")
    check_config(p)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
@example(data=b"train: {epochs: [1,\n")
@example(data=b"train:\n  epochs: 1\n  epochs: 2\n")
def test_config_random_bytes(tmp_path, data):
    p = tmp_path / "cfg.yaml"
    p.write_bytes(data)
    check_config(p)


@FUZZ
@given(key=st.one_of(st.sampled_from(TRAIN_KEYS), st.text(max_size=12)), value=st.text(max_size=20))
def test_config_set_overrides(key, value):
    """``--set key=value`` with any key and any text: a config or one ConfigError."""
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as e:
        assert str(e).strip()


def test_fuzz_helpers_see_real_keys():
    assert "optim.lr" in TRAIN_KEYS and "data.synthetic.n_train" in TRAIN_KEYS
    with pytest.raises(StudyError):
        load_study(REPO / "no" / "such.yaml")
