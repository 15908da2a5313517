"""Bad input to ``python -m study.run`` and ``python -m splicemix.train`` (issue 6).

Every case must exit with status 2 and ONE short stderr line that names the file / key /
value / path, with no traceback (unless ``--debug``). Each case runs at least once as a
subprocess (``python -m ...``, the real exit status and stderr); its variants run the same
``main()`` in-process (``inproc``), where a traceback would be an exception escaping main,
which keeps this file's run time down (a subprocess costs ~4 s of imports here).

A study that would (wrongly) pass validation is kept from running: in-process, starting Ray
fails the test; in a subprocess, a dead ``--address`` (checked after the study file and the
data paths), a --storage below a regular file, ``--smoke`` or ``--print-config``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from loopback import free_port

from splicemix.config import ConfigError, check_data_paths, load_config, safe_yaml
from splicemix.data import CorruptImageError, SkipCorrupt
from splicemix.data.base import load_rgb
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from study.schema import StudyError, load_study, smoke

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "configs" / "default.yaml"
TINY = dict(n_train=48, n_val=16, image_size=32, seed=0)


DEAD = ["--address", f"127.0.0.1:{free_port()}", "--connect-timeout", "2"]  # the safety net


def _run(module: str, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def study(tmp: Path, *args: str, safety: bool = True) -> subprocess.CompletedProcess:
    """``safety``: a dead --address, checked after the study file and the data paths."""
    extra = ([] if "--storage" in args else ["--storage", str(tmp / "studies")]) + [
        "--data-cache",
        str(tmp / "cache"),
        "--quiet",
    ]
    return _run("study.run", *args, *extra, *(DEAD if safety else []), cwd=tmp)


def study_paths(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """For the data-path cases (with --address a missing path is only a warning): the safety
    net is a --storage below a regular file, checked after the data paths."""
    (tmp / "plain-file").write_text("")
    return _run("study.run", *args, "--storage", str(tmp / "plain-file" / "st"), "--quiet", cwd=tmp)


def trainer(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return _run("splicemix.train", *args, "--no-progress", cwd=tmp)


@pytest.fixture
def inproc(tmp_path, monkeypatch, capsys):
    """``inproc("study.run" | "splicemix.train", *args)``: that CLI's main() in this process,
    in tmp_path, as a CompletedProcess; Ray may not start."""
    import splicemix.train as train_mod
    import study.cluster as cluster_mod
    import study.run as run_mod

    def no_ray(*a, **k):
        raise AssertionError("the study would have started Ray: the bad input was not caught")

    monkeypatch.setattr(cluster_mod, "init_ray", no_ray)
    monkeypatch.chdir(tmp_path)

    def call(module: str, *args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        if module == "study.run":
            main = run_mod.main
            args = (
                *args,
                *([] if "--storage" in args else ["--storage", str(tmp_path / "studies")]),
                *([] if "--data-cache" in args else ["--data-cache", str(tmp_path / "cache")]),
                "--quiet",
            )
        else:
            main, args = train_mod.main, (*args, "--no-progress")
        try:
            rc = main(list(args))
            extra = ""
        except SystemExit as e:  # argparse
            rc, extra = e.code, ""
        except Exception as e:  # noqa: BLE001 - what the user would see as a traceback
            rc, extra = 1, f"Traceback (escaped main): {type(e).__name__}: {e}\n"
        out = capsys.readouterr()
        return subprocess.CompletedProcess([module, *args], rc, out.out, out.err + extra)

    return call


def assert_bad(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, one short error line naming every needle, no traceback; returns the line."""
    err = r.stderr
    assert r.returncode == 2, (r.returncode, err[-3000:], r.stdout[-2000:])
    assert "Traceback" not in err and "Traceback" not in r.stdout, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, err
    assert "error:" in lines[0], err
    for n in needles:
        assert n in err, (n, err)
    return lines[0]


