"""Benchmarks of the splicemix library: ``python -m benchmarks --help``.

A suite is a module with ``run(quick: bool, device: torch.device) -> list[Row]``; register
it in :data:`SUITES` (name -> run function) and ``--only NAME`` selects it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import epoch, mixing, study, training
from .table import Row

__all__ = ["SUITES", "Row"]

Suite = Callable[[bool, torch.device], "list[Row]"]

SUITES: dict[str, Suite] = {
    "mixing": mixing.run,
    "training": training.run,
    "epoch": epoch.run,
    "study": study.run,
}
