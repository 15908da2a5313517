"""The command line of the trainer: ``python -m splicemix.train`` (:func:`main`).

Bad input (malformed YAML, an unknown key, a wrong value, a missing data path, a corrupt
image) is one line on stderr, exit status 2 (:func:`one_line` makes it one line).
"""

from __future__ import annotations

import argparse
import json
import sys

from splicemix.config import METHODS, ConfigError, config_to_yaml, load_config

from .rundir import RunDir
from .train import train

__all__ = ["main", "one_line", "build_parser"]

_EPILOG = f"""\
examples:
  python -m splicemix.train --config configs/default.yaml
  python -m splicemix.train --config configs/default.yaml --method baseline --out runs/base
  python -m splicemix.train --set train.epochs=3 --set mix.grids=[2x2] --set data.eval_sizes=[32]
  python -m splicemix.train --out runs/x --resume      # continue runs/x from its {RunDir.CHECKPOINT}

Without --config the built-in defaults are used (the main job of configs/default.yaml).
--set values are YAML (3 is an int, 0.5 a float, [1, 2] a list, null is None).
The run directory receives {RunDir.CONFIG}, {RunDir.METRICS} (one JSON object per epoch) and
{RunDir.CHECKPOINT} (saved every epoch; --resume continues from it).
Bad input (malformed YAML, an unknown key, a wrong value, a missing data path, a corrupt
image) is one line on stderr naming the file / key / value, exit status 2; --debug shows
the traceback.
"""


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m splicemix.train``."""
    p = argparse.ArgumentParser(
        prog="python -m splicemix.train",
        description="Train a multi-label classifier with SpliceMix / SpliceMix-CL (arXiv 2311.15200), "
        "MixUp or CutMix (multi-hot labels mixed by lambda / by area), or without mixing (baseline), "
        "evaluating mAP and CF1/OF1 every epoch.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML config file (default: the built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="extend",
        nargs="+",
        default=[],
        help="override a config key, dotted (e.g. optim.lr=0.01); repeatable",
    )
    p.add_argument("--epochs", type=int, metavar="N", help="shortcut for --set train.epochs=N")
    p.add_argument("--method", choices=METHODS, help="shortcut for --set mix.method=M")
    p.add_argument("--out", metavar="DIR", help="run directory (shortcut for --set train.out_dir=DIR)")
    p.add_argument("--resume", action="store_true", help=f"continue from DIR/{RunDir.CHECKPOINT} if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip images that cannot be decoded, counting them "
        "(shortcut for --set data.skip_corrupt=true); "
        "without it a corrupt image stops the run with an error naming the file",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def one_line(e: BaseException) -> str:
    """An error as one line: a DataLoader worker's re-raised error keeps only its last line
    (the original message), not the worker's traceback text."""
    text = str(e)
    if "Original Traceback" in text:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else text
        head, sep, rest = last.partition(": ")
        text = rest if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head else last
    return " ".join(text.split())


def _overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides followed by those the shortcut flags stand for."""
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.method is not None:
        overrides.append(f"mix.method={args.method}")
    if args.out is not None:
        overrides.append(f"train.out_dir={json.dumps(args.out)}")
    if args.resume:
        overrides.append("train.resume=true")
    if args.no_progress:
        overrides.append("train.progress=false")
    if args.skip_corrupt:
        overrides.append("data.skip_corrupt=true")
    return overrides


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    overrides = _overrides(args)
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            sys.stdout.write(config_to_yaml(cfg))
            return 0
        result = train(cfg)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, OSError, ValueError, FloatingPointError) as e:  # OSError: missing/corrupt files
        if args.debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    best = result.get("best_mAP")
    if best is not None:
        print(f"best mAP {best:.2f} at epoch {result['best_epoch']}", flush=True)
    return 0
