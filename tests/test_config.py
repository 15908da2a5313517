"""splicemix.config: YAML loading, --set overrides, error messages that name key and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from splicemix.config import ConfigError, TrainConfig, apply_overrides, config_to_yaml, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_default_yaml_load():
    cfg = load_config(None)
    assert isinstance(cfg, TrainConfig)
    assert cfg.mix.method == "splicemix" and cfg.model.name == "smallcnn" and cfg.optim.name == "adamw"
    from_file = load_config(REPO / "configs" / "default.yaml")
    assert from_file.data.dataset == "synthetic"
    assert from_file.data.image_size == 64
    assert from_file.mix.grids == "default"
    assert from_file.optim.schedule == "cosine"


def test_default_yaml_spells_out_every_key():
    """configs/default.yaml explains every key: it must list all of them (a new key needs a line)."""
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    defaults = TrainConfig().model_dump(mode="json")

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(defaults) == keys(raw)


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    p = write(tmp_path, "data:\n  image_size: 32\n  imgsize: 48\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "data.imgsize" in msg and str(p) in msg and "48" in msg
    assert "image_size" in msg  # the allowed keys are listed

    p = write(tmp_path, "trian:\n  epochs: 3\n", "top.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'trian'"):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    p = write(tmp_path, "train:\n  epochs: ten\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.epochs" in msg and "'ten'" in msg and "integer" in msg and str(p) in msg


def test_union_field_error_is_one_clause(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.amp=maybe"])
    msg = str(e.value)
    assert "; " not in msg and msg.count("train.amp = 'maybe'") == 1 and "auto" in msg
    assert "--set train.amp=maybe" in msg


def test_set_overrides_parse_types():
    cfg = load_config(
        None,
        [
            "train.epochs=3",
            "optim.lr=1e-2",
            "optim.milestones=[1, 2]",
            "data.eval_sizes=[32, 16]",
            "mix.grids={2x2: 1, 1x2: 2}",
            "mix.drop_prob=null",
            "train.amp=false",
            "model.pretrained=/weights/r101.pth",
            "train.out_dir=runs/a=b",  # only the first '=' splits
        ],
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.lr == pytest.approx(0.01) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.milestones == [1, 2]
    assert cfg.data.eval_sizes == [32, 16]
    assert cfg.mix.grids == {"2x2": 1, "1x2": 2}
    assert cfg.mix.drop_prob is None
    assert cfg.train.amp is False
    assert cfg.model.pretrained == "/weights/r101.pth"
    assert cfg.train.out_dir == "runs/a=b"


def test_overrides_apply_on_top_of_the_file(tmp_path):
    p = write(tmp_path, "train:\n  epochs: 5\n  batch_size: 8\n")
    cfg = load_config(p, ["train.epochs=2"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (2, 8)


def test_bad_overrides():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="malformed key"):
        load_config(None, ["train..epochs=3"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(None, ["train.epochs=3", "train.epochs.x=1"])
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        load_config(None, ["optim.lrr=0.1"])
    raw, origins = apply_overrides({}, ["a.b.c=1"])
    assert raw == {"a": {"b": {"c": 1}}} and origins == {"a.b.c": "a.b.c=1"}


def test_bad_grid_fails_at_load():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["mix.grids=[2x2, 2y3]"])
    assert "mix.grids" in str(e.value) and "2y3" in str(e.value)
    with pytest.raises(ConfigError, match="drops 4 cells"):
        load_config(None, ["mix.grids=2x2-4"])
    # valid grid strings that SpliceMix itself rejects in combination
    with pytest.raises(ConfigError, match="SpliceMix rejects"):
        load_config(None, ["mix.grids=[2x2, 1x2]", "mix.counts=[1]"])
    with pytest.raises(ConfigError, match="mix.mixed_ratio"):
        load_config(None, ["mix.mixed_ratio=lots"])
    assert load_config(None, ["mix.mixed_ratio=paper"]).mix.mixed_ratio == "paper"


def test_cross_field_checks():
    with pytest.raises(ConfigError, match=r"data\.coco\.train_images"):
        load_config(None, ["data.dataset=coco"])
    with pytest.raises(ConfigError, match=r"data\.voc\.root"):
        load_config(None, ["data.dataset=voc"])
    with pytest.raises(ConfigError, match="data.eval_sizes"):
        load_config(None, ["data.eval_sizes=[0, 32]"])
    with pytest.raises(ConfigError, match="exceed data.image_size"):
        load_config(None, ["data.image_size=32", "data.eval_sizes=[64]"])
    with pytest.raises(ConfigError, match="missing_label_ratio"):
        load_config(None, ["data.missing_label_ratio=1.0"])
    with pytest.raises(ConfigError, match="milestones"):
        load_config(None, ["optim.schedule=step", "optim.milestones=[5, 50]", "train.epochs=10"])
    # the synthetic knobs are checked by SyntheticConfig itself
    with pytest.raises(ConfigError, match="objects"):
        load_config(None, ["data.synthetic.objects=[1, 12]"])
    ok = load_config(
        None,
        [
            "data.dataset=coco",
            "data.coco.train_images=a",
            "data.coco.train_annotations=b",
            "data.coco.val_images=c",
            "data.coco.val_annotations=d",
        ],
    )
    assert ok.data.coco.val_annotations == "d"


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    p = write(tmp_path, "train:\n  epochs: [1,\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*line \d+"):
        load_config(p)
    p = write(tmp_path, "- 1\n- 2\n", "list.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    assert load_config(write(tmp_path, "", "empty.yaml")) == TrainConfig()


def test_yaml_never_executes_code(tmp_path):
    p = write(tmp_path, "train: !!python/object/apply:os.system ['echo pwned']\n", "evil.yaml")
    with pytest.raises(ConfigError):
        load_config(p)
    cfg = load_config(None, ["train.out_dir=__import__('os').getcwd()"])
    assert cfg.train.out_dir == "__import__('os').getcwd()"  # a plain string


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["mix.grids={2x2: 0.5, 1x2: 0.5}", "data.eval_sizes=[32]", "optim.name=sgd"])
    p = write(tmp_path, config_to_yaml(cfg), "resolved.yaml")
    assert load_config(p) == cfg


def test_default_yaml_matches_the_builtin_defaults():
    """The header of configs/default.yaml promises it spells out the built-in defaults."""
    builtin = load_config(None).model_dump(mode="json")
    from_file = load_config(REPO / "configs" / "default.yaml").model_dump(mode="json")
    from_file["data"]["eval_sizes"] = builtin["data"]["eval_sizes"]  # the one stated exception
    assert from_file == builtin


def test_grid_larger_than_the_batch_fails_at_load():
    with pytest.raises(
        ConfigError,
        match=r"mix.grids \['3x3'\] need more distinct source images .* "
        r"train.batch_size 4",
    ):
        load_config(None, ["train.batch_size=4", "mix.grids=[3x3, 1x2]"])
    assert load_config(None, ["train.batch_size=4", "mix.grids=[3x3]", "mix.method=baseline"]).mix.method == "baseline"


# --------------------------------------------------------------------------- one path, counted
@pytest.fixture
def spy_splicemix(monkeypatch):
    """Counts the SpliceMix constructions of config validation."""
    import splicemix.config.schema as schema

    made = []

    class Counting(schema.SpliceMix):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(schema, "SpliceMix", Counting)
    return made


def test_mix_settings_are_splicemix_kwargs():
    """MixConfig goes one hop into SpliceMix: every keyword argument is a field of the same name."""
    import inspect

    from splicemix import SpliceMix
    from splicemix.config import MixConfig

    assert set(MixConfig().mixer_kwargs()) == set(inspect.signature(SpliceMix).parameters) - {"generator"}
    assert MixConfig(grids="2x3", counts=[3]).mixer_kwargs()["counts"] == [3]


def test_one_validation_constructs_splicemix_once(spy_splicemix):
    cfg = load_config(None, ["mix.grids=[2x2, 1x2]", "train.batch_size=8"])
    assert len(spy_splicemix) == 1  # MixConfig's check; TrainConfig's batch check reuses its grids
    assert [str(g) for g in cfg.mix.grid_specs()] == ["2x2", "1x2"] and len(spy_splicemix) == 1
    cfg.mix.grids = "2x3"  # validate_assignment: constructed again for the new settings
    assert len(spy_splicemix) == 2 and [str(g) for g in cfg.mix.grid_specs()] == ["2x3"]
    changed = cfg.mix.model_copy(update={"grids": "3x3"})  # not validated: rebuilt when asked
    assert [str(g) for g in changed.grid_specs()] == ["3x3"] and len(spy_splicemix) == 3
    with pytest.raises(ValueError, match=r"need more distinct source images .* train.batch_size 8"):
        TrainConfig(mix=changed, train={"batch_size": 8})


def test_parse_override_and_set_dotted():
    from splicemix.config import parse_override, set_dotted

    assert parse_override("--optim.lr=1e-3") == ("optim.lr", 0.001)
    assert parse_override(" mix.grids = [2x2, 1x2]") == ("mix.grids", ["2x2", "1x2"])
    assert parse_override("train.out_dir=runs/a=b") == ("train.out_dir", "runs/a=b")
    assert parse_override("x=[1,") == ("x", "[1,")  # not YAML: the text
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")
    raw: dict = {"train": {"epochs": 3}, "data": None}
    set_dotted(raw, "data.synthetic.n_train", 10)
    assert raw["data"] == {"synthetic": {"n_train": 10}}
    with pytest.raises(ConfigError, match=r"^'train.epochs' is 3, not a section; cannot set 'train.epochs.x'$"):
        set_dotted(raw, "train.epochs.x", 1)
    with pytest.raises(ConfigError, match="malformed key"):
        set_dotted(raw, "train..x", 1)
