import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splicemix.config import load_config
from splicemix.consistency import (
    CL_VARIANTS,
    ConsistencyLoss,
    consistency_loss,
    consistency_predictions,
    split_cells,
    split_cells_by_group,
    tokens_to_map,
)
from splicemix.models import build_model
from splicemix.plan import SpliceGroup, SplicePlan

C, K = 3, 5


def avg_pool(f):
    return f.mean(dim=(2, 3))


def max_pool(f):
    return f.amax(dim=(2, 3))


def fixed_linear(seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(C, K)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(K, C, generator=g))
        lin.bias.copy_(torch.randn(K, generator=g))
    return lin


def splice_maps(regular, plan, cell_hw):
    """Mixed maps made from the regular maps by tensor ops: every source map is
    average-pooled down to the cell size and placed in its cell (row-major)."""
    ch, cw = cell_hw
    out = []
    for g in plan.groups:
        small = F.adaptive_avg_pool2d(regular, (ch, cw))  # (B, C, ch, cw), exact mean-preserving here
        cells = small[g.sources.reshape(-1)].reshape(g.n, g.rows, g.cols, C, ch, cw)
        cells = cells * (~g.dropped).reshape(g.n, g.rows, g.cols, 1, 1, 1)
        out.append(cells.permute(0, 3, 1, 4, 2, 5).reshape(g.n, C, g.rows * ch, g.cols * cw))
    return torch.cat(out)


def entropy(logits):
    p = torch.sigmoid(logits)
    return -(p * torch.log(p) + (1 - p) * torch.log1p(-p)).mean(dim=1)


def test_split_cells_order_is_image_then_row_major():
    fmap = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    plan = SplicePlan([SpliceGroup(2, 3, sources=torch.tensor([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]))], 6)
    cells = split_cells(fmap, plan)
    assert cells.shape == (12, 1, 2, 2)
    k = 0
    for m in range(2):
        for i in range(2):
            for j in range(3):
                torch.testing.assert_close(cells[k], fmap[m, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2])
                k += 1


def test_split_cells_transposed_and_non_divisible_shapes():
    f = torch.randn(1, C, 4, 4)
    p21 = SplicePlan([SpliceGroup(2, 1, sources=[0, 1])], 2)
    cells = split_cells(f, p21)
    assert cells.shape == (2, C, 2, 4)
    torch.testing.assert_close(cells[1], f[0, :, 2:, :])

    # kept_cells rounds a non-dividing map up, the authors (the default) round it down
    f7 = torch.randn(3, C, 7, 7)
    p22 = SplicePlan([SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3]] * 3))], 4)
    cells = split_cells(f7, p22, variant="kept_cells")
    assert cells.shape == (12, C, 4, 4)
    up = F.interpolate(f7, size=(8, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(cells[4 + 3], up[1, :, 4:, 4:])
    cells = split_cells(f7, p22)
    assert cells.shape == (12, C, 3, 3)
    down = F.interpolate(f7, size=(6, 6), mode="bilinear", align_corners=True)
    torch.testing.assert_close(cells[4 + 3], down[1, :, 3:, 3:])

    f5 = torch.randn(2, C, 5, 5)
    p12 = SplicePlan([SpliceGroup(1, 2, sources=torch.tensor([[0, 1], [1, 0]]))], 2)
    cells = split_cells(f5, p12, variant="kept_cells")
    assert cells.shape == (4, C, 5, 3)
    up = F.interpolate(f5, size=(5, 6), mode="bilinear", align_corners=True)
    torch.testing.assert_close(cells[2], up[1, :, :, :3])
    assert split_cells(f5, p12).shape == (4, C, 5, 2)
    # a constant map stays constant through the resize
    const = torch.full((2, C, 5, 5), 2.5)
    torch.testing.assert_close(split_cells(const, p12, variant="kept_cells"), torch.full((4, C, 5, 3), 2.5))
    torch.testing.assert_close(split_cells(const, p12), torch.full((4, C, 5, 2), 2.5))


def test_groups_with_different_cell_sizes():
    plan = SplicePlan(
        [SpliceGroup(1, 2, sources=[0, 1]), SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))],
        batch_size=4,
    )
    f = torch.randn(3, C, 4, 4)
    with pytest.raises(ValueError, match="split_cells_by_group"):
        split_cells(f, plan)
    parts = split_cells_by_group(f, plan)
    assert [p.shape for p in parts] == [(2, C, 4, 2), (8, C, 2, 2)]
    torch.testing.assert_close(parts[1][4], f[2, :, :2, :2])
    feats = torch.cat([torch.randn(4, C, 4, 4), f])
    out = consistency_predictions(feats, plan, avg_pool, fixed_linear())
    assert out.cell_logits.shape == out.target_logits.shape == (10, K)
    reg = fixed_linear()(avg_pool(feats[:4]))
    torch.testing.assert_close(out.target_logits, reg[torch.tensor([0, 1, 0, 1, 2, 3, 3, 2, 1, 0])])


