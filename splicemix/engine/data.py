"""The trainer's data: the train / val / low-resolution evaluation sets (:func:`build_data`) and the
training loader (:func:`train_loader`).

The training labels may be partly hidden (``data.missing_label_ratio``, :func:`hide_labels`);
the validation labels never are. With ``data.skip_corrupt`` a corrupt training image is
replaced by the next intact one and a corrupt validation image by a blank one whose row is
left out of the metrics (:func:`corrupt_val_rows`). With ``data.in_memory`` (:func:`in_memory`)
the images are decoded once into memory (:class:`~splicemix.data.memory.InMemoryImages`): the
same samples for a seed, fewer seconds per epoch.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from splicemix.config import TrainConfig, check_data_paths
from splicemix.data import (
    CocoMultiLabel,
    InMemoryImages,
    SkipCorrupt,
    TransformParts,
    VOCMultiLabel,
    build_transforms,
    transform_parts,
)
from splicemix.data.base import MultiLabelImages
from splicemix.data.memory import files_bytes
from splicemix.data.synthetic import SyntheticConfig, cooc_split, generate, is_complete

from .dist import DistContext

__all__ = [
    "TrainData",
    "Labelled",
    "ReportSkipped",
    "build_data",
    "IN_MEMORY_AUTO_BYTES",
    "in_memory",
    "hide_labels",
    "with_transform",
    "synthetic_rare_mask",
    "corrupt_val_rows",
    "worker_init",
    "train_loader",
    "expand_path",
]

IN_MEMORY_AUTO_BYTES = 64 * 2**20
"""``data.in_memory: auto`` decodes the data set into memory when its image files take at most this many bytes."""

_SINGLE = DistContext(distributed=False, rank=0, world=1, device=torch.device("cpu"))


def expand_path(p: str | None) -> str | None:
    """``p`` with ``~`` expanded, made absolute (None stays None)."""
    return None if p is None else _given(p)


def _given(p: str | None) -> str:
    """A path ``DataConfig`` requires for the chosen data set (so never None here), expanded."""
    assert p is not None, "DataConfig requires the paths of the chosen data set"
    return os.path.abspath(os.path.expanduser(p))


def worker_init(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: numpy and ``random`` seeded from the worker's torch seed.

    torch seeds python's ``random`` and torch in every worker from the loader's generator;
    numpy is seeded here too so that numpy-based transforms are reproducible as well.
    """
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def hide_labels(targets: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """Return a copy of multi-hot ``targets`` with ``round(ratio * positives)`` positives set to 0.

    The hidden positives are drawn uniformly without replacement, deterministically from
    ``seed`` (the paper's missing-labels setting: an unobserved label counts as negative).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"missing_label_ratio must be in [0, 1), got {ratio!r}")
    out = targets.clone().float()
    if ratio == 0.0:
        return out
    pos = torch.nonzero(out.reshape(-1) > 0.5).squeeze(1).numpy()
    n_hide = int(round(ratio * len(pos)))
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x4D1551])
    hide = rng.choice(pos, size=n_hide, replace=False) if n_hide else np.empty(0, dtype=np.int64)
    out.view(-1)[torch.from_numpy(np.asarray(hide, dtype=np.int64))] = 0.0
    return out


class Labelled(Dataset):
    """``base[indices[i]]``'s image with ``targets[i]`` (a limit and/or hidden labels)."""

    def __init__(self, base: Dataset, indices: list[int], targets: torch.Tensor) -> None:
        self.base, self.indices, self.targets = base, indices, targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        image, _ = self.base[self.indices[i]]
        return image, self.targets[i].clone()

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, torch.Tensor]]:
        """A batch of samples at once (what a DataLoader asks for): from the base set's own
        ``__getitems__`` when it has one (the in-memory path builds the batch on tensors)."""
        fetch = getattr(self.base, "__getitems__", None)
        if fetch is None:
            return [self[i] for i in indices]
        images = [image for image, _ in fetch([self.indices[i] for i in indices])]
        return [(image, self.targets[i].clone()) for image, i in zip(images, indices, strict=True)]


def with_transform(ds: Dataset, transform: Callable[..., Any]) -> Dataset:
    """A shallow copy of ``ds`` with another ``transform`` (the same images at another resolution)."""
    out = copy.copy(ds)
    out.transform = transform  # type: ignore[attr-defined]
    return out