def write(tmp: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def space_file(tmp: Path, body: str, name: str = "s.yaml") -> str:
    return str(write(tmp, f"name: x\nbase: {BASE}\n{body}", name))


OK_SPACE = "space: {optim.lr: {grid: [0.1]}}\n"


# =========================================================================== 1. malformed YAML
def test_malformed_study_yaml_names_file_line_column(tmp_path):
    p = write(tmp_path, "name: x\nspace: {a: [1,\n", "broken.yaml")
    line = assert_bad(study(tmp_path, str(p)), "broken.yaml", "line 3, column 1", "not valid YAML")
    assert line.startswith("study.run: error:")


def test_malformed_training_config_names_file_line_column(tmp_path, inproc):
    p = write(tmp_path, "train:\n  epochs: 3\n  batch_size: [1,\n", "cfg.yaml")
    assert_bad(
        trainer(tmp_path, "--config", str(p), "--print-config"), "cfg.yaml", "line 4, column 1", "not valid YAML"
    )
    # the same file as a study's base: the study names it too
    s = write(tmp_path, f"name: x\nbase: {p}\n{OK_SPACE}")
    assert_bad(inproc("study.run", str(s)), "cfg.yaml", "line 4", "not valid YAML")


def test_duplicate_key_is_an_error(tmp_path, inproc):
    p = space_file(tmp_path, "space: {optim.lr: {grid: [0.1]}}\nspace: {mix.prob: {grid: [0.5]}}\n")
    assert_bad(inproc("study.run", p), "s.yaml", "line 4", "key 'space' is given twice")


def test_not_utf8_and_not_a_mapping(tmp_path, inproc):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"name: \xff\xfe\x00x\n")
    assert_bad(inproc("study.run", str(p)), "bin.yaml", "not a UTF-8 text file")
    p = write(tmp_path, "- just\n- a list\n", "list.yaml")
    assert_bad(inproc("study.run", str(p)), "list.yaml", "expected a mapping")
    assert_bad(inproc("study.run", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")
    assert_bad(inproc("splicemix.train", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")


# =========================================================================== 2. unknown keys
@pytest.mark.parametrize(
    "body, needles",
    [
        ("serch: {}\n" + OK_SPACE, ["unknown key 'serch'", "did you mean 'search'", "expected one of", "resources"]),
        (
            "search: {algoritm: grid}\n" + OK_SPACE,
            ["unknown key 'search.algoritm'", "did you mean 'search.algorithm'", "scheduler"],
        ),
        ("resources: {num_worker: 2}\n" + OK_SPACE, ["unknown key 'resources.num_worker'", "num_workers"]),
        (
            "fixed: {optim.lrr: 0.1}\nspace: {mix.prob: {grid: [0.5]}}\n",
            ["fixed", "unknown key 'optim.lrr'", "did you mean 'optim.lr'", "momentum"],
        ),
        (
            "space: {optim.lrr: {grid: [0.1]}}\n",
            ["space.optim.lrr", "unknown key 'optim.lrr'", "did you mean 'optim.lr'"],
        ),
        ("space: {optim.lr: {gird: [0.1]}}\n", ["unknown key 'space.optim.lr.gird'", "did you mean", "grid"]),
    ],
    ids=["top", "search", "resources", "fixed-dotted", "space-dotted", "param-kind"],
)
def test_unknown_study_keys(tmp_path, inproc, body, needles):
    assert_bad(inproc("study.run", space_file(tmp_path, body)), "s.yaml", *needles)


def test_unknown_study_key_cli(tmp_path):
    r = study(tmp_path, space_file(tmp_path, "serch: {}\n" + OK_SPACE))
    assert_bad(r, "s.yaml", "unknown key 'serch'", "did you mean 'search'", "expected one of")


def test_unknown_key_from_set(tmp_path, inproc):
    p = space_file(tmp_path, OK_SPACE)
    assert_bad(inproc("study.run", p, "--set", "optimm.lr=3"), "unknown key 'optimm'", "did you mean 'optim'")
    assert_bad(inproc("study.run", p, "--set", "resources.num_worker=2"), "unknown key 'resources.num_worker'")


def test_unknown_training_keys(tmp_path, inproc):
    p = write(tmp_path, "optim:\n  lrr: 0.1\n", "cfg.yaml")
    assert_bad(
        trainer(tmp_path, "--config", str(p), "--print-config"),
        "cfg.yaml",
        "unknown key 'optim.lrr'",
        "did you mean 'optim.lr'",
        "momentum",
    )
    assert_bad(
        inproc("splicemix.train", "--set", "trian.epochs=3", "--print-config"),
        "unknown key 'trian'",
        "did you mean 'train'",
    )


# =========================================================================== 3. wrong types
@pytest.mark.parametrize(
    "body, needles",
    [
        ('fixed: {train.epochs: "ten"}\n' + OK_SPACE, ["fixed", "train.epochs", "'ten'", "integer"]),
        ("seeds: 3\n" + OK_SPACE, ["seeds = 3", "list"]),
        ("space: {optim.lr: {grid: 5}}\n", ["space.optim.lr.grid = 5", "list"]),
        ("search: {num_samples: many}\n" + OK_SPACE, ["search.num_samples = 'many'", "integer"]),
        ("resources: {use_gpu: maybe}\n" + OK_SPACE, ["resources.use_gpu = 'maybe'"]),
    ],
    ids=["epochs-text", "seeds-int", "grid-int", "num-samples", "use-gpu"],
)
def test_wrong_types(tmp_path, inproc, body, needles):
    assert_bad(inproc("study.run", space_file(tmp_path, body)), "s.yaml", *needles)


def test_wrong_types_cli(tmp_path):
    r = study(tmp_path, space_file(tmp_path, 'fixed: {train.epochs: "ten"}\n' + OK_SPACE))
    assert_bad(r, "s.yaml", "fixed", "train.epochs = 'ten'", "integer")


def test_wrong_types_training_cli(tmp_path, inproc):
    assert_bad(
        inproc("splicemix.train", "--set", "train.epochs=ten", "--print-config"), "train.epochs", "'ten'", "integer"
    )


def test_wrong_command_line_numbers(tmp_path, inproc):
    p = space_file(tmp_path, OK_SPACE)
    assert_bad(inproc("study.run", p, "--num-samples", "0"), "--num-samples 0", ">= 1")
    assert_bad(inproc("study.run", p, "--max-concurrent", "0"), "--max-concurrent 0")
    assert_bad(inproc("study.run", p, "--connect-timeout", "0"), "--connect-timeout 0")


# =========================================================================== 4. impossible grids
@pytest.mark.parametrize(
    "body, needles",
    [
        ('fixed: {mix.grids: ["2x2-4"]}\n' + OK_SPACE, ["fixed", "mix.grids", "2x2-4", "drops 4 cells but it has 4"]),
        ('space: {mix.grids: {grid: ["2y2"]}}\n', ["space.mix.grids value '2y2'", "malformed grid"]),
        (
            'space: {mix.grids: {choice: ["0x3", "2x2"]}}\nsearch: {algorithm: tpe, scheduler: fifo}\n',
            ["space.mix.grids value '0x3'", "rows and cols must be between 1 and 16"],
        ),
        ("space: {mix.grids: {grid: [0x3]}}\n", ["space.mix.grids value '0x3'"]),  # unquoted: still the text 0x3
        (
            'fixed: {mix.grids: ["3x3"], train.batch_size: 4}\n' + OK_SPACE,
            ["fixed", "3x3", "train.batch_size 4", "at least 9 images"],
        ),
        (
            'space: {mix.grids: {grid: ["3x3", "2x2"]}, train.batch_size: {grid: [4, 16]}}\n',
            ["space.mix.grids = '3x3'", "space.train.batch_size = 4", "together", "at least 9 images"],
        ),
    ],
    ids=["drops", "unparsable", "zero-rows", "zero-rows-unquoted", "cells-vs-batch", "cells-vs-searched-batch"],
)
def test_impossible_grids_in_the_file(tmp_path, inproc, body, needles):
    assert_bad(inproc("study.run", space_file(tmp_path, body)), "s.yaml", *needles)


def test_impossible_grid_cli(tmp_path):
    r = study(tmp_path, space_file(tmp_path, 'space: {mix.grids: {grid: ["2x2", "2x2-4"]}}\n'))
    assert_bad(r, "s.yaml", "space.mix.grids value '2x2-4'", "drops 4 cells but it has 4")


@pytest.mark.parametrize(
    "sets, needles",
    [
        (["mix.grids=[2x2-4]"], ["mix.grids", "2x2-4", "drops 4 cells"]),
        (["space.mix.grids={grid: [2y2]}"], ["space.mix.grids value '2y2'", "malformed grid"]),
        (["train.batch_size=4", "mix.grids=[3x3]"], ["3x3", "train.batch_size 4"]),
    ],
    ids=["drops", "unparsable-in-space", "cells-vs-batch"],
)
def test_impossible_grids_from_set(tmp_path, inproc, sets, needles):
    args = [a for s in sets for a in ("--set", s)]
    # a second searched key first in the file: the error must still blame mix.grids
    p = space_file(tmp_path, OK_SPACE)
    assert_bad(inproc("study.run", p, *args), *needles)


@pytest.mark.parametrize(
    "sets, needles",
    [
        (["mix.grids=[2x2-4]"], ["--set mix.grids=[2x2-4]", "drops 4 cells"]),
        (["mix.grids=[0x3]"], ["0x3", "rows and cols must be between 1 and 16"]),
        (["mix.grids=[2y2]"], ["malformed grid '2y2'"]),
        (["train.batch_size=4", "mix.grids=[3x3]"], ["3x3", "train.batch_size 4"]),
    ],
    ids=["drops", "zero-rows", "unparsable", "cells-vs-batch"],
)
def test_impossible_grids_training_cli(tmp_path, inproc, sets, needles):
    assert_bad(inproc("splicemix.train", "--set", *sets, "--print-config"), *needles)


def test_impossible_grid_training_cli_subprocess(tmp_path):
    assert_bad(trainer(tmp_path, "--set", "mix.grids=[0x3]", "--print-config"), "0x3", "rows and cols")


# =========================================================================== 5. empty search space
@pytest.mark.parametrize(
    "body, needles",
    [
        ("space: {}\n", ["space is empty and no seeds are given", "seeds: [0, 1, 2]"]),
        ("space: {optim.lr: {grid: []}}\n", ["space.optim.lr", "grid is empty"]),
        ("space: {optim.lr: {choice: []}}\nsearch: {algorithm: tpe, scheduler: fifo}\n", ["choice is empty"]),
        ("space: {}\nseeds: [0, 1]\nsearch: {algorithm: tpe}\n", ["space is empty", "'tpe' has nothing to search"]),
        ("seeds: []\n" + OK_SPACE, ["seeds = []", "at least one seed"]),
    ],
    ids=["no-space-no-seeds", "empty-grid", "empty-choice", "empty-space-tpe", "no-seeds"],
)
def test_empty_space_errors(tmp_path, inproc, body, needles):
    assert_bad(inproc("study.run", space_file(tmp_path, body)), "s.yaml", *needles)


def test_empty_space_cli(tmp_path):
    assert_bad(study(tmp_path, space_file(tmp_path, "space: {}\n")), "s.yaml", "space is empty and no seeds")


def test_empty_space_with_seeds_is_one_configuration_per_seed(tmp_path):
    spec, base, _ = load_study(space_file(tmp_path, "space: {}\nseeds: [0, 1, 2]\n"))
    assert spec.space == {} and spec.search.algorithm == "grid" and spec.search.scheduler == "fifo"
    assert spec.planned_trials() == 3
    s = smoke(spec, base)
    assert s.planned_trials() == 1 and s.space == {}
    from study.space import param_space

    assert param_space(spec) == {"train.seed": {"grid_search": [0, 1, 2]}}


# =========================================================================== 6. data paths
COCO_FIXED = (
    "fixed:\n  data.dataset: coco\n  data.coco.train_images: {d}/train2014\n"
    "  data.coco.train_annotations: {d}/instances_train.json\n  data.coco.val_images: {d}/val2014\n"
    "  data.coco.val_annotations: {d}/instances_val.json\n"
)


def test_missing_coco_paths_study(tmp_path, inproc):
    d = tmp_path / "coco"
    p = space_file(tmp_path, COCO_FIXED.format(d=d) + OK_SPACE)
    assert_bad(
        study_paths(tmp_path, p),
        "s.yaml",
        "data.coco.train_images",
        str(d / "train2014"),
        "does not exist",
        "and 3 more: data.coco.train_annotations, data.coco.val_images, data.coco.val_annotations",
    )
    # the folders exist but an annotation file is a folder: named as such
    for sub in ("train2014", "val2014", "instances_train.json"):
        (d / sub).mkdir(parents=True)
    (d / "instances_val.json").write_text("{}")
    assert_bad(study_paths(tmp_path, p), "data.coco.train_annotations", "instances_train.json", "is not a file")
    # on a cluster (--address) the nodes may hold the data: a warning, then the address check
    r = inproc("study.run", p, *DEAD)
    assert "warning: data.coco.train_annotations" in r.stderr and "error: --address" in r.stderr


def test_missing_voc_root_study_and_relative_paths(tmp_path, inproc):
    p = space_file(tmp_path, "fixed: {data.dataset: voc, data.voc.root: no/such/VOCdevkit}\n" + OK_SPACE)
    assert_bad(inproc("study.run", p), "data.voc.root", "'no/such/VOCdevkit'", str(tmp_path / "no/such/VOCdevkit"))


def test_missing_path_in_a_searched_value(tmp_path, inproc):
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    p = space_file(tmp_path, f"space: {{model.pretrained: {{grid: [{w}, {tmp_path}/nope.pth]}}}}\n")
    assert_bad(inproc("study.run", p), "model.pretrained", "nope.pth", "does not exist")


def test_missing_coco_paths_training_cli(tmp_path):
    d = tmp_path / "coco"
    sets = [
        "data.dataset=coco",
        f"data.coco.train_images={d}/train2014",
        f"data.coco.train_annotations={d}/a.json",
        f"data.coco.val_images={d}/val2014",
        f"data.coco.val_annotations={d}/v.json",
        "train.epochs=1",
        f"train.out_dir={tmp_path / 'run'}",
    ]
    assert_bad(trainer(tmp_path, "--set", *sets), "data.coco.train_images", str(d / "train2014"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_check_data_paths_unit(tmp_path):
    cfg = load_config(None, ["data.dataset=voc", f"data.voc.root={tmp_path}/x"])
    with pytest.raises(ConfigError, match=r"data\.voc\.root = .*x' does not exist"):
        check_data_paths(cfg)
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_data_paths(cfg)
    check_data_paths(load_config(None))  # synthetic: nothing to check


# =========================================================================== 7. corrupt JPEGs
@pytest.fixture(scope="module")
def damaged_root(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = ensure_synthetic(tmp_path_factory.mktemp("damaged"), SyntheticConfig(**TINY))
    bad_train = sorted((root / "train").glob("*.jpg"))[2]
    data = bad_train.read_bytes()
    bad_train.write_bytes(data[: len(data) // 2])  # truncated
    bad_val = sorted((root / "val").glob("*.jpg"))[1]
    bad_val.write_bytes(b"not a jpeg at all" * 8)  # garbage
    return root, bad_train, bad_val


def _tiny_sets(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--set",
        f"data.root={root}",
        *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
        "data.image_size=32",
        "data.eval_sizes=[16]",
        "train.batch_size=16",
        "train.epochs=1",
        "train.cpu_threads=1",
        f"train.out_dir={out}",
        *extra,
    ]


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_jpeg_names_the_file(tmp_path, inproc, damaged_root, workers):
    root, bad_train, _ = damaged_root
    args = _tiny_sets(root, tmp_path / "run", f"data.workers={workers}")
    r = trainer(tmp_path, *args) if workers else inproc("splicemix.train", *args)
    line = assert_bad(r, str(bad_train), "cannot read image file", "--skip-corrupt")
    assert "DataLoader worker" not in line


def test_skip_corrupt_finishes_and_counts(tmp_path, damaged_root):
    root, bad_train, bad_val = damaged_root
    r = trainer(tmp_path, *_tiny_sets(root, tmp_path / "run"), "--skip-corrupt")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipped 1 corrupt training image (replaced by the next intact one): first '{bad_train}'" in r.stdout
    assert f"skipped 1 corrupt validation image (left out of the metrics): first '{bad_val}'" in r.stdout
    assert "best mAP" in r.stdout


def test_skip_corrupt_dataset_unit(tmp_path, damaged_root):
    from splicemix.data import CocoMultiLabel, build_transforms

    root, bad_train, _ = damaged_root
    ds = CocoMultiLabel(root / "train", root / "annotations" / "instances_train.json", build_transforms(32, False))
    i = ds.image_paths.index(str(bad_train))
    with pytest.raises(CorruptImageError, match="cannot read image file") as e:
        ds[i]
    assert e.value.path == str(bad_train)
    skip = SkipCorrupt(ds, ds.image_paths)
    img, target = skip[i]
    assert torch.equal(target, ds.targets[i + 1]) and skip.corrupt() == [i]  # the next intact sample, whole
    blank = SkipCorrupt(ds, ds.image_paths, blank=(3, 32, 32), targets=ds.targets)
    img, target = blank[i]
    assert float(img.abs().sum()) == 0.0 and torch.equal(target, ds.targets[i])
    assert blank.summary("images") == f"skipped 1 corrupt image: first '{bad_train}'"


def test_load_rgb_garbage(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(CorruptImageError, match=r"x\.jpg"):
        load_rgb(str(p))


def test_study_skip_corrupt_sets_the_key_for_every_trial(tmp_path, monkeypatch):
    import study.cluster as cluster
    import study.run as run
    import study.runner as runner

    seen = {}

    class Stop(Exception):
        pass

    def fake_init(*a, **k):
        raise Stop

    real = runner.load_study

    def spy(path, overrides=()):
        spec, base, text = real(path, overrides)
        seen["spec"], seen["base"] = spec, base
        return spec, base, text

    monkeypatch.setattr(runner, "load_study", spy)
    monkeypatch.setattr(cluster, "init_ray", fake_init)
    with pytest.raises(Stop):
        run.run_study(
            space_file(tmp_path, OK_SPACE),
            smoke_run=True,
            skip_corrupt=True,
            storage=str(tmp_path / "st"),
            data_cache=str(tmp_path / "cache"),
            quiet=True,
        )
    assert seen["spec"].fixed["data.skip_corrupt"] is True
    assert not (tmp_path / "st").exists()  # nothing is written before Ray is up


def test_help_lists_the_new_flags(inproc):
    r = inproc("study.run", "--help")
    assert r.returncode == 0 and "--skip-corrupt" in r.stdout and "--connect-timeout" in r.stdout
    r = inproc("splicemix.train", "--help")
    assert r.returncode == 0 and "--skip-corrupt" in r.stdout


# =========================================================================== 8. storage
def test_storage_under_a_regular_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    r = study(tmp_path, space_file(tmp_path, OK_SPACE), "--smoke", "--storage", str(f / "sub"), safety=False)
    assert_bad(r, f"--storage {f / 'sub'}", "cannot write the study folder", "Not a directory")
    assert f.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_storage_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = study(tmp_path, space_file(tmp_path, OK_SPACE), "--smoke", "--storage", str(ro / "deep"), safety=False)
        assert_bad(r, "--storage", str(ro), "cannot write the study folder")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_bad_storage_uri(tmp_path, inproc):
    r = inproc("study.run", space_file(tmp_path, OK_SPACE), "--smoke", "--storage", "nosuchfs://bucket/x")
    assert_bad(r, "--storage 'nosuchfs://bucket/x'")


def test_existing_study_name(tmp_path, inproc):
    (tmp_path / "studies" / "taken").mkdir(parents=True)
    r = inproc("study.run", space_file(tmp_path, OK_SPACE), "--smoke", "--name", "taken")
    assert_bad(r, "taken already exists", "--resume")
    r = inproc("study.run", space_file(tmp_path, OK_SPACE), "--smoke", "--name", "nothing-here", "--resume")
    assert_bad(r, "nothing-here is not a study folder")


def test_checks_leave_nothing_behind(tmp_path, inproc):
    """The storage probe makes and removes its folders: a failure after it leaves nothing."""
    (tmp_path / "plain-file").write_text("")
    p = space_file(tmp_path, OK_SPACE)
    r = inproc(
        "study.run",
        p,
        "--smoke",
        "--storage",
        str(tmp_path / "new" / "deeper"),
        "--data-cache",
        str(tmp_path / "plain-file" / "cache"),
    )
    assert_bad(r, "--data-cache", "plain-file", "cannot write the synthetic data set")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_failed_start_after_ray_leaves_no_study_folder(tmp_path):
    """The resource check needs Ray running; the study folder is made only after it passed."""
    p = space_file(tmp_path, OK_SPACE)
    r = study(tmp_path, p, "--smoke", "--set", "resources.num_workers=2", "--num-cpus", "1", safety=False)
    assert_bad(r, "needs 3 logical CPUs", "--num-cpus")
    assert not (tmp_path / "studies").exists()


# =========================================================================== 9. Ray address
def test_dead_address_fails_within_the_timeout(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    r = study(
        tmp_path,
        space_file(tmp_path, OK_SPACE),
        "--smoke",
        "--address",
        f"127.0.0.1:{port}",
        "--connect-timeout",
        "3",
        safety=False,
    )
    took = time.monotonic() - t0
    assert_bad(r, f"--address 127.0.0.1:{port}", "within 3 s", "no Ray cluster answers")
    assert took < 3 + 60, took  # the timeout plus the interpreter's start-up (imports) on a loaded machine
    assert not (tmp_path / "studies").exists()


def test_dead_ray_client_address(tmp_path, inproc):
    port = free_port()
    r = inproc(
        "study.run",
        space_file(tmp_path, OK_SPACE),
        "--smoke",
        "--address",
        f"ray://127.0.0.1:{port}",
        "--connect-timeout",
        "2",
    )
    assert_bad(r, f"ray://127.0.0.1:{port}", "within 2 s")


@pytest.mark.parametrize("address", ["http://host:1", "host:notaport", "host:70000"])
def test_malformed_address(tmp_path, inproc, address):
    r = inproc("study.run", space_file(tmp_path, OK_SPACE), "--smoke", "--address", address)
    assert_bad(r, f"--address {address!r}")


def test_split_address_unit():
    from study.cluster import split_address as _split_address

    assert _split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert _split_address("ray://head") == ("head", 10001)
    assert _split_address("head") == ("head", 6379)
    assert _split_address("[::1]:7000") == ("::1", 7000)
    with pytest.raises(StudyError):
        _split_address("s3://x:1")


# =========================================================================== --debug
def test_debug_shows_the_traceback(tmp_path):
    p = write(tmp_path, "name: x\nspace: {a: [1,\n", "broken.yaml")
    r = study(tmp_path, str(p), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "broken.yaml" in r.stderr
    r = trainer(tmp_path, "--set", "train.epochs=ten", "--print-config", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "train.epochs" in r.stderr


# =========================================================================== the YAML loader
def test_safe_yaml_numbers_and_duplicates():
    assert safe_yaml("a: 0x3\nb: 1e-3\nc: 007\nd: 1:30\ne: 2x2\nf: .5\ng: 1_000") == {
        "a": "0x3",
        "b": 0.001,
        "c": 7,
        "d": "1:30",
        "e": "2x2",
        "f": 0.5,
        "g": 1000,
    }
    import yaml

    with pytest.raises(yaml.YAMLError, match="given twice"):
        safe_yaml("a: 1\nb: 2\na: 3\n")
    assert safe_yaml("base: &b {x: 1}\nmore:\n  <<: *b\n  x: 2\n") == {"base": {"x": 1}, "more": {"x": 2}}
    with pytest.raises(yaml.YAMLError):
        safe_yaml("!!python/object/apply:os.system ['true']")


def test_study_error_is_a_value_error():
    with pytest.raises(StudyError, match="not found"):
        load_study("no/such.yaml")
