"""``train(cfg, report=None)``: one whole training job, wired from the engine's parts.

Read top to bottom: the process context, the data, the model, the mixer, the loader, the run's
length (epochs or a budget), the optimiser, the resume; then per epoch train, evaluate, print,
save, report, until the epochs or the budget are used up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from splicemix.collate import Mixer, SpliceCollate
from splicemix.config import TrainConfig, config_to_yaml
from splicemix.models import MultiLabelNet, build_model, is_weights_name
from splicemix.results import MAP

from .budget import RunLength
from .data import TrainData, build_data, expand_path, train_loader
from .dist import DistContext, torch_settings
from .loop import StepModule, evaluate, format_line, progress_enabled, seed_all, seed_epoch, train_one_epoch
from .optim import Optimization
from .rundir import RunDir
from .state import TrainState

__all__ = ["train"]


def train(cfg: TrainConfig, report: Callable[[dict], None] | None = None) -> dict:
    """Train and evaluate one configuration; return the last epoch's metrics plus best_mAP / best_epoch.

    The run trains ``train.epochs`` epochs, or until ``train.budget`` is used up (the last epoch
    then stops mid-way; see :mod:`splicemix.engine.budget`); its last epoch is always evaluated.
    ``report(metrics)`` is called once per epoch on every rank, after evaluation and after
    the checkpoint of that epoch has been saved (so a caller may stop the run from it).
    Metrics are percentages (mAP 84.4); timings are in seconds.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"train() expects a TrainConfig (see splicemix.config.load_config), got {type(cfg).__name__}")
    ctx = DistContext.from_config(cfg.train)
    with torch_settings(cfg.train, ctx.device):
        return _run(cfg, ctx, report)


def _run(cfg: TrainConfig, ctx: DistContext, report: Callable[[dict], None] | None) -> dict:
    """Set up, then per epoch: train, evaluate, print, save, report."""
    tc, run = cfg.train, RunDir(cfg.train.out_dir)
    seed_all(tc.seed)
    data = build_data(cfg, ctx)
    _check_one_batch(len(data.train), tc.batch_size, ctx.world)  # type: ignore[arg-type]

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    net = _model(cfg, data.num_classes, ctx.device)
    step = ctx.wrap(
        StepModule(net, cfg.mix.method == "splicemix_cl", cfg.mix.cl_weight, cfg.mix.cl_detach, cfg.mix.cl_variant)
    )

    # Per epoch, the data order (load_gen) and the mixing (mix_gen) are re-seeded from (seed, epoch, rank).
    # With a mixer (SpliceMix, MixUp, CutMix; None for the baseline), the collate reserves the rows of
    # the mixed images after each batch (SpliceBatch); MixUp / CutMix mix the batch in place (B' = 0).
    load_gen, mix_gen = torch.Generator(), torch.Generator()
    mixer = cfg.mix.build_mixer(mix_gen)
    collate = SpliceCollate(mixer.max_mixed(tc.batch_size)) if mixer is not None else None
    loader, sampler = train_loader(data.train, cfg, ctx, load_gen, collate)
    # whole batches only: every step trains on B + B' images per process (B' is fixed under an images budget)
    per_step = ctx.world * (tc.batch_size + (mixer.max_mixed(tc.batch_size) if mixer is not None else 0))
    length = RunLength(cfg, len(loader), per_step, ctx)
    opt = Optimization.build(cfg, net, len(loader), ctx, length)

    state = TrainState(net, opt, mix_gen, ctx.device, length=length)
    if tc.resume:
        state.resume(run, cfg, ctx.log)
    if ctx.is_main:
        run.write_config(config_to_yaml(cfg))
        run.start_metrics(keep_until=state.epoch)
    ctx.log(_summary(cfg, data, net, mixer, ctx, length, run))

    bar = progress_enabled(cfg, ctx.rank)
    of = length.planned_epochs or "?"  # "epoch 3/?" under a seconds budget
    while not length.finished(state.epoch):
        epoch, t0 = state.epoch, time.perf_counter()
        seed_epoch(tc.seed, epoch, ctx.rank, load_gen, mix_gen)
        if sampler is not None:
            sampler.set_epoch(epoch)
        length.start_epoch()
        stats = train_one_epoch(
            step,
            net,
            loader,
            opt,
            mixer,
            ctx,
            channels_last=tc.channels_last,
            progress=f"epoch {epoch + 1}/{of}" if bar else None,
            stop=length.after_step if tc.budget is not None else None,
        )
        metrics = stats.metrics(epoch + 1, cfg.mix.method)  # raises TrainingDiverged
        length.end_epoch(round(stats.batches / ctx.world), stats.images, stats.train_time_s)
        last = length.finished(epoch + 1)

        t1 = time.perf_counter()
        # BatchNorm running statistics drift apart on each rank after the last forward;
        # evaluate (and checkpoint) rank 0's, so the sharded evaluation scores one model
        ctx.broadcast_buffers(net)
        if (epoch + 1) % tc.eval_every == 0 or last:
            metrics.update(evaluate(net, data, cfg, ctx))
        metrics.update(stats.timing(eval_time_s=time.perf_counter() - t1, epoch_time_s=time.perf_counter() - t0))
        metrics.update(length.metrics())
        state.record(metrics)
        if MAP in metrics:
            metrics.update(state.convergence())  # the verdict on the mAP history so far

        if ctx.is_main:
            print(format_line(metrics, of), flush=True)
            run.append_metrics(metrics)
            state.save(run, cfg, ctx.world)
        if report is not None:
            report(dict(metrics))
    return state.result()


def _check_one_batch(n_train: int, batch_size: int, world: int) -> None:
    if n_train < batch_size * world:
        raise ValueError(
            f"the training set has {n_train} images, fewer than one batch "
            f"(train.batch_size {batch_size} x {world} processes); lower train.batch_size"
        )


def _model(cfg: TrainConfig, num_classes: int, device: torch.device) -> MultiLabelNet:
    net = build_model(
        cfg.model.name,
        num_classes,
        pretrained=cfg.model.pretrained if is_weights_name(cfg.model.pretrained) else expand_path(cfg.model.pretrained),
        image_size=cfg.data.image_size,
        pool=cfg.model.pool,
    ).to(device)
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def _summary(
    cfg: TrainConfig,
    data: TrainData,
    net: nn.Module,
    mixer: Mixer | None,
    ctx: DistContext,
    length: RunLength,
    run: RunDir,
) -> str:
    """The run's first line: data, model, method, device and length."""
    n_params = sum(p.numel() for p in net.parameters())
    n_train, n_val = len(data.train), len(data.val)  # type: ignore[arg-type]
    parts: list[Any] = [
        f"splicemix.train: {cfg.data.dataset} {n_train} train / {n_val} val images, {data.num_classes} classes",
        f"{cfg.model.name} ({n_params / 1e6:.2f} M params) @ {cfg.data.image_size}px",
        cfg.mix.method + (f" {mixer!r}" if mixer is not None else ""),
    ]
    if cfg.data.missing_label_ratio:
        parts.append(f"{data.hidden_fraction:.1%} of positive labels hidden")
    parts += [ctx.describe(), length.describe(), f"out {run.path}"]
    return " | ".join(parts)
