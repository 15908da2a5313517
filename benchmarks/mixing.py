"""Mixing suite: SpliceMix against the straightforward way and against the copy/resize floor.

Cases: B=32 at 3x448x448 and B=64 at 3x224x224 (float32), grids "2x2" and "2x3-2",
mixed_ratio 0.25. For each:

* reference, the straightforward way: downsample the chosen sources, splice each mixed
  image with ``torchvision.utils.make_grid(padding=0)`` (resized back to H x W when the grid
  does not divide the image), stack, ``torch.cat`` onto the batch;
* out of place, ``mixer(images, targets)``; floor: allocate the (B + B') output, copy the
  regular batch into it, one ``F.interpolate`` of the whole batch to the cell size.
  Target: at most 1.4x the floor;
* in place, ``mixer(images, targets, out=buf, targets_out=tbuf)`` with ``images`` =
  ``buf[:B]`` (what SpliceCollate gives the trainer); floor: one interpolate of the batch.
  Target: at most 1.8x the floor and at least 3.5x faster than the reference.

Before timing, the reference and ours are run on one plan and must agree (float tolerance).
With CUDA the cases are measured on the GPU too, with the achieved bandwidth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splicemix import SpliceMix, SplicePlan, apply_plan

from .table import Row
from .timing import interleaved

SUITE = "mixing"
GRIDS = ("2x2", "2x3-2")
RATIO = 0.25
NUM_CLASSES = 80
OOP_TARGET = 1.4
INPLACE_TARGET = 1.8
SPEEDUP_TARGET = 3.5


def straightforward(images: torch.Tensor, targets: torch.Tensor, plan: SplicePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward implementation of a plan (the reference of this suite)."""
    from torchvision.utils import make_grid

    B, C, H, W = images.shape
    mixed, mixed_t = [], []
    for g in plan.groups:
        if g.n == 0:
            continue
        ch, cw = H // g.rows, W // g.cols
        src = g.sources.to(images.device)
        dropped = g.dropped.to(images.device)
        small = F.interpolate(images[src.reshape(-1)], (ch, cw), mode="bilinear", align_corners=True)
        small[dropped.reshape(-1)] = 0
        for cells in small.split(g.rows * g.cols):
            grid = make_grid(cells, nrow=g.cols, padding=0)
            if grid.shape[-2:] != (H, W):
                grid = F.interpolate(grid[None], (H, W), mode="bilinear", align_corners=True)[0]
            mixed.append(grid)
        t = targets[src] * (~dropped).unsqueeze(-1).to(targets.dtype)
        mixed_t.append(t.amax(1))
    if not mixed:
        return images, targets
    return torch.cat([images, torch.stack(mixed)]), torch.cat([targets, torch.cat(mixed_t)])


def _check_same(images, targets, mixer: SpliceMix) -> tuple[bool, float]:
    """Ours and the reference on one plan: (targets equal and images close, max |difference|)."""
    plan = mixer.sample_plan(images.shape[0])
    ours, t_ours = apply_plan(images, targets, plan)
    ref, t_ref = straightforward(images, targets, plan)
    diff = float((ours - ref).abs().max()) if ours.shape == ref.shape else float("inf")
    ok = ours.shape == ref.shape and torch.equal(t_ours, t_ref) and diff <= 1e-5
    return ok, diff


def _cell(spec, S: int) -> tuple[int, int]:
    return S // spec.rows, S // spec.cols


def _bytes_in_place(B: int, Bp: int, S: int, spec, itemsize: int) -> int:
    """Bytes the in-place mixing reads and writes at least: the batch once, the resized batch
    written and read once, the mixed images written (twice more when resized back)."""
    C = 3
    ch, cw = _cell(spec, S)
    image = C * S * S * itemsize
    small = C * ch * cw * itemsize
    moved = B * image + 2 * B * small + Bp * image
    if spec.rows * ch != S or spec.cols * cw != S:
        moved += 2 * Bp * image
    return moved


