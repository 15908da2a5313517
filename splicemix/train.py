"""The trainer: ``train(cfg, report=None)`` runs one whole training job; ``python -m splicemix.train``.

One function, no Ray: a study calls :func:`train` once per worker. It is DDP-aware: when
``torch.distributed`` is initialised, the model is wrapped in DistributedDataParallel, each
rank reads its share of every epoch (DistributedSampler), mixes its own local batch, and
evaluation is sharded over the ranks and gathered, so every rank computes the same metrics.
Only rank 0 prints and writes files.

Per epoch the trainer

* trains on SpliceMixed batches (B regular + B' mixed images) with the multi-label
  soft-margin loss (BCE with logits, mean over classes) and, for SpliceMix-CL, one backbone
  pass plus the consistency loss;
* evaluates mAP, CP/CR/CF1/OP/OR/OF1 (threshold 0.5, and top-3), in percent, plus mAP at every
  ``data.eval_sizes`` resolution (key ``"mAP@S"``);
* prints one line, appends the metrics to ``out_dir/metrics.jsonl``, saves
  ``out_dir/checkpoint.pt`` atomically and calls ``report(metrics)``.

Every epoch re-seeds the data order, augmentation and mixing from ``(seed, epoch, rank)``, so
a run resumed from a checkpoint continues exactly as the uninterrupted run would (on CPU,
with deterministic algorithms).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import ConfigError, TrainConfig, check_data_paths, config_to_yaml, load_config

__all__ = ["train", "hide_labels", "main", "METRICS_FILE", "CHECKPOINT_FILE"]

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"


# --------------------------------------------------------------------------- helpers
def _dist() -> tuple[bool, int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def _barrier(distributed: bool) -> None:
    if distributed:
        import torch.distributed as dist

        dist.barrier()


def _resolve_device(name: str, distributed: bool) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
        if distributed:
            local = os.environ.get("LOCAL_RANK")
            index = int(local) if local is not None else torch.cuda.current_device()
            torch.cuda.set_device(index)
            return torch.device("cuda", index)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _epoch_seed(seed: int, epoch: int, rank: int, stream: int = 0) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, rank, stream]).generate_state(1)[0])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    # torch seeds python's `random` and torch in every worker from the loader's generator;
    # numpy is seeded here too so that numpy-based transforms are reproducible as well.
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


class _Labelled(Dataset):
    """``base[indices[i]]``'s image with ``targets[i]`` (a limit and/or hidden labels)."""

    def __init__(self, base: Dataset, indices: list[int], targets: torch.Tensor) -> None:
        self.base, self.indices, self.targets = base, indices, targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, _ = self.base[self.indices[i]]
        return image, self.targets[i].clone()


def _with_transform(ds: Dataset, transform) -> Dataset:
    out = copy.copy(ds)
    out.transform = transform
    return out


# --------------------------------------------------------------------------- data
class _Data:
    def __init__(self) -> None:
        self.train: Dataset
        self.val: Dataset
        self.val_targets: torch.Tensor
        self.val_ignore: Optional[torch.Tensor] = None
        self.eval_sets: dict[int, Dataset] = {}
        self.num_classes: int = 0
        self.categories: list[str] = []
        self.hidden_fraction: float = 0.0
        self.rare_mask: Optional[np.ndarray] = None  # val images: pair class without its partner


def _abs(p: str | None) -> str | None:
    return None if p is None else os.path.abspath(os.path.expanduser(p))


