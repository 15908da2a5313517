"""``python -m benchmarks``: run the benchmark suites, print one table, write JSON and CSV."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from splicemix.provenance import git_commit, machine

from . import SUITES
from .table import format_table, write_csv, write_json

_EPILOG = """\
suites:
  mixing    SpliceMix vs the straightforward make_grid way and the copy/resize floor
            (B=32 at 3x448x448, B=64 at 3x224x224; grids 2x2, 2x3-2; ratio 0.25);
            out of place and in place (into SpliceCollate's reserved rows)
  training  ResNet-18 training step at 224 px, batch 32: the mixing's share of it, and
            the loader alone (JPEG decode, transforms, SpliceCollate) with 0 and 2 workers
  epoch     the main job's epoch (smallcnn, 64 px, 2,000 synthetic images, 1 thread): the
            trainer against a bare loop (file path and in memory), evaluation's share of the
            epoch, where the rest goes (decode, transforms, collate, mixing, checkpoint), and
            torch.compile of the step against eager
  study     real Ray studies on the CPU: per-trial overhead (direct and 2-worker Ray Train),
            trials/hour of search_spaces/ratio.yaml (runs it: ~12 min; BENCH_RATIO_STUDY=DIR
            reads an earlier run instead), and TPE+ASHA vs the exhaustive grid on
            benchmarks/spaces/efficiency.yaml (best-so-far curves -> search_curves.csv)

examples:
  python -m benchmarks                          # every suite, results in benchmarks/results
  python -m benchmarks --quick --only mixing    # a smoke run (tiny sizes, < 1 minute)
  python -m benchmarks --device cpu --out /tmp/bench

Columns: ours, reference (another way of doing it) and floor (what cannot be avoided) in
unit; ours/ref and ours/floor are the ratios the targets check; met is yes/NO/- (no target).
Times are medians over interleaved repeats (torch.utils.benchmark.Timer); on a shared or
busy machine they are noisy, the ratios less so.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the splicemix mixing, collate and training-step costs against "
        "references and floors, print a table and write results.json / results.csv.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a CI smoke run, < 60 s)")
    p.add_argument(
        "--only",
        metavar="NAMES",
        default=None,
        help=f"comma-separated suites to run (default: all of {', '.join(SUITES)})",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=str(Path("benchmarks") / "results"),
        help="folder for results.json and results.csv (default: benchmarks/results)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA if available, else CPU; the mixing targets are always measured on the CPU",
    )
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    return p


def machine_info(device: torch.device, argv: list[str]) -> dict:
    host = machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = host["cpu_count"]
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *argv]),
        "git_commit": git_commit(),
        "cpu_model": host["cpu_model"],
        "cpu_capability": host["cpu_capability"],
        "cpu_cores": host["cpu_count"],
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": host["platform"],
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    names = list(SUITES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        print(
            f"error: unknown suite(s) {', '.join(unknown) or '(none given)'}; available: {', '.join(SUITES)}",
            file=sys.stderr,
        )
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available; use --device auto or cpu", file=sys.stderr)
        return 2
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(device, argv)
    print(
        f"benchmarks: {', '.join(names)}{' (quick)' if args.quick else ''} | {machine['cpu_model']}, "
        f"{machine['cpu_cores_usable']} cores, {machine['torch_threads']} threads | torch {machine['torch']}"
        + (f" | {machine['cuda_device']}" if machine["cuda_device"] else ""),
        flush=True,
    )
    os.environ["BENCH_OUT"] = str(out)  # where suites write their extra files (study: search_curves.csv)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        got = SUITES[name](args.quick, device)
        rows += got
        print(f"  {name}: {len(got)} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    print()
    print(format_table(rows))
    machine["suites"] = names
    machine["quick"] = args.quick
    write_json(out / "results.json", rows, machine)
    write_csv(out / "results.csv", rows)
    print(f"\nwrote {out / 'results.json'} and {out / 'results.csv'}")
    missed = [r for r in rows if r.met is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
