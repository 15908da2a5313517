"""Tests for splicemix.data.synthetic (small sizes: tens of images at 16-32 px)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splicemix.data.synthetic import (
    META_FILE,
    SyntheticConfig,
    class_probabilities,
    cooc_split,
    ensure_synthetic,
    generate,
    load_targets,
    partner_alone_mask,
)
from splicemix.data.synthetic import main as synthetic_main

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_train=40, n_val=20, image_size=32)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn_small"), SyntheticConfig(**SMALL))


def test_deterministic_bytes(tmp_path, small_root):
    again = generate(tmp_path / "b", SyntheticConfig(**SMALL))
    a, b = _files(small_root), _files(again)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith(".jpg")]) == 60
    for k in a:
        assert a[k] == b[k], k


def test_parallel_workers_same_bytes(tmp_path, small_root):
    par = generate(tmp_path / "par", SyntheticConfig(**SMALL), workers=2)
    assert _files(par) == _files(small_root)


def test_different_seed_different_images(tmp_path, small_root):
    other = generate(tmp_path / "s1", SyntheticConfig(**SMALL, seed=1))
    a, b = _files(small_root), _files(other)
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert sum(a[k] != b[k] for k in jpgs) == len(jpgs)
    assert a["annotations/instances_train.json"] != b["annotations/instances_train.json"]


def test_coco_json_loads_with_pycocotools(small_root):
    from pycocotools.coco import COCO

    cfg = SyntheticConfig(**SMALL)
    for split, n in (("train", cfg.n_train), ("val", cfg.n_val)):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(small_root / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == n
        assert sorted(coco.getCatIds()) == list(range(1, cfg.num_classes + 1))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == cfg.class_names
        for img_id in coco.getImgIds():
            img = coco.loadImgs(img_id)[0]
            path = small_root / split / img["file_name"]
            with Image.open(path) as im:
                assert im.size == (img["width"], img["height"]) == (32, 32)
                assert im.mode == "RGB"
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= cfg.objects[1]
            cats = [a["category_id"] for a in anns]
            assert len(set(cats)) == len(cats)  # one object per present class
            for a in anns:
                x, y, w, h = a["bbox"]
                assert a["iscrowd"] == 0 and a["area"] > 0 and w > 0 and h > 0
                assert 0 <= x and 0 <= y and x + w <= 32 and y + h <= 32
        assert len(os.listdir(small_root / split)) == n


def test_metadata_side_file(small_root):
    meta = json.loads((small_root / META_FILE).read_text())
    cfg = SyntheticConfig(**SMALL)
    assert meta["knobs"] == cfg.to_dict()
    assert meta["cooc_pairs"] == [[0, 1], [2, 3]] == [list(p) for p in cfg.cooc_pairs]
    assert meta["counts"] == {"train": 40, "val": 20}
    _, t = load_targets(small_root, "train")
    assert np.allclose(meta["class_frequency"]["train"], t.mean(0), atol=1e-4)
    info = json.loads((small_root / "annotations/instances_train.json").read_text())["info"]
    assert info["cooc_pairs"] == [[1, 2], [3, 4]]  # category ids


def test_cooccurrence_strength_one(tmp_path):
    cfg = SyntheticConfig(n_train=200, n_val=300, image_size=16, cooc_strength=1.0)
    root = generate(tmp_path, cfg)
    _, tr = load_targets(root, "train")
    _, va = load_targets(root, "val")
    for a, b in cfg.cooc_pairs:
        assert np.array_equal(tr[:, a], tr[:, b])  # always together in train
        either = (va[:, a] | va[:, b]).sum()
        both = (va[:, a] & va[:, b]).sum()
        assert either > 50 and both / either < 0.4  # independent in val
    assert not cooc_split(root, "train").any()
    mask = cooc_split(root, "val")
    assert mask.dtype == bool and mask.shape == (300,)
    assert 0.3 < mask.mean() < 0.9
    assert np.array_equal(mask, partner_alone_mask(va, cfg.cooc_pairs))


def test_cooccurrence_zero_strength_is_independent(tmp_path):
    cfg = SyntheticConfig(n_train=300, n_val=20, image_size=16, cooc_strength=0.0)
    _, tr = load_targets(generate(tmp_path, cfg), "train")
    for a, b in cfg.cooc_pairs:
        assert (tr[:, a] != tr[:, b]).mean() > 0.2


def test_partner_alone_mask():
    t = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    assert partner_alone_mask(t, [(0, 1), (2, 3)]).tolist() == [False, True, True, False, False]
    assert partner_alone_mask(t, [(0, 1)]).tolist() == [False, True, False, False, False]
    with pytest.raises(ValueError, match="out of range"):
        partner_alone_mask(t, [(0, 9)])


def test_imbalance_monotone_frequencies(tmp_path):
    cfg = SyntheticConfig(n_train=10, n_val=1500, image_size=16, num_classes=6, imbalance=2.0, num_cooc_pairs=0)
    p = class_probabilities(cfg)
    assert np.all(np.diff(p) < 0) and p.max() <= 0.9 + 1e-9
    assert p.sum() == pytest.approx(cfg.mean_objects, rel=1e-6)
    _, va = load_targets(generate(tmp_path, cfg), "val")
    freq = va.mean(0)
    assert np.all(np.diff(freq) < 0), freq
    assert va.sum(1).min() >= 1
    balanced = class_probabilities(SyntheticConfig(num_classes=6))
    assert np.allclose(balanced, balanced[0])


def test_every_image_has_a_label_and_counts_in_range(tmp_path):
    cfg = SyntheticConfig(n_train=150, n_val=150, image_size=16, objects=(2, 3))
    root = generate(tmp_path, cfg)
    for split in ("train", "val"):
        _, t = load_targets(root, split)
        n = t.sum(1)
        assert n.min() >= 2 and n.max() <= 3


def test_ensure_synthetic_skips_and_regenerates(tmp_path):
    cfg = SyntheticConfig(n_train=12, n_val=6, image_size=16)
    root = ensure_synthetic(tmp_path, cfg)
    meta, img = root / META_FILE, root / "train" / "000001.jpg"
    stamps = (meta.stat().st_mtime_ns, img.stat().st_mtime_ns)
    old_img = img.read_bytes()
    assert ensure_synthetic(tmp_path, SyntheticConfig(n_train=12, n_val=6, image_size=16)) == root
    assert (meta.stat().st_mtime_ns, img.stat().st_mtime_ns) == stamps
    ensure_synthetic(tmp_path, SyntheticConfig(n_train=10, n_val=6, image_size=16, seed=3))
    assert json.loads(meta.read_text())["knobs"]["seed"] == 3
    assert img.read_bytes() != old_img
    assert len(list((root / "train").glob("*.jpg"))) == 10  # stale images removed
    meta.unlink()  # incomplete data set -> regenerated
    ensure_synthetic(tmp_path, SyntheticConfig(n_train=10, n_val=6, image_size=16, seed=3))
    assert meta.exists()


@pytest.mark.parametrize(
    "knobs, name",
    [
        (dict(num_classes=21), "num_classes"),
        (dict(num_classes=1), "num_classes"),
        (dict(cooc_strength=1.5), "cooc_strength"),
        (dict(cooc_strength=-0.1), "cooc_strength"),
        (dict(n_train=0), "n_train"),
        (dict(n_val=-1), "n_val"),
        (dict(image_size=8), "image_size"),
        (dict(imbalance=-1.0), "imbalance"),
        (dict(num_cooc_pairs=6), "num_cooc_pairs"),
        (dict(scale=(0.5, 0.2)), "scale"),
        (dict(objects=(0, 3)), "objects"),
        (dict(mean_objects=20.0), "mean_objects"),
        (dict(max_overlap=2.0), "max_overlap"),
        (dict(clutter=1.5), "clutter"),
        (dict(rotation=270.0), "rotation"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_knobs_raise(knobs, name):
    with pytest.raises(ValueError, match=name):
        SyntheticConfig(**knobs)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "splicemix.data.synthetic", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_generates_and_rejects_bad_knobs(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "--out",
        str(out),
        "--n-train",
        "8",
        "--n-val",
        "4",
        "--image-size",
        "16",
        "--num-classes",
        "6",
        "--scale",
        "0.2,0.4",
        "--seed",
        "5",
    ]
    r = _cli(*args)  # the real entry point, in a subprocess
    assert r.returncode == 0, r.stderr
    assert "written" in r.stdout and "train 8" in r.stdout and "val 4" in r.stdout
    meta = json.loads((out / META_FILE).read_text())
    assert meta["knobs"]["num_classes"] == 6 and meta["knobs"]["scale"] == [0.2, 0.4]
    assert meta["knobs"]["seed"] == 5
    bad = _cli("--out", str(tmp_path / "bad"), "--cooc-strength", "1.5")
    assert bad.returncode == 2
    assert "cooc_strength" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / META_FILE).exists()

    capsys.readouterr()
    assert synthetic_main(args) == 0  # in-process from here on (a subprocess costs seconds)
    assert "up to date" in capsys.readouterr().out
    assert synthetic_main(["--out", str(tmp_path / "bad"), "--num-classes", "99"]) == 2
    err = capsys.readouterr().err
    assert "num_classes" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:  # argparse: unparsable value
        synthetic_main(["--out", str(tmp_path / "bad"), "--scale", "0.2"])
    assert exc.value.code == 2


def test_cli_help_lists_every_knob(capsys):
    with pytest.raises(SystemExit) as exc:
        synthetic_main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for f in SyntheticConfig.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in out, f
