"""The data and weights paths of a training config: are they there, before any data is read?

The schema only checks that a data set's paths are set; whether they exist is a question about
the machine, asked by the trainer (:func:`check_data_paths`) and by a study for every trial
(:func:`data_path_problems`).
"""

from __future__ import annotations

import os

from ..models import is_weights_name
from .loading import ConfigError
from .schema import TrainConfig

__all__ = ["PATH_KEYS", "data_path_problems", "check_data_paths"]

PATH_KEYS: dict[str, tuple[str, str]] = {  # dotted key -> (kind, what is expected there)
    "data.coco.train_images": ("dir", "the folder of the COCO training images (e.g. train2014)"),
    "data.coco.train_annotations": ("file", "a COCO instances_*.json file"),
    "data.coco.val_images": ("dir", "the folder of the COCO validation images (e.g. val2014)"),
    "data.coco.val_annotations": ("file", "a COCO instances_*.json file"),
    "data.voc.root": ("dir", "the folder holding VOCdevkit (or VOCdevkit / VOC2007 itself)"),
    "model.pretrained": ("file", "a local weights file (nothing is downloaded)"),
}
"""The path keys :func:`data_path_problems` checks: dotted key -> (``"dir"`` | ``"file"``, what is expected).
What it reports depends only on these keys and ``data.dataset``."""


def _needed(cfg: TrainConfig, weights: bool) -> dict[str, str | None]:
    """The path keys ``cfg``'s data set (and, with ``weights``, its model) reads, with their values."""
    values = {
        "data.coco.train_images": cfg.data.coco.train_images,
        "data.coco.train_annotations": cfg.data.coco.train_annotations,
        "data.coco.val_images": cfg.data.coco.val_images,
        "data.coco.val_annotations": cfg.data.coco.val_annotations,
        "data.voc.root": cfg.data.voc.root,
        # the short name of committed weights ("shapes") is no path: build_model checks its file
        "model.pretrained": None if is_weights_name(cfg.model.pretrained) else cfg.model.pretrained,
    }
    return {
        k: v
        for k, v in values.items()
        if (weights and k == "model.pretrained")
        or (cfg.data.dataset == "coco" and k.startswith("data.coco."))
        or (cfg.data.dataset == "voc" and k == "data.voc.root")
    }


def _problem(path: str, kind: str) -> str | None:
    if not os.path.exists(path):
        return "does not exist"
    if kind == "dir" and not os.path.isdir(path):
        return "is not a folder"
    if kind == "file" and not os.path.isfile(path):
        return "is not a file"
    if not os.access(path, os.R_OK | (os.X_OK if kind == "dir" else 0)):
        return "cannot be read (permission denied)"
    return None


def data_path_problems(cfg: TrainConfig, base_dir: str | None = None, weights: bool = True) -> list[str]:
    """Every data / weights path of ``cfg`` that its data set needs but that is missing or
    unreadable, as ``"key = 'path' problem; expected ..."`` texts (``weights``: also
    ``model.pretrained``). Relative paths are taken relative to ``base_dir`` (default: the
    working directory)."""
    problems = []
    for key, given in _needed(cfg, weights).items():
        if not given:
            continue  # a required path that is not set is the schema's error
        kind, expected = PATH_KEYS[key]
        path = os.path.join(base_dir or os.getcwd(), os.path.expanduser(given))
        problem = _problem(path, kind)
        if problem is not None:
            shown = repr(given) + ("" if os.path.abspath(path) == given else f" ({os.path.abspath(path)})")
            problems.append(f"{key} = {shown} {problem}; expected {expected}")
    return problems


def check_data_paths(cfg: TrainConfig, source: str = "", base_dir: str | None = None, weights: bool = True) -> None:
    """Raise one :class:`ConfigError` naming the first missing / unreadable data path of ``cfg``
    (see :func:`data_path_problems`), before any data is read."""
    problems = data_path_problems(cfg, base_dir, weights)
    if problems:
        others = ", ".join(p.split(" = ")[0] for p in problems[1:])
        more = f" (and {len(problems) - 1} more: {others})" if len(problems) > 1 else ""
        raise ConfigError(f"{source + ': ' if source else ''}{problems[0]}{more}")
