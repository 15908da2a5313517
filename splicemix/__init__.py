"""SpliceMix and SpliceMix-CL for multi-label image classification (arXiv 2311.15200).

    from splicemix import SpliceMix
    mixer = SpliceMix("default")                      # the authors' default setting
    images_out, targets_out, plan = mixer(images, targets)

    # or let the DataLoader reserve the rows of the mixed images (nothing is copied):
    loader = DataLoader(ds, batch_size=32, collate_fn=SpliceCollate(mixer))
    images_out, targets_out, plan = next(iter(loader)).mix(mixer)

    # the baselines of the paper's table, for multi-hot targets (in place: still B images)
    from splicemix import MixUp, CutMix
    images, targets, plan = CutMix(alpha=1.0)(images, targets)

Submodules: ``consistency`` (SpliceMix-CL), ``metrics`` (mAP, CF1/OF1), ``models``,
``data`` (COCO, VOC, the synthetic data set), ``train`` (single-process trainer).
"""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING, Any

from .grids import PRESETS, GridSpec, parse_grid

if TYPE_CHECKING:  # the torch-based names load on first use (below)
    from .collate import SpliceBatch, SpliceCollate
    from .mixing import SpliceMix, apply_plan
    from .mixup import CutMix, MixUp, PairPlan, apply_pair_plan
    from .plan import SpliceGroup, SplicePlan

__version__ = "0.1.0"
__all__ = [
    "SpliceMix",
    "apply_plan",
    "SplicePlan",
    "SpliceGroup",
    "SpliceCollate",
    "SpliceBatch",
    "MixUp",
    "CutMix",
    "PairPlan",
    "apply_pair_plan",
    "GridSpec",
    "parse_grid",
    "PRESETS",
    "consistency",
    "metrics",
    "models",
    "data",
]
# name -> the submodule that defines it. Everything torch-based loads on first use, so that
# `import splicemix.grids` / `splicemix.results` (what analysis/ needs) does not import torch.
_LAZY = {
    "SpliceMix": "mixing",
    "apply_plan": "mixing",
    "SplicePlan": "plan",
    "SpliceGroup": "plan",
    "SpliceCollate": "collate",
    "SpliceBatch": "collate",
    "MixUp": "mixup",
    "CutMix": "mixup",
    "PairPlan": "mixup",
    "apply_pair_plan": "mixup",
}
_SUBMODULES = {"consistency", "metrics", "models", "data", "train", "config", "engine", "results"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(_import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
