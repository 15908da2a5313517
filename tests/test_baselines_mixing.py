"""MixUp and CutMix for multi-hot targets (splicemix.mixup): formulas, torchvision parity,
reproducibility, the config and one real training run per method."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from splicemix import CutMix, MixUp, PairPlan, SpliceCollate, apply_pair_plan
from splicemix.config import ConfigError, MixConfig, load_config
from splicemix.train import train

MIXERS = {"mixup": MixUp, "cutmix": CutMix}


def _batch(B: int = 6, K: int = 5, H: int = 12, W: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn((B, 3, H, W), generator=g)
    targets = (torch.rand((B, K), generator=g) < 0.4).float()
    return images, targets


def _mixed_labels(y: torch.Tensor, lam: float) -> torch.Tensor:
    """Multi-hot y mixed by lam, by cases: both 1 -> 1, own only -> lam, partner only -> 1 - lam."""
    yr = y.roll(1, 0)
    return (y * yr) + y * (1 - yr) * lam + (1 - y) * yr * (1 - lam)


# --------------------------------------------------------------------------- the formulas
def test_mixup_blends_images_and_labels_by_lambda():
    images, targets = _batch()
    before = images.clone(), targets.clone()
    out, y, plan = MixUp(alpha=0.4, generator=torch.Generator().manual_seed(1))(images, targets)
    assert isinstance(plan, PairPlan) and plan.box is None and 0.0 < plan.lam < 1.0 and plan.num_mixed == 0
    assert out.shape == images.shape and y.shape == targets.shape
    torch.testing.assert_close(out, plan.lam * images + (1 - plan.lam) * images.roll(1, 0))
    torch.testing.assert_close(y, _mixed_labels(targets, plan.lam))
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(images, before[0]) and torch.equal(targets, before[1])  # no buffers: inputs untouched


def test_cutmix_pastes_the_box_and_mixes_labels_by_its_area():
    images, targets = _batch(H=16, W=12)
    H, W = images.shape[-2:]
    gen = torch.Generator().manual_seed(0)
    mixer, pasted = CutMix(generator=gen), 0
    for _ in range(20):
        out, y, plan = mixer(images, targets)
        x1, y1, x2, y2 = plan.box
        assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
        assert plan.lam == pytest.approx(1 - (x2 - x1) * (y2 - y1) / (H * W), abs=1e-12)
        expected = images.clone()
        expected[..., y1:y2, x1:x2] = images.roll(1, 0)[..., y1:y2, x1:x2]
        assert torch.equal(out, expected)
        torch.testing.assert_close(y, _mixed_labels(targets, plan.lam))
        pasted += plan.lam < 1.0
    assert pasted >= 10  # Beta(1, 1) boxes are mostly non-empty


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_same_values_as_torchvision_for_the_same_draws(method):
    """The draws and the arithmetic are torchvision's: a generator seeded s gives what its
    forward gives with the global RNG seeded s (its 2-D float labels path)."""
    images, targets = _batch(H=16, W=16)
    tv = {"mixup": v2.MixUp, "cutmix": v2.CutMix}[method](alpha=0.7)
    ours = MIXERS[method](alpha=0.7, generator=torch.Generator().manual_seed(123))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        tv_images, tv_targets = tv(images, targets)
    out, y, _ = ours(images, targets)
    assert torch.equal(out, tv_images) and torch.equal(y, tv_targets)


# --------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_plans_come_from_the_generator_only(method):
    state = torch.random.get_rng_state()
    a = MIXERS[method](generator=torch.Generator().manual_seed(7))
    b = MIXERS[method](generator=torch.Generator().manual_seed(7))
    seq_a = [a.sample_plan(8, 32, 24) for _ in range(5)]
    seq_b = [b.sample_plan(8, 32, 24) for _ in range(5)]
    assert seq_a == seq_b
    assert len({p.lam for p in seq_a}) == 5  # it does draw
    other = MIXERS[method](generator=torch.Generator().manual_seed(8)).sample_plan(8, 32, 24)
    assert other != seq_a[0]
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG untouched


def test_prob_zero_leaves_the_batch_unchanged_and_prob_mixes_some_batches():
    images, targets = _batch()
    out, y, plan = CutMix(prob=0.0)(images, targets)
    assert plan.lam == 1.0 and plan.box is None
    assert out is images and y is targets
    gen = torch.Generator().manual_seed(0)
    mixed = [MixUp(prob=0.5, generator=gen).sample_plan(4, 8, 8).lam < 1.0 for _ in range(40)]
    assert 5 < sum(mixed) < 35


def test_in_place_in_the_collate_buffer():
    """Through SpliceCollate (reserve 0) the batch is mixed in its own rows, as the trainer does."""
    images, targets = _batch(B=4)
    mixer = CutMix(generator=torch.Generator().manual_seed(3))
    collate = SpliceCollate(mixer)
    batch = collate(list(zip(images, targets, strict=True)))
    assert batch.reserve == 0
    out, y, plan = batch.mix(mixer)
    assert out.data_ptr() == batch.buffer.data_ptr() and y.data_ptr() == batch.targets_buffer.data_ptr()
    ref_images, ref_targets = apply_pair_plan(images, targets, plan)
    assert torch.equal(out, ref_images) and torch.equal(y, ref_targets)


def test_apply_pair_plan_checks_the_plan():
    images, targets = _batch(B=4, H=8, W=8)
    with pytest.raises(ValueError, match="drawn for a batch of 5 images, got 4"):
        apply_pair_plan(images, targets, PairPlan(lam=0.5, batch_size=5))
    with pytest.raises(ValueError, match=r"plan.box \(0, 0, 9, 4\) must satisfy"):
        apply_pair_plan(images, targets, PairPlan(lam=0.5, box=(0, 0, 9, 4)))


# --------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("alpha", [0, -1.0, math.inf, math.nan, "1", True])
@pytest.mark.parametrize("cls", [MixUp, CutMix])
def test_bad_alpha(cls, alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0 \(lambda ~ Beta\(alpha, alpha\)\), got"):
        cls(alpha=alpha)


@pytest.mark.parametrize("prob", [-0.1, 1.5, "1"])
def test_bad_prob(prob):
    with pytest.raises(ValueError, match=rf"prob must be a number in \[0, 1\].*got {prob!r}"):
        MixUp(prob=prob)


# --------------------------------------------------------------------------- the config
def test_config_builds_the_methods_mixer():
    cfg = load_config(None, ["mix.method=mixup", "mix.alpha=0.4", "mix.prob=0.5"])
    mixer = cfg.mix.build_mixer(torch.Generator())
    assert isinstance(mixer, MixUp) and (mixer.alpha, mixer.prob) == (0.4, 0.5)
    assert isinstance(MixConfig(method="cutmix").build_mixer(), CutMix)
    assert MixConfig(method="baseline").build_mixer() is None
    # no grid check and any images budget: CutMix appends nothing (B' = 0 in every batch)
    extra = ["train.batch_size=4", "mix.grids=[3x3]", "mix.prob=0.5", "train.budget={images: 100}"]
    assert load_config(None, ["mix.method=cutmix", *extra]).mix.method == "cutmix"
    with pytest.raises(ConfigError, match="mix.grids"):
        load_config(None, ["mix.method=splicemix", *extra])


@pytest.mark.parametrize("alpha", ["0", "-1", ".inf"])
def test_config_rejects_alpha_not_positive(alpha):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["mix.method=cutmix", f"mix.alpha={alpha}"])
    msg = str(e.value)
    assert "\n" not in msg and "mix.alpha" in msg


def test_a_study_grids_over_the_five_methods(tmp_path):
    from study.schema import load_study

    root = Path(__file__).resolve().parent.parent
    p = tmp_path / "methods.yaml"
    p.write_text(
        f"name: m\nbase: {root / 'configs' / 'default.yaml'}\n"
        "space:\n  mix.method: {grid: [baseline, mixup, cutmix, splicemix, splicemix_cl]}\n"
        "fixed:\n  mix.alpha: 0.4\nseeds: [0]\nsearch: {algorithm: grid, scheduler: fifo}\n",
        encoding="utf-8",
    )
    spec, _, _ = load_study(p)
    assert spec.space["mix.method"].values == ["baseline", "mixup", "cutmix", "splicemix", "splicemix_cl"]


# --------------------------------------------------------------------------- one real run each
@pytest.mark.slow
@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_one_epoch_trains(tiny, tmp_path, method):
    out = tmp_path / "run"
    result = train(load_config(None, tiny.overrides(out, f"mix.method={method}")))
    (row,) = tiny.metrics(out)
    assert row["method"] == method and "cl_loss" not in row
    assert math.isfinite(row["mAP"]) and 0.0 < row["mAP"] <= 100.0 and math.isfinite(row["train_loss"])
    assert row["images_per_s"] == pytest.approx(row["regular_images_per_s"])  # mixed in place: no extra images
    assert result["mAP"] == pytest.approx(row["mAP"])


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_cutmix_run_resumes_exactly(tiny, tmp_path):
    """The mixing draws come from the trainer's (seed, epoch, rank) generator: a run stopped after
    epoch 1 and resumed ends with the uninterrupted run's metrics."""
    extra = ("mix.method=cutmix", "mix.prob=0.5", "mix.alpha=0.4", "train.epochs=2")
    full = train(load_config(None, tiny.overrides(tmp_path / "full", *extra)))

    def stop_after_first(metrics: dict) -> None:
        if metrics["epoch"] == 1:
            raise _Interrupt

    part = tmp_path / "part"
    with pytest.raises(_Interrupt):
        train(load_config(None, tiny.overrides(part, *extra)), report=stop_after_first)
    resumed = train(load_config(None, tiny.overrides(part, *extra, "train.resume=true")))
    assert [r["epoch"] for r in tiny.metrics(part)] == [1, 2]
    for k in ("mAP", "train_loss", "CF1", "OF1"):
        assert full[k] == resumed[k], (k, full[k], resumed[k])