@pytest.mark.parametrize("pool", [avg_pool, max_pool])
def test_exact_splice_gives_source_predictions(pool):
    torch.manual_seed(1)
    b, h = 6, 4
    # constant maps per regular image: any pooling of a cell equals the source's
    regular = torch.randn(b, C, 1, 1).expand(b, C, h, h).contiguous()
    plan = SplicePlan(
        [
            SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3], [5, 4, 3, 2]])),
            SpliceGroup(2, 2, sources=[1, 0, 5, 4]),
        ],
        batch_size=b,
    )
    feats = torch.cat([regular, splice_maps(regular, plan, (2, 2))])
    clf = fixed_linear()
    out = consistency_predictions(feats, plan, pool, clf)
    torch.testing.assert_close(out.cell_logits, out.target_logits)
    src = torch.tensor([0, 1, 2, 3, 5, 4, 3, 2, 1, 0, 5, 4])
    torch.testing.assert_close(out.target_logits, clf(pool(regular))[src])
    assert out.mask.all() and out.mask.dtype == torch.bool
    loss = consistency_loss(feats, plan, pool, clf)
    torch.testing.assert_close(loss, entropy(out.target_logits).mean())
    torch.testing.assert_close(consistency_loss(feats, plan, pool, clf, weight=0.5), 0.5 * loss)


def test_exact_splice_patterned_maps_avg_pool():
    torch.manual_seed(2)
    regular = torch.randn(4, C, 6, 6)
    plan = SplicePlan([SpliceGroup(1, 2, sources=torch.tensor([[2, 0], [3, 1]]))], batch_size=4)
    feats = torch.cat([regular, splice_maps(regular, plan, (6, 3))])
    out = consistency_predictions(feats, plan, avg_pool, fixed_linear(3))
    torch.testing.assert_close(out.cell_logits, out.target_logits)
    # and a mismatch is noticed: swapping the sources changes the loss upward
    good = consistency_loss(feats, plan, avg_pool, fixed_linear(3))
    swapped = SplicePlan([SpliceGroup(1, 2, sources=torch.tensor([[0, 2], [1, 3]]))], batch_size=4)
    assert consistency_loss(feats, swapped, avg_pool, fixed_linear(3)) > good + 1e-3


