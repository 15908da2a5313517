"""The plan/apply contract of SpliceMix: cell contents, labels, drops, shapes, options, errors."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from splicemix import GridSpec, SpliceGroup, SpliceMix, SplicePlan, apply_plan, parse_grid


def batch(B=8, C=3, H=24, W=24, K=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, C, H, W, generator=g).to(dtype)
    targets = (torch.rand(B, K, generator=g) < 0.4).float()
    return images, targets


def reference_cell(images, src, rows, cols):
    H, W = images.shape[-2:]
    return F.interpolate(images[src : src + 1], (H // rows, W // cols), mode="bilinear", align_corners=True)[0]


# --- grid strings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [("2x2", (2, 2, 0)), ("2x3-2", (2, 3, 2)), (" 1X2 ", (1, 2, 0)), ("4x1", (4, 1, 0)), ("3x3-8", (3, 3, 8))],
)
def test_parse_grid(text, expected):
    spec = parse_grid(text)
    assert (spec.rows, spec.cols, spec.drop) == expected
    assert parse_grid(str(spec)) == spec


@pytest.mark.parametrize("text", ["2x", "x2", "2*2", "2x2-", "two by two", "", "2x2x2", "-1x2", "2x2--1"])
def test_malformed_grid_string(text):
    with pytest.raises(ValueError, match="malformed grid"):
        parse_grid(text)


def test_more_drops_than_cells():
    with pytest.raises(ValueError, match="drops 4 cells but it has 4"):
        parse_grid("2x2-4")
    with pytest.raises(ValueError, match="drops 7 cells but it has 6"):
        SpliceMix("2x3-7")
    with pytest.raises(ValueError, match="rows and cols"):
        GridSpec(0, 2)


# --- cell contents, every grid up to 4x4 ----------------------------------------------------
@pytest.mark.parametrize("rows,cols", list(itertools.product(range(1, 5), range(1, 5))))
def test_cells_equal_interpolated_sources(rows, cols):
    images, targets = batch(B=16, H=24, W=24)
    g = torch.Generator().manual_seed(rows * 10 + cols)
    mixer = SpliceMix(f"{rows}x{cols}", mixed_ratio=0.5, asymmetric=False, generator=g)
    out, tout, plan = mixer(images, targets)
    assert out.shape == (16 + 8, 3, 24, 24) and tout.shape == (24, 6)
    assert torch.equal(out[:16], images) and torch.equal(tout[:16], targets)
    (group,) = plan.groups
    assert (group.rows, group.cols, group.n) == (rows, cols, 8)
    ch, cw = 24 // rows, 24 // cols
    for m in range(group.n):
        mixed = out[16 + m]
        assert len(set(group.sources[m].tolist())) == rows * cols  # no repeats within an image
        for k, src in enumerate(group.sources[m].tolist()):
            i, j = divmod(k, cols)
            cell = mixed[:, i * ch : (i + 1) * ch, j * cw : (j + 1) * cw]
            torch.testing.assert_close(cell, reference_cell(images, src, rows, cols), rtol=0, atol=1e-6)
        expected = targets[group.sources[m]].amax(0)
        assert torch.equal(tout[16 + m], expected)


def test_dropped_cells_are_zero_and_carry_no_labels():
    images, targets = batch(B=8, H=24, W=24, K=8)
    targets = torch.eye(8)  # image i has only class i: labels identify sources
    plan = SplicePlan(
        [
            SpliceGroup(
                2,
                2,
                torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]),
                torch.tensor([[False, True, False, True], [True, True, True, False]]),
            )
        ],
        8,
    )
    out, tout = apply_plan(images, targets, plan)
    assert torch.equal(tout[8], torch.tensor([1, 0, 1, 0, 0, 0, 0, 0.0]))
    assert torch.equal(tout[9], torch.tensor([0, 0, 0, 0, 0, 0, 0, 1.0]))
    assert (out[8, :, :12, 12:] == 0).all() and (out[8, :, 12:, 12:] == 0).all()
    assert (out[9, :, :12, :] == 0).all() and (out[9, :, 12:, :12] == 0).all()
    torch.testing.assert_close(out[8, :, :12, :12], reference_cell(images, 0, 2, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[9, :, 12:, 12:], reference_cell(images, 7, 2, 2), rtol=0, atol=1e-6)


def test_random_drops_follow_drop_prob_and_range():
    images, targets = batch(B=12)
    mixer = SpliceMix(
        "2x3", drop_prob=1.0, asymmetric=False, mixed_ratio=1.0, generator=torch.Generator().manual_seed(1)
    )
    seen = set()
    for _ in range(60):
        _, tout, plan = mixer(images, targets)
        g = plan.groups[0]
        per_image = g.dropped.sum(1)
        assert (per_image == per_image[0]).all()  # one drop count per group, as the authors
        seen.add(int(per_image[0]))
        for m in range(g.n):
            kept = g.sources[m][~g.dropped[m]]
            assert torch.equal(tout[12 + m], targets[kept].amax(0))
    assert seen == {1, 2, 3, 4, 5}
    none = SpliceMix("2x3", drop_prob=0.0, generator=torch.Generator().manual_seed(1))
    assert not any(none(images, targets)[2].groups[0].dropped.any() for _ in range(20))


@pytest.mark.parametrize("H,W,grid", [(25, 25, "3x3"), (31, 17, "2x3"), (23, 24, "4x1"), (10, 11, "1x2")])
def test_non_divisible_sizes_are_resized_back(H, W, grid):
    images, targets = batch(B=10, H=H, W=W)
    mixer = SpliceMix(grid, mixed_ratio=0.3, asymmetric=False, generator=torch.Generator().manual_seed(0))
    out, tout, plan = mixer(images, targets)
    assert out.shape == (13, 3, H, W) and tout.shape == (13, 6)
    g = plan.groups[0]
    ch, cw = H // g.rows, W // g.cols
    cells = [reference_cell(images, s, g.rows, g.cols) for s in g.sources[0].tolist()]
    rows = [torch.cat(cells[r * g.cols : (r + 1) * g.cols], dim=2) for r in range(g.rows)]
    spliced = torch.cat(rows, dim=1).unsqueeze(0)
    assert spliced.shape[-2:] == (g.rows * ch, g.cols * cw)
    expected = F.interpolate(spliced, (H, W), mode="bilinear", align_corners=True)[0]
    torch.testing.assert_close(out[10], expected, rtol=0, atol=1e-5)


# --- orientation, cardinality, presets ------------------------------------------------------
def test_asymmetric_transposes_about_half_the_time():
    images, targets = batch(B=8)
    mixer = SpliceMix("1x2", asymmetric=True, generator=torch.Generator().manual_seed(3))
    shapes = Counter((p.groups[0].rows, p.groups[0].cols) for p in (mixer(images, targets)[2] for _ in range(400)))
    assert set(shapes) == {(1, 2), (2, 1)}
    assert 140 < shapes[(2, 1)] < 260
    fixed = SpliceMix("1x2", asymmetric=False, generator=torch.Generator().manual_seed(3))
    assert {(p.groups[0].rows, p.groups[0].cols) for p in (fixed.sample_plan(8) for _ in range(50))} == {(1, 2)}
    square = SpliceMix("2x2", asymmetric=True, generator=torch.Generator().manual_seed(3))
    assert {(p.groups[0].rows, p.groups[0].cols) for p in (square.sample_plan(8) for _ in range(50))} == {(2, 2)}


def test_transposed_cells_match_sources():
    images, targets = batch(B=8, H=24, W=24)
    plan = SplicePlan([SpliceGroup(2, 1, torch.tensor([[5, 2]]))], 8)
    out, _ = apply_plan(images, targets, plan)
    torch.testing.assert_close(out[8, :, :12, :], reference_cell(images, 5, 2, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[8, :, 12:, :], reference_cell(images, 2, 2, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "grid,ratio,B,expected",
    [
        ("2x2", 0.25, 32, 8),
        ("2x2", 0.5, 32, 16),
        ("2x2", 0.1, 32, 3),
        ("2x2", "paper", 32, 8),
        ("2x3-2", "paper", 32, 8),
        ("1x2", "paper", 31, 15),
        ("3x3", "paper", 32, 3),
        ("2x2", 0.0, 32, 0),
    ],
)
def test_number_of_mixed_images(grid, ratio, B, expected):
    images, targets = batch(B=B)
    out, tout, plan = SpliceMix(grid, mixed_ratio=ratio, generator=torch.Generator().manual_seed(0))(images, targets)
    assert plan.num_mixed == expected and out.shape[0] == B + expected == tout.shape[0]


def test_split_sampling_and_counts():
    images, targets = batch(B=24)
    mixer = SpliceMix(
        {"1x2": 1, "2x2": 2, "2x3-2": 1},
        grid_sampling="split",
        mixed_ratio=0.5,
        asymmetric=False,
        generator=torch.Generator().manual_seed(0),
    )
    plan = mixer.sample_plan(24)
    assert [(g.rows, g.cols, g.n) for g in plan.groups] == [(1, 2, 3), (2, 2, 6), (2, 3, 3)]
    assert all(int(d.sum()) == 2 * 3 for d in [plan.groups[2].dropped])
    counted = SpliceMix(["1x2", "2x3-2"], counts=[3, 2], asymmetric=False, generator=torch.Generator().manual_seed(0))
    out, tout, plan = counted(images, targets)
    assert [(g.rows, g.cols, g.n) for g in plan.groups] == [(1, 2, 3), (2, 3, 2)]
    assert out.shape[0] == 29 and plan.offsets() == [0, 3]
    with pytest.raises(ValueError, match="one integer >= 0 per grid"):
        SpliceMix(["1x2", "2x2"], counts=[1])


def test_default_preset_matches_authors_setting():
    mixer = SpliceMix("default", generator=torch.Generator().manual_seed(0))
    grids, drops, n = Counter(), Counter(), 3000
    for _ in range(n):
        (g,) = mixer.sample_plan(32).groups
        assert g.n == 8  # |B'| = |B| // 4
        grids[tuple(sorted((g.rows, g.cols)))] += 1
        d = int(g.dropped[0].sum())
        drops[d > 0] += 1
        assert d <= g.rows * g.cols - 1
    for key, p in {(1, 2): 0.3, (2, 2): 0.4, (2, 3): 0.3}.items():
        assert abs(grids[key] / n - p) < 0.04, grids
    assert abs(drops[True] / n - 0.3) < 0.04
    minimal = SpliceMix("minimal", generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        (g,) = minimal.sample_plan(32).groups
        assert (g.rows, g.cols, g.n) == (2, 2, 8) and not g.dropped.any()
        assert sorted(g.sources.flatten().tolist()) == list(range(32))  # every image used once


def test_prob_zero_returns_batch_untouched_and_prob_half_mixes_about_half():
    images, targets = batch()
    out, tout, plan = SpliceMix("2x2", prob=0.0)(images, targets)
    assert out is images and tout is targets and plan.num_mixed == 0
    mixer = SpliceMix("2x2", prob=0.5, generator=torch.Generator().manual_seed(0))
    mixed = sum(mixer.sample_plan(8).num_mixed > 0 for _ in range(400))
    assert 150 < mixed < 250


# --- reproducibility, dtype, device ---------------------------------------------------------
def test_generator_reproducibility():
    images, targets = batch(B=16)
    runs = []
    for seed in (7, 7, 8):
        mixer = SpliceMix("default", generator=torch.Generator().manual_seed(seed))
        runs.append([mixer(images, targets) for _ in range(5)])
    for (o1, t1, p1), (o2, t2, p2) in zip(runs[0], runs[1], strict=False):
        assert torch.equal(o1, o2) and torch.equal(t1, t2)
        assert all(
            torch.equal(a.sources, b.sources) and torch.equal(a.dropped, b.dropped)
            for a, b in zip(p1.groups, p2.groups, strict=False)
        )
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(runs[0], runs[2], strict=False))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("antialias", [False, True])
def test_dtype_kept(dtype, antialias):
    images, targets = batch(dtype=dtype)
    out, tout, plan = SpliceMix("2x2", antialias=antialias, generator=torch.Generator().manual_seed(0))(images, targets)
    assert out.dtype == dtype and tout.dtype == targets.dtype
    assert torch.equal(out[:8], images)


def test_antialias_differs_from_reference_interpolation():
    images, targets = batch(H=32, W=32)
    plan = SpliceMix("2x2").sample_plan(8)
    plain, _ = apply_plan(images, targets, plan)
    smooth, _ = apply_plan(images, targets, plan, antialias=True)
    assert not torch.allclose(plain[8:], smooth[8:]) and torch.equal(plain[:8], smooth[:8])


@pytest.mark.parametrize("tdtype", [torch.bool, torch.long, torch.float16])
def test_target_dtypes(tdtype):
    images, targets = batch()
    t = targets.to(tdtype)
    out, tout, plan = SpliceMix("2x2", mixed_ratio=0.5)(images, t)
    assert tout.dtype == tdtype
    g = plan.groups[0]
    assert torch.equal(tout[8:].float(), targets[g.sources].amax(1))


def test_meta_device_never_touches_host_memory():
    # A batch on the meta device has no data: any copy to the CPU or read of a value fails.
    images = torch.empty(8, 3, 24, 24, device="meta")
    targets = torch.empty(8, 5, device="meta")
    out, tout, plan = SpliceMix("default", generator=torch.Generator().manual_seed(0))(images, targets)
    assert out.device.type == "meta" and tout.device.type == "meta"
    assert out.shape == (10, 3, 24, 24)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    images, targets = batch(B=16)
    plan = SpliceMix("default", generator=torch.Generator().manual_seed(0)).sample_plan(16)
    cpu_out, cpu_t = apply_plan(images, targets, plan)
    gpu_out, gpu_t = apply_plan(images.cuda(), targets.cuda(), plan)
    assert gpu_out.device.type == "cuda"
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, rtol=1e-5, atol=1e-5)
    assert torch.equal(gpu_t.cpu(), cpu_t)


# --- preallocated buffers -------------------------------------------------------------------
def test_out_buffer_in_place_equals_out_of_place():
    images, targets = batch(B=16)
    plan = SpliceMix("2x3-2", mixed_ratio=0.25, generator=torch.Generator().manual_seed(0)).sample_plan(16)
    ref, tref = apply_plan(images, targets, plan)
    buf = torch.full((20, 3, 24, 24), float("nan"))
    tbuf = torch.full((20, 6), -1.0)
    buf[:16] = images
    tbuf[:16] = targets
    out, tout = apply_plan(buf[:16], tbuf[:16], plan, out=buf, targets_out=tbuf)
    assert out.data_ptr() == buf.data_ptr() and tout.data_ptr() == tbuf.data_ptr()
    assert torch.equal(out, ref) and torch.equal(tout, tref)
    with pytest.raises(ValueError, match=r"out must be a torch.float32 tensor of shape \(20, 3, 24, 24\)"):
        apply_plan(images, targets, plan, out=torch.empty(19, 3, 24, 24))


# --- user-built plans and bad input ---------------------------------------------------------
def test_user_built_plan_validation():
    with pytest.raises(ValueError, match=r"sources must have shape \(n, 4\)"):
        SpliceGroup(2, 2, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="dropped must have the shape of sources"):
        SpliceGroup(1, 2, torch.tensor([[0, 1]]), torch.tensor([[True, False, True]]))
    images, targets = batch(B=4)
    with pytest.raises(ValueError, match=r"source indices outside \[0, 4\)"):
        apply_plan(images, targets, SplicePlan([SpliceGroup(1, 2, torch.tensor([[0, 4]]))]))
    with pytest.raises(ValueError, match="drawn for a batch of 8 images, got 4"):
        apply_plan(images, targets, SplicePlan([], batch_size=8))


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: (torch.randn(3, 24, 24), torch.zeros(3, 5)),
            r"images must be 4-D \(B, C, H, W\), got shape \(3, 24, 24\)",
        ),
        (lambda: (torch.randn(8, 3, 24, 24), torch.zeros(7, 5)), "images has 8 images but targets has 7 rows"),
        (lambda: (torch.randn(8, 3, 24, 24), torch.zeros(8)), r"targets must be 2-D multi-hot \(B, K\)"),
        (lambda: (torch.zeros(8, 3, 24, 24, dtype=torch.uint8), torch.zeros(8, 5)), "floating-point"),
    ],
)
def test_bad_batches(make, match):
    images, targets = make()
    with pytest.raises(ValueError, match=match):
        SpliceMix("2x2")(images, targets)


def test_grid_needing_more_images_than_the_batch_has():
    images, targets = batch(B=8)
    with pytest.raises(ValueError, match="grid 3x3 needs 9 distinct source images .* batch has only 8"):
        SpliceMix("3x3")(images, targets)


def test_grid_larger_than_image():
    images, targets = batch(B=20, H=3, W=3)
    with pytest.raises(ValueError, match="does not fit images of 3x3"):
        SpliceMix("4x4", mixed_ratio=0.1)(images, targets)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mixed_ratio=-0.1), "mixed_ratio must be a number >= 0 or 'paper'"),
        (dict(mixed_ratio="half"), "mixed_ratio must be a number >= 0 or 'paper'"),
        (dict(drop_prob=1.5), r"drop_prob must be in \[0, 1\]"),
        (dict(prob=-1), r"prob must be in \[0, 1\]"),
        (dict(grid_sampling="each"), "grid_sampling must be 'batch' or 'split'"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpliceMix("2x2", **kwargs)


def test_bad_grid_weights():
    with pytest.raises(ValueError, match="must not all be zero"):
        SpliceMix({"2x2": 0, "1x2": 0})
    with pytest.raises(ValueError, match="grids is empty"):
        SpliceMix([])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(grids="default"),
        dict(grids="2x3-2", mixed_ratio="paper"),
        dict(grids="2x2", mixed_ratio="paper", drop_prob=1.0),
        dict(grids={"1x2": 1, "2x2": 1}, grid_sampling="split", mixed_ratio="paper", drop_prob=0.5, max_drop=1),
        dict(grids=["1x2", "2x3-2"], counts=[3, 2]),
        dict(grids="2x2", mixed_ratio=0.6),
    ],
)
def test_max_mixed_bounds_every_plan(kwargs):
    """max_mixed(B) sizes preallocated buffers: no plan may exceed it, and some plan reaches it."""
    mixer = SpliceMix(generator=torch.Generator().manual_seed(0), **kwargs)
    sizes = [mixer.sample_plan(24).num_mixed for _ in range(300)]
    assert max(sizes) == mixer.max_mixed(24)