def synthetic_rare_mask(root: Path) -> np.ndarray | None:
    """Val images where a co-occurring pair class appears without its train-time partner (None if unknown)."""
    try:
        return np.asarray(cooc_split(root, "val"), dtype=bool)
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class TrainData:
    """The sets one run trains and evaluates on."""

    train: Dataset  #: the training images with their (possibly partly hidden) labels
    val: Dataset  #: the validation images at ``data.image_size``
    val_targets: torch.Tensor  #: (N, K) every validation label
    num_classes: int
    categories: list[str] = field(default_factory=list)
    val_ignore: torch.Tensor | None = None  #: (N, K) labels left out of the metrics (VOC "difficult")
    eval_sets: dict[int, Dataset] = field(default_factory=dict)  #: size -> the validation images at that size
    hidden_fraction: float = 0.0  #: the share of positive training labels hidden
    rare_mask: np.ndarray | None = None  #: val images: pair class without its partner (synthetic only)


def _base_sets(cfg: TrainConfig, ctx: DistContext) -> tuple[MultiLabelImages, MultiLabelImages, np.ndarray | None]:
    """The whole train and val sets of ``data.dataset`` (generating the synthetic one on rank 0 if needed)."""
    d = cfg.data
    t_train = _train_parts(cfg).compose()
    t_val = build_transforms(d.image_size, train=False)
    if d.dataset == "synthetic":
        root = Path(_given(d.root))
        if ctx.is_main:
            knobs = SyntheticConfig(**d.synthetic.model_dump())
            if not is_complete(root, knobs):
                print(f"generating the synthetic data set under {root} ...", flush=True)
                generate(root, knobs)
        ctx.barrier()  # the other ranks read what rank 0 made sure of
        train = CocoMultiLabel(root / "train", root / "annotations" / "instances_train.json", t_train)
        val = CocoMultiLabel(root / "val", root / "annotations" / "instances_val.json", t_val)
        return train, val, synthetic_rare_mask(root)
    if d.dataset == "coco":
        c = d.coco
        return (
            CocoMultiLabel(_given(c.train_images), _given(c.train_annotations), t_train),
            CocoMultiLabel(_given(c.val_images), _given(c.val_annotations), t_val),
            None,
        )
    v = d.voc
    return (
        VOCMultiLabel(_given(v.root), v.year, v.train_set, t_train),
        VOCMultiLabel(_given(v.root), v.year, v.val_set, t_val),
        None,
    )


def build_data(cfg: TrainConfig, ctx: DistContext = _SINGLE) -> TrainData:
    """The train / val / ``data.eval_sizes`` sets of ``cfg`` (limited, labels hidden, corrupt images handled)."""
    d = cfg.data
    check_data_paths(cfg, weights=False)  # one error naming the key and the path, before anything is read
    train_base, val_base, rare_mask = _base_sets(cfg, ctx)
    n_tr = len(train_base) if d.train_limit is None else min(d.train_limit, len(train_base))
    n_va = len(val_base) if d.val_limit is None else min(d.val_limit, len(val_base))
    tr_idx, va_idx = list(range(n_tr)), list(range(n_va))
    images = _images(cfg, train_base, val_base, n_tr, n_va)  # what the samples' images come from
    tr_targets = train_base.targets[:n_tr].float()
    masked = hide_labels(tr_targets, d.missing_label_ratio, cfg.train.seed)
    n_pos = float(tr_targets.sum())
    val_targets = val_base.targets[:n_va].float()
    ignore = getattr(val_base, "ignore", None)
    out = TrainData(
        train=Labelled(images.pop("train"), tr_idx, masked),
        val=Labelled(images.pop("val"), va_idx, val_targets),
        val_targets=val_targets,
        num_classes=int(train_base.targets.shape[1]),
        categories=list(getattr(train_base, "categories", [])),
        val_ignore=None if ignore is None else ignore[:n_va].bool(),
        hidden_fraction=float((tr_targets - masked).sum()) / n_pos if n_pos else 0.0,
        rare_mask=rare_mask[:n_va] if rare_mask is not None and len(rare_mask) == len(val_base) else None,
    )
    for s in d.eval_sizes:
        out.eval_sets[s] = Labelled(images[s], va_idx, val_targets)
    if int(val_base.targets.shape[1]) != out.num_classes:
        raise ValueError(
            f"train and val sets disagree on the classes: {out.num_classes} vs {int(val_base.targets.shape[1])}"
        )
    if d.skip_corrupt:
        _skip_corrupt(out, train_base.image_paths, val_base.image_paths, tr_idx, va_idx, d.image_size)
    return out


