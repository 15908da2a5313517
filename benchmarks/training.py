"""Training suite: the mixing's share of a training step, and whether the data pipeline keeps up.

A small 224 px JPEG set is generated with the project's synthetic generator in a temporary
folder and read through the project's data set class and train transforms. Then:

* one training step as the trainer does it: SpliceMix (default settings) into the rows
  SpliceCollate reserved, ResNet-18 forward at 224 px on B + B' images, BCE with logits,
  backward, AdamW; batch 32;
* the mixing alone, in place (the trainer's path): target at most 2% of the step;
* the loader alone (JPEG decode, transforms, SpliceCollate) in images/s with 0 and 2
  workers, against the step's regular images/s: target the loader is not slower;
* SpliceCollate against torch's default_collate on the same samples;
* with CUDA: the step's images/s with mixed precision and channels_last.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from splicemix import SpliceCollate, SpliceMix
from splicemix.data import CocoMultiLabel, build_transforms
from splicemix.data.synthetic import SyntheticConfig, ensure_synthetic
from splicemix.engine.loop import StepModule
from splicemix.models import build_model

from .table import Row
from .timing import interleaved

SUITE = "training"
SHARE_TARGET = 0.02


def _dataset(root: Path, size: int) -> CocoMultiLabel:
    return CocoMultiLabel(
        root / "train", root / "annotations" / "instances_train.json", build_transforms(size, train=True)
    )


def _loader_rate(ds, batch_size: int, workers: int, collate, epochs: int, pin: bool) -> float:
    """Regular images per second delivered by the loader alone (after one warm-up epoch)."""
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # warm-up: worker start, file cache
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch.batch_size
    rate = n / (time.perf_counter() - t0)
    del loader
    return rate


class _Step:
    """One optimisation step of the trainer (no DDP, no grad clipping): forward, BCE, backward, AdamW."""

    def __init__(
        self, num_classes: int, size: int, device: torch.device, amp: bool = False, channels_last: bool = False
    ) -> None:
        torch.manual_seed(0)
        self.num_classes = num_classes
        self.net = build_model("resnet18", num_classes, pretrained=None, image_size=size).to(device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.module = StepModule(self.net, False, 0.0, False).train()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, weight_decay=1e-4)
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.amp_dtype = torch.bfloat16 if (device.type == "cpu" or torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and self.amp_dtype == torch.float16)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, plan=None) -> None:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else contextlib.nullcontext()
        with ctx:
            loss, _, _ = self.module(images, targets, plan)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()


def run(quick: bool, device: torch.device) -> list[Row]:
    size, n_train, batch = (64, 32, 8) if quick else (224, 256, 32)
    rounds = 2 if quick else 4
    with tempfile.TemporaryDirectory(prefix="splicemix_bench_") as tmp:
        root = ensure_synthetic(Path(tmp) / "synthetic", SyntheticConfig(image_size=size, n_train=n_train, n_val=16))
        ds = _dataset(root, size)
        mixer = SpliceMix("default", generator=torch.Generator().manual_seed(0))
        collate = SpliceCollate(mixer.max_mixed(batch))
        samples = [ds[i] for i in range(batch)]
        dev_batch = collate(samples).to(device)
        step = _Step(int(ds.targets.shape[1]), size, device)
        rows, step_rate, name = _step_rows(step, dev_batch, mixer, batch, size, rounds, quick, device)
        rows += _collate_rows(collate, samples, batch, size, quick)
        rows += _loader_rows(ds, batch, collate, step_rate, quick, device)
        if device.type == "cuda":
            rows += _cuda_rows(step, dev_batch, mixer, batch, size, rounds, name, device)
    return rows


def _step_rows(
    step: _Step, dev_batch: Any, mixer: SpliceMix, batch: int, size: int, rounds: int, quick: bool, device: torch.device
) -> tuple[list[Row], float, str]:
    """The training step and the mixing, interleaved; returns the rows, the step's regular img/s and its name."""
    images, _, _ = dev_batch.mix(mixer)
    t = interleaved(
        {
            "mix": lambda: dev_batch.mix(mixer),
            "mix_step": lambda: step(*dev_batch.mix(mixer)),
        },
        rounds=rounds * 3 if device.type == "cuda" else rounds,
        number=1,
    )
    t_mix, t_step = t["mix"] * 1e3, t["mix_step"] * 1e3
    step_rate = batch / (t_step * 1e-3)
    name = f"resnet18 {size}px B={batch}+{images.shape[0] - batch} [{device.type}]"
    rows = [
        Row(
            SUITE,
            f"train step, {name}",
            t_step,
            unit="ms",
            note=f"SpliceMix('default') in place + forward/BCE/backward/AdamW; {step_rate:.1f} regular img/s",
        ),
        Row(
            SUITE,
            "mixing share of the step",
            t_mix,
            t_step,
            unit="ms",
            target=f"<= {SHARE_TARGET:.0%} of step",
            met=None if quick else t_mix <= SHARE_TARGET * t_step,
            note="ours = mixing alone (in place into SpliceCollate's buffer), reference = whole step",
        ),
    ]
    return rows, step_rate, name


def _collate_rows(collate: SpliceCollate, samples: list[Any], batch: int, size: int, quick: bool) -> list[Row]:
    t = interleaved(
        {"splice": lambda: collate(samples), "default": lambda: default_collate(samples)},
        rounds=5 if quick else 15,
        number=3,
    )
    return [
        Row(
            SUITE,
            f"collate {batch} x 3x{size}x{size}",
            t["splice"] * 1e3,
            t["default"] * 1e3,
            unit="ms",
            note="SpliceCollate (reserves B' rows) vs torch default_collate",
        )
    ]


def _loader_rows(
    ds: Any, batch: int, collate: SpliceCollate, step_rate: float, quick: bool, device: torch.device
) -> list[Row]:
    """The loader alone (JPEG decode, transforms, collate) against the step's rate."""
    rows = []
    for workers in (0, 2):
        rate = _loader_rate(ds, batch, workers, collate, epochs=1 if quick else 2, pin=device.type == "cuda")
        rows.append(
            Row(
                SUITE,
                f"loader alone, workers={workers}",
                rate,
                step_rate,
                unit="img/s",
                target=">= training step img/s",
                met=None if quick else rate >= step_rate,
                note="JPEG decode + train transforms + SpliceCollate; reference = regular img/s of the step",
            )
        )
    return rows


def _cuda_rows(
    step: _Step, dev_batch: Any, mixer: SpliceMix, batch: int, size: int, rounds: int, name: str, device: torch.device
) -> list[Row]:
    """CUDA only: mixed precision and channels_last against float32, contiguous."""
    fast = _Step(step.num_classes, size, device, amp=True, channels_last=True)
    t = interleaved(
        {"fp32": lambda: step(*dev_batch.mix(mixer)), "amp_cl": lambda: fast(*dev_batch.mix(mixer))},
        rounds=rounds * 3,
        number=1,
    )
    fp32, amp_cl = batch / t["fp32"], batch / t["amp_cl"]
    return [
        Row(
            SUITE,
            f"train step AMP ({str(fast.amp_dtype)[6:]}) + channels_last, {name}",
            amp_cl,
            fp32,
            unit="img/s",
            note="regular images/s; reference = float32, contiguous",
        )
    ]
