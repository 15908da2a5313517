"""Processes and devices: who this process is (:class:`DistContext`) and how torch is set up (:func:`torch_settings`).

The trainer makes one :class:`DistContext` from the config and the ``torch.distributed`` state
and passes it down, instead of ``(rank, world, distributed, autocast)`` one by one. Its
collective helpers do nothing in a single process, so the loop reads the same either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:
    from splicemix.config import TrainSection

__all__ = ["DistContext", "resolve_device", "torch_settings"]


def resolve_device(name: str, distributed: bool) -> torch.device:
    """``train.device`` (auto | cpu | cuda) as a device; under DDP on CUDA, this process's ``LOCAL_RANK`` GPU."""
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


@dataclass(frozen=True)
class DistContext:
    """This process in the job: rank, world size, device and mixed precision."""

    distributed: bool
    rank: int
    world: int
    device: torch.device
    amp: bool = False
    amp_dtype: torch.dtype = torch.float32

    @classmethod
    def from_config(cls, tc: TrainSection) -> DistContext:
        """From the ``torch.distributed`` state and ``train.device`` / ``train.amp`` / ``train.amp_dtype``.

        ``amp: auto`` is mixed precision on CUDA only; ``amp: true`` on a CPU autocasts to bfloat16.
        """
        distributed = torch_dist.is_available() and torch_dist.is_initialized()
        rank, world = (torch_dist.get_rank(), torch_dist.get_world_size()) if distributed else (0, 1)
        device = resolve_device(tc.device, distributed)
        amp = (device.type == "cuda") if tc.amp == "auto" else bool(tc.amp)
        dtype = torch.bfloat16 if (tc.amp_dtype == "bfloat16" or device.type == "cpu") else torch.float16
        return cls(distributed, rank, world, device, amp, dtype)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward's precision: ``torch.autocast`` when amp is on, else nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for float16 autocast only."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)

    def describe(self) -> str:
        """``"cpu x1, amp off"``: the device, the number of processes and the precision."""
        amp = "on (" + str(self.amp_dtype).replace("torch.", "") + ")" if self.amp else "off"
        return f"{self.device} x{self.world}, amp {amp}"

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` as this process trains it: in DistributedDataParallel when distributed."""
        if not self.distributed:
            return module
        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def log(self, msg: str) -> None:
        """Print ``msg`` on rank 0."""
        if self.is_main:
            print(msg, flush=True)

    # -- collectives (no-ops in a single process) ---------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA), so that a wall-clock time covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the ranks, in place; returns ``t``."""
        if self.distributed:
            torch_dist.all_reduce(t)
        return t

    def max_over_ranks(self, x: float) -> float:
        """The largest ``x`` over the ranks."""
        if not self.distributed:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return float(t)

    def broadcast_buffers(self, net: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.distributed:
            for buf in net.buffers():
                torch_dist.broadcast(buf, 0)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
        if not self.distributed:
            return [obj]
        parts: list[Any] = [None] * self.world
        torch_dist.all_gather_object(parts, obj)
        return parts


@contextlib.contextmanager
def torch_settings(tc: TrainSection, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (``train.deterministic``: auto = on a CPU) and ``train.cpu_threads``
    for the duration of a run; torch's previous settings come back afterwards."""
    deterministic = (device.type == "cpu") if tc.deterministic == "auto" else bool(tc.deterministic)
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    try:
        if tc.cpu_threads is not None:
            torch.set_num_threads(tc.cpu_threads)
        if deterministic and device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]
        if torch.get_num_threads() != prev[4]:
            torch.set_num_threads(prev[4])
