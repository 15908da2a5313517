"""What produced a record (a study's provenance.json, a weights manifest entry, a benchmark table): the git
commit of the code and the machine. Besides its name and core count, the machine's CPU model and the
instruction set torch's CPU kernels use: two runs with the same seed, code and thread count give the same
metrics to the bit only on CPUs where those kernels match; elsewhere they differ like two seeds."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "cpu_model", "machine"]

#: the checkout this package sits in (when it is one)
_CHECKOUT = Path(__file__).resolve().parent.parent


def git_commit(scope: str | os.PathLike | None = None) -> str | None:
    """HEAD of the checkout this package sits in, with ``-dirty`` when tracked files (under ``scope``, a
    path in it, when given) have changes not committed: the code that ran is not HEAD's. None outside
    a git checkout."""
    head = _git("rev-parse", "HEAD")
    if not head:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no", *(["--", str(scope)] if scope is not None else []))
    return head + ("-dirty" if dirty else "")


def _git(*args: str) -> str | None:
    """``git ARGS`` in the checkout: its stripped output, None when git fails or is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=_CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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


def machine() -> dict[str, Any]:
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