def _build_data(cfg: TrainConfig, rank: int, distributed: bool) -> _Data:
    from .data import CocoMultiLabel, VOCMultiLabel, build_transforms

    d = cfg.data
    check_data_paths(cfg, weights=False)  # one error naming the key and the path, before anything is read
    t_train = build_transforms(d.image_size, train=True, scale=None if d.crop_scale is None else tuple(d.crop_scale), hflip=d.hflip)
    t_val = build_transforms(d.image_size, train=False)
    out = _Data()
    if d.dataset == "synthetic":
        from .data.synthetic import SyntheticConfig, generate, is_complete

        root = Path(_abs(d.root))
        if rank == 0:
            knobs = SyntheticConfig(**d.synthetic.model_dump())
            if not is_complete(root, knobs):
                print(f"generating the synthetic data set under {root} ...", flush=True)
                generate(root, knobs)
        _barrier(distributed)  # the other ranks read what rank 0 made sure of
        train_base = CocoMultiLabel(root / "train", root / "annotations" / "instances_train.json", t_train)
        val_base = CocoMultiLabel(root / "val", root / "annotations" / "instances_val.json", t_val)
        out.rare_mask = _synthetic_rare_mask(root)
    elif d.dataset == "coco":
        c = d.coco
        train_base = CocoMultiLabel(_abs(c.train_images), _abs(c.train_annotations), t_train)
        val_base = CocoMultiLabel(_abs(c.val_images), _abs(c.val_annotations), t_val)
    else:
        v = d.voc
        train_base = VOCMultiLabel(_abs(v.root), v.year, v.train_set, t_train)
        val_base = VOCMultiLabel(_abs(v.root), v.year, v.val_set, t_val)

    n_tr = len(train_base) if d.train_limit is None else min(d.train_limit, len(train_base))
    n_va = len(val_base) if d.val_limit is None else min(d.val_limit, len(val_base))
    tr_idx, va_idx = list(range(n_tr)), list(range(n_va))
    tr_targets = train_base.targets[:n_tr].float()
    masked = hide_labels(tr_targets, d.missing_label_ratio, cfg.train.seed)
    n_pos = float(tr_targets.sum())
    out.hidden_fraction = float((tr_targets - masked).sum()) / n_pos if n_pos else 0.0
    out.train = _Labelled(train_base, tr_idx, masked)
    out.val_targets = val_base.targets[:n_va].float()
    out.val = _Labelled(val_base, va_idx, out.val_targets)
    ignore = getattr(val_base, "ignore", None)
    out.val_ignore = None if ignore is None else ignore[:n_va].bool()
    if out.rare_mask is not None:
        out.rare_mask = out.rare_mask[:n_va] if len(out.rare_mask) == len(val_base) else None
    for s in d.eval_sizes:
        out.eval_sets[s] = _Labelled(_with_transform(val_base, build_transforms(s, train=False)), va_idx, out.val_targets)
    out.num_classes = int(train_base.targets.shape[1])
    out.categories = list(getattr(train_base, "categories", []))
    if int(val_base.targets.shape[1]) != out.num_classes:
        raise ValueError(
            f"train and val sets disagree on the classes: {out.num_classes} vs {int(val_base.targets.shape[1])}"
        )
    if d.skip_corrupt:
        # a corrupt training image is replaced by the next intact one; a corrupt validation
        # image by a blank one whose row is left out of the metrics (see _evaluate)
        from .data import SkipCorrupt

        out.train = SkipCorrupt(out.train, [train_base.image_paths[i] for i in tr_idx])
        val_paths = [val_base.image_paths[i] for i in va_idx]
        out.val = SkipCorrupt(out.val, val_paths, blank=(3, d.image_size, d.image_size), targets=out.val_targets)
        for s, ds in list(out.eval_sets.items()):
            out.eval_sets[s] = SkipCorrupt(ds, val_paths, blank=(3, s, s), targets=out.val_targets, bad=out.val.bad)
    return out


class _ReportSkipped:
    """The training DataLoader (``data.skip_corrupt``): after every pass over it, one line on
    the corrupt training images skipped so far."""

    def __init__(self, loader: DataLoader, dataset, log: Callable[[str], None]) -> None:
        self.loader, self.dataset, self.log = loader, dataset, log

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield from self.loader
        msg = self.dataset.summary("training images (each replaced by the next intact one)")
        if msg:
            self.log(msg)


def _corrupt_val_rows(data: _Data, rank: int, distributed: bool) -> list[int]:
    """Validation rows whose image was corrupt (``data.skip_corrupt``), the same on every rank."""
    found = data.val.corrupt() if hasattr(data.val, "corrupt") else []
    if distributed:
        import torch.distributed as dist

        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, found)
        found = sorted({i for p in parts for i in p})
    if found and rank == 0:
        print(data.val.summary("validation images (left out of the metrics)", found), flush=True)
    return found


