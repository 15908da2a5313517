"""Execute the question notebooks with nbclient and save them with their outputs.

    python -m analysis.notebooks.execute            # run every notebook in place (outputs saved)
    python -m analysis.notebooks.execute --check    # run in memory only; exit 1 on the first error
    python -m analysis.notebooks.execute q2_ratio_by_data.ipynb

Kernel ``python3``, 300 s per cell, working directory = the notebook's folder. An error names the
notebook, the cell (1-based, over all cells) and the exception; nothing is written with ``--check``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

HERE = Path(__file__).resolve().parent
NOTEBOOKS = [
    "q1_grid_scaling.ipynb",
    "q1_drops.ipynb",
    "q2_ratio_by_data.ipynb",
    "q2_main_ratio.ipynb",
    "q3_cl_vit.ipynb",
    "q3_cl_weight.ipynb",
    "methods.ipynb",
    "tuned.ipynb",
    "claims.ipynb",
]
TIMEOUT_S = 300


class NotebookError(RuntimeError):
    """A notebook failed: the message names the notebook, the cell and the error."""


def _failed_cell(nb: nbformat.NotebookNode) -> tuple[int, str, str]:
    """(1-based index, first source line, error text) of the cell with an error output."""
    for i, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = (cell.source.strip().splitlines() or [""])[0]
                return i, first, f"{out.get('ename')}: {out.get('evalue')}"
    return 0, "", ""


def execute(path: str | Path, write: bool = True, timeout: int = TIMEOUT_S) -> nbformat.NotebookNode:
    """Run one notebook top to bottom (cwd = its folder); save it in place with outputs when ``write``.

    Raises :class:`NotebookError` naming the notebook and the failing cell.
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    # the kernel listens on loopback TCP only; its start-up warning about that is silenced (errors still show)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no execution timestamps in the saved notebook: a re-run diffs only its outputs
        extra_arguments=["--log-level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as e:
        i, first, err = _failed_cell(nb)
        where = f"cell {i} ({first!r})" if i else "a cell"
        raise NotebookError(f"{path.name}: {where} failed: {err or str(e).strip().splitlines()[-1]}") from None
    except CellTimeoutError:
        raise NotebookError(f"{path.name}: a cell ran past {timeout} s") from None
    except DeadKernelError as e:
        raise NotebookError(f"{path.name}: the kernel died ({e})") from None
    except RuntimeError as e:  # e.g. "Kernel didn't respond in 60 seconds"
        raise NotebookError(f"{path.name}: the python3 kernel could not be started ({e})") from None
    if write:
        nbformat.write(nb, path)
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a notebook failed, 2 no such notebook)."""
    p = argparse.ArgumentParser(
        prog="python -m analysis.notebooks.execute",
        description="Execute the analysis notebooks (kernel python3, 300 s per cell, cwd = "
        "the notebook's folder) and save them with their outputs.",
    )
    p.add_argument(
        "notebooks",
        nargs="*",
        metavar="NOTEBOOK",
        help=f"notebook file names under {HERE} (default: all of {', '.join(NOTEBOOKS)})",
    )
    p.add_argument(
        "--check", action="store_true", help="execute in memory only and exit 1 on any error (nothing is written)"
    )
    p.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds per cell")
    args = p.parse_args(argv)
    names = args.notebooks or NOTEBOOKS
    for name in names:
        path = HERE / name if not Path(name).is_absolute() else Path(name)
        if not path.is_file():
            print(f"{p.prog}: error: {path}: no such notebook", file=sys.stderr)
            return 2
        try:
            execute(path, write=not args.check, timeout=args.timeout)
        except NotebookError as e:
            print(f"{p.prog}: error: {e}", file=sys.stderr)
            return 1
        print(f"{'checked' if args.check else 'executed and saved'} {path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
