"""SpliceCollate / SpliceBatch, mixing into reserved rows, and the gather paths of splice_images."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from splicemix import SpliceBatch, SpliceCollate, SpliceGroup, SpliceMix, SplicePlan, apply_plan
from splicemix.mixing import splice_images


class Pairs(Dataset):
    """(image, multi-hot target) pairs like the project's data sets return."""

    def __init__(self, n=24, C=3, H=24, W=24, K=5, tdtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, C, H, W, generator=g)
        self.targets = (torch.rand(n, K, generator=g) < 0.4).to(tdtype)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].clone(), self.targets[i].clone()


def samples(n=8, **kw):
    ds = Pairs(n=n, **kw)
    return [ds[i] for i in range(n)]


def aliased(batch: SpliceBatch) -> bool:
    return (
        batch.images.data_ptr() == batch.buffer.data_ptr()
        and batch.targets.data_ptr() == batch.targets_buffer.data_ptr()
        and batch.images.shape[0] == batch.targets.shape[0] == batch.batch_size
    )


# --------------------------------------------------------------------------- collate
def test_collate_shapes_values_and_aliasing():
    s = samples(8)
    batch = SpliceCollate(3)(s)
    assert isinstance(batch, SpliceBatch)
    assert batch.buffer.shape == (11, 3, 24, 24) and batch.targets_buffer.shape == (11, 5)
    assert batch.targets_buffer.dtype == torch.float32 and batch.batch_size == 8 and batch.reserve == 3
    assert aliased(batch)
    ref_images, ref_targets = default_collate(s)
    assert torch.equal(batch.images, ref_images) and torch.equal(batch.targets, ref_targets)
    images, targets = batch  # unpacks like the default collate's (images, targets)
    assert images is batch.images and targets is batch.targets
    assert "SpliceBatch(batch_size=8, reserve=3" in repr(batch)


def test_collate_reserve_from_mixer_and_batch_size_hint():
    mixer = SpliceMix("2x2", mixed_ratio="paper", generator=torch.Generator().manual_seed(0))
    assert SpliceCollate(mixer)(samples(8)).buffer.shape[0] == 8 + mixer.max_mixed(8) == 10
    short = SpliceCollate(mixer, batch_size=16)(samples(5))  # a short last batch: full-size buffers
    assert short.buffer.shape[0] == 16 + mixer.max_mixed(16) and short.batch_size == 5 and aliased(short)
    assert SpliceCollate(0)(samples(4)).buffer.shape[0] == 4