def _synthetic_rare_mask(root: Path) -> Optional[np.ndarray]:
    """Val images where a co-occurring pair class appears without its train-time partner."""
    from .data.synthetic import cooc_split

    try:
        return np.asarray(cooc_split(root, "val"), dtype=bool)
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------- loss / model
class _StepModule(nn.Module):
    """The training forward as one module (what DDP wraps): returns (loss, cls_loss, cl_loss)."""

    def __init__(self, net: nn.Module, cl: bool, cl_weight: float, cl_detach: bool) -> None:
        super().__init__()
        self.net = net
        self.cl, self.cl_weight, self.cl_detach = cl, cl_weight, cl_detach

    def forward(self, images: torch.Tensor, targets: torch.Tensor, plan=None):
        if self.cl:
            logits, fmap = self.net.forward_features(images)
        else:
            logits = self.net(images)
        cls_loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
        if self.cl and plan is not None and plan.num_mixed > 0:
            from .consistency import consistency_loss

            batch = plan.batch_size if plan.batch_size is not None else images.shape[0] - plan.num_mixed
            cl_loss = consistency_loss(
                fmap, plan, self.net.pool, self.net.head, weight=self.cl_weight,
                regular_logits=logits[:batch], detach=self.cl_detach,
            ).float()
        else:
            cl_loss = cls_loss.new_zeros(())
        return cls_loss + cl_loss, cls_loss.detach(), cl_loss.detach()


def _lr_lambda(cfg: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    o = cfg.optim
    total = max(1, cfg.train.epochs * iters_per_epoch)
    warm = int(round(o.warmup_epochs * iters_per_epoch))
    warm = min(warm, total)
    milestones = list(o.milestones)

    def f(it: int) -> float:
        if it < warm:
            return (it + 1) / warm
        if o.schedule == "step":
            epoch = it // iters_per_epoch
            return o.gamma ** sum(1 for m in milestones if m <= epoch)
        if o.schedule == "cosine":
            span = max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (it - warm) / span)))
        return 1.0

    return f


def _optimizer(cfg: TrainConfig, net) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = [
        {"params": [p for p in net.backbone_parameters() if p.requires_grad], "lr": o.lr * o.backbone_lr_factor, "name": "backbone"},
        {"params": [p for p in net.head_parameters() if p.requires_grad], "lr": o.lr, "name": "head"},
    ]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _predict(net, ds: Dataset, cfg: TrainConfig, device, autocast, rank: int, world: int, distributed: bool) -> np.ndarray:
    """Sigmoid scores (N, K) for the whole of ``ds``, sharded over ranks and gathered."""
    n = len(ds)
    idx = list(range(rank, n, world))
    loader = DataLoader(
        torch.utils.data.Subset(ds, idx), batch_size=max(1, cfg.train.batch_size * 2), shuffle=False,
        num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
    )
    was_training = net.training
    net.eval()
    chunks = []
    for images, _ in loader:
        images = images.to(device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = net(images)
        chunks.append(torch.sigmoid(logits.float()).cpu())
    net.train(was_training)
    local = torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)
    if not distributed:
        return local
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, (idx, local))
    k = next(p[1].shape[1] for p in parts if len(p[0]))
    scores = np.empty((n, k), dtype=np.float32)
    for ids, s in parts:
        if len(ids):
            scores[np.asarray(ids)] = s
    return scores


def _subset_map(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray, ignore) -> Optional[float]:
    """mAP (percent) over the images selected by ``mask``; None if undefined there."""
    from .metrics import mean_average_precision

    if mask.sum() < 2:
        return None
    try:
        return 100.0 * mean_average_precision(scores[mask], targets[mask], None if ignore is None else ignore[mask])
    except ValueError:
        return None


