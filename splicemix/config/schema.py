"""The training configuration: pydantic models, one per section of the YAML file.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored
setting. Each check lives in the class that owns the setting (timm's ``data/mixup.py`` style):
the synthetic knobs are validated by :class:`splicemix.data.synthetic.SyntheticConfig`, the mix
settings by constructing the method's mixer from them (:class:`splicemix.SpliceMix`, or
:class:`splicemix.MixUp` / :class:`splicemix.CutMix`) -- once per validation; the grids
SpliceMix parsed are kept for :class:`TrainConfig`'s cross check.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import typing
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator, model_validator

from ..data.synthetic import SyntheticConfig
from ..grids import GridSpec, parse_grids
from ..mixing import SpliceMix
from ..mixup import CutMix, MixUp

__all__ = [
    "DataConfig",
    "SyntheticKnobs",
    "CocoPaths",
    "VocPaths",
    "ModelConfig",
    "MixConfig",
    "OptimConfig",
    "BudgetConfig",
    "TrainSection",
    "TrainConfig",
    "ModelName",
    "MODEL_NAMES",
    "MIXER_ARGS",
    "Method",
    "METHODS",
    "PAIR_MIXERS",
]

ModelName = Literal["smallcnn", "resnet18", "resnet50", "resnet101", "vit_tiny", "vit_b_16"]
MODEL_NAMES: tuple[str, ...] = typing.get_args(ModelName)
"""The backbones :func:`splicemix.models.build_model` knows (``model.name``)."""

MIXER_ARGS: tuple[str, ...] = tuple(p for p in inspect.signature(SpliceMix).parameters if p != "generator")
"""The keyword arguments of :class:`splicemix.SpliceMix`; each is a :class:`MixConfig` field of the same name."""

Method = Literal["baseline", "mixup", "cutmix", "splicemix", "splicemix_cl"]
METHODS: tuple[str, ...] = typing.get_args(Method)
"""The training methods (``mix.method``): no mixing, MixUp, CutMix, SpliceMix, SpliceMix-CL."""

PAIR_MIXERS: dict[str, type[MixUp] | type[CutMix]] = {"mixup": MixUp, "cutmix": CutMix}
"""The methods that mix the batch in place (B' = 0), and their mixer; they read ``alpha`` and ``prob``."""
_SPLICE_METHODS = ("splicemix", "splicemix_cl")  # the methods whose mixer is SpliceMix (grids, B' > 0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class _KnobsBase(_Section):
    @model_validator(mode="after")
    def _check(self) -> _KnobsBase:
        try:
            SyntheticConfig(**self.model_dump())
        except (ValueError, TypeError) as e:
            raise ValueError(f"data.{e}") from None  # "data.synthetic: knob=... is invalid; expected ..."
        return self


# The synthetic knobs are SyntheticConfig's own fields, types and defaults (one source of truth).
_KNOB_TYPES = typing.get_type_hints(SyntheticConfig)
_KNOBS: dict[str, Any] = {f.name: (_KNOB_TYPES[f.name], f.default) for f in dataclasses.fields(SyntheticConfig)}
if TYPE_CHECKING:  # a model made at run time: type checkers see its base
    SyntheticKnobs = _KnobsBase
else:
    SyntheticKnobs = create_model(
        "SyntheticKnobs",
        __base__=_KnobsBase,
        __doc__="The knobs of :class:`splicemix.data.synthetic.SyntheticConfig` (same names and defaults).",
        **_KNOBS,
    )


class CocoPaths(_Section):
    """``data.coco``: the MS-COCO image folders and ``instances_*.json`` files."""

    train_images: str | None = None
    train_annotations: str | None = None
    val_images: str | None = None
    val_annotations: str | None = None


class VocPaths(_Section):
    """``data.voc``: where VOCdevkit is and which year / image sets to use."""

    root: str | None = Field(default=None, description="directory holding VOCdevkit (or VOCdevkit itself)")
    year: str = "2007"
    train_set: str = "trainval"
    val_set: str = "test"

    @field_validator("year", mode="before")
    @classmethod
    def _year_text(cls, v: Any) -> Any:
        # `year: 2007` unquoted is an int in YAML; the folder is VOC2007 either way
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class DataConfig(_Section):
    """``data``: the data set, its resolution, augmentation and loading."""

    dataset: Literal["synthetic", "coco", "voc"] = "synthetic"
    root: str = Field(default="data/synthetic", description="synthetic: where the data set is generated / cached")
    synthetic: SyntheticKnobs = Field(default_factory=SyntheticKnobs)
    coco: CocoPaths = Field(default_factory=CocoPaths)
    voc: VocPaths = Field(default_factory=VocPaths)
    image_size: int = Field(default=64, ge=8, description="training / evaluation resolution, px")
    eval_sizes: list[int] = Field(default_factory=list, description="extra (lower) evaluation resolutions")
    # None: plain resize (the synthetic objects reach the borders; a crop would cut them out while
    # their labels stay). [0.5, 1.0] is the paper's multi-scale crop for MS-COCO / VOC.
    crop_scale: tuple[float, float] | None = None
    hflip: bool = True
    missing_label_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    workers: int = Field(default=0, ge=0)
    train_limit: int | None = Field(default=None, ge=1)
    val_limit: int | None = Field(default=None, ge=1)
    skip_corrupt: bool = Field(
        default=False,
        description="skip images that cannot be decoded (counted and logged) instead of stopping with an error",
    )
    in_memory: Literal["auto"] | bool = Field(
        default="auto",
        description="decode the images once into memory (auto: when the files take at most 64 MiB, "
        "nothing is skipped as corrupt and the samples are bit-identical to the file path's)",
    )

    @field_validator("eval_sizes")
    @classmethod
    def _eval_sizes_positive(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s < 1]
        if bad:
            raise ValueError(f"evaluation sizes must be positive integers, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"evaluation sizes must be distinct, got {v}")
        return v

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:  # plain resize, no crop
            return v
        if not (0 < v[0] <= v[1] <= 1):
            raise ValueError(f"expected 0 < min <= max <= 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _paths(self) -> DataConfig:
        if self.dataset == "coco":
            missing = [k for k, v in self.coco.model_dump().items() if not v]
            if missing:
                raise ValueError(
                    "data.dataset is 'coco' but "
                    + ", ".join(f"data.coco.{k}" for k in missing)
                    + " not set; expected paths to the image folders and instances_*.json files"
                )
        if self.dataset == "voc" and not self.voc.root:
            raise ValueError(
                "data.dataset is 'voc' but data.voc.root is not set; expected the folder holding VOCdevkit"
            )
        return self


# --------------------------------------------------------------------------- model
class ModelConfig(_Section):
    """``model``: the backbone, its weights and the global pooling."""

    name: ModelName = "smallcnn"
    pretrained: str | None = Field(default=None, description="path to a local weights file, or null")
    pool: Literal["max", "avg"] = Field(
        default="max", description="global pooling of the feature map: max (paper) or avg"
    )


# --------------------------------------------------------------------------- mix
class MixConfig(_Section):
    """``mix``: the method, SpliceMix's keyword arguments (:data:`MIXER_ARGS`), MixUp / CutMix's
    ``alpha`` and SpliceMix-CL's loss.

    Validating it constructs the method's mixer once (the mixer is the validator of its settings):
    :class:`splicemix.MixUp` / :class:`splicemix.CutMix` from ``alpha`` and ``prob`` for those
    methods, else :class:`splicemix.SpliceMix`, whose grids are kept for :class:`TrainConfig`'s
    batch-size check.
    """

    method: Method = "splicemix"
    grids: Any = Field(default="default", description="'default' | 'minimal' | ['2x2', ...] | {'2x2': weight}")
    mixed_ratio: Any = Field(
        default=None, description="|B'|/|B| as a float, 'paper' for floor(|B|/(R*C-D)), null = preset's (0.25)"
    )
    counts: list[int] | None = Field(default=None, description="exact mixed images per grid per batch (split mode)")
    drop_prob: float | None = Field(default=None, ge=0.0, le=1.0, description="null = the preset's value")
    max_drop: int | None = Field(default=None, ge=1, description="cap on the random drop count, null = R*C-1")
    asymmetric: bool = True
    prob: float = Field(default=1.0, ge=0.0, le=1.0, description="chance that a batch is mixed at all (every method)")
    alpha: float = Field(
        default=1.0, gt=0.0, allow_inf_nan=False, description="mixup / cutmix only: lambda ~ Beta(alpha, alpha)"
    )
    grid_sampling: Literal["batch", "split"] = "batch"
    antialias: bool = False
    cl_weight: float = Field(default=1.0, ge=0.0)
    cl_detach: bool = True
    cl_variant: Literal["authors", "kept_cells"] = Field(
        default="authors",
        description="SpliceMix-CL as the authors compute it, or averaged over the kept cells "
        "(see splicemix.consistency.CL_VARIANTS)",
    )

    _specs: tuple[GridSpec, ...] | None = PrivateAttr(None)  # the grids SpliceMix parsed ...
    _specs_of: dict[str, Any] | None = PrivateAttr(None)  # ... from these mixer_kwargs()

    @field_validator("grids")
    @classmethod
    def _grids(cls, v: Any) -> Any:
        if isinstance(v, str) and v in ("default", "minimal"):
            return v
        if isinstance(v, (str, list, dict)):
            if isinstance(v, dict):
                v = {str(k): w for k, w in v.items()}
            parse_grids(v)  # raises ValueError with the grid's message
            return v
        raise ValueError(
            "expected 'default', 'minimal', a grid string like '2x2', a list of them or a mapping grid->weight, "
            f"got {v!r}"
        )

    @field_validator("mixed_ratio")
    @classmethod
    def _ratio(cls, v: Any) -> Any:
        if v is None or v == "paper":
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"expected a number >= 0 (mixed images per regular image), 'paper' or null, got {v!r}")
        return float(v)

    def mixer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`splicemix.SpliceMix` (without ``generator``)."""
        return {name: getattr(self, name) for name in MIXER_ARGS}

    def grid_specs(self) -> tuple[GridSpec, ...]:
        """The grids :class:`splicemix.SpliceMix` makes of these settings (constructed once per
        validation; again only if a field changed without validation, e.g. ``model_copy(update=...)``)."""
        kwargs = self.mixer_kwargs()
        if self._specs is None or self._specs_of != kwargs:
            try:
                specs = tuple(SpliceMix(**kwargs).specs)
            except (ValueError, TypeError) as e:
                raise ValueError(f"SpliceMix rejects mix settings: {e}") from None
            self._specs, self._specs_of = specs, copy.deepcopy(kwargs)
        return self._specs

    def build_mixer(self, generator: torch.Generator | None = None) -> SpliceMix | MixUp | CutMix | None:
        """The mixer of ``method`` drawing from ``generator`` (None for the baseline)."""
        if self.method == "baseline":
            return None
        if self.method in PAIR_MIXERS:
            return PAIR_MIXERS[self.method](alpha=self.alpha, prob=self.prob, generator=generator)
        return SpliceMix(generator=generator, **self.mixer_kwargs())

    @model_validator(mode="after")
    def _construct(self) -> MixConfig:
        if self.method in PAIR_MIXERS:
            try:
                self.build_mixer()
            except (ValueError, TypeError) as e:
                raise ValueError(f"{PAIR_MIXERS[self.method].__name__} rejects mix settings: {e}") from None
        else:
            self.grid_specs()
        return self


# --------------------------------------------------------------------------- optim
class OptimConfig(_Section):
    """``optim``: the optimizer and the learning-rate schedule."""

    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(default=3e-3, gt=0.0, description="head learning rate")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    backbone_lr_factor: float = Field(default=1.0, ge=0.0, description="backbone lr = lr * factor (paper: 0.1)")
    warmup_epochs: float = Field(default=1.0, ge=0.0, description="linear warm-up, in epochs")
    warmup_steps: int | None = Field(
        default=None, ge=0, description="linear warm-up in optimiser steps; replaces warmup_epochs when set"
    )
    schedule: Literal["step", "cosine", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)
    grad_clip: float | None = Field(default=None, gt=0.0, description="max gradient norm, null = off")

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or v != sorted(set(v)):
            raise ValueError(f"expected strictly increasing epochs >= 1, got {v}")
        return v


# --------------------------------------------------------------------------- train
class BudgetConfig(_Section):
    """``train.budget``: the length of a run in compute rather than epochs -- exactly one of
    training images seen (regular + mixed), optimiser steps or training seconds.

    Images and steps become a step count before the run (the schedule ends at it); seconds are
    measured as the run goes (the schedule follows the fraction of the seconds used). See
    :mod:`splicemix.engine.budget`.
    """

    images: int | None = Field(default=None, ge=1, description="training images seen, B + B' per step")
    steps: int | None = Field(default=None, ge=1, description="optimiser steps")
    seconds: float | None = Field(default=None, gt=0.0, description="training seconds (evaluation not counted)")

    @model_validator(mode="after")
    def _one(self) -> BudgetConfig:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of images, steps, seconds (e.g. {steps: 5000}), "
                f"got {', '.join(given) if given else 'none'}"
            )
        if self.seconds is not None and not math.isfinite(self.seconds):
            raise ValueError(f"seconds must be a finite number > 0, got {self.seconds}")
        return self

    @property
    def kind(self) -> str:
        """``"images"``, ``"steps"`` or ``"seconds"``."""
        return next(k for k, v in self.model_dump().items() if v is not None)

    @property
    def amount(self) -> float:
        """The amount of :attr:`kind`."""
        return float(getattr(self, self.kind))


class TrainSection(_Section):
    """``train``: epochs, batch, seed, precision, device, output folder."""

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=2, description="per process (per DDP worker)")
    seed: int = 0
    amp: bool | Literal["auto"] = "auto"
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool | Literal["auto"] = "auto"
    channels_last: bool = False
    cpu_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op CPU threads, null = torch's default"
    )
    out_dir: str = "runs/default"
    resume: bool = False
    progress: bool = True
    eval_every: int = Field(default=1, ge=1)
    eval_fused: bool = Field(
        default=True,
        description="evaluate a copy of the model with BatchNorm folded into the convolutions, channels-last "
        "(scores within float rounding of the training model's); false = the training model itself",
    )
    budget: BudgetConfig | None = Field(
        default=None, description="{images|steps|seconds: N}: the run's length in compute; null = train.epochs"
    )


class TrainConfig(_Section):
    """The whole training configuration (``configs/default.yaml`` spells out its defaults)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _cross(self) -> TrainConfig:
        big = [s for s in self.data.eval_sizes if s > self.data.image_size]
        if big:
            raise ValueError(
                f"data.eval_sizes {big} exceed data.image_size {self.data.image_size}; "
                "expected lower resolutions than the training one"
            )
        late = [m for m in self.optim.milestones if m >= self.train.epochs]
        if self.optim.schedule == "step" and late and self.train.budget is None:
            raise ValueError(
                f"optim.milestones {late} are not below train.epochs {self.train.epochs}; they would never apply"
            )
        if self.mix.method in _SPLICE_METHODS:  # MixUp / CutMix pair images, no grids
            specs = self.mix.grid_specs()
            too_big = [str(g) for g in specs if g.cells > self.train.batch_size]
            if too_big:
                raise ValueError(
                    f"mix.grids {too_big} need more distinct source images per mixed image than "
                    f"train.batch_size {self.train.batch_size} provides; expected a batch of at least "
                    f"{max(g.cells for g in specs)} images or smaller grids"
                )
        self._check_budget()
        return self

    def _check_budget(self) -> None:
        """An images budget becomes a step count before the run: it needs the same B' in every batch
        (always so for the baseline, MixUp and CutMix: B' = 0)."""
        b = self.train.budget
        if b is None or b.images is None or self.mix.method not in _SPLICE_METHODS:
            return
        if (self.mix.mixed_ratio == "paper" and self.mix.counts is None) or self.mix.prob < 1.0:
            raise ValueError(
                "train.budget.images needs the same number of mixed images in every batch, but "
                f"mix.mixed_ratio {self.mix.mixed_ratio!r} / mix.prob {self.mix.prob} vary it; "
                "expected a numeric mix.mixed_ratio (or mix.counts) and mix.prob 1, or train.budget.steps"
            )
