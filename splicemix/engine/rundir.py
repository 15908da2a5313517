"""A run directory: the only code that knows the trainer's files.

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per epoch, keys in
:mod:`splicemix.results`) and ``checkpoint.pt`` (everything a run needs to continue exactly,
saved atomically after every epoch). A study copies these files in and out of its own
checkpoints with :meth:`RunDir.copy_to` / :meth:`RunDir.restore_from` and reads the epochs
with :meth:`RunDir.read_metrics`, never by file name.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import IO, Any

__all__ = ["RunDir", "parse_metrics", "last_epoch"]


def parse_metrics(text: str) -> list[dict[str, Any]]:
    """The per-epoch rows of a ``metrics.jsonl`` text; a torn last line (a crash mid-write) ends them."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def last_epoch(rows: list[dict[str, Any]]) -> int:
    """The highest ``epoch`` among metrics rows (0 for none)."""
    return max((int(r.get("epoch", 0)) for r in rows), default=0)


class RunDir:
    """The files of one training run under ``path``."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    FILES = (CHECKPOINT, METRICS, CONFIG)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    # -- config -----------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text, encoding="utf-8")

    # -- metrics ----------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Every epoch row written so far (none when the file is missing)."""
        if not self.metrics_path.is_file():
            return []
        return parse_metrics(self.metrics_path.read_text(encoding="utf-8"))

    def start_metrics(self, keep_until: int = 0) -> None:
        """Begin ``metrics.jsonl`` anew, keeping the rows of epochs ``<= keep_until`` (a resumed run)."""
        rows = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= keep_until] if keep_until else []
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    # -- checkpoint -------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """``torch.save`` to a temporary name, then rename: a crash leaves the previous checkpoint."""
        import torch

        tmp = self.checkpoint_path.with_name(self.CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any]:
        """The checkpoint this trainer wrote (not config text: it holds RNG states, so not weights-only)."""
        import torch

        state: dict[str, Any] = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        return state

    @staticmethod
    def checkpoint_is_whole(f: IO[bytes]) -> bool:
        """Whether an open ``checkpoint.pt`` is a whole file: ``torch.save`` writes a zip, and a
        truncated one has no central directory."""
        try:
            zipfile.ZipFile(f).close()
        except (OSError, zipfile.BadZipFile):
            return False
        return True

    # -- moving the files -------------------------------------------------------------------
    def copy_to(self, dest: str | os.PathLike[str]) -> None:
        """Copy the run's files (those that exist) into the folder ``dest``."""
        for name in self.FILES:
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, Path(dest) / name)

    def restore_from(self, src: str | os.PathLike[str]) -> bool:
        """Copy a run's files from the folder ``src`` into this one; False when ``src`` holds no checkpoint."""
        src = Path(src)
        if not (src / self.CHECKPOINT).is_file():
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, self.path / f.name)
        return True

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