def _evaluate(net, data: _Data, cfg: TrainConfig, device, autocast, rank, world, distributed) -> dict[str, float]:
    from .metrics import mean_average_precision, multilabel_f1

    scores = _predict(net, data.val, cfg, device, autocast, rank, world, distributed)
    targets = data.val_targets.numpy()
    ignore = None if data.val_ignore is None else data.val_ignore.numpy()
    corrupt = _corrupt_val_rows(data, rank, distributed) if cfg.data.skip_corrupt else []
    if corrupt:  # blank images stood in for them: leave their rows out of every metric
        ignore = np.zeros(targets.shape, dtype=bool) if ignore is None else ignore.copy()
        ignore[np.asarray(corrupt)] = True
    out: dict[str, float] = {"mAP": 100.0 * mean_average_precision(scores, targets, ignore)}
    for suffix, top_k in (("", None), ("_top3", 3)):
        f = multilabel_f1(scores, targets, threshold=0.5, top_k=top_k, ignore=ignore)
        for k in ("CP", "CR", "CF1", "OP", "OR", "OF1"):
            out[k + suffix] = 100.0 * f[k]
    if data.rare_mask is not None:
        # co-occurrence bias: mAP where a pair class appears without its train-time partner
        for key, mask in (("mAP_rare_pairs", data.rare_mask), ("mAP_common_pairs", ~data.rare_mask)):
            v = _subset_map(scores, targets, mask, ignore)
            if v is not None:
                out[key] = v
    for s, ds in data.eval_sets.items():
        sc = _predict(net, ds, cfg, device, autocast, rank, world, distributed)
        out[f"mAP@{s}"] = 100.0 * mean_average_precision(sc, targets, ignore)
    return out


# --------------------------------------------------------------------------- output
def _fmt_line(m: dict, epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"loss {m['train_loss']:.4f}"]
    if "cl_loss" in m:
        parts.append(f"cl {m['cl_loss']:.4f}")
    parts.append(f"lr {m['lr']:.2e}")
    if "mAP" in m:
        parts.append(f"mAP {m['mAP']:.2f}")
        parts.append(f"CF1 {m['CF1']:.2f} OF1 {m['OF1']:.2f}")
        parts.append(f"top3 CF1 {m['CF1_top3']:.2f} OF1 {m['OF1_top3']:.2f}")
        extra = [f"{k} {v:.2f}" for k, v in m.items() if k.startswith("mAP@") or k.startswith("mAP_")]
        if extra:
            parts.append(" ".join(extra))
    parts.append(f"{m['images_per_s']:.0f} img/s ({m['regular_images_per_s']:.0f} regular/s)")
    parts.append(f"{m['epoch_time_s']:.1f} s")
    return " | ".join(parts)


def _progress_enabled(cfg: TrainConfig, rank: int) -> bool:
    if not cfg.train.progress or rank != 0:
        return False
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        return sys.stderr.isatty()
    except Exception:
        return False


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
    return rows


_RESUME_FREE_KEYS = {("train", "resume"), ("train", "progress"), ("train", "epochs"), ("train", "out_dir"),
                     ("train", "device"), ("train", "eval_every"), ("train", "cpu_threads"), ("data", "workers")}


def _config_diff(old: dict, new: dict) -> list[str]:
    diffs = []
    for sec, vals in new.items():
        for k, v in vals.items():
            if (sec, k) in _RESUME_FREE_KEYS:
                continue
            o = old.get(sec, {}).get(k, v)
            if o != v:
                diffs.append(f"{sec}.{k}: {o!r} -> {v!r}")
    return diffs