def test_dropped_cells_are_masked():
    torch.manual_seed(3)
    dropped = torch.tensor([[False, True, False, False], [True, True, True, True]])
    plan = SplicePlan([SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]), dropped=dropped)], 4)
    feats = torch.randn(6, C, 4, 4)
    clf = fixed_linear()
    out = consistency_predictions(feats, plan, avg_pool, clf)
    assert out.mask.tolist() == [True, False, True, True, False, False, False, False]
    base = consistency_loss(feats, plan, avg_pool, clf)
    manual = F.binary_cross_entropy_with_logits(out.cell_logits[out.mask], torch.sigmoid(out.target_logits[out.mask]))
    torch.testing.assert_close(consistency_loss(feats, plan, avg_pool, clf, variant="kept_cells"), manual)
    torch.testing.assert_close(base, manual * 3 / 8)  # the authors: 3 kept cells of 8 in the mean
    f2 = feats.clone()
    f2[4, :, :2, 2:] += 10.0  # image 0, cell 1: dropped
    f2[5] -= 7.0  # image 1: all dropped
    torch.testing.assert_close(consistency_loss(f2, plan, avg_pool, clf), base)
    f3 = feats.clone()
    f3[4, :, :2, :2] += 10.0  # image 0, cell 0: kept
    assert not torch.allclose(consistency_loss(f3, plan, avg_pool, clf), base)


def test_all_dropped_and_empty_plan_give_zero_with_grad():
    feats = torch.randn(5, C, 4, 4, requires_grad=True)
    plan = SplicePlan([SpliceGroup(1, 2, sources=[0, 1], dropped=[True, True])], 4)
    loss = consistency_loss(feats, plan, avg_pool, fixed_linear())
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(feats.grad) == 0

    feats = torch.randn(4, C, 4, 4, requires_grad=True)
    empty = SplicePlan([], batch_size=4)
    loss = consistency_loss(feats, empty, avg_pool, fixed_linear())
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert feats.grad is not None
    out = consistency_predictions(feats, empty, avg_pool, fixed_linear())
    assert out.cell_logits.shape == (0, K) and out.mask.shape == (0,)


def test_gradients_and_detach():
    torch.manual_seed(4)
    plan = SplicePlan([SpliceGroup(2, 2, sources=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))], 4)
    clf = fixed_linear()
    for detach in (True, False):
        feats = torch.randn(6, C, 4, 4, requires_grad=True)
        consistency_loss(feats, plan, max_pool, clf, detach=detach).backward()
        assert feats.grad[4:].abs().sum() > 0
        regular_grad = feats.grad[:4].abs().sum()
        if detach:
            assert regular_grad == 0
        else:
            assert regular_grad > 0
    clf.zero_grad()
    feats = torch.randn(6, C, 4, 4)
    consistency_loss(feats, plan, avg_pool, clf).backward()
    assert clf.weight.grad.abs().sum() > 0


def test_regular_logits_argument():
    torch.manual_seed(5)
    plan = SplicePlan([SpliceGroup(1, 2, sources=torch.tensor([[0, 3], [2, 1]]))], 4)
    feats = torch.randn(6, C, 4, 4)
    clf = fixed_linear()
    ref = consistency_loss(feats, plan, avg_pool, clf)
    all_logits = clf(avg_pool(feats))
    torch.testing.assert_close(consistency_loss(feats, plan, avg_pool, clf, regular_logits=all_logits), ref)
    torch.testing.assert_close(consistency_loss(feats, plan, avg_pool, clf, regular_logits=all_logits[:4]), ref)
    other = torch.zeros(4, K)  # targets 0.5 everywhere
    out = consistency_predictions(feats, plan, avg_pool, clf, regular_logits=other)
    assert torch.equal(out.target_logits, torch.zeros(4, K))
    with pytest.raises(ValueError, match="regular_logits"):
        consistency_loss(feats, plan, avg_pool, clf, regular_logits=all_logits[:3])
    mod = ConsistencyLoss(weight=2.0)
    torch.testing.assert_close(mod(feats, plan, avg_pool, clf), 2 * ref)


def test_batch_size_none_is_inferred():
    plan = SplicePlan([SpliceGroup(1, 2, sources=[0, 2])])
    feats = torch.randn(4, C, 4, 4)
    out = consistency_predictions(feats, plan, avg_pool, fixed_linear())
    assert out.cell_logits.shape == (2, K)
    with pytest.raises(ValueError, match="outside the regular batch of size 2"):
        consistency_predictions(torch.randn(3, C, 4, 4), plan, avg_pool, fixed_linear())


