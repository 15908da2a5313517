"""What a checkpoint holds (:class:`TrainState`): the only code that writes or reads its keys.

A checkpoint is a dict saved with ``torch.save`` through :class:`~splicemix.engine.rundir.RunDir`:
``epoch`` (epochs done), ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``mixer_generator``,
``rng`` (torch / numpy / python / cuda), ``best_mAP``, ``best_epoch``, ``last_metrics``,
``map_history`` (``[{"epoch": e, "mAP": m}]`` of the evaluated epochs, for the convergence verdict),
``compute`` (the steps, images and training seconds used: :class:`~splicemix.engine.budget.RunLength`),
``config`` (the run's config as JSON values) and ``world_size``.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from splicemix.config import TrainConfig
from splicemix.results import BEST_EPOCH, EPOCH, MAP, convergence

from .budget import RunLength
from .optim import Optimization
from .rundir import RunDir

__all__ = ["TrainState", "config_changes", "RESUME_FREE_KEYS"]

#: settings a resumed run may change without a note in the log
RESUME_FREE_KEYS = {
    ("train", "resume"),
    ("train", "progress"),
    ("train", "epochs"),
    ("train", "out_dir"),
    ("train", "device"),
    ("train", "eval_every"),
    ("train", "cpu_threads"),
    ("data", "workers"),
}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"section.key: old -> new"`` for every setting that differs (except :data:`RESUME_FREE_KEYS`)."""
    diffs = []
    for sec, vals in new.items():
        for k, v in vals.items():
            if (sec, k) in RESUME_FREE_KEYS:
                continue
            o = old.get(sec, {}).get(k, v)
            if o != v:
                diffs.append(f"{sec}.{k}: {o!r} -> {v!r}")
    return diffs


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
    }


def _set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        random.setstate(rng["python"])
    if rng.get("cuda") is not None and device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(rng["cuda"])


@dataclass
class TrainState:
    """The run's state between epochs: the live objects a checkpoint saves and restores, and the progress."""

    net: nn.Module
    opt: Optimization
    mix_gen: torch.Generator
    device: torch.device
    epoch: int = 0  #: epochs done
    best_map: float = -math.inf
    best_epoch: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    length: RunLength | None = None  #: the run's length and the compute used (checkpointed)
    map_history: list[dict[str, Any]] = field(default_factory=list)  #: the evaluated epochs' mAP

    def record(self, metrics: dict[str, Any]) -> None:
        """After an epoch: its metrics become the last ones, and the best if its mAP is the highest."""
        if MAP in metrics:
            if metrics[MAP] > self.best_map:
                self.best_map, self.best_epoch = metrics[MAP], metrics[EPOCH]
            self.map_history.append({EPOCH: int(metrics[EPOCH]), MAP: float(metrics[MAP])})
        self.epoch = int(metrics[EPOCH])
        self.last_metrics = metrics

    def convergence(self) -> dict[str, Any]:
        """The convergence keys of the mAP history so far (:func:`splicemix.results.convergence`)."""
        return convergence(self.map_history).metrics()

    def result(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_mAP`` (None before any evaluation) and ``best_epoch``."""
        out = dict(self.last_metrics)
        out["best_mAP"] = self.best_map if math.isfinite(self.best_map) else None
        out[BEST_EPOCH] = self.best_epoch
        return out

    def state_dict(self, cfg: TrainConfig, world: int) -> dict[str, Any]:
        """The checkpoint (see the module docstring)."""
        return {
            "epoch": self.epoch,
            "model": self.net.state_dict(),
            "optimizer": self.opt.optimizer.state_dict(),
            "scheduler": self.opt.scheduler.state_dict(),
            "scaler": self.opt.scaler.state_dict(),
            "mixer_generator": self.mix_gen.get_state(),
            "rng": _rng_state(self.device),
            "best_mAP": self.best_map,
            "best_epoch": self.best_epoch,
            "last_metrics": self.last_metrics,
            "map_history": self.map_history,
            "compute": None if self.length is None else self.length.state_dict(),
            "config": cfg.model_dump(mode="json"),
            "world_size": world,
        }

    def load_state_dict(self, ckpt: dict[str, Any], where: str = "the checkpoint") -> None:
        """Restore from a checkpoint (read from ``where``); a ValueError if the model / optimiser do not match it."""
        try:
            self.net.load_state_dict(ckpt["model"])
            self.opt.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"cannot resume from {where}: it does not match this model / optimiser ({first}); "
                "use another train.out_dir or train.resume=false"
            ) from None
        self.opt.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.opt.scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("mixer_generator") is not None:
            self.mix_gen.set_state(ckpt["mixer_generator"])
        _set_rng_state(ckpt.get("rng", {}), self.device)
        self.epoch = int(ckpt["epoch"])
        self.best_map, self.best_epoch = float(ckpt.get("best_mAP", -math.inf)), int(ckpt.get("best_epoch", 0))
        self.last_metrics = dict(ckpt.get("last_metrics") or {})
        self.map_history = list(ckpt.get("map_history") or [])
        if self.length is not None:
            # a checkpoint from before the compute was counted: its steps are the scheduler's
            self.length.load_state_dict(ckpt.get("compute") or {"steps": self.opt.scheduler.last_epoch})

    def save(self, run: RunDir, cfg: TrainConfig, world: int) -> None:
        """Write the checkpoint of the epochs done (atomically)."""
        run.save_checkpoint(self.state_dict(cfg, world))

    def resume(self, run: RunDir, cfg: TrainConfig, log: Callable[[str], None]) -> None:
        """Continue from ``run``'s checkpoint if there is one, logging where from and any changed settings."""
        path = run.checkpoint_path
        if not run.has_checkpoint():
            log(f"resume: no checkpoint at {path}; starting from scratch")
            return
        ckpt = run.load_checkpoint()
        self.load_state_dict(ckpt, where=str(path))
        diffs = config_changes(ckpt.get("config", {}), cfg.model_dump(mode="json"))
        log(
            f"resuming from {path} after epoch {self.epoch}"
            + (f" (config changed: {'; '.join(diffs)})" if diffs else "")
        )