# --------------------------------------------------------------------------- the loop
def train(cfg: TrainConfig, report: Callable[[dict], None] | None = None) -> dict:
    """Train and evaluate one configuration; return the last epoch's metrics plus best_mAP / best_epoch.

    ``report(metrics)`` is called once per epoch on every rank, after evaluation and after
    the checkpoint of that epoch has been saved (so a caller may stop the run from it).
    Metrics are percentages (mAP 84.4); timings are in seconds.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"train() expects a TrainConfig (see splicemix.config.load_config), got {type(cfg).__name__}")
    distributed, rank, world = _dist()
    device = _resolve_device(cfg.train.device, distributed)
    deterministic = (device.type == "cpu") if cfg.train.deterministic == "auto" else bool(cfg.train.deterministic)
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.get_num_threads())
    try:
        if cfg.train.cpu_threads is not None:
            torch.set_num_threads(cfg.train.cpu_threads)
        if deterministic and device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
        return _train(cfg, report, distributed, rank, world, device)
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]
        if torch.get_num_threads() != prev[4]:
            torch.set_num_threads(prev[4])


def _train(cfg: TrainConfig, report, distributed: bool, rank: int, world: int, device: torch.device) -> dict:
    from .collate import SpliceCollate
    from .mixing import SpliceMix
    from .models import build_model

    tc = cfg.train
    is_main = rank == 0
    out_dir = Path(_abs(tc.out_dir))
    metrics_path, ckpt_path = out_dir / METRICS_FILE, out_dir / CHECKPOINT_FILE

    def log(msg: str) -> None:
        if is_main:
            print(msg, flush=True)

    _seed_all(tc.seed)
    data = _build_data(cfg, rank, distributed)
    if len(data.train) < tc.batch_size * world:
        raise ValueError(
            f"the training set has {len(data.train)} images, fewer than one batch "
            f"(train.batch_size {tc.batch_size} x {world} processes); lower train.batch_size"
        )

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    net = build_model(cfg.model.name, data.num_classes, pretrained=_abs(cfg.model.pretrained),
                      image_size=cfg.data.image_size, pool=cfg.model.pool).to(device)
    if tc.channels_last:
        net = net.to(memory_format=torch.channels_last)
    method = cfg.mix.method
    step_module = _StepModule(net, method == "splicemix_cl", cfg.mix.cl_weight, cfg.mix.cl_detach)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step = DDP(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        step = step_module

    mix_gen = torch.Generator()
    mixer = SpliceMix(generator=mix_gen, **cfg.mix.mixer_kwargs()) if method != "baseline" else None

    # data loader: the generator is re-seeded every epoch from (seed, epoch, rank). With a
    # mixer, the collate reserves the rows of the mixed images after each batch (SpliceBatch).
    load_gen = torch.Generator()
    collate = SpliceCollate(mixer.max_mixed(tc.batch_size)) if mixer is not None else None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=tc.seed, drop_last=True)
        loader = DataLoader(data.train, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                            num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                            worker_init_fn=_worker_init, generator=load_gen, collate_fn=collate)
    else:
        sampler = None
        loader = DataLoader(data.train, batch_size=tc.batch_size, shuffle=True, drop_last=True,
                            num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                            worker_init_fn=_worker_init, generator=load_gen, collate_fn=collate)
    if cfg.data.skip_corrupt:
        loader = _ReportSkipped(loader, data.train, log)  # type: ignore[assignment]
    iters = len(loader)

    optimizer = _optimizer(cfg, net)
    head_group = 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, iters))
    # auto: mixed precision on CUDA only; amp=true on a CPU autocasts to bfloat16
    use_amp = (device.type == "cuda") if tc.amp == "auto" else bool(tc.amp)
    amp_dtype = torch.bfloat16 if (tc.amp_dtype == "bfloat16" or device.type == "cpu") else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    def autocast():
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    start_epoch, best_map, best_epoch = 0, -math.inf, 0
    last_metrics: dict = {}
    if tc.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        try:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"cannot resume from {ckpt_path}: it does not match this model / optimiser ({first}); "
                "use another train.out_dir or train.resume=false"
            ) from None
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("mixer_generator") is not None:
            mix_gen.set_state(ckpt["mixer_generator"])
        rng = ckpt.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "numpy" in rng:
            np.random.set_state(rng["numpy"])
        if "python" in rng:
            random.setstate(rng["python"])
        if rng.get("cuda") is not None and device.type == "cuda":
            with contextlib.suppress(Exception):
                torch.cuda.set_rng_state_all(rng["cuda"])
        start_epoch = int(ckpt["epoch"])
        best_map, best_epoch = float(ckpt.get("best_mAP", -math.inf)), int(ckpt.get("best_epoch", 0))
        last_metrics = dict(ckpt.get("last_metrics") or {})
        diffs = _config_diff(ckpt.get("config", {}), cfg.model_dump(mode="json"))
        log(f"resuming from {ckpt_path} after epoch {start_epoch}"
            + (f" (config changed: {'; '.join(diffs)})" if diffs else ""))
        del ckpt
    elif tc.resume:
        log(f"resume: no checkpoint at {ckpt_path}; starting from scratch")

    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_FILE).write_text(config_to_yaml(cfg), encoding="utf-8")
        rows = [r for r in _read_metrics(metrics_path) if int(r.get("epoch", 0)) <= start_epoch] if start_epoch else []
        with open(metrics_path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    n_params = sum(p.numel() for p in net.parameters())
    log(
        f"splicemix.train: {cfg.data.dataset} {len(data.train)} train / {len(data.val)} val images, "
        f"{data.num_classes} classes | {cfg.model.name} ({n_params / 1e6:.2f} M params) @ {cfg.data.image_size}px | "
        f"{method}" + (f" {mixer!r}" if mixer is not None else "")
        + (f" | {data.hidden_fraction:.1%} of positive labels hidden" if cfg.data.missing_label_ratio else "")
        + f" | {device} x{world}, amp {'on (' + str(amp_dtype).replace('torch.', '') + ')' if use_amp else 'off'}"
        + f" | {tc.epochs} epochs x {iters} iterations | out {out_dir}"
    )

    progress = _progress_enabled(cfg, rank)
    for epoch in range(start_epoch, tc.epochs):
        t0 = time.perf_counter()
        # Everything random in this epoch derives from (seed, epoch, rank): resumable exactly.
        es = _epoch_seed(tc.seed, epoch, rank)
        _seed_all(es)
        load_gen.manual_seed(_epoch_seed(tc.seed, epoch, rank, 1))
        mix_gen.manual_seed(_epoch_seed(tc.seed, epoch, rank, 2))
        if sampler is not None:
            sampler.set_epoch(epoch)
        step.train()
        sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, cl, batches, images, regular
        lr_used = optimizer.param_groups[head_group]["lr"]
        batches = loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(loader, total=iters, file=sys.stderr, leave=False, desc=f"epoch {epoch + 1}/{tc.epochs}",
                           dynamic_ncols=True)
        for batch in batches:
            if mixer is not None:
                # a SpliceBatch: move its buffers as a whole, mix into the reserved rows
                batch = batch.to(device, non_blocking=True)
                regular = batch.batch_size
                images, targets, plan = batch.mix(mixer)
            else:
                images, targets = batch
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True).float()
                regular, plan = images.shape[0], None
            if tc.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss, cls_loss, cl_loss = step(images, targets, plan)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr_used = optimizer.param_groups[head_group]["lr"]
            scheduler.step()
            sums += torch.stack([loss.detach().double(), cl_loss.double(),
                                 torch.ones((), dtype=torch.float64, device=device),
                                 torch.tensor(float(images.shape[0]), dtype=torch.float64, device=device),
                                 torch.tensor(float(regular), dtype=torch.float64, device=device)])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_train = time.perf_counter() - t0
        if distributed:
            import torch.distributed as dist

            dist.all_reduce(sums)
            tt = torch.tensor([t_train], dtype=torch.float64, device=device)
            dist.all_reduce(tt, op=dist.ReduceOp.MAX)
            t_train = float(tt)
        loss_sum, cl_sum, n_batches, n_images, n_regular = sums.tolist()
        train_loss = loss_sum / max(1.0, n_batches)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training diverged: the loss of epoch {epoch + 1} is {train_loss}; lower optim.lr or enable optim.grad_clip"
            )
        metrics: dict[str, Any] = {"epoch": epoch + 1, "method": method, "train_loss": train_loss}
        if method == "splicemix_cl":
            metrics["cl_loss"] = cl_sum / max(1.0, n_batches)
        metrics["lr"] = lr_used

        t1 = time.perf_counter()
        if distributed:
            # BatchNorm running statistics drift apart on each rank after the last forward;
            # evaluate (and checkpoint) rank 0's, so the sharded evaluation scores one model
            import torch.distributed as dist

            for buf in net.buffers():
                dist.broadcast(buf, 0)
        if (epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs:
            metrics.update(_evaluate(net, data, cfg, device, autocast, rank, world, distributed))
        t_eval = time.perf_counter() - t1
        metrics["images_per_s"] = n_images / t_train if t_train > 0 else float("nan")
        metrics["regular_images_per_s"] = n_regular / t_train if t_train > 0 else float("nan")
        metrics["train_time_s"] = t_train
        metrics["eval_time_s"] = t_eval
        metrics["epoch_time_s"] = time.perf_counter() - t0
        if "mAP" in metrics and metrics["mAP"] > best_map:
            best_map, best_epoch = metrics["mAP"], epoch + 1
        last_metrics = metrics

        if is_main:
            print(_fmt_line(metrics, tc.epochs), flush=True)
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            _atomic_save(
                {
                    "epoch": epoch + 1,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "mixer_generator": mix_gen.get_state(),
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "numpy": np.random.get_state(),
                        "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    },
                    "best_mAP": best_map,
                    "best_epoch": best_epoch,
                    "last_metrics": metrics,
                    "config": cfg.model_dump(mode="json"),
                    "world_size": world,
                },
                ckpt_path,
            )
        if report is not None:
            report(dict(metrics))

    result = dict(last_metrics)
    result["best_mAP"] = best_map if math.isfinite(best_map) else None
    result["best_epoch"] = best_epoch
    return result


# --------------------------------------------------------------------------- CLI
_EPILOG = """\
examples:
  python -m splicemix.train --config configs/default.yaml
  python -m splicemix.train --config configs/default.yaml --method baseline --out runs/base
  python -m splicemix.train --set train.epochs=3 --set mix.grids=[2x2] --set data.eval_sizes=[32]
  python -m splicemix.train --out runs/x --resume      # continue runs/x from its checkpoint.pt

