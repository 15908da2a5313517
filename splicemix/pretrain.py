"""``python -m splicemix.pretrain``: pretrain a backbone on shapes the studied task never sees.

The paper fine-tunes an ImageNet-pretrained ResNet on MS-COCO; ImageNet and COCO are disjoint
data sets. Here the pretraining set is the synthetic generator's *other* ten shapes (heart,
ellipse, l_shape, t_shape, semicircle, frame, chevron, trapezoid, hourglass, pentagon:
``first_class=10``), drawn with another data seed, more images and any rotation, while the
studied task uses the first ten (circle ... arrow). No class, image or seed is shared.

The pretraining is an ordinary training run of :func:`splicemix.engine.train.train` (baseline
method, AdamW, cosine), configured by :data:`RECIPES` plus ``--set`` overrides. Afterwards the
backbone's tensors (the classifier is dropped) are saved as ``DIR/<model>-shapes.pt`` and
described in ``DIR/manifest.json`` (sha256, size, the exact command, git commit, date, data
knobs, every epoch's metrics and the sha256 of the backbone after the first epoch), which is what
``model.pretrained: shapes`` reads (:mod:`splicemix.models`).

    python -m splicemix.pretrain --model smallcnn --weights-dir splicemix/weights
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from splicemix.config import ConfigError, TrainConfig, load_config
from splicemix.engine.rundir import RunDir
from splicemix.engine.train import train
from splicemix.models import MANIFEST_FILE, WEIGHTS_NAME, weights_file_name
from splicemix.provenance import git_commit

__all__ = ["RECIPES", "pretrain_config", "backbone_state", "tensors_sha256", "pretrain", "main"]

# What the pretraining set and run are, per model (dotted keys, as --set takes them).
_DATA = [
    "data.dataset=synthetic",
    "data.synthetic.first_class=10",  # the other ten shapes: disjoint from the task's classes
    "data.synthetic.num_classes=10",
    "data.synthetic.seed=1",  # the task's data seed is 0
    "data.synthetic.rotation=180",  # any orientation (the task: +-30 degrees)
    "data.synthetic.n_val=500",
    "data.eval_sizes=[]",
    "data.image_size=64",
    "data.crop_scale=null",
    "data.hflip=true",
    "data.missing_label_ratio=0.0",
    "model.pool=max",
    "mix.method=baseline",
    "optim.name=adamw",
    "optim.lr=0.003",
    "optim.weight_decay=0.0001",
    "optim.backbone_lr_factor=1.0",
    "optim.warmup_epochs=1",
    "optim.schedule=cosine",
    "optim.grad_clip=null",
    "train.batch_size=64",
    "train.seed=0",
    "train.cpu_threads=1",
    "train.device=cpu",
    "train.progress=false",
]
RECIPES: dict[str, list[str]] = {
    "smallcnn": [*_DATA, "data.synthetic.n_train=10000", "train.epochs=25"],
    "vit_tiny": [*_DATA, "data.synthetic.n_train=6000", "train.epochs=20", "optim.lr=0.001", "optim.warmup_epochs=2"],
}
"""The pretraining recipe of each model: ``--set`` overrides on the built-in defaults."""


class _Stop(Exception):
    """Raised from the report callback to end a run after ``--stop-after`` epochs."""


def pretrain_config(model: str, out_dir: str, data_root: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """The pretraining :class:`TrainConfig` of ``model``: its recipe, then ``overrides``."""
    if model not in RECIPES:
        raise ValueError(f"no pretraining recipe for model {model!r}; expected one of {sorted(RECIPES)}")
    base = [*RECIPES[model], f"model.name={model}", f"train.out_dir={out_dir}", f"data.root={data_root}"]
    return load_config(None, [*base, *overrides])


def backbone_state(run_dir: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """The backbone tensors (``backbone.`` prefix removed, classifier left out) of a run's checkpoint."""
    model = RunDir(run_dir).load_checkpoint()["model"]
    return OrderedDict((k[len("backbone.") :], v.clone()) for k, v in model.items() if k.startswith("backbone."))


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``state``'s tensors (not the file format)."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _settings(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved settings that shape the weights (the config without its folders)."""
    d = cfg.model_dump(mode="json")
    for section, key in (("data", "root"), ("data", "coco"), ("data", "voc"), ("train", "out_dir")):
        d[section].pop(key, None)
    return d


