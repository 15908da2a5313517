"""The in-memory data path (``data.in_memory``): the same batches, scores and metrics as the file
path for a seed; when ``auto`` picks it; the decoded images kept per process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from splicemix import SpliceCollate, SpliceMix
from splicemix.config import load_config
from splicemix.data import IMAGENET_STD, InMemoryImages, transform_parts
from splicemix.data.memory import clear_decoded, decoded_images
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from splicemix.engine.data import build_data, train_loader
from splicemix.engine.dist import DistContext
from splicemix.engine.loop import evaluate, inference_model, predict, predict_sets, seed_epoch
from splicemix.models import build_model
from splicemix.train import train

TINY = dict(n_train=48, n_val=24, image_size=32, seed=0)
CPU = DistContext(distributed=False, rank=0, world=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("in_memory"), SyntheticConfig(**TINY))


def _cfg(root: Path, in_memory: str, *extra: str):
    return load_config(
        None,
        [
            f"data.root={root}",
            *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
            "data.image_size=32",
            "data.eval_sizes=[16]",
            f"data.in_memory={in_memory}",
            "model.name=smallcnn",
            "train.batch_size=8",
            "train.epochs=2",
            "train.progress=false",
            "train.cpu_threads=1",
            "train.device=cpu",
            *extra,
        ],
    )


def _epoch_batches(cfg, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, list]]:
    """One epoch of the trainer's loader (mixed, as the trainer mixes it) for ``cfg``'s seed."""
    data = build_data(cfg, CPU)
    load_gen, mix_gen = torch.Generator(), torch.Generator()
    mixer = SpliceMix(generator=mix_gen, **cfg.mix.mixer_kwargs())
    loader, _ = train_loader(data.train, cfg, CPU, load_gen, SpliceCollate(mixer.max_mixed(cfg.train.batch_size)))
    seed_epoch(cfg.train.seed, epoch, 0, load_gen, mix_gen)
    out = []
    for batch in loader:
        images, targets, plan = batch.mix(mixer)
        out.append((images.clone(), targets.clone(), [g.sources.tolist() for g in plan.groups]))
    return out


@pytest.mark.parametrize("extra", [(), ("data.hflip=false",), ("data.workers=1",)])
def test_in_memory_gives_the_file_paths_batches_for_a_seed(root, extra):
    for epoch in (0, 1):
        files = _epoch_batches(_cfg(root, "false", *extra), epoch)
        memory = _epoch_batches(_cfg(root, "true", *extra), epoch)
        assert len(files) == len(memory) == TINY["n_train"] // 8
        for (fi, ft, fp), (mi, mt, mp) in zip(files, memory, strict=True):
            assert torch.equal(fi, mi)  # bit for bit: the same flips, the same floats
            assert torch.equal(ft, mt) and fp == mp


def test_in_memory_crops_draw_the_same_crops(root):
    """With RandomResizedCrop the random stream is the same; torch resamples the crop on a
    tensor, PIL on the image, so the pixels may differ by one uint8 level."""
    crop = ("data.crop_scale=[0.3,0.6]",)
    files = _epoch_batches(_cfg(root, "false", *crop), 0)
    memory = _epoch_batches(_cfg(root, "true", *crop), 0)
    level = 1.0 / 255.0 / min(IMAGENET_STD) + 1e-5
    for (fi, ft, fp), (mi, mt, mp) in zip(files, memory, strict=True):
        assert torch.equal(ft, mt) and fp == mp
        assert (fi - mi).abs().max().item() <= level  # a different crop would differ by far more


def test_in_memory_evaluation_matches_the_file_path(root):
    by_path = {}
    for mode in ("false", "true"):
        cfg = _cfg(root, mode)
        data = build_data(cfg, CPU)
        torch.manual_seed(0)
        net = build_model("smallcnn", data.num_classes, pretrained=None, image_size=32)
        by_path[mode] = evaluate(net, data, cfg, CPU)
    assert "mAP@16" in by_path["true"]
    assert by_path["true"] == by_path["false"]  # exactly: the same scores at 32 and at 16 px


def test_one_pass_over_several_sets_gives_each_sets_scores(root):
    cfg = _cfg(root, "false")
    data = build_data(cfg, CPU)
    torch.manual_seed(0)
    net = build_model("smallcnn", data.num_classes, pretrained=None, image_size=32)
    together = predict_sets(net, {"val": data.val, 16: data.eval_sets[16]}, cfg, CPU)
    assert together["val"].shape == (TINY["n_val"], data.num_classes)
    assert (together["val"] == predict(net, data.val, cfg, CPU)).all()
    assert (together[16] == predict(net, data.eval_sets[16], cfg, CPU)).all()
    assert not (together[16] == together["val"]).all()


def test_fused_evaluation_scores_the_training_model_within_rounding(root):
    cfg = _cfg(root, "true")
    data = build_data(cfg, CPU)
    torch.manual_seed(0)
    net = build_model("smallcnn", data.num_classes, pretrained=None, image_size=32)
    for m in net.modules():  # BatchNorm statistics far from the identity, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sets = {"val": data.val, 16: data.eval_sets[16]}
    fused = predict_sets(net, sets, cfg, CPU)
    plain = predict_sets(net, sets, _cfg(root, "true", "train.eval_fused=false"), CPU)
    for key in sets:
        assert np.allclose(fused[key], plain[key], rtol=0, atol=1e-5)
    assert net.training  # left as it was, and its weights untouched: evaluation ran a copy
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inference_model(net.eval(), cfg)[0].modules())


@pytest.mark.parametrize(
    "mode, extra, decoded",
    [
        ("auto", (), True),  # small, flips only: bit-identical, so auto decodes
        ("auto", ("data.crop_scale=[0.5,1.0]",), False),  # a crop would resample differently
        ("auto", ("data.skip_corrupt=true",), False),
        ("true", ("data.crop_scale=[0.5,1.0]",), True),
        ("false", (), False),
    ],
)
def test_which_path_the_config_picks(root, mode, extra, decoded):
    data = build_data(_cfg(root, mode, *extra), CPU)
    for ds in (data.train, data.val, data.eval_sets[16]):
        while hasattr(ds, "dataset"):  # SkipCorrupt(Labelled(images))
            ds = ds.dataset
        assert isinstance(ds.base, InMemoryImages) is decoded


def test_in_memory_cannot_skip_corrupt_images(root):
    with pytest.raises(ValueError, match="data.in_memory: true cannot skip corrupt images"):
        build_data(_cfg(root, "true", "data.skip_corrupt=true"), CPU)


def test_decoded_once_per_process_until_a_file_changes(root):
    clear_decoded()
    paths = sorted(str(p) for p in (root / "val").glob("*.jpg"))[:6]
    fixed = transform_parts(16, train=False).fixed
    first = decoded_images(paths, fixed)
    assert isinstance(first, torch.Tensor) and first.shape == (6, 3, 16, 16) and first.dtype == torch.uint8
    assert decoded_images(paths, fixed) is first  # kept: not decoded again
    assert decoded_images(paths, transform_parts(8, train=False).fixed) is not first  # other steps
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = decoded_images(paths, fixed)
    assert again is not first and torch.equal(again, first)  # the file changed: decoded anew


@pytest.mark.slow
def test_training_metrics_are_the_same_in_memory(root, tmp_path):
    def metrics(mode: str) -> dict:
        cfg = _cfg(root, mode, f"train.out_dir={tmp_path / mode}", "mix.method=splicemix_cl")
        return {k: v for k, v in train(cfg).items() if not k.endswith(("_s", "_per_s"))}

    a, b = metrics("false"), metrics("true")
    assert a["mAP"] > 0 and a == b  # exactly the same floats
