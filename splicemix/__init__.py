"""SpliceMix and SpliceMix-CL for multi-label image classification (arXiv 2311.15200).

    from splicemix import SpliceMix
    mixer = SpliceMix("default")                      # the authors' default setting
    images_out, targets_out, plan = mixer(images, targets)

    # or let the DataLoader reserve the rows of the mixed images (nothing is copied):
    loader = DataLoader(ds, batch_size=32, collate_fn=SpliceCollate(mixer))
    images_out, targets_out, plan = next(iter(loader)).mix(mixer)

Submodules: ``consistency`` (SpliceMix-CL), ``metrics`` (mAP, CF1/OF1), ``models``,
``data`` (COCO, VOC, the synthetic data set), ``train`` (single-process trainer).
"""

from importlib import import_module as _import_module

from .collate import SpliceBatch, SpliceCollate
from .grids import PRESETS, GridSpec, parse_grid
from .mixing import SpliceMix, apply_plan
from .plan import SpliceGroup, SplicePlan

__version__ = "0.1.0"
__all__ = [
    "SpliceMix", "apply_plan", "SplicePlan", "SpliceGroup", "SpliceCollate", "SpliceBatch", "GridSpec",
    "parse_grid", "PRESETS",
    "consistency", "metrics", "models", "data",
]
_SUBMODULES = {"consistency", "metrics", "models", "data", "train", "config"}


def __getattr__(name: str):
    # Submodules load on first use: `import splicemix` stays light (no pycocotools, no models).
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