def test_errors():
    plan = SplicePlan([SpliceGroup(1, 2, sources=[0, 1])], 4)
    clf = fixed_linear()
    with pytest.raises(ValueError, match="4-D"):
        consistency_loss(torch.randn(5, C, 16), plan, avg_pool, clf)
    with pytest.raises(ValueError, match="B \\+ B'"):
        consistency_loss(torch.randn(6, C, 4, 4), plan, avg_pool, clf)
    bad = SplicePlan([SpliceGroup(1, 2, sources=[0, 4])], 4)
    with pytest.raises(ValueError, match="source index 4 outside the regular batch of size 4"):
        consistency_loss(torch.randn(5, C, 4, 4), bad, avg_pool, clf)
    with pytest.raises(ValueError, match="2 mixed"):
        split_cells(torch.randn(3, C, 4, 4), SplicePlan([SpliceGroup(1, 2, sources=[[0, 1], [1, 0]])], 2))
    with pytest.raises(ValueError, match="4-D"):
        split_cells(torch.randn(C, 4, 4), plan)


def test_tokens_to_map():
    tok = torch.randn(2, 12, 7)
    m = tokens_to_map(tok, 3, 4)
    assert m.shape == (2, 7, 3, 4)
    torch.testing.assert_close(m[:, :, 1, 2], tok[:, 1 * 4 + 2])
    assert tokens_to_map(tok, h=3).shape == (2, 7, 3, 4)
    assert tokens_to_map(tok, w=6).shape == (2, 7, 2, 6)
    assert tokens_to_map(torch.randn(2, 16, 7)).shape == (2, 7, 4, 4)
    with pytest.raises(ValueError, match="square"):
        tokens_to_map(torch.randn(2, 17, 7))  # class token left in
    with pytest.raises(ValueError, match="5x4"):
        tokens_to_map(tok, 5, 4)
    with pytest.raises(ValueError, match="\\(N, L, C\\)"):
        tokens_to_map(torch.randn(12, 7))


def _mixed_batch(b=4):
    plan = SplicePlan(
        [SpliceGroup(2, 3, sources=torch.tensor([[0, 1, 2, 3, 0, 1]]), dropped=torch.tensor([[0, 0, 1, 0, 0, 0]]))],
        batch_size=b,
    )
    return plan, torch.randn(b + plan.num_mixed, 3, 32, 32)


def test_end_to_end_smallcnn():
    torch.manual_seed(6)
    model = build_model("smallcnn", K)
    plan, x = _mixed_batch()
    logits, fmap = model.forward_features(x)
    assert fmap.shape[-2:] == (4, 4)  # 4x4 map with a 2x3 grid: resized to 4x3 (kept_cells: 4x6)
    loss = consistency_loss(fmap, plan, model.pool, model.head, regular_logits=logits)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert next(model.backbone.parameters()).grad.abs().sum() > 0  # the first convolution
    assert model.head.weight.grad.abs().sum() > 0


def test_end_to_end_vit_tokens():
    torch.manual_seed(7)
    model = build_model("vit_tiny", K, image_size=32)
    plan, x = _mixed_batch()
    fmap = model.features(x)
    tokens = fmap.flatten(2).transpose(1, 2)  # what a ViT user holds: (N, L, C) patch tokens
    fmap2 = tokens_to_map(tokens)
    torch.testing.assert_close(fmap2, fmap)
    loss = ConsistencyLoss(weight=1.0, detach=False)(fmap2, plan, model.pool, model.head)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.backbone.conv_proj.weight.grad.abs().sum() > 0
    assert model.backbone.encoder.pos_embedding.grad.abs().sum() > 0