def test_collate_casts_targets_to_float():
    for tdtype in (torch.bool, torch.long, torch.uint8):
        batch = SpliceCollate(2)(samples(4, tdtype=tdtype))
        assert batch.targets.dtype == torch.float32
        assert torch.equal(batch.targets, default_collate(samples(4, tdtype=tdtype))[1].float())


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(reserve=-1), "reserve must be an integer >= 0 or a SpliceMix"),
        (dict(reserve="8"), "reserve must be an integer >= 0 or a SpliceMix"),
        (dict(reserve=2, batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_collate_bad_arguments(bad, match):
    reserve = bad.pop("reserve")
    with pytest.raises(ValueError, match=match):
        SpliceCollate(reserve, **bad)


def test_collate_bad_samples():
    c = SpliceCollate(2)
    with pytest.raises(ValueError, match="empty"):
        c([])
    with pytest.raises(ValueError, match=r"sample 1 must be an \(image, target\) pair"):
        c([samples(1)[0], (torch.zeros(3, 24, 24),)])
    with pytest.raises(ValueError, match="sample 0's image must be a"):
        c([("not an image", torch.zeros(5))])
    s = samples(2)
    s[1] = (torch.zeros(3, 20, 24), s[1][1])
    with pytest.raises(ValueError, match=r"sample 1's image is torch.float32 \(3, 20, 24\)"):
        c(s)


# --------------------------------------------------------------------------- moving keeps the aliasing
def test_to_same_device_is_identity_and_to_other_device_keeps_aliasing():
    batch = SpliceCollate(4)(samples(6))
    assert batch.to("cpu") is batch
    moved = batch.to("meta")  # a second "device" that every build has: checks the re-viewing
    assert moved.buffer.device.type == "meta" and moved.buffer.shape == batch.buffer.shape
    assert moved.targets_buffer.shape == batch.targets_buffer.shape and moved.batch_size == 6
    assert aliased(moved)


def test_pickle_round_trip_keeps_aliasing():
    batch = SpliceCollate(4)(samples(6))
    back = pickle.loads(pickle.dumps(batch))
    assert aliased(back) and torch.equal(back.images, batch.images) and torch.equal(back.targets, batch.targets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs an accelerator")
def test_pin_memory_and_cuda_keep_aliasing():
    batch = SpliceCollate(4)(samples(6))
    pinned = batch.pin_memory()
    assert pinned.buffer.is_pinned() and pinned.targets_buffer.is_pinned() and aliased(pinned)
    assert torch.equal(pinned.images, batch.images) and pinned.pin_memory() is pinned
    cuda = pinned.to("cuda", non_blocking=True)
    assert cuda.buffer.is_cuda and aliased(cuda)
    assert torch.equal(cuda.images.cpu(), batch.images) and torch.equal(cuda.targets.cpu(), batch.targets)
    loader = DataLoader(Pairs(), batch_size=8, collate_fn=SpliceCollate(2), pin_memory=True)
    for b in loader:
        assert isinstance(b, SpliceBatch) and b.buffer.is_pinned() and aliased(b)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches(workers):
    ds = Pairs(n=20)
    plain = list(DataLoader(ds, batch_size=8, num_workers=workers))
    spliced = list(DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=SpliceCollate(2, batch_size=8)))
    assert len(spliced) == len(plain) == 3
    for (images, targets), b in zip(plain, spliced, strict=False):
        assert isinstance(b, SpliceBatch) and aliased(b)
        assert b.buffer.shape[0] == 10  # the short last batch too, thanks to batch_size=8
        assert torch.equal(b.images, images) and torch.equal(b.targets, targets)


# --------------------------------------------------------------------------- mixing into the buffers
@pytest.mark.parametrize("grids", ["default", "2x3-2", "minimal", {"1x2": 1, "2x2": 1, "3x2": 1}])
def test_mixing_into_the_buffer_equals_out_of_place(grids):
    kw = dict(grid_sampling="split") if isinstance(grids, dict) else {}
    ours = SpliceMix(grids, generator=torch.Generator().manual_seed(3), **kw)
    ref = SpliceMix(grids, generator=torch.Generator().manual_seed(3), **kw)
    collate = SpliceCollate(ours)
    ds = Pairs(n=16, H=30, W=28)
    for start in range(0, 16, 8):  # two batches, the generators advance alike
        s = [ds[i] for i in range(start, start + 8)]
        batch = collate(s)
        out, tout, plan = batch.mix(ours)
        rout, rtout, rplan = ref(*default_collate(s))
        assert plan.num_mixed == rplan.num_mixed > 0
        assert out.data_ptr() == batch.buffer.data_ptr() and tout.data_ptr() == batch.targets_buffer.data_ptr()
        assert torch.equal(out, rout) and torch.equal(tout, rtout)


def test_larger_buffers_return_views_and_leave_extra_rows_untouched():
    images, targets = default_collate(samples(8))
    plan = SpliceMix("2x2", mixed_ratio=0.25, generator=torch.Generator().manual_seed(0)).sample_plan(8)
    ref, tref = apply_plan(images, targets, plan)
    buf = torch.full((13, 3, 24, 24), float("nan"))
    tbuf = torch.full((13, 5), -1.0)
    out, tout = apply_plan(images, targets, plan, out=buf, targets_out=tbuf)
    assert out.shape == (10, 3, 24, 24) and tout.shape == (10, 5)
    assert out.data_ptr() == buf.data_ptr() and tout.data_ptr() == tbuf.data_ptr()
    assert torch.equal(out, ref) and torch.equal(tout, tref)
    assert torch.isnan(buf[10:]).all() and (tbuf[10:] == -1).all()
    # an empty plan with buffers: the B regular rows, as views
    empty_out, empty_t = apply_plan(images, targets, SplicePlan([], 8), out=buf, targets_out=tbuf)
    assert empty_out.shape[0] == 8 and empty_out.data_ptr() == buf.data_ptr() and torch.equal(empty_out, images)
    # prob=0 through the collate: nothing mixed, views of the first B rows
    batch = SpliceCollate(2)(samples(8))
    o, t, p = batch.mix(SpliceMix("2x2", prob=0.0))
    assert p.num_mixed == 0 and o.shape[0] == 8 and o.data_ptr() == batch.buffer.data_ptr()


def test_too_small_or_wrong_buffers_raise_readable_errors():
    images, targets = default_collate(samples(8))
    plan = SpliceMix("2x2", mixed_ratio=0.25, generator=torch.Generator().manual_seed(0)).sample_plan(8)
    with pytest.raises(
        ValueError,
        match=r"out must be a torch.float32 tensor of shape \(10, 3, 24, 24\) on cpu "
        r"\(or with more than 10 rows.*got torch.float32 \(9, 3, 24, 24\)",
    ):
        apply_plan(images, targets, plan, out=torch.empty(9, 3, 24, 24))
    with pytest.raises(ValueError, match=r"targets_out must be a torch.float32 tensor of shape \(10, 5\)"):
        apply_plan(images, targets, plan, targets_out=torch.empty(12, 6))
    with pytest.raises(ValueError, match="out must be a torch.float32 tensor"):
        apply_plan(images, targets, plan, out=torch.empty(12, 3, 24, 24, dtype=torch.float64))
    mixer = SpliceMix("2x2", mixed_ratio=0.5)
    batch = SpliceCollate(2)(samples(8))  # 2 rows reserved, the mixer needs 4
    with pytest.raises(ValueError, match=r"out must be .* shape \(12, 3, 24, 24\)"):
        batch.mix(mixer)


# --------------------------------------------------------------------------- the gather paths
def reference_mixed(images, group, antialias=False):
    """Straightforward splice: resize each source, paste cells, zero drops, resize back if needed."""
    B, C, H, W = images.shape
    ch, cw = H // group.rows, W // group.cols
    small = F.interpolate(images, (ch, cw), mode="bilinear", align_corners=True, antialias=antialias)
    out = []
    for m in range(group.n):
        grid = torch.zeros(C, group.rows * ch, group.cols * cw, dtype=images.dtype)
        for k, src in enumerate(group.sources[m].tolist()):
            if not group.dropped[m, k]:
                i, j = divmod(k, group.cols)
                grid[:, i * ch : (i + 1) * ch, j * cw : (j + 1) * cw] = small[src]
        if grid.shape[-2:] != (H, W):
            grid = F.interpolate(grid[None], (H, W), mode="bilinear", align_corners=True)[0]
        out.append(grid)
    return torch.stack(out)


@pytest.mark.parametrize("H,W", [(24, 24), (25, 23)])
@pytest.mark.parametrize("antialias", [False, True])
def test_subset_whole_batch_and_all_dropped_paths(H, W, antialias):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(12, 3, H, W, generator=g)
    groups = [
        # few sources, one repeated, with drops: only the distinct kept sources are resized
        SpliceGroup(
            2,
            2,
            torch.tensor([[0, 5, 5, 9], [1, 2, 3, 4]]),
            torch.tensor([[False, True, False, False], [False, False, True, False]]),
        ),
        # as many cells as images: the whole batch is resized once
        SpliceGroup(2, 3, torch.randperm(12, generator=g).view(2, 6), torch.rand(2, 6, generator=g) < 0.3),
        # a cell position dropped in every image
        SpliceGroup(1, 2, torch.tensor([[3, 4], [5, 6]]), torch.tensor([[False, True], [False, True]])),
    ]
    for group in groups:
        expected = reference_mixed(images, group, antialias)
        assert torch.equal(splice_images(images, group, antialias=antialias), expected)
        out = torch.full((group.n, 3, H, W), float("nan"))
        assert splice_images(images, group, antialias=antialias, out=out) is out
        assert torch.equal(out, expected)


def test_non_contiguous_output_and_autograd():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 24, 24, generator=g)
    group = SpliceGroup(
        2, 2, torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), torch.tensor([[False, True, False, False]] * 2)
    )
    expected = reference_mixed(images, group)
    cl = torch.empty(2, 3, 24, 24).contiguous(memory_format=torch.channels_last)
    splice_images(images, group, out=cl)
    assert torch.equal(cl, expected)
    leaf = images.clone().requires_grad_(True)
    mixed = splice_images(leaf, group)
    assert torch.equal(mixed.detach(), expected)
    mixed.sum().backward()
    assert leaf.grad is not None and leaf.grad[1].abs().sum() == 0  # image 1 sits in a dropped cell only
    assert leaf.grad[0].abs().sum() > 0


