"""What machine ran something, for provenance records: besides its name and core count, the CPU's model
and the instruction set torch's CPU kernels use. Two runs with the same seed, code and thread count give
the same metrics to the bit only on CPUs where those kernels match; elsewhere they differ like two seeds."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _boot_id() -> str | None:
    """This boot of this machine (Linux): two records with one boot id ran on the same machine."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def describe() -> dict[str, Any]:
    """``node``, ``platform``, ``processor``, ``cpu_count``, ``cpu_model``, ``cpu_capability`` (torch's, e.g.
    ``AVX512``) and ``boot_id`` (None where the system does not say)."""
    import torch

    return {
        "node": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "boot_id": _boot_id(),
    }