def _case(
    B: int, S: int, grid: str, device: torch.device, rounds: int, number: int, tag: str, quick: bool
) -> list[Row]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(B, 3, S, S, generator=g).to(device)
    targets = (torch.rand(B, NUM_CLASSES, generator=g) < 0.05).float().to(device)
    mixer = SpliceMix(grid, mixed_ratio=RATIO, generator=torch.Generator().manual_seed(1))
    ref_mixer = SpliceMix(grid, mixed_ratio=RATIO, generator=torch.Generator().manual_seed(1))
    Bp = mixer.max_mixed(B)
    spec = mixer.specs[0]
    ch, cw = _cell(spec, S)
    buf = torch.empty(B + Bp, 3, S, S, device=device)
    tbuf = torch.empty(B + Bp, NUM_CLASSES, device=device)
    buf[:B] = images
    tbuf[:B] = targets
    ok, diff = _check_same(
        images, targets, SpliceMix(grid, mixed_ratio=RATIO, generator=torch.Generator().manual_seed(2))
    )

    def floor_oop():
        out = images.new_empty((B + Bp, 3, S, S))
        out[:B].copy_(images)
        F.interpolate(images, (ch, cw), mode="bilinear", align_corners=True)

    fns = {
        "reference": lambda: straightforward(images, targets, ref_mixer.sample_plan(B)),
        "floor_oop": floor_oop,
        "interpolate": lambda: F.interpolate(images, (ch, cw), mode="bilinear", align_corners=True),
        "out_of_place": lambda: mixer(images, targets),
        "in_place": lambda: mixer(buf[:B], tbuf[:B], out=buf, targets_out=tbuf),
    }
    t = {k: v * 1e3 for k, v in interleaved(fns, rounds, number).items()}
    name = f"B={B} 3x{S}x{S} {grid}{tag}"
    check = f"reference == ours on one plan: {'yes' if ok else 'NO'} (max |diff| {diff:.1e})"
    oop = Row(
        SUITE,
        f"{name} out of place",
        t["out_of_place"],
        t["reference"],
        t["floor_oop"],
        "ms",
        f"<= {OOP_TARGET}x floor",
        ok and t["out_of_place"] <= OOP_TARGET * t["floor_oop"],
        f"floor = alloc (B+B') + copy batch + 1 interpolate; {check}",
    )
    speedup = t["reference"] / t["in_place"]
    inp = Row(
        SUITE,
        f"{name} in place",
        t["in_place"],
        t["reference"],
        t["interpolate"],
        "ms",
        f"<= {INPLACE_TARGET}x floor, >= {SPEEDUP_TARGET}x faster than ref",
        ok and t["in_place"] <= INPLACE_TARGET * t["interpolate"] and speedup >= SPEEDUP_TARGET,
        f"floor = 1 interpolate of the batch to {ch}x{cw}; {speedup:.1f}x faster than the reference",
    )
    rows = [oop, inp]
    if quick:  # the targets are stated for the full sizes; tiny ones measure Python overhead
        for r in rows:
            r.met = None if ok else False
            r.target = "(full sizes only)"
    if device.type == "cuda":
        moved = _bytes_in_place(B, Bp, S, spec, images.element_size())
        rows.append(
            Row(
                SUITE,
                f"{name} in place bandwidth",
                moved / (t["in_place"] * 1e-3) / 1e9,
                unit="GB/s",
                note=f"{moved / 1e6:.0f} MB read + written at least (batch, resized batch, mixed images)",
            )
        )
    return rows


def run(quick: bool, device: torch.device) -> list[Row]:
    cases = [(8, 64), (16, 32)] if quick else [(32, 448), (64, 224)]
    rounds, number = (3, 2) if quick else (9, 2)
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    rows: list[Row] = []
    for dev in devices:
        tag = "" if dev.type == "cpu" else f" [{dev.type}]"
        for B, S in cases:
            for grid in GRIDS:
                rows += _case(B, S, grid, dev, rounds * (4 if dev.type == "cuda" else 1), number, tag, quick)
    return rows
