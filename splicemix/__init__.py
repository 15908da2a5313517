"""SpliceMix and SpliceMix-CL for multi-label image classification (arXiv 2311.15200).

    from splicemix import SpliceMix
    mixer = SpliceMix("default")                      # the authors' default setting
    images_out, targets_out, plan = mixer(images, targets)

Submodules: ``consistency`` (SpliceMix-CL), ``metrics`` (mAP, CF1/OF1), ``models``,
``data`` (COCO, VOC, the synthetic data set), ``train`` (single-process trainer).
"""

from importlib import import_module as _import_module

from .grids import PRESETS, GridSpec, parse_grid
from .mixing import SpliceMix, apply_plan
from .plan import SpliceGroup, SplicePlan

__version__ = "0.1.0"
__all__ = [
    "SpliceMix", "apply_plan", "SplicePlan", "SpliceGroup", "GridSpec", "parse_grid", "PRESETS",
    "consistency", "metrics", "models", "data",
]
_SUBMODULES = {"consistency", "metrics", "models", "data", "train", "config"}


def __getattr__(name: str):
    # Submodules load on first use: `import splicemix` stays light (no pycocotools, no models).
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