def pretrain(cfg: TrainConfig, weights_dir: str | os.PathLike, command: str, stop_after: int | None = None) -> dict:
    """Train ``cfg``, save the backbone to ``weights_dir`` and record it in its manifest; return the entry."""
    epochs: list[dict[str, Any]] = []
    first: dict[str, str] = {}
    # the code that trains, splicemix/ (read before the run: the tree may change during it)
    commit = git_commit(Path(__file__).parent)

    def report(metrics: dict) -> None:
        epochs.append({k: metrics[k] for k in ("epoch", "train_loss", "mAP", "lr") if k in metrics})
        if metrics["epoch"] == 1:
            first["sha"] = tensors_sha256(backbone_state(cfg.train.out_dir))
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise _Stop

    try:
        train(cfg, report=report)
    except _Stop:
        pass
    state = backbone_state(cfg.train.out_dir)
    out = Path(weights_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = weights_file_name(cfg.model.name)
    torch.save(state, out / name)
    blob = (out / name).read_bytes()
    entry = {
        "model": cfg.model.name,
        "name": WEIGHTS_NAME,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "tensors_sha256": tensors_sha256(state),
        "shapes": {k: list(v.shape) for k, v in state.items()},
        "command": command,
        "git_commit": commit,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "data": cfg.data.synthetic.model_dump(mode="json"),
        "config": _settings(cfg),
        "image_size": cfg.data.image_size,
        "epochs_run": len(epochs),
        "epoch1_tensors_sha256": first.get("sha"),
        "history": epochs,
        "final_mAP": epochs[-1].get("mAP") if epochs else None,
    }
    manifest_path = out / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = entry
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, manifest_path)
    return entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m splicemix.pretrain",
        description=(
            "Pretrain a backbone on the synthetic generator's other ten shapes (first_class=10, data seed 1, "
            "any rotation): disjoint from the studied task (the first ten shapes, data seed 0), as ImageNet is "
            "from MS-COCO. Writes WEIGHTS_DIR/<model>-shapes.pt (backbone tensors only) and its entry in "
            "WEIGHTS_DIR/manifest.json (sha256, size, this command, git commit, date, data knobs, metrics per "
            "epoch). The committed files are in splicemix/weights; a config loads them with "
            "'model.pretrained: shapes'."
        ),
        epilog="recipes (--set overrides on the built-in defaults):\n"
        + "\n".join(f"  {m}: {' '.join(r)}" for m, r in RECIPES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, choices=sorted(RECIPES), help="the backbone to pretrain")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the recipe, e.g. --set train.epochs=4 (repeatable; recorded in the manifest)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/pretrain-<model>)")
    p.add_argument(
        "--data-root", metavar="DIR", help="where the pretraining images are cached (default data/pretrain-<model>)"
    )
    p.add_argument(
        "--weights-dir",
        metavar="DIR",
        help="where <model>-shapes.pt and manifest.json go (default: the run directory; "
        "the committed ones: splicemix/weights)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after N epochs, keeping the full run's schedule (to check that the first epochs reproduce)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    out = args.out or f"runs/pretrain-{args.model}"
    # the command that made the weights: the options that change them (not where files go)
    kept = ["--model", args.model] + [a for o in args.overrides for a in ("--set", o)]
    try:
        if args.stop_after is not None and args.stop_after < 1:
            raise ValueError(f"--stop-after {args.stop_after}: expected a number of epochs >= 1")
        cfg = pretrain_config(args.model, out, args.data_root or f"data/pretrain-{args.model}", args.overrides)
        entry = pretrain(
            cfg, args.weights_dir or out, "python -m splicemix.pretrain " + shlex.join(kept), args.stop_after
        )
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, OSError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    where = Path(args.weights_dir or out) / weights_file_name(cfg.model.name)
    print(f"pretrained {entry['model']}: mAP {entry['final_mAP']:.2f} after {entry['epochs_run']} epochs; {where}")
    print(f"sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