def in_memory(cfg: TrainConfig, train: MultiLabelImages, val: MultiLabelImages, n_train: int, n_val: int) -> bool:
    """Whether to decode the data set into memory: ``data.in_memory`` true, or auto and the first
    ``n_train`` / ``n_val`` image files take at most :data:`IN_MEMORY_AUTO_BYTES`, no image is
    to be skipped as corrupt and the samples come out bit-identical to the file path's."""
    d = cfg.data
    if d.in_memory is True and d.skip_corrupt:
        raise ValueError(
            "data.in_memory: true cannot skip corrupt images (data.skip_corrupt: true); "
            "expected data.in_memory: auto or false with data.skip_corrupt"
        )
    if d.in_memory != "auto":
        return bool(d.in_memory)
    if d.skip_corrupt or not _train_parts(cfg).exact_on_tensors:
        return False
    return files_bytes([*train.image_paths[:n_train], *val.image_paths[:n_val]]) <= IN_MEMORY_AUTO_BYTES


def _train_parts(cfg: TrainConfig) -> TransformParts:
    d = cfg.data
    scale = None if d.crop_scale is None else tuple(d.crop_scale)
    return transform_parts(d.image_size, train=True, scale=scale, hflip=d.hflip)  # type: ignore[arg-type]


def _images(
    cfg: TrainConfig, train: MultiLabelImages, val: MultiLabelImages, n_train: int, n_val: int
) -> dict[str | int, Dataset]:
    """The images of "train", "val" and every ``data.eval_sizes`` size: the files with their
    transforms, or (:func:`in_memory`) decoded into memory once per process."""
    out: dict[str | int, Dataset] = {}
    if not in_memory(cfg, train, val, n_train, n_val):
        out.update(train=train, val=val)
        for s in cfg.data.eval_sizes:
            out[s] = with_transform(val, build_transforms(s, train=False))
        return out
    out["train"] = InMemoryImages(train, _train_parts(cfg), limit=n_train)
    out["val"] = InMemoryImages(val, transform_parts(cfg.data.image_size, train=False), limit=n_val)
    for s in cfg.data.eval_sizes:
        out[s] = InMemoryImages(val, transform_parts(s, train=False), limit=n_val)
    return out


def _skip_corrupt(
    data: TrainData, train_paths: list[str], val_paths: list[str], tr_idx: list[int], va_idx: list[int], image_size: int
) -> None:
    """``data.skip_corrupt``: a corrupt training image is replaced by the next intact one; a corrupt
    validation image by a blank one whose row is left out of the metrics (see :func:`corrupt_val_rows`)."""
    data.train = SkipCorrupt(data.train, [train_paths[i] for i in tr_idx])
    paths = [val_paths[i] for i in va_idx]
    val = SkipCorrupt(data.val, paths, blank=(3, image_size, image_size), targets=data.val_targets)
    data.val = val
    for s, ds in list(data.eval_sets.items()):
        data.eval_sets[s] = SkipCorrupt(ds, paths, blank=(3, s, s), targets=data.val_targets, bad=val.bad)


def corrupt_val_rows(data: TrainData, ctx: DistContext) -> list[int]:
    """Validation rows whose image was corrupt (``data.skip_corrupt``), the same on every rank."""
    val: Any = data.val
    found = val.corrupt() if hasattr(val, "corrupt") else []
    if ctx.distributed:
        found = sorted({i for p in ctx.all_gather_object(found) for i in p})
    if found and ctx.is_main:
        print(val.summary("validation images (left out of the metrics)", found), flush=True)
    return found


class ReportSkipped:
    """The training DataLoader (``data.skip_corrupt``): after every pass over it, one line on
    the corrupt training images skipped so far."""

    def __init__(self, loader: DataLoader, dataset: Any, log: Callable[[str], None]) -> None:
        self.loader, self.dataset, self.log = loader, dataset, log

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        yield from self.loader
        msg = self.dataset.summary("training images (each replaced by the next intact one)")
        if msg:
            self.log(msg)


def train_loader(
    dataset: Dataset,
    cfg: TrainConfig,
    ctx: DistContext,
    generator: torch.Generator,
    collate: Callable[[list[Any]], Any] | None = None,
) -> tuple[DataLoader | ReportSkipped, DistributedSampler | None]:
    """The training loader (shuffled; under DDP each rank's share through a DistributedSampler) and that sampler.

    Whole batches of ``train.batch_size`` only; ``generator`` (re-seeded every epoch by the
    caller) orders the data; ``collate`` is SpliceCollate when the batches are mixed.
    """
    sampler: DistributedSampler[Any] | None = None
    if ctx.distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.train.seed, drop_last=True
        )
    loader: DataLoader | ReportSkipped = DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.data.workers,
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=worker_init,
        generator=generator,
        collate_fn=collate,
    )
    if cfg.data.skip_corrupt:
        loader = ReportSkipped(loader, dataset, ctx.log)  # type: ignore[arg-type]
    return loader, sampler