Without --config the built-in defaults are used (the main job of configs/default.yaml).
--set values are YAML (3 is an int, 0.5 a float, [1, 2] a list, null is None).
The run directory receives config.yaml, metrics.jsonl (one JSON object per epoch) and
checkpoint.pt (saved every epoch; --resume continues from it).
Bad input (malformed YAML, an unknown key, a wrong value, a missing data path, a corrupt
image) is one line on stderr naming the file / key / value, exit status 2; --debug shows
the traceback.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m splicemix.train",
        description="Train a multi-label classifier with SpliceMix / SpliceMix-CL (arXiv 2311.15200) "
        "or without mixing (baseline), evaluating mAP and CF1/OF1 every epoch.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML config file (default: the built-in defaults)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="extend", nargs="+", default=[],
                   help="override a config key, dotted (e.g. optim.lr=0.01); repeatable")
    p.add_argument("--epochs", type=int, metavar="N", help="shortcut for --set train.epochs=N")
    p.add_argument("--method", choices=["baseline", "splicemix", "splicemix_cl"], help="shortcut for --set mix.method=M")
    p.add_argument("--out", metavar="DIR", help="run directory (shortcut for --set train.out_dir=DIR)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip images that cannot be decoded, counting them (shortcut for --set data.skip_corrupt=true); "
                        "without it a corrupt image stops the run with an error naming the file")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def _one_line(e: BaseException) -> str:
    """An error as one line: a DataLoader worker's re-raised error keeps only its last line
    (the original message), not the worker's traceback text."""
    text = str(e)
    if "Original Traceback" in text:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else text
        head, sep, rest = last.partition(": ")
        text = rest if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head else last
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.method is not None:
        overrides.append(f"mix.method={args.method}")
    if args.out is not None:
        overrides.append(f"train.out_dir={json.dumps(args.out)}")
    if args.resume:
        overrides.append("train.resume=true")
    if args.no_progress:
        overrides.append("train.progress=false")
    if args.skip_corrupt:
        overrides.append("data.skip_corrupt=true")
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            sys.stdout.write(config_to_yaml(cfg))
            return 0
        result = train(cfg)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, OSError, ValueError, FloatingPointError) as e:  # OSError: missing/corrupt files
        if args.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    best = result.get("best_mAP")
    if best is not None:
        print(f"best mAP {best:.2f} at epoch {result['best_epoch']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