def test_mixer_scratch_reuse_across_shapes_and_copies():
    """The mixer reuses scratch memory between calls: results must not depend on earlier calls."""
    import copy

    mixer = SpliceMix("2x3-2", mixed_ratio=0.5, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for B, H, W in [(8, 24, 24), (16, 31, 17), (8, 12, 40), (16, 31, 17), (12, 24, 24)]:
        images, targets = torch.randn(B, 3, H, W, generator=g), (torch.rand(B, 4, generator=g) < 0.5).float()
        state = mixer.generator.get_state()
        out, tout, plan = mixer(images, targets)
        ref, tref = apply_plan(images, targets, plan)  # stateless
        assert torch.equal(out, ref) and torch.equal(tout, tref)
        mixer.generator.set_state(state)
        again, _, _ = copy.deepcopy(mixer)(images, targets)  # a copy starts without scratch
        assert torch.equal(again, ref)
    clone = pickle.loads(pickle.dumps(SpliceMix("2x2")))
    assert isinstance(clone, SpliceMix) and clone.max_mixed(8) == 2


# --------------------------------------------------------------------------- the trainer's two paths
@pytest.mark.parametrize("workers", [0, 2])
def test_trainer_collate_path_equals_plain_path(tmp_path, workers):
    """The batches the trainer mixes through SpliceCollate equal the old default-collate path."""
    from splicemix.config import load_config
    from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
    from splicemix.engine.data import build_data, worker_init

    knobs = dict(n_train=48, n_val=8, image_size=32, seed=0)
    root = ensure_synthetic(tmp_path / "syn", SyntheticConfig(**knobs))
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            *(f"data.synthetic.{k}={v}" for k, v in knobs.items()),
            "data.image_size=32",
            "train.batch_size=16",
            "train.progress=false",
        ],
    )
    data = build_data(cfg)

    def epoch(collate):
        torch.manual_seed(0)
        mixer = SpliceMix(generator=torch.Generator().manual_seed(5), **cfg.mix.mixer_kwargs())
        loader = DataLoader(
            data.train,
            batch_size=16,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(7),
            collate_fn=collate,
        )
        out = []
        for batch in loader:
            if collate is None:
                images, targets = batch
                out.append(mixer(images, targets.float()))
            else:
                out.append(batch.to("cpu").mix(mixer))
        return out

    plain = epoch(None)
    spliced = epoch(SpliceCollate(SpliceMix(**cfg.mix.mixer_kwargs()).max_mixed(16)))
    assert len(plain) == len(spliced) == 3
    for (a, ta, pa), (b, tb, pb) in zip(plain, spliced, strict=False):
        assert pa.num_mixed == pb.num_mixed > 0
        assert torch.equal(a, b) and torch.equal(ta, tb)