# --------------------------------------------------------------------------- the two variants
def reference_cl_loss(feats, plan, pool, clf, variant):
    """SpliceMix-CL written out from its definition, one mixed image and one cell at a time.

    authors: the map is resized to (h // rows * rows, w // cols * cols); a dropped cell's
    prediction and target logits are -1e3 and it counts in the mean over all cells.
    kept_cells: resized to (rows * ceil(h / rows), cols * ceil(w / cols)); mean over kept cells.
    """
    b = plan.batch_size
    regular = clf(pool(feats[:b])).detach()
    losses, kept = [], 0
    m = b
    for g in plan.groups:
        for i in range(g.n):
            f = feats[m : m + 1]
            m += 1
            h, w = f.shape[-2:]
            if variant == "authors":
                size = (h // g.rows * g.rows, w // g.cols * g.cols)
            else:
                size = (-(-h // g.rows) * g.rows, -(-w // g.cols) * g.cols)
            if tuple(size) != (h, w):
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=True)
            ch, cw = size[0] // g.rows, size[1] // g.cols
            for r in range(g.rows):
                for c in range(g.cols):
                    k = r * g.cols + c
                    cell = clf(pool(f[:, :, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]))
                    target = regular[g.sources[i, k]].unsqueeze(0)
                    if g.dropped[i, k]:
                        if variant == "authors":
                            cell, target = torch.full_like(cell, -1e3), torch.full_like(target, -1e3)
                        else:
                            continue
                    kept += 1
                    losses.append(F.multilabel_soft_margin_loss(cell, torch.sigmoid(target)))
    return torch.stack(losses).sum() / kept


@pytest.mark.parametrize("pool", [max_pool, avg_pool])
@pytest.mark.parametrize("variant", CL_VARIANTS)
def test_loss_matches_the_definition_with_drops_and_a_non_dividing_grid(variant, pool):
    torch.manual_seed(11)
    plan = SplicePlan(
        [
            SpliceGroup(
                2,
                3,
                sources=torch.tensor([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]),
                dropped=torch.tensor([[0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool),
            ),
            SpliceGroup(3, 1, sources=torch.tensor([[1, 3, 5]]), dropped=torch.tensor([[0, 0, 1]], dtype=torch.bool)),
        ],
        batch_size=6,
    )
    feats = torch.randn(6 + plan.num_mixed, C, 5, 7)  # 5x7: neither grid divides it
    clf = fixed_linear(2)
    loss = consistency_loss(feats, plan, pool, clf, variant=variant)
    torch.testing.assert_close(loss, reference_cl_loss(feats, plan, pool, clf, variant))
    # the two variants differ on this plan (drops, and 5x7 rounds to 4x6 / 3x7 vs 6x9 / 6x7)
    other = next(v for v in CL_VARIANTS if v != variant)
    assert not torch.allclose(loss, consistency_loss(feats, plan, pool, clf, variant=other))


def test_variant_is_checked_and_the_config_default_is_the_authors():
    assert CL_VARIANTS[0] == "authors" and load_config(None, []).mix.cl_variant == "authors"
    assert load_config(None, ["mix.cl_variant=kept_cells"]).mix.cl_variant == "kept_cells"
    with pytest.raises(ValueError, match="cl_variant"):
        load_config(None, ["mix.cl_variant=ours"])
    plan, x = _mixed_batch()
    with pytest.raises(ValueError, match="variant must be one of authors, kept_cells"):
        consistency_loss(torch.randn(5, C, 4, 4), plan, avg_pool, fixed_linear(), variant="ours")
    with pytest.raises(ValueError, match="variant"):
        ConsistencyLoss(variant="ours")
    # a map smaller than the grid: rounding down would leave no column per cell, so it rounds up
    from splicemix.consistency import resized_map_size

    assert resized_map_size(8, 8, 2, 3) == (8, 6) and resized_map_size(8, 8, 2, 3, "kept_cells") == (8, 9)
    assert resized_map_size(2, 2, 1, 3) == (2, 3)
