"""Tests for splicemix.data: CocoMultiLabel, VOCMultiLabel and the transforms.

Every fixture is written into tmp_path: small JPEGs, a COCO-format json, a VOCdevkit tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from splicemix.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CocoMultiLabel,
    VOCMultiLabel,
    build_transforms,
    denormalize,
)
from splicemix.data.voc import VOC_CLASSES


def _write_jpeg(path: Path, size: tuple[int, int], color=(200, 30, 90), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 128).save(path, format="JPEG", quality=95)


# ----------------------------------------------------------------------------- COCO fixture
# Category ids are non-contiguous and listed unsorted; sorted by id: person(1), dog(18), bottle(44).
COCO_CATEGORIES = [
    {"id": 18, "name": "dog"},
    {"id": 1, "name": "person"},
    {"id": 44, "name": "bottle"},
]
# image id -> (file name, size); listed unsorted. Image 7 has no annotation. Sizes are distinct
# so __getitem__ can be checked to load the right file.
COCO_IMAGES = {
    10: ("c.jpg", (30, 16)),
    3: ("a.jpg", (20, 16)),
    7: ("empty.jpg", (26, 16)),
    12: ("d.jpg", (34, 16)),
    5: ("b.jpg", (24, 16)),
}
COCO_ANNS = [  # (image_id, category_id, iscrowd)
    (3, 1, 0),
    (3, 1, 0),
    (3, 18, 0),  # person twice (repeated category) + dog
    (5, 44, 1),  # only a crowd annotation: still a positive
    (10, 18, 0),
    (12, 44, 0),
    (12, 1, 0),
]
# Expected rows in image-id order (3, 5, 10, 12), columns person, dog, bottle.
COCO_EXPECTED = {
    3: [1, 1, 0],
    5: [0, 0, 1],
    7: [0, 0, 0],
    10: [0, 1, 0],
    12: [1, 0, 1],
}


@pytest.fixture()
def coco(tmp_path: Path) -> tuple[Path, Path]:
    image_dir = tmp_path / "images"
    for image_id, (name, size) in COCO_IMAGES.items():
        # one grayscale JPEG: the loader must still hand out RGB
        _write_jpeg(image_dir / name, size, mode="L" if image_id == 10 else "RGB")
    data = {
        "images": [
            {"id": i, "file_name": name, "width": size[0], "height": size[1]} for i, (name, size) in COCO_IMAGES.items()
        ],
        "annotations": [
            {"id": 100 + k, "image_id": i, "category_id": c, "iscrowd": crowd, "bbox": [0, 0, 4, 4], "area": 16.0}
            for k, (i, c, crowd) in enumerate(COCO_ANNS)
        ],
        "categories": COCO_CATEGORIES,
    }
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(data))
    return image_dir, ann_file


def test_coco_targets_category_order_and_empty_images_left_out(coco):
    image_dir, ann_file = coco
    ds = CocoMultiLabel(image_dir, ann_file)
    assert ds.categories == ["person", "dog", "bottle"]
    assert ds.category_ids == [1, 18, 44]
    assert ds.num_classes == 3
    assert ds.image_ids == [3, 5, 10, 12]
    assert len(ds) == 4
    assert ds.image_paths == [os.path.join(str(image_dir), COCO_IMAGES[i][0]) for i in ds.image_ids]
    assert ds.targets.dtype == torch.float32
    expected = torch.tensor([COCO_EXPECTED[i] for i in ds.image_ids], dtype=torch.float32)
    assert torch.equal(ds.targets, expected)


def test_coco_include_empty_keeps_unannotated_image(coco):
    image_dir, ann_file = coco
    ds = CocoMultiLabel(str(image_dir), str(ann_file), include_empty=True)
    assert ds.image_ids == [3, 5, 7, 10, 12]
    expected = torch.tensor([COCO_EXPECTED[i] for i in ds.image_ids], dtype=torch.float32)
    assert torch.equal(ds.targets, expected)
    assert ds.targets[2].sum() == 0


def test_coco_getitem_returns_rgb_image_and_target(coco):
    image_dir, ann_file = coco
    ds = CocoMultiLabel(image_dir, ann_file)
    for i, image_id in enumerate(ds.image_ids):
        image, target = ds[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB"  # id 10 is grayscale on disk
        assert image.size == COCO_IMAGES[image_id][1]
        assert torch.equal(target, torch.tensor(COCO_EXPECTED[image_id], dtype=torch.float32))
    _, target = ds[0]
    target += 5  # the returned target must not alias the data set's table
    assert torch.equal(ds.targets[0], torch.tensor(COCO_EXPECTED[3], dtype=torch.float32))


def test_coco_getitem_applies_transform(coco):
    image_dir, ann_file = coco
    ds = CocoMultiLabel(image_dir, ann_file, transform=build_transforms(24, train=True))
    image, target = ds[1]
    assert isinstance(image, torch.Tensor)
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert target.shape == (3,)


def test_coco_pycocotools_output_is_silenced(coco, capsys):
    CocoMultiLabel(*coco)
    out = capsys.readouterr().out
    assert out == ""


def test_coco_missing_annotation_file(tmp_path):
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nope" / "instances_val.json"
    with pytest.raises(FileNotFoundError, match="instances_val.json"):
        CocoMultiLabel(tmp_path / "images", missing)


def test_coco_missing_image_dir(coco, tmp_path):
    _, ann_file = coco
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        CocoMultiLabel(tmp_path / "no_such_dir", ann_file)


def test_coco_missing_image_listed_in_json(coco):
    image_dir, ann_file = coco
    (image_dir / "c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 4 image files.*c\.jpg"):
        CocoMultiLabel(image_dir, ann_file)
    # an unannotated image is not needed unless include_empty
    (image_dir / "c.jpg").write_bytes(b"")
    (image_dir / "empty.jpg").unlink()
    CocoMultiLabel(image_dir, ann_file)
    with pytest.raises(FileNotFoundError, match="empty.jpg"):
        CocoMultiLabel(image_dir, ann_file, include_empty=True)


def test_coco_image_deleted_after_construction(coco):
    image_dir, ann_file = coco
    ds = CocoMultiLabel(image_dir, ann_file)
    (image_dir / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        ds[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_coco_corrupt_jpeg_names_the_file(coco, damage):
    image_dir, ann_file = coco
    path = image_dir / "b.jpg"
    if damage == "garbage":
        path.write_bytes(b"this is not a jpeg at all" * 10)
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    ds = CocoMultiLabel(image_dir, ann_file)
    assert ds.image_ids[1] == 5
    ds[0]  # the intact neighbour still loads
    with pytest.raises(OSError, match=r"cannot read image file .*b\.jpg"):
        ds[1]


def test_coco_malformed_json_and_unknown_category(coco):
    image_dir, ann_file = coco
    good = json.loads(ann_file.read_text())
    ann_file.write_text("{not json")
    with pytest.raises(ValueError, match="malformed COCO annotation file.*instances.json"):
        CocoMultiLabel(image_dir, ann_file)
    good["annotations"].append({"id": 999, "image_id": 3, "category_id": 77, "iscrowd": 0})
    ann_file.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="unknown category ids, e.g. 77"):
        CocoMultiLabel(image_dir, ann_file)


# ------------------------------------------------------------------------------ VOC fixture
def _voc_xml(objects: list[tuple[str, int | None]]) -> str:
    parts = ["<annotation><folder>VOC2007</folder><size><width>20</width><height>16</height><depth>3</depth></size>"]
    for name, difficult in objects:
        tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"{tag}<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
            "</object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


VOC_OBJECTS = {
    "000005": [("dog", 0), ("person", 0), ("dog", 0)],
    "000002": [("car", 0), ("cat", 1)],  # cat only as difficult -> ignored
    "000009": [("person", 1), ("person", 0), ("bird", None)],  # difficult + normal person
}
VOC_SIZES = {"000005": (20, 16), "000002": (22, 16), "000009": (24, 16)}


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    base = tmp_path / "VOCdevkit" / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    for image_id, objects in VOC_OBJECTS.items():
        (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(objects))
        _write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", VOC_SIZES[image_id])
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000005\n000002\n000009\n\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000002\n")
    return tmp_path


def _row(*names: str) -> list[float]:
    return [1.0 if c in names else 0.0 for c in VOC_CLASSES]


def test_voc_targets_ignore_and_categories(voc):
    ds = VOCMultiLabel(voc)
    assert ds.categories[0] == "aeroplane" and ds.categories[-1] == "tvmonitor"
    assert ds.categories == list(VOC_CLASSES) and len(ds.categories) == 20 and ds.num_classes == 20
    assert ds.categories.index("person") == 14 and ds.categories.index("cat") == 7
    assert ds.image_ids == ["000005", "000002", "000009"]  # list-file order
    assert len(ds) == 3
    assert ds.targets.dtype == torch.float32 and ds.targets.shape == (3, 20)
    expected = torch.tensor([_row("dog", "person"), _row("car"), _row("person", "bird")])
    assert torch.equal(ds.targets, expected)
    assert ds.ignore.dtype == torch.bool
    expected_ignore = torch.zeros(3, 20, dtype=torch.bool)
    expected_ignore[1, VOC_CLASSES.index("cat")] = True  # difficult-only; person in row 2 is not
    assert torch.equal(ds.ignore, expected_ignore)
    assert not (ds.ignore & ds.targets.bool()).any()


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc_root_variants_and_image_set(voc, sub):
    ds = VOCMultiLabel(voc / sub if sub else voc, year="2007", image_set="test")
    assert ds.image_ids == ["000002"]
    assert torch.equal(ds.targets, torch.tensor([_row("car")]))
    assert ds.image_paths == [str(voc / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000002.jpg")]


def test_voc_getitem_with_and_without_transform(voc):
    ds = VOCMultiLabel(voc)
    image, target = ds[2]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (24, 16)
    assert torch.equal(target, torch.tensor(_row("person", "bird")))
    ds = VOCMultiLabel(voc, transform=build_transforms(16, train=False))
    image, target = ds[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.equal(target, torch.tensor(_row("dog", "person")))


def test_voc_malformed_xml_names_the_file(voc):
    bad = voc / "VOCdevkit" / "VOC2007" / "Annotations" / "000002.xml"
    bad.write_text("<annotation><object><name>cat</name></annotation>")
    with pytest.raises(ValueError, match=r"malformed VOC annotation XML .*000002\.xml"):
        VOCMultiLabel(voc)


def test_voc_unknown_class_names_file_and_class(voc):
    bad = voc / "VOCdevkit" / "VOC2007" / "Annotations" / "000009.xml"
    bad.write_text(_voc_xml([("person", 0), ("unicorn", 0)]))
    with pytest.raises(ValueError, match=r"000009\.xml.*unknown class name 'unicorn'"):
        VOCMultiLabel(voc)


def test_voc_missing_files(voc, tmp_path):
    base = voc / "VOCdevkit" / "VOC2007"
    with pytest.raises(FileNotFoundError, match="VOC root directory not found"):
        VOCMultiLabel(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="VOC 2012 data not found"):
        VOCMultiLabel(voc, year="2012")
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        VOCMultiLabel(voc, image_set="val")
    (base / "JPEGImages" / "000009.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 image files.*000009\.jpg"):
        VOCMultiLabel(voc)
    (base / "Annotations" / "000005.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"000005\.xml"):
        VOCMultiLabel(voc)


def test_voc_corrupt_jpeg_names_the_file(voc):
    (voc / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000005.jpg").write_bytes(b"\xff\xd8garbage")
    ds = VOCMultiLabel(voc)
    with pytest.raises(OSError, match=r"000005\.jpg"):
        ds[0]


# ------------------------------------------------------------------------------- transforms
def _solid(color=(255, 0, 128), size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def _halves(size=(40, 30)) -> Image.Image:
    image = Image.new("RGB", size, (0, 0, 0))
    image.paste((255, 255, 255), (size[0] // 2, 0, size[0], size[1]))
    return image


@pytest.mark.parametrize("train", [True, False])
def test_transforms_shape_dtype_and_normalisation(train):
    color = (255, 0, 128)
    out = build_transforms(32, train=train)(_solid(color))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (torch.tensor(color) / 255.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, expected.view(3, 1, 1).expand(3, 32, 32), atol=1e-4)


def test_transforms_test_is_deterministic_train_is_random():
    image = _halves((64, 48))
    test_tf = build_transforms(16, train=False)
    torch.manual_seed(0)
    a = test_tf(image)
    torch.manual_seed(1)
    assert torch.equal(a, test_tf(image))
    train_tf = build_transforms(16, train=True, scale=(0.2, 0.6), hflip=False)
    outs = []
    for seed in range(6):
        torch.manual_seed(seed)
        outs.append(train_tf(image))
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # random crops differ


def test_transforms_hflip_and_scale_none():
    image = _halves()
    test_out = build_transforms(16, train=False)(image)
    no_aug = build_transforms(16, train=True, scale=None, hflip=False)
    for seed in range(4):
        torch.manual_seed(seed)
        assert torch.equal(no_aug(image), test_out)  # scale=None, no flip: plain resize
    flip_tf = build_transforms(16, train=True, scale=None, hflip=True)
    flipped = torch.flip(test_out, dims=[-1])
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = flip_tf(image)
        if torch.equal(out, test_out):
            seen.add("plain")
        elif torch.equal(out, flipped):
            seen.add("flipped")
        else:
            pytest.fail("hflip transform produced something other than the image or its mirror")
    assert seen == {"plain", "flipped"}


def test_denormalize_round_trip_and_batches():
    image = _halves()
    out = build_transforms(16, train=False)(image)
    back = denormalize(out)
    assert back.shape == (3, 16, 16)
    assert back[:, :, :7].max() < 1e-4 and back[:, :, 9:].min() > 1 - 1e-4  # black | white
    batch = torch.stack([out, torch.zeros_like(out)])
    back_b = denormalize(batch)
    assert torch.allclose(back_b[0], back, atol=1e-6)
    assert torch.allclose(back_b[1], torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, 16, 16))
    with pytest.raises(ValueError, match="expected a"):
        denormalize(torch.zeros(16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=0, train=True), "image_size"),
        (dict(image_size=32.0, train=False), "image_size"),
        (dict(image_size=32, train=True, scale=(0.8, 0.5)), "scale"),
        (dict(image_size=32, train=True, scale=(0.0, 1.0)), "scale"),
    ],
)
def test_transforms_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_transforms(**kwargs)


def test_data_package_does_not_import_synthetic():
    code = (
        "import sys, splicemix.data as d; "
        "print(sorted(m for m in sys.modules if m.startswith('splicemix.data.') or m == 'pycocotools.coco'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()
    assert out == (
        "['splicemix.data.base', 'splicemix.data.coco', 'splicemix.data.memory', 'splicemix.data.transforms', "
        "'splicemix.data.voc']"
    )
