"""Multi-label classifiers: a backbone that gives a feature map, global pooling, one linear head.

Every model is a :class:`MultiLabelNet`::

    fmap = model.features(x)            # (N, C, h, w)
    logits = model.head(model.pool(fmap))  # (N, K); model(x) does the same
    logits, fmap = model.forward_features(x)  # one backbone pass, for SpliceMix-CL

The paper's recipe is ResNet-101 with global max pooling and one linear classifier; the
backbone is trained with 0.1 x the head's learning rate, hence :meth:`backbone_parameters`
and :meth:`head_parameters`.

Vision Transformers give the patch tokens after the encoder (class token dropped) laid out
as an ``(N, C, H/p, W/p)`` map, so SpliceMix-CL splits them exactly like a CNN map. They
accept another input resolution than the one they were built for (the position embeddings
are interpolated bicubically to the new token grid), for low-resolution evaluation.

Pre-trained weights are read only from a local file (``pretrained=path``); nothing is ever
downloaded. The short name ``pretrained="shapes"`` (:data:`WEIGHTS_NAME`) loads the backbone
weights committed in this package (``splicemix/weights/<model>-shapes.pt``, made by
``python -m splicemix.pretrain`` on shapes the studied task never sees), after checking the
file's sha256 against ``splicemix/weights/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from torchvision.models import ResNet, VisionTransformer

__all__ = [
    "MultiLabelNet",
    "SmallCNN",
    "build_model",
    "list_models",
    "load_backbone_weights",
    "WEIGHTS_NAME",
    "WEIGHTS_DIR",
    "MANIFEST_FILE",
    "weights_file_name",
    "is_weights_name",
    "committed_weights",
]

_MODELS = ("resnet18", "resnet50", "resnet101", "vit_b_16", "vit_tiny", "smallcnn")
_POOLS = ("max", "avg")


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return list(_MODELS)


# --------------------------------------------------------------------------- backbones


class _ResNetFeatures(nn.Module):
    """A torchvision ResNet up to ``layer4`` (no avgpool, no fc).

    Sub-modules keep torchvision's names, so its state dict keys are exactly those of a
    torchvision ResNet checkpoint without ``fc.*``.
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.out_channels: int = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _ViTFeatures(nn.Module):
    """A torchvision VisionTransformer without its ``heads``; returns the patch-token map.

    Sub-modules keep torchvision's names (``conv_proj``, ``class_token``, ``encoder``), so the
    state dict keys are those of a torchvision ViT checkpoint without ``heads.*``.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.encoder = vit.encoder
        self.patch_size = int(vit.patch_size)
        self.image_size = int(vit.image_size)
        self.hidden_dim = int(vit.hidden_dim)
        self.out_channels = self.hidden_dim

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """(1, 1 + gh*gw, C) position embedding, bicubically interpolated if the grid differs."""
        pos = self.encoder.pos_embedding
        g = self.grid_size
        if (gh, gw) == (g, g):
            return pos
        cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
        grid_pos = grid_pos.transpose(1, 2).reshape(1, self.hidden_dim, g, g)
        grid_pos = F.interpolate(grid_pos, size=(gh, gw), mode="bicubic", align_corners=True)
        grid_pos = grid_pos.reshape(1, self.hidden_dim, gh * gw).transpose(1, 2)
        return torch.cat([cls_pos, grid_pos], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < self.patch_size or x.shape[-1] < self.patch_size:
            raise ValueError(f"ViT input of size {tuple(x.shape[-2:])} is smaller than one {self.patch_size}px patch")
        t = self.conv_proj(x)  # (N, C, gh, gw)
        n, c, gh, gw = t.shape
        t = t.flatten(2).transpose(1, 2)  # (N, gh*gw, C)
        t = torch.cat([self.class_token.expand(n, -1, -1), t], dim=1)
        t = t + self.position_embedding(gh, gw)
        enc = self.encoder
        t = enc.ln(enc.layers(enc.dropout(t)))
        return t[:, 1:].transpose(1, 2).reshape(n, c, gh, gw)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A small, fast CPU CNN: four conv-BN-ReLU stages, widths 16-32-64-128 by default.

    The first convolution sees the image at full resolution; 2x2 max pooling between stages
    gives a total stride of 8 (a 64 px input gives a (128, 8, 8) map). Any input size works.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(_conv_bn_relu(in_channels, w0, 1), nn.MaxPool2d(2))  # /2
        self.stage1 = nn.Sequential(_conv_bn_relu(w0, w1, 1), nn.MaxPool2d(2))  # /4
        self.stage2 = nn.Sequential(_conv_bn_relu(w1, w2, 1), nn.MaxPool2d(2))  # /8
        self.stage3 = _conv_bn_relu(w2, w3, 1)
        self.out_channels = w3
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))


# --------------------------------------------------------------------------- the model


class MultiLabelNet(nn.Module):
    """Backbone feature map -> global pooling -> one linear classifier.

    Attributes: ``backbone`` (the feature extractor), ``head`` (``nn.Linear(C, K)``),
    ``pool_type`` ("max" or "avg"), ``name``, ``num_features`` (C), ``num_classes`` (K),
    ``patch_size`` (ViTs only, else ``None``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_classes: int,
        pool: str = "max",
        name: str = "custom",
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {list(_POOLS)}, got {pool!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)
        self.pool_type = pool
        self.name = name
        self.num_features = num_features
        self.num_classes = num_classes
        self.patch_size = patch_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images -> (N, C, h, w) feature map."""
        return self.backbone(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global pooling (N, C, h, w) -> (N, C): max (the paper's) or average."""
        if self.pool_type == "max":
            return fmap.amax(dim=(-2, -1))
        return fmap.mean(dim=(-2, -1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One backbone pass: ``(logits (N, K), feature map (N, C, h, w))``."""
        fmap = self.features(x)
        return self.head(self.pool(fmap)), fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the feature extractor (the paper trains them at 0.1 x the head's lr)."""
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the linear classifier."""
        return self.head.parameters()

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, pool={self.pool_type!r}, num_features={self.num_features}, "
            f"num_classes={self.num_classes}"
        )


# --------------------------------------------------------------------------- pretrained weights


def _torchvision_files(name: str) -> list[str]:
    """Basenames of torchvision's ImageNet checkpoints for ``name`` (empty if none)."""
    try:
        import torchvision.models as tvm

        enum = {
            "resnet18": tvm.ResNet18_Weights,
            "resnet50": tvm.ResNet50_Weights,
            "resnet101": tvm.ResNet101_Weights,
            "vit_b_16": tvm.ViT_B_16_Weights,
        }.get(name)
    except Exception:  # pragma: no cover - torchvision always importable here
        return []
    if enum is None:
        return []
    return [f"{os.path.basename(w.url)} ({w.name})" for w in enum]


def _missing_file_message(name: str, path: str) -> str:
    msg = (
        f"pretrained weights for {name!r} are loaded only from a local file path and nothing is "
        f"downloaded; {path!r} does not exist."
    )
    files = _torchvision_files(name)
    if files:
        msg += (
            " Obtain torchvision's ImageNet checkpoint, e.g. "
            + " or ".join(files)
            + ", from https://download.pytorch.org/models/ and pass its path."
        )
    else:
        msg += (
            f" torchvision has no checkpoint for {name!r}; pass a state dict saved from this "
            "backbone (model.backbone.state_dict()) or a whole MultiLabelNet checkpoint."
        )
    return msg


def _few(items: list[str], k: int = 5) -> str:
    shown = ", ".join(items[:k])
    return f"[{shown}{', ...' if len(items) > k else ''}] ({len(items)})"


def load_backbone_weights(model: MultiLabelNet, path: str | os.PathLike) -> MultiLabelNet:
    """Load a local checkpoint into ``model.backbone`` (strict); the classifier is not loaded.

    Accepted formats: a torchvision ImageNet state dict (``conv1.weight`` ... ``fc.weight``;
    ``fc.*`` / ``heads.*`` are dropped), the same wrapped in ``{"state_dict": ...}`` or
    ``{"model": ...}`` or with a ``module.`` prefix, or a MultiLabelNet state dict
    (``backbone.*`` keys are used, ``head.*`` dropped). A ViT position embedding of another
    grid size is interpolated bicubically.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_file_message(model.name, path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"pretrained weights {path!r} could not be read as a torch state dict: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained weights {path!r}: expected a state dict of tensors, got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    if any(k.startswith("backbone.") for k in state):
        state = OrderedDict((k[len("backbone.") :], v) for k, v in state.items() if k.startswith("backbone."))
    state = OrderedDict(
        (k, v) for k, v in state.items() if not (k.startswith("fc.") or k.startswith("heads.") or k.startswith("head."))
    )

    own = model.backbone.state_dict()
    if isinstance(model.backbone, _ViTFeatures) and "encoder.pos_embedding" in state:
        pos = state["encoder.pos_embedding"]
        want = own["encoder.pos_embedding"].shape
        if pos.dim() == 3 and pos.shape[0] == 1 and pos.shape[2] == want[2] and pos.shape[1] != want[1]:
            from torchvision.models.vision_transformer import interpolate_embeddings

            state = interpolate_embeddings(model.backbone.image_size, model.backbone.patch_size, state)

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_few(shapes, 3)}")
        raise ValueError(f"pretrained weights {path!r} do not match the {model.name!r} backbone: " + "; ".join(parts))
    model.backbone.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------- committed weights

WEIGHTS_NAME = "shapes"
"""The short name of the committed backbone weights: ``model.pretrained: shapes``."""
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
"""The folder of the committed weights and their manifest (installed with the package)."""
MANIFEST_FILE = "manifest.json"


def weights_file_name(model: str) -> str:
    """The file name of ``model``'s committed weights (``smallcnn-shapes.pt``)."""
    return f"{model}-{WEIGHTS_NAME}.pt"


def is_weights_name(pretrained: object) -> bool:
    """Whether ``model.pretrained`` is the short name of committed weights rather than a path.

    The short name wins over a file of that name in the working directory (write ``./shapes``)."""
    return pretrained == WEIGHTS_NAME


def committed_weights(model: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> str:
    """The path of ``model``'s committed weights, after checking the file's sha256 and size
    against the manifest; one ``ValueError`` line naming the file and what was expected otherwise."""
    manifest_path = os.path.join(weights_dir, MANIFEST_FILE)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"pretrained {WEIGHTS_NAME!r}: cannot read the weights manifest {manifest_path!r}: {e}") from e
    name = weights_file_name(model)
    entry = manifest.get(name) if isinstance(manifest, dict) else None
    if not isinstance(entry, dict) or entry.get("model") != model:
        have = sorted(e.get("model", "?") for e in manifest.values() if isinstance(e, dict))
        raise ValueError(
            f"pretrained {WEIGHTS_NAME!r}: no committed weights for model {model!r} in {manifest_path!r}; "
            f"expected one of the models {have}, or a path to a weights file"
        )
    path = os.path.join(weights_dir, name)
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise ValueError(f"pretrained {WEIGHTS_NAME!r} for {model!r}: cannot read {path!r}: {e}") from e
    if digest != entry.get("sha256"):
        raise ValueError(
            f"pretrained {WEIGHTS_NAME!r} for {model!r}: {path!r} has sha256 {digest}, expected {entry.get('sha256')} "
            f"({entry.get('size_bytes')} bytes, per {MANIFEST_FILE}); the file is corrupt or was replaced: restore it "
            f"(git checkout splicemix/weights) or remake it with: {entry.get('command')}"
        )
    return path


# --------------------------------------------------------------------------- factory


def _build_backbone(name: str, image_size: int) -> tuple[nn.Module, int, int | None]:
    import torchvision.models as tvm
    from torchvision.models.vision_transformer import VisionTransformer

    if name in ("resnet18", "resnet50", "resnet101"):
        resnet = _ResNetFeatures(getattr(tvm, name)(weights=None))
        return resnet, resnet.out_channels, None
    if name in ("vit_b_16", "vit_tiny"):
        cfg = (
            dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)
            if name == "vit_b_16"
            else dict(patch_size=8, num_layers=6, num_heads=3, hidden_dim=192, mlp_dim=768)
        )
        p = cfg["patch_size"]
        if not isinstance(image_size, int) or image_size < p or image_size % p:
            raise ValueError(
                f"{name}: image_size must be a positive multiple of the patch size {p}, got {image_size!r}"
            )
        vit = _ViTFeatures(VisionTransformer(image_size=image_size, num_classes=1000, **cfg))
        return vit, vit.out_channels, p
    if name == "smallcnn":
        cnn = SmallCNN()
        return cnn, cnn.out_channels, None
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_MODELS)}")


def build_model(
    name: str,
    num_classes: int,
    pretrained: str | os.PathLike | None = None,
    image_size: int = 224,
    pool: str = "max",
) -> MultiLabelNet:
    """Build a :class:`MultiLabelNet` by name (see :func:`list_models`).

    ``pretrained`` is a local checkpoint path (see :func:`load_backbone_weights`), the short name
    ``"shapes"`` (:data:`WEIGHTS_NAME`: this package's committed weights for ``name``, sha256
    checked by :func:`committed_weights`) or None for random initialisation. ``image_size``
    matters for ViTs only (it fixes the position embedding grid; other resolutions still work
    at run time by interpolation).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_MODELS)}")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {list(_POOLS)}, got {pool!r}")
    backbone, c, patch = _build_backbone(name, image_size)
    model = MultiLabelNet(backbone, c, num_classes, pool=pool, name=name, patch_size=patch)
    if is_weights_name(pretrained):
        load_backbone_weights(model, committed_weights(name))
    elif pretrained is not None:
        load_backbone_weights(model, pretrained)
    return model
